import type { FileBacked } from '../files/live-file.js';
import type { TlsClient } from '../tls.js';
import { type Checker, type Fields, isMapping, join } from './checker.js';
import type { TlsFiles } from './schema-credential.js';

/** 127.0.0.0/8, ::1 and localhost: reachable only from this machine (or this pod). */
export function isLoopback(host: string): boolean {
  const h = host.toLowerCase().replace(/^\[|\]$/g, '');
  return h === 'localhost' || h === '::1' || /^127\.\d+\.\d+\.\d+$/.test(h) || h === '::ffff:127.0.0.1';
}

/**
 * A token sent over plain HTTP beyond this machine can be read on the way: refused unless the
 * credential or route says `allow_insecure_http: true`.
 */
export function insecureHttp(c: Checker, url: URL, path: string, what: string): void {
  if (url.protocol === 'http:' && !isLoopback(url.hostname)) {
    c.add(
      path,
      `http:// to ${url.hostname} would send tokens or secrets unencrypted; use https://, or set allow_insecure_http: true on ${what} if the network is trusted`,
    );
  }
}

/** `tls: {ca_file, cert_file, key_file}`: extra trust and an optional client certificate, read now. */
export function tlsClient(c: Checker, files: Fields<typeof TlsFiles>, raw: unknown, here: string): TlsClient {
  const out: { ca?: string; caFile?: string; cert?: FileBacked; key?: FileBacked } = {};
  const ca = c.file(files.ca_file, join(here, 'ca_file'));
  if (ca) {
    // An empty or wrong file must not silently fall back to the public roots alone.
    if (!ca.value.includes('-----BEGIN CERTIFICATE-----')) {
      c.add(join(here, 'ca_file'), `${ca.file} holds no PEM certificate`);
    }
    out.ca = ca.value;
    out.caFile = ca.file!;
  }
  const cert = c.file(files.cert_file, join(here, 'cert_file'));
  const key = c.file(files.key_file, join(here, 'key_file'));
  if (cert && !cert.value.includes('-----BEGIN CERTIFICATE-----')) {
    c.add(join(here, 'cert_file'), `${cert.file} holds no PEM certificate`);
  }
  if (key && !/-----BEGIN ([A-Z]+ )?PRIVATE KEY-----/.test(key.value)) {
    c.add(join(here, 'key_file'), `${key.file} holds no PEM private key`);
  }
  const obj = isMapping(raw) ? raw : {};
  if ((obj['cert_file'] === undefined) !== (obj['key_file'] === undefined)) {
    c.add(here, 'cert_file and key_file go together');
  }
  if (cert) out.cert = cert;
  if (key) out.key = key;
  return Object.freeze(out);
}
