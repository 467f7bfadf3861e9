/**
 * The cost of one DPoP proof (RFC 9449 §4), the work the proxy adds to each upstream request of a
 * DPoP credential: µs per proof with token-injector's DpopProver (header prebuilt, one
 * `crypto.sign`) and with jose's `SignJWT` (what a straightforward implementation would call),
 * for each alg. The reason DpopProver signs with node:crypto directly.
 *
 *   npx tsx bench/dpop-sign.ts
 */
import { randomUUID } from 'node:crypto';
import { SignJWT } from 'jose';
import { DPOP_ALGS, generateDpopKey } from '../src/dpop/key.js';
import { DpopProver } from '../src/dpop/proof.js';

const HTU = 'https://api.example.com/v1/payments';
const TOKEN = 'eyJhbGciOiJFUzI1NiJ9.'.padEnd(800, 'x');
const DURATION_MS = 1_000;

async function measure(run: () => unknown): Promise<number> {
  for (let i = 0; i < 200; i++) await run();
  let n = 0;
  const start = performance.now();
  while (performance.now() - start < DURATION_MS) {
    for (let i = 0; i < 50; i++) await run();
    n += 50;
  }
  return ((performance.now() - start) * 1000) / n;
}

for (const alg of DPOP_ALGS) {
  const key = generateDpopKey(alg);
  const prover = new DpopProver(key);
  const ours = await measure(() => prover.proof('GET', HTU, 'nonce-1', TOKEN));
  const jose = await measure(() =>
    new SignJWT({ htm: 'GET', htu: HTU, ath: 'x'.repeat(43), nonce: 'nonce-1', jti: randomUUID() })
      .setProtectedHeader({ typ: 'dpop+jwt', alg, jwk: key.jwk })
      .setIssuedAt()
      .sign(key.privateKey),
  );
  console.log(
    `${alg.padEnd(6)} DpopProver ${ours.toFixed(1).padStart(7)} µs/proof   jose SignJWT ${jose.toFixed(1).padStart(7)} µs/proof`,
  );
}
