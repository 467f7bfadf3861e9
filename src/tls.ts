import { rootCertificates } from 'node:tls';
import type { TlsTrust } from './config/types.js';

/**
 * TLS options for an outbound connection. An extra CA is added to Node's bundled roots rather
 * than replacing them, so a private CA for one host does not break public ones.
 */
export function trustOptions(tls: TlsTrust): { ca?: string[] } {
  return tls.ca ? { ca: [...rootCertificates, tls.ca] } : {};
}
