/**
 * The cost of one DPoP proof (RFC 9449 §4), the work the proxy adds to each upstream request of a
 * DPoP credential: µs per proof with token-injector's DpopProver (header prebuilt, one
 * `crypto.sign`) and with jose's `SignJWT` (what a straightforward implementation would call),
 * for each alg. The reason DpopProver signs with node:crypto directly.
 *
 * Then, for ES256 (the bench's token-injector-dpop), the whole header building as the proxy calls
 * it (dpopRequestHeaders) next to the bare `crypto.sign` of an input of the same size and the
 * Bearer route's upstreamRequestHeaders: what DPoP adds on top of the signature itself. CPU µs.
 *
 *   npx tsx bench/dpop-sign.ts
 */
import { randomUUID, sign } from 'node:crypto';
import { SignJWT } from 'jose';
import { DPOP_ALGS, generateDpopKey } from '../src/dpop/key.js';
import { DpopProver } from '../src/dpop/proof.js';
import { dpopRequestHeaders } from '../src/proxy/dpop-headers.js';
import { upstreamRequestHeaders } from '../src/proxy/headers.js';

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

/** CPU µs per call (user + system), for the synchronous parts. */
function cpuPerCall(run: () => unknown): number {
  for (let i = 0; i < 2_000; i++) run();
  let n = 0;
  const start = performance.now();
  const cpu = process.cpuUsage();
  while (performance.now() - start < DURATION_MS) {
    for (let i = 0; i < 100; i++) run();
    n += 100;
  }
  const used = process.cpuUsage(cpu);
  return (used.user + used.system) / n;
}

// A request as the proxy holds it once routed: wrk's headers and the request ID it was given.
const RAW = ['Host', 'bench.local', 'x-request-id', '0123456789abcdef0123-1'];
const ORIGIN = 'http://127.0.0.1:8081';
const prover = new DpopProver(generateDpopKey('ES256'));
const input = Buffer.from(prover.proof('GET', `${ORIGIN}/dpop/`, undefined, TOKEN).split('.', 2).join('.'));
const signWith = { key: prover.key.privateKey, dsaEncoding: 'ieee-p1363' as const };
// Five interleaved rounds, the least of each: the machine's noise only ever adds.
const best = { headers: Infinity, bare: Infinity, bearer: Infinity };
for (let round = 0; round < 5; round++) {
  best.headers = Math.min(
    best.headers,
    cpuPerCall(() =>
      dpopRequestHeaders(RAW, ['dpop'], prover, TOKEN, 'GET', ORIGIN, '/dpop/?page=2', undefined),
    ),
  );
  best.bare = Math.min(
    best.bare,
    cpuPerCall(() => sign('sha256', input, signWith)),
  );
  best.bearer = Math.min(
    best.bearer,
    cpuPerCall(() => upstreamRequestHeaders(RAW, { name: 'authorization', value: `Bearer ${TOKEN}` }, [])),
  );
}
console.log(
  `ES256 dpopRequestHeaders ${best.headers.toFixed(2)} µs CPU, crypto.sign alone ${best.bare.toFixed(2)}, ` +
    `Bearer headers ${best.bearer.toFixed(2)}: ${(best.headers - best.bare).toFixed(2)} µs besides the signature`,
);
