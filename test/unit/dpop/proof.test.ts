import { createHash, generateKeyPairSync } from 'node:crypto';
import { calculateJwkThumbprint, decodeProtectedHeader, EmbeddedJWK, type JWK, jwtVerify } from 'jose';
import { describe, expect, it } from 'vitest';
import { DPOP_ALGS, generateDpopKey, parseDpopKey } from '../../../src/dpop/key.js';
import { DpopProver, saysUseDpopNonce } from '../../../src/dpop/proof.js';
import { saysInvalidToken } from '../../../src/proxy/replay.js';
import { generateKey } from '../fixtures.js';

const HTU = 'https://api.example.com/v1/payments';

describe('DpopProver', () => {
  it.each(DPOP_ALGS)(
    '%s: a proof verifies with its own jwk header and carries the claims of RFC 9449 §4.2',
    async (alg) => {
      const prover = new DpopProver(generateDpopKey(alg));
      const now = Date.UTC(2026, 0, 1, 12);
      const proof = prover.proof('POST', HTU, 'n-1', 'the-token', now);
      const { payload, protectedHeader } = await jwtVerify(proof, EmbeddedJWK, {
        typ: 'dpop+jwt',
        algorithms: [alg],
        currentDate: new Date(now),
      });
      expect(protectedHeader.alg).toBe(alg);
      expect(protectedHeader.jwk).not.toHaveProperty('d');
      expect(payload).toMatchObject({
        htm: 'POST',
        htu: HTU,
        iat: now / 1000,
        nonce: 'n-1',
        ath: createHash('sha256').update('the-token').digest('base64url'),
      });
      expect(typeof payload.jti).toBe('string');
      // The thumbprint bound tokens carry (cnf.jkt) is the RFC 7638 one of the header's key.
      expect(prover.key.thumbprint).toBe(await calculateJwkThumbprint(protectedHeader.jwk as JWK));
    },
  );

  it('has no ath or nonce when there is no token or nonce, and a new jti every time', () => {
    const prover = new DpopProver(generateDpopKey('ES256'));
    const a = JSON.parse(
      Buffer.from(prover.proof('GET', HTU, undefined).split('.')[1]!, 'base64url').toString(),
    );
    const b = JSON.parse(
      Buffer.from(prover.proof('GET', HTU, undefined).split('.')[1]!, 'base64url').toString(),
    );
    expect(a).not.toHaveProperty('ath');
    expect(a).not.toHaveProperty('nonce');
    expect(a.jti).not.toBe(b.jti);
  });

  it('never repeats a jti, across proofs and provers of one process (RFC 9449 §4.2)', () => {
    const provers = [new DpopProver(generateDpopKey('ES256')), new DpopProver(generateDpopKey('EdDSA'))];
    const seen = new Set<string>();
    for (let i = 0; i < 2_000; i++) {
      const proof = provers[i % 2]!.proof('GET', HTU, undefined);
      seen.add(JSON.parse(Buffer.from(proof.split('.')[1]!, 'base64url').toString()).jti);
    }
    expect(seen.size).toBe(2_000);
  });

  it('carries htm, htu and nonce exactly, whatever JSON must escape in them', async () => {
    const prover = new DpopProver(generateDpopKey('ES256'));
    // A raw request path may hold quotes, backslashes and bytes beyond ASCII (Node reads them as latin1).
    const htu = 'https://api.example.com/a"b\\c/\u00e9\u2028/\x7f';
    const nonce = 'n!#$%&()*+,-./09:;<=>?@AZ[]^_`az{|}~';
    const proof = prover.proof('M-SEARCH', htu, nonce, 'tok');
    const { payload } = await jwtVerify(proof, EmbeddedJWK, { typ: 'dpop+jwt', algorithms: ['ES256'] });
    expect(payload).toMatchObject({ htm: 'M-SEARCH', htu, nonce });
    expect(Object.keys(payload).sort()).toEqual(['ath', 'htm', 'htu', 'iat', 'jti', 'nonce']);
  });

  it('ath follows the token it is given', () => {
    const prover = new DpopProver(generateDpopKey('ES256'));
    const ath = (token: string) =>
      JSON.parse(
        Buffer.from(prover.proof('GET', HTU, undefined, token).split('.')[1]!, 'base64url').toString(),
      ).ath;
    const sha = (t: string) => createHash('sha256').update(t).digest('base64url');
    expect(ath('one')).toBe(sha('one'));
    expect(ath('two')).toBe(sha('two'));
    expect(ath('one')).toBe(sha('one'));
  });

  it('remembers nonces per origin, takes the last of a repeated header and ignores malformed ones', () => {
    const prover = new DpopProver(generateDpopKey('ES256'));
    prover.heard('https://a.example', 'n1');
    prover.heard('https://b.example', ['x', 'n2']);
    prover.heard('https://a.example', 'has space');
    prover.heard('https://a.example', 'quote"d');
    prover.heard('https://a.example', undefined);
    expect(prover.nonce('https://a.example')).toBe('n1');
    expect(prover.nonce('https://b.example')).toBe('n2');
    expect(prover.hasNewNonce('https://a.example', undefined)).toBe(true);
    expect(prover.hasNewNonce('https://a.example', 'n1')).toBe(false);
    expect(prover.hasNewNonce('https://c.example', undefined)).toBe(false);
  });

  it('signs with a configured key: its thumbprint and alg', async () => {
    const key = generateKey('rsa');
    const prover = new DpopProver(parseDpopKey(key.pkcs8, 'PS256'));
    const header = decodeProtectedHeader(prover.proof('GET', HTU, undefined));
    expect(header.alg).toBe('PS256');
    expect(await calculateJwkThumbprint(header.jwk as JWK)).toBe(
      await calculateJwkThumbprint(key.publicKey.export({ format: 'jwk' }) as JWK),
    );
  });
});

