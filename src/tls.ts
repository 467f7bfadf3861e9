import { rootCertificates } from 'node:tls';
import type { FileBacked, FileSet } from './files/live-file.js';

export interface TlsTrust {
  /** PEM text of extra CAs, trusted in addition to Node's bundled roots. */
  readonly ca?: string;
  /** Where `ca` was read from, for messages. */
  readonly caFile?: string;
}

/** TLS towards a token endpoint or upstream: extra trust, and a client certificate (RFC 8705). */
export interface TlsClient extends TlsTrust {
  readonly cert?: FileBacked;
  readonly key?: FileBacked;
}

/**
 * TLS options for an outbound connection. An extra CA is added to Node's bundled roots rather
 * than replacing them, so a private CA for one host does not break public ones.
 */
export function trustOptions(tls: TlsTrust): { ca?: string[] } {
  return tls.ca ? { ca: [...rootCertificates, tls.ca] } : {};
}

export interface ConnectTls {
  ca?: string[];
  cert?: string;
  key?: string;
}

/**
 * The TLS options of a connection with an optional client certificate (RFC 8705), re-read when
 * the certificate or key file changes. Returns the same object while nothing changed, so callers
 * can compare by identity to know when to open new connections.
 */
export function liveTlsOptions(tls: TlsClient, files: FileSet): () => ConnectTls {
  const trust = trustOptions(tls);
  if (!tls.cert || !tls.key) {
    const fixed: ConnectTls = trust;
    return () => fixed;
  }
  const cert = files.value(tls.cert, false);
  const key = files.value(tls.key, false);
  let current: ConnectTls = { ...trust, cert: cert.read(), key: key.read() };
  return () => {
    const c = cert.read();
    const k = key.read();
    if (c !== current.cert || k !== current.key) current = { ...trust, cert: c, key: k };
    return current;
  };
}
