import { randomUUID } from 'node:crypto';
import { type KeyObject, SignJWT } from 'jose';
import type { SigningAlg } from './signing-key.js';

export interface AssertionClaims {
  readonly issuer: string;
  readonly subject: string;
  readonly audience: string;
  readonly lifetimeSeconds: number;
  readonly claims?: Readonly<Record<string, unknown>>;
}

export interface AssertionKey {
  readonly key: KeyObject | Uint8Array;
  readonly alg: SigningAlg | 'HS256';
  readonly keyId?: string;
  readonly x5tS256?: string;
}

/**
 * A signed JWT for RFC 7523: a client assertion (§2.2) or an authorization grant (§2.1). Each call
 * has a fresh `jti` and `iat`, so assertions are never replayed.
 */
export function signAssertion(c: AssertionClaims, k: AssertionKey, now = Date.now()): Promise<string> {
  const iat = Math.floor(now / 1000);
  return new SignJWT({ ...c.claims })
    .setProtectedHeader({
      alg: k.alg,
      typ: 'JWT',
      ...(k.keyId !== undefined ? { kid: k.keyId } : {}),
      ...(k.x5tS256 !== undefined ? { 'x5t#S256': k.x5tS256 } : {}),
    })
    .setIssuer(c.issuer)
    .setSubject(c.subject)
    .setAudience(c.audience)
    .setIssuedAt(iat)
    .setNotBefore(iat)
    .setExpirationTime(iat + c.lifetimeSeconds)
    .setJti(randomUUID())
    .sign(k.key);
}
