import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { decodeJwt, decodeProtectedHeader, jwtVerify } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FileSet } from '../../../src/files/live-file.js';
import { type AssertionClaims, signAssertion } from '../../../src/jwt/assertion.js';
import { liveSigningKey } from '../../../src/jwt/live-signing-key.js';
import { certificateThumbprint } from '../../../src/jwt/signing-key.js';
import { generateKey, type KeyKind, selfSignedCertificate, TempDir, type TestKey } from '../fixtures.js';

/** 2030-01-01T00:00:00.750Z: a fraction of a second, to check that iat is rounded down. */
const NOW = Date.UTC(2030, 0, 1, 0, 0, 0, 750);
const IAT = Math.floor(NOW / 1000);

const CLAIMS: AssertionClaims = {
  issuer: 'client-1',
  subject: 'user@example.com',
  audience: 'https://idp.example.com/token',
  lifetimeSeconds: 120,
};

let dir: TempDir;
const keys = {} as Record<KeyKind, TestKey>;

beforeAll(() => {
  dir = new TempDir();
  for (const kind of ['rsa', 'p256', 'p384', 'p521', 'ed25519'] as const) keys[kind] = generateKey(kind);
});

afterAll(() => dir.remove());

describe('signAssertion', () => {
  it.each([
    ['rsa', 'RS256'],
    ['rsa', 'PS512'],
    ['p256', 'ES256'],
    ['p384', 'ES384'],
    ['p521', 'ES512'],
    ['ed25519', 'EdDSA'],
  ] as const)('signs with a %s key and %s: iss, sub, aud, iat, nbf, exp verify', async (kind, alg) => {
    const jwt = await signAssertion(CLAIMS, { key: keys[kind].privateKey, alg }, NOW);
    const { payload, protectedHeader } = await jwtVerify(jwt, keys[kind].publicKey, {
      algorithms: [alg],
      issuer: 'client-1',
      subject: 'user@example.com',
      audience: 'https://idp.example.com/token',
      currentDate: new Date(NOW),
    });
    expect(protectedHeader).toEqual({ alg, typ: 'JWT' });
    expect(payload.iat).toBe(IAT);
    expect(payload.nbf).toBe(IAT);
    expect(payload.exp).toBe(IAT + 120);
    expect(payload.jti).toMatch(/^[0-9a-f-]{36}$/);
    expect(Object.keys(payload).sort()).toEqual(['aud', 'exp', 'iat', 'iss', 'jti', 'nbf', 'sub']);
  });

  it('does not verify with another key', async () => {
    const jwt = await signAssertion(CLAIMS, { key: keys.p256.privateKey, alg: 'ES256' }, NOW);
    await expect(
      jwtVerify(jwt, generateKey('p256').publicKey, { currentDate: new Date(NOW) }),
    ).rejects.toThrow();
  });

  it('is expired after its lifetime and not valid before now', async () => {
    const jwt = await signAssertion(CLAIMS, { key: keys.p256.privateKey, alg: 'ES256' }, NOW);
    const at = (ms: number) => jwtVerify(jwt, keys.p256.publicKey, { currentDate: new Date(ms) });
    await expect(at((IAT + 121) * 1000)).rejects.toThrow(/exp/);
    await expect(at((IAT - 10) * 1000)).rejects.toThrow(/nbf/);
    await expect(at((IAT + 119) * 1000)).resolves.toBeDefined();
  });

  it('gives every assertion a new jti, so none is replayed', async () => {
    const jtis = new Set<unknown>();
    for (let i = 0; i < 20; i++) {
      jtis.add(decodeJwt(await signAssertion(CLAIMS, { key: keys.p256.privateKey, alg: 'ES256' }, NOW)).jti);
    }
    expect(jtis.size).toBe(20);
  });

  it('uses the current time by default', async () => {
    const before = Math.floor(Date.now() / 1000);
    const payload = decodeJwt(await signAssertion(CLAIMS, { key: keys.p256.privateKey, alg: 'ES256' }));
    const after = Math.floor(Date.now() / 1000);
    expect(payload.iat).toBeGreaterThanOrEqual(before);
    expect(payload.iat).toBeLessThanOrEqual(after);
  });

  it('puts kid and x5t#S256 in the header only when given', async () => {
    const jwt = await signAssertion(
      CLAIMS,
      { key: keys.p256.privateKey, alg: 'ES256', keyId: 'key-7', x5tS256: 'thumb' },
      NOW,
    );
    expect(decodeProtectedHeader(jwt)).toEqual({
      alg: 'ES256',
      typ: 'JWT',
      kid: 'key-7',
      'x5t#S256': 'thumb',
    });
  });

  it('adds extra claims, but never lets them replace the registered ones', async () => {
    const jwt = await signAssertion(
      {
        ...CLAIMS,
        claims: {
          tenant: 'acme',
          roles: ['a', 'b'],
          iss: 'evil',
          sub: 'evil',
          aud: 'evil',
          exp: 1,
          jti: 'fixed',
        },
      },
      { key: keys.p256.privateKey, alg: 'ES256' },
      NOW,
    );
    const { payload } = await jwtVerify(jwt, keys.p256.publicKey, { currentDate: new Date(NOW) });
    expect(payload.tenant).toBe('acme');
    expect(payload.roles).toEqual(['a', 'b']);
    expect(payload.iss).toBe('client-1');
    expect(payload.sub).toBe('user@example.com');
    expect(payload.aud).toBe('https://idp.example.com/token');
    expect(payload.exp).toBe(IAT + 120);
    expect(payload.jti).not.toBe('fixed');
  });

  it('signs HS256 with a shared secret (client_secret_jwt)', async () => {
    const secret = new TextEncoder().encode('a-client-secret-that-is-long-enough');
    const jwt = await signAssertion(CLAIMS, { key: secret, alg: 'HS256' }, NOW);
    const { protectedHeader } = await jwtVerify(jwt, secret, {
      algorithms: ['HS256'],
      currentDate: new Date(NOW),
    });
    expect(protectedHeader.alg).toBe('HS256');
    await expect(
      jwtVerify(jwt, new TextEncoder().encode('another-secret-that-is-long-enough!'), {
        currentDate: new Date(NOW),
      }),
    ).rejects.toThrow();
  });
});