describe('parseDpopKey', () => {
  it('refuses a key that cannot sign the alg, naming what it can sign', () => {
    expect(() => parseDpopKey(generateKey('rsa').pkcs8, 'ES256')).toThrow(
      'this rsa key cannot sign ES256 (it signs RS256, PS256; set alg)',
    );
    expect(() => parseDpopKey(generateKey('p384').pkcs8, 'ES256')).toThrow('this ec key cannot sign ES256');
    expect(() => parseDpopKey(generateKey('p256').jwk, 'EdDSA')).toThrow('(it signs ES256; set alg)');
  });

  it('refuses a public JWK and text that is no key', () => {
    const pub = JSON.stringify(generateKey('p256').publicKey.export({ format: 'jwk' }));
    expect(() => parseDpopKey(pub, 'ES256')).toThrow('public key');
    expect(() => parseDpopKey('hello', 'ES256')).toThrow('not a PEM or JWK key');
  });
});

describe('saysUseDpopNonce', () => {
  it('reads the DPoP challenge of RFC 9449 §9 only', () => {
    expect(saysUseDpopNonce('DPoP error="use_dpop_nonce", error_description="x"')).toBe(true);
    expect(saysUseDpopNonce(['Bearer realm="a"', 'dpop error=use_dpop_nonce'])).toBe(true);
    expect(saysUseDpopNonce('DPoP error="invalid_token"')).toBe(false);
    expect(saysUseDpopNonce('Bearer error="use_dpop_nonce"')).toBe(false);
    expect(saysUseDpopNonce(undefined)).toBe(false);
  });
});

describe('saysInvalidToken with the DPoP scheme', () => {
  it('counts `DPoP error="invalid_token"` as a refused token (RFC 9449 §7.1), as the Bearer one', () => {
    expect(saysInvalidToken('DPoP error="invalid_token", algs="ES256"')).toBe(true);
    expect(saysInvalidToken('Bearer error="invalid_token"')).toBe(true);
    expect(saysInvalidToken('DPoP error="use_dpop_nonce"')).toBe(false);
  });
});

describe('an RSA-PSS key', () => {
  it('is refused with a reason: the proof header needs a JWK, which RSA-PSS keys do not have', () => {
    const pss = generateKeyPairSync('rsa-pss', { modulusLength: 2048 })
      .privateKey.export({ type: 'pkcs8', format: 'pem' })
      .toString();
    expect(() => parseDpopKey(pss, 'PS256')).toThrow('an RSA-PSS key has no JWK form');
  });
});
