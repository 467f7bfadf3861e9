import type { IncomingMessage } from 'node:http';
import { describe, expect, it } from 'vitest';
import { generateDpopKey } from '../../../src/dpop/key.js';
import { DpopProver } from '../../../src/dpop/proof.js';
import { DpopUpstream } from '../../../src/proxy/dpop-upstream.js';

const ORIGIN = 'https://api.example';
const challenge = (nonce: string) => ({
  'www-authenticate': 'DPoP error="use_dpop_nonce"',
  'dpop-nonce': nonce,
});
const req = { rawHeaders: ['host', 'api.example'], method: 'POST' } as unknown as IncomingMessage;
const nonceOf = (headers: string[]) => {
  const proof = headers[headers.indexOf('dpop') + 1]!;
  return (JSON.parse(Buffer.from(proof.split('.')[1]!, 'base64url').toString()) as { nonce?: string }).nonce;
};

describe('DpopUpstream (RFC 9449 §9)', () => {
  it('retries a use_dpop_nonce challenge once, with a proof carrying the new nonce', () => {
    const exchange = new DpopUpstream(new DpopProver(generateDpopKey('ES256')), ORIGIN);
    const first = exchange.headers(req, ['dpop'], 'tok', '/x?q=1');
    expect(first).toContain('DPoP tok');
    expect(nonceOf(first)).toBeUndefined();
    expect(exchange.retrying()).toBe(false);
    expect(exchange.wantsRetry(401, challenge('n1'), true)).toBe(true);
    expect(exchange.retrying()).toBe(true);
    expect(exchange.retrying()).toBe(false);
    expect(nonceOf(exchange.headers(req, ['dpop'], 'tok', '/x'))).toBe('n1');
    // One retry, never more, even with yet another nonce.
    expect(exchange.wantsRetry(401, challenge('n2'), true)).toBe(false);
    expect(exchange.retrying()).toBe(false);
  });

  it('takes the nonce of any answer but retries only a replayable 401 challenge with a new nonce', () => {
    const prover = new DpopProver(generateDpopKey('ES256'));
    expect(new DpopUpstream(prover, ORIGIN).wantsRetry(200, { 'dpop-nonce': 'n1' }, true)).toBe(false);
    expect(prover.nonce(ORIGIN)).toBe('n1');
    expect(new DpopUpstream(prover, ORIGIN).wantsRetry(401, challenge('n2'), false)).toBe(false);
    expect(
      new DpopUpstream(prover, ORIGIN).wantsRetry(
        401,
        { 'www-authenticate': 'DPoP error="use_dpop_nonce"' },
        true,
      ),
    ).toBe(false);
    // The proof already carried the nonce the challenge repeats: a retry could not do better.
    const same = new DpopUpstream(prover, ORIGIN);
    same.headers(req, ['dpop'], 'tok', '/');
    expect(same.wantsRetry(401, challenge('n2'), true)).toBe(false);
  });
});