describe('liveSigningKey', () => {
  it('adds kid and the certificate thumbprint of the configured key', () => {
    const keyFile = dir.file('live-p256.pem', keys.p256.pkcs8);
    const certFile = selfSignedCertificate(keyFile, join(dir.path, 'live-p256.crt'));
    const cert = readFileSync(certFile, 'utf8');
    const key = liveSigningKey(
      {
        key: { value: keys.p256.pkcs8, file: keyFile },
        alg: 'ES256',
        keyId: 'k',
        certificate: { value: cert, file: certFile },
      },
      new FileSet(),
    )();
    expect(key.alg).toBe('ES256');
    expect(key.keyId).toBe('k');
    expect(key.x5tS256).toBe(certificateThumbprint(cert));
  });

  it('parses the key again only when its file changes; a rotated key of another type gets its own inferred algorithm', () => {
    const keyFile = dir.file('rotating.pem', keys.p256.pkcs8);
    const current = liveSigningKey(
      { key: { value: keys.p256.pkcs8, file: keyFile }, alg: 'ES256', algInferred: true },
      new FileSet(),
    );
    const first = current();
    expect(first.alg).toBe('ES256');
    expect(current()).toBe(first);
    writeFileSync(`${keyFile}.new`, keys.p384.pkcs8);
    renameSync(`${keyFile}.new`, keyFile);
    const second = current();
    expect(second).not.toBe(first);
    expect((second.key as import('node:crypto').KeyObject).asymmetricKeyDetails?.namedCurve).toBe(
      'secp384r1',
    );
    expect(second.alg).toBe('ES384');
    expect(current()).toBe(second);
    writeFileSync(`${keyFile}.new`, keys.rsa.pkcs8);
    renameSync(`${keyFile}.new`, keyFile);
    expect(current().alg).toBe('RS256');
  });

  it('keeps an explicit signing_alg for a rotated key of the same type', () => {
    const keyFile = dir.file('rotating-explicit.pem', keys.rsa.pkcs8);
    const current = liveSigningKey(
      { key: { value: keys.rsa.pkcs8, file: keyFile }, alg: 'PS384', algInferred: false },
      new FileSet(),
    );
    const first = current();
    expect(first.alg).toBe('PS384');
    writeFileSync(`${keyFile}.new`, keys.rsa.jwk);
    renameSync(`${keyFile}.new`, keyFile);
    const second = current();
    expect(second).not.toBe(first);
    expect(second.alg).toBe('PS384');
  });

  it('throws when an explicit signing_alg no longer fits the rotated key, until a fitting key returns', () => {
    const keyFile = dir.file('rotating-mismatch.pem', keys.p256.pkcs8);
    const current = liveSigningKey(
      { key: { value: keys.p256.pkcs8, file: keyFile }, alg: 'ES256', algInferred: false },
      new FileSet(),
    );
    expect(current().alg).toBe('ES256');
    writeFileSync(`${keyFile}.new`, keys.p384.pkcs8);
    renameSync(`${keyFile}.new`, keyFile);
    expect(() => current()).toThrow('the rotated key (ec) cannot sign with signing_alg ES256');
    // Never signs with the wrong algorithm, nor silently with the old key.
    expect(() => current()).toThrow('signing_alg ES256');
    writeFileSync(`${keyFile}.new`, keys.p256.pkcs8);
    renameSync(`${keyFile}.new`, keyFile);
    expect(current().alg).toBe('ES256');
  });

  it('treats a missing algInferred as an explicit signing_alg', () => {
    const keyFile = dir.file('rotating-default.pem', keys.p256.pkcs8);
    const current = liveSigningKey(
      { key: { value: keys.p256.pkcs8, file: keyFile }, alg: 'ES256' },
      new FileSet(),
    );
    expect(current().alg).toBe('ES256');
    writeFileSync(`${keyFile}.new`, keys.ed25519.pkcs8);
    renameSync(`${keyFile}.new`, keyFile);
    expect(() => current()).toThrow('cannot sign with signing_alg ES256');
  });

  it('uses a key given without a file as it is', () => {
    const current = liveSigningKey({ key: { value: keys.ed25519.pkcs8 }, alg: 'EdDSA' }, new FileSet());
    expect((current().key as import('node:crypto').KeyObject).asymmetricKeyType).toBe('ed25519');
    expect(current()).toBe(current());
  });
});
