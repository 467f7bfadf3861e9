import { createHash, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import type { FileBacked } from '../files/live-file.js';
import { algorithmsFor, parsePrivateKey } from '../jwt/signing-key.js';

/** The JWS algorithms a DPoP key may sign proofs with (RFC 9449 §4.2 forbids symmetric ones). */
export const DPOP_ALGS = ['ES256', 'EdDSA', 'PS256', 'RS256'] as const;
export type DpopAlg = (typeof DPOP_ALGS)[number];

/** `credentials.<name>.dpop`, normalized. */
export interface DpopConfig {
  /** The private key (PEM or JWK) as read at load; absent: a key is generated at start. */
  readonly key?: FileBacked;
  readonly alg: DpopAlg;
}

/** A DPoP key pair ready to sign: the private key and the public JWK the proofs carry. */
export interface DpopKey {
  readonly privateKey: KeyObject;
  readonly alg: DpopAlg;
  /** The public key as a JWK with only its required members (RFC 7638 §3.2). */
  readonly jwk: Readonly<Record<string, string>>;
  /** RFC 7638 SHA-256 thumbprint of `jwk`, base64url: the `cnf.jkt` of bound tokens (RFC 9449 §6.1). */
  readonly thumbprint: string;
}

/**
 * Parses a configured key and checks that it signs `alg`; throws an Error with a short reason
 * (never the key material). Used by validation and, once, by the credential's provider.
 */
export function parseDpopKey(text: string, alg: DpopAlg): DpopKey {
  const privateKey = parsePrivateKey(text);
  if (!algorithmsFor(privateKey).includes(alg)) {
    const fits = algorithmsFor(privateKey).filter((a) => (DPOP_ALGS as readonly string[]).includes(a));
    throw new Error(
      `this ${privateKey.asymmetricKeyType} key cannot sign ${alg}${fits.length > 0 ? ` (it signs ${fits.join(', ')}; set alg)` : ''}`,
    );
  }
  return dpopKey(privateKey, alg);
}

/**
 * A fresh key pair for `alg`. Tokens bound to it die with the process: nothing it signed can be
 * used by another replica or a restarted one.
 */
export function generateDpopKey(alg: DpopAlg): DpopKey {
  switch (alg) {
    case 'ES256':
      return dpopKey(generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey, alg);
    case 'EdDSA':
      return dpopKey(generateKeyPairSync('ed25519').privateKey, alg);
    case 'PS256':
    case 'RS256':
      return dpopKey(generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey, alg);
  }
}

/** The configured key, or a generated one when the configuration names none. */
export function loadDpopKey(cfg: DpopConfig): DpopKey {
  return cfg.key === undefined ? generateDpopKey(cfg.alg) : parseDpopKey(cfg.key.value, cfg.alg);
}

function dpopKey(privateKey: KeyObject, alg: DpopAlg): DpopKey {
  // The proof carries the public key as a JWK (RFC 9449 §4.2), which has no form for RSA-PSS keys.
  if (privateKey.asymmetricKeyType === 'rsa-pss') {
    throw new Error('an RSA-PSS key has no JWK form for the proof header; use a plain RSA key for PS256');
  }
  const full = createPublicKey(privateKey).export({ format: 'jwk' }) as Record<string, string>;
  // RFC 7638 §3.2: the required members only, in lexicographic order, for the thumbprint; the
  // same object is the proof's `jwk` header, so no private or optional member ever travels.
  const members =
    full['kty'] === 'RSA'
      ? ['e', 'kty', 'n']
      : full['kty'] === 'EC'
        ? ['crv', 'kty', 'x', 'y']
        : ['crv', 'kty', 'x'];
  const jwk: Record<string, string> = {};
  for (const m of members) jwk[m] = full[m]!;
  const thumbprint = createHash('sha256').update(JSON.stringify(jwk)).digest('base64url');
  return { privateKey, alg, jwk: Object.freeze(jwk), thumbprint };
}
