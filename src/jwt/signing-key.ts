import { createHash, createPrivateKey, type KeyObject, X509Certificate } from 'node:crypto';
import type { FileBacked } from '../files/live-file.js';

export type SigningAlg =
  | 'RS256'
  | 'RS384'
  | 'RS512'
  | 'PS256'
  | 'PS384'
  | 'PS512'
  | 'ES256'
  | 'ES384'
  | 'ES512'
  | 'EdDSA';

/** A private key for signing JWTs, as configured; parsed and checked at load time. */
export interface SigningKeyConfig {
  readonly key: FileBacked;
  readonly alg: SigningAlg;
  /** No `signing_alg` was configured: a rotated key of another type gets its own algorithm. */
  readonly algInferred?: boolean;
  readonly keyId?: string;
  /** PEM certificate of the key, for the `x5t#S256` header. */
  readonly certificate?: FileBacked;
}

export const SIGNING_ALGS: readonly SigningAlg[] = [
  'RS256',
  'RS384',
  'RS512',
  'PS256',
  'PS384',
  'PS512',
  'ES256',
  'ES384',
  'ES512',
  'EdDSA',
];

/**
 * Parses a private key file: PEM (PKCS#8, PKCS#1 RSA or SEC1 EC) or a JWK JSON object. Throws
 * an Error with a short reason; never includes the key material in it.
 */
export function parsePrivateKey(text: string): KeyObject {
  const trimmed = text.trim();
  if (trimmed.startsWith('{')) {
    let jwk: Record<string, unknown>;
    try {
      jwk = JSON.parse(trimmed) as Record<string, unknown>;
    } catch {
      throw new Error('not a PEM or JWK key (invalid JSON)');
    }
    if (typeof jwk['d'] !== 'string')
      throw new Error('the JWK is a public key; a private key (with "d") is needed');
    try {
      return createPrivateKey({ key: jwk as import('node:crypto').JsonWebKey, format: 'jwk' });
    } catch {
      throw new Error('not a usable JWK private key');
    }
  }
  // Checked first: the general PEM pattern below would also match it.
  if (
    trimmed.includes('-----BEGIN ENCRYPTED PRIVATE KEY-----') ||
    trimmed.includes('Proc-Type: 4,ENCRYPTED')
  ) {
    throw new Error('encrypted keys are not supported');
  }
  if (!/-----BEGIN ([A-Z]+ )?PRIVATE KEY-----/.test(trimmed)) throw new Error('not a PEM or JWK key');
  try {
    return createPrivateKey(trimmed);
  } catch {
    throw new Error('not a PEM or JWK key (unreadable PEM)');
  }
}

/**
 * The JWS algorithms a key can sign with. The first is the one inferred when `signing_alg` is not
 * set; an RSA key is ambiguous between RS* and PS*, and RS256 is what providers expect by default.
 */
export function algorithmsFor(key: KeyObject): readonly SigningAlg[] {
  switch (key.asymmetricKeyType) {
    case 'rsa':
      return ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512'];
    case 'rsa-pss':
      return ['PS256', 'PS384', 'PS512'];
    case 'ec': {
      const curve = key.asymmetricKeyDetails?.namedCurve;
      if (curve === 'prime256v1') return ['ES256'];
      if (curve === 'secp384r1') return ['ES384'];
      if (curve === 'secp521r1') return ['ES512'];
      return [];
    }
    case 'ed25519':
      return ['EdDSA'];
    default:
      return [];
  }
}

/** RFC 7515 §4.1.8 `x5t#S256`: base64url SHA-256 of the certificate's DER encoding. */
export function certificateThumbprint(pem: string): string {
  const cert = new X509Certificate(pem);
  return createHash('sha256').update(cert.raw).digest('base64url');
}

/** Checks that a certificate belongs to a private key; throws with a short reason otherwise. */
export function assertCertificateMatches(pem: string, key: KeyObject): void {
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(pem);
  } catch {
    throw new Error('not a PEM certificate');
  }
  if (!cert.checkPrivateKey(key)) throw new Error('the certificate does not belong to the private key');
}
