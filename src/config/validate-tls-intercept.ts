import { type KeyObject, X509Certificate } from 'node:crypto';
import { statSync } from 'node:fs';
import type { FileBacked } from '../files/live-file.js';
import { parsePrivateKey } from '../jwt/signing-key.js';
// Node's crypto only: the X.509 library is loaded when interception starts, never to validate.
import { caKeyAlgorithm, pemCertificates } from '../tls-intercept/ca-material.js';
import type { Checker, Fields } from './checker.js';
import { join } from './checker.js';
import type { TlsIntercept } from './schema.js';
import type { TlsInterceptConfig } from './types.js';

const DAY_MS = 24 * 3_600_000;

/** A CA this close to its end is reported, so it is replaced before interception stops. */
const EXPIRY_WARNING_MS = 30 * DAY_MS;

/** `tls_intercept`, as the schema read it; every problem is recorded with its exact key. */
export function tlsIntercept(
  c: Checker,
  f: Fields<typeof TlsIntercept>,
  now = Date.now(),
): TlsInterceptConfig | undefined {
  const path = 'tls_intercept';
  const certFile = c.file(f.ca_cert_file, join(path, 'ca_cert_file'));
  const keyFile = c.file(f.ca_key_file, join(path, 'ca_key_file'));
  const ca = certFile ? caCertificate(c, certFile, join(path, 'ca_cert_file'), now) : undefined;
  const key = keyFile ? caKey(c, keyFile, join(path, 'ca_key_file')) : undefined;
  if (ca && key && !ca.checkPrivateKey(key)) {
    c.add(
      join(path, 'ca_key_file'),
      `${keyFile!.file} is not the key of the CA certificate in ${certFile!.file}`,
    );
  }
  if (!c.clean(path) || !certFile || !keyFile) return undefined;
  return Object.freeze({ caCert: certFile, caKey: keyFile, leafLifetimeMs: f.leaf_lifetime });
}

/**
 * The issuing CA (the file's first certificate), checked as clients will check what it signs.
 * Certificates after it are its chain, each issued by the next.
 */
function caCertificate(c: Checker, file: FileBacked, here: string, now: number): X509Certificate | undefined {
  const blocks = pemCertificates(file.value);
  if (blocks.length === 0) {
    c.add(here, `${file.file} holds no PEM certificate`);
    return undefined;
  }
  const certs: X509Certificate[] = [];
  for (const [i, pem] of blocks.entries()) {
    try {
      certs.push(new X509Certificate(pem));
    } catch {
      c.add(here, `${file.file}: certificate ${i + 1} is not a readable PEM certificate`);
      return undefined;
    }
  }
  const ca = certs[0]!;
  if (!ca.ca) {
    c.add(
      here,
      `${file.file} is not a CA certificate (its basicConstraints do not say cA): clients would refuse the certificates it signs; make a CA with: token-injector ca init --dir DIR`,
    );
    return undefined;
  }
  const notBefore = Date.parse(ca.validFrom);
  const notAfter = Date.parse(ca.validTo);
  if (now >= notAfter) {
    c.add(here, `the CA certificate in ${file.file} expired on ${iso(notAfter)}`);
    return undefined;
  }
  if (now < notBefore) {
    c.add(here, `the CA certificate in ${file.file} is not valid until ${iso(notBefore)}`);
    return undefined;
  }
  if (notAfter - now < EXPIRY_WARNING_MS) {
    c.warn(
      here,
      `the CA certificate in ${file.file} expires on ${iso(notAfter)}; minted certificates never outlive it, so interception stops then`,
    );
  }
  for (let i = 1; i < certs.length; i++) {
    const [child, parent] = [certs[i - 1]!, certs[i]!];
    if (!child.checkIssued(parent) || !child.verify(parent.publicKey)) {
      c.add(
        here,
        `${file.file}: certificate ${i + 1} did not issue certificate ${i}; list the issuing CA first, then each issuer in turn`,
      );
      return undefined;
    }
  }
  return ca;
}

/** The CA's private key: owner-only file, a supported type. */
function caKey(c: Checker, file: FileBacked, here: string): KeyObject | undefined {
  const mode = fileMode(file.file!);
  if (typeof mode === 'string') {
    c.add(here, `cannot check the permissions of ${file.file} (${mode})`);
    return undefined;
  }
  // Whoever reads this key can make certificates every app that trusts the CA accepts. Windows
  // has no such mode bits (Node reports 0666), so the check is for POSIX systems.
  if ((mode & 0o077) !== 0 && process.platform !== 'win32') {
    const octal = (mode & 0o777).toString(8).padStart(4, '0');
    c.add(
      here,
      `${file.file} is readable or writable by group or others (mode ${octal}); the CA key must be its owner's alone: chmod 600 ${file.file}`,
    );
    return undefined;
  }
  let key: KeyObject;
  try {
    key = parsePrivateKey(file.value);
  } catch (err) {
    c.add(here, `${file.file}: ${(err as Error).message}`);
    return undefined;
  }
  const algorithm = caKeyAlgorithm(key);
  if (typeof algorithm === 'string') {
    c.add(here, `${file.file} holds ${algorithm}`);
    return undefined;
  }
  return key;
}

/** The file's mode bits (following symlinks, as Kubernetes mounts Secrets), or the error code. */
function fileMode(path: string): number | string {
  try {
    return statSync(path).mode;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code ?? 'unknown error';
  }
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}
