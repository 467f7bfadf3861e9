/**
 * What per-user tokens cost in memory: fills one RequestTokens (built as credentials.ts builds it)
 * with 100 000 tokens, one per distinct end-user assertion, and prints the heap and RSS they hold.
 * The target (issue 12) is 100 000 cached tokens in at most 100 MB.
 *
 *   node --expose-gc --import tsx bench/request-tokens-memory.ts [entries] [assertion lifetime s]
 *
 * Each key is a distinct ~1 KB JWT-shaped assertion whose `exp` lies in the future (so the cache
 * reads it; by default half an hour, so each token is capped at it); each token comes from the
 * real response parser, as the token endpoint client gets it: an 800-character access token,
 * `expires_in` one hour. The assertions are made one at a time and dropped, so only what the
 * cache keeps is counted.
 *
 * The same fill runs once first, into a cache that is then dropped: it grows what any busy process
 * grows whatever it caches (V8's young generation, up to 24 MiB more here; the allocator's free
 * lists), while the old-space pages it used go back to the system. That is printed apart; the
 * measured fill starts from there, so its deltas are what the entries hold.
 */

import { randomBytes } from 'node:crypto';
import { getHeapSpaceStatistics } from 'node:v8';
import { RequestTokens } from '../src/credentials/request-tokens.js';
import { assertionExpiry } from '../src/grants/assertion-expiry.js';
import { parseTokenResponse } from '../src/token-endpoint/parse-response.js';
import type { Token } from '../src/token-endpoint/token.js';

const ENTRIES = Number(process.argv[2] ?? 100_000);
const ASSERTION_LIFETIME_S = Number(process.argv[3] ?? 1_800);
const TARGET_BYTES = 100 * 1024 * 1024;
const HEADER = 'x-user-assertion';
/** Bounds the run (a leak or a hang must not keep a benchmark machine busy). */
const WATCHDOG_MS = 60_000;

const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) {
  console.error('run with node --expose-gc --import tsx bench/request-tokens-memory.ts');
  process.exit(2);
}

const watchdog = setTimeout(() => {
  console.error(`gave up after ${WATCHDOG_MS / 1000} s`);
  process.exit(1);
}, WATCHDOG_MS);
watchdog.unref();

/** A JWT-shaped assertion of about 1 KB, distinct per user (only its shape and `exp` matter). */
function assertion(user: number, exp: number): string {
  const part = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const header = part({ alg: 'RS256', typ: 'JWT', kid: 'key-2030-01' });
  const claims = part({
    iss: 'https://idp.example.com/realms/employees',
    sub: `user-${user}`,
    aud: 'https://token-injector.example.com',
    exp,
    iat: exp - 3_600,
    jti: randomBytes(16).toString('hex'),
    groups: ['engineering', 'on-call', 'readers', 'writers', 'admins-eu', 'admins-us'],
    name: `User Number ${user}`,
    email: `user-${user}@example.com`,
    preferred_username: `user${user}`,
    azp: 'frontend-app',
    sid: randomBytes(16).toString('hex'),
    scope: 'openid profile email api.read api.write',
  });
  // An RS256 signature: 256 bytes.
  return `${header}.${claims}.${randomBytes(256).toString('base64url')}`;
}

/** A token endpoint's answer, through the parser the real client uses. */
function tokenResponse(): Token {
  const body = JSON.stringify({
    // 600 random bytes: 800 base64url characters.
    access_token: randomBytes(600).toString('base64url'),
    token_type: 'Bearer',
    expires_in: 3_600,
  });
  return parseTokenResponse(
    { status: 200, contentType: 'application/json', body },
    { credential: 'obo', defaultLifetimeMs: 3_600_000, maxLifetimeMs: 86_400_000, now: Date.now() },
  );
}

function settle(): NodeJS.MemoryUsage & { youngGeneration: number } {
  for (let i = 0; i < 4; i++) gc?.();
  const young = getHeapSpaceStatistics().find((s) => s.space_name === 'new_space');
  return { ...process.memoryUsage(), youngGeneration: young?.space_size ?? 0 };
}

const mib = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MiB`;

/** As Credentials.forRoute builds one (without shared_cache): retry policy, events, counters. */
function requestTokens(maxEntries: number, fetched: () => void): RequestTokens {
  return new RequestTokens({
    name: 'obo',
    inputs: { headers: [HEADER], maxEntries, expiryOf: assertionExpiry },
    retry: { deadlineMs: 10_000, initialBackoffMs: 250, maxBackoffMs: 30_000 },
    fetch: async (request) => {
      if (!request.get(HEADER)) throw new Error('no assertion');
      fetched();
      return tokenResponse();
    },
    events: { refreshStarted() {}, refreshFailed() {} },
    counters: { hit() {}, miss() {} },
  });
}

/** One request per user, each with a new assertion: every one a miss and a fetch. */
async function fill(tokens: RequestTokens, exp: number): Promise<void> {
  for (let i = 0; i < ENTRIES; i++) {
    const token = tokens.get({ [HEADER]: assertion(i, exp) });
    if (token instanceof Promise) await token;
  }
}

async function main(): Promise<void> {
  const assertionSample = assertion(0, 0).length;
  const exp = Math.floor(Date.now() / 1000) + ASSERTION_LIFETIME_S;

  const start = settle();
  const warmUp = requestTokens(ENTRIES, () => {});
  await fill(warmUp, exp);
  warmUp.close();
  const before = settle();

  let fetches = 0;
  const tokens = requestTokens(ENTRIES, () => fetches++);
  const started = performance.now();
  await fill(tokens, exp);
  const filled = performance.now() - started;
  if (tokens.size !== ENTRIES || fetches !== ENTRIES) {
    throw new Error(`expected ${ENTRIES} entries and fetches, got ${tokens.size} and ${fetches}`);
  }
  const after = settle();

  const heap = after.heapUsed - before.heapUsed;
  const rss = after.rss - before.rss;
  const external = after.external - before.external;
  console.log(
    `RequestTokens memory: ${ENTRIES} entries (assertion ${assertionSample} B, valid ${ASSERTION_LIFETIME_S} s; access token 800 chars, 1 h)`,
  );
  console.log(
    `  warm-up (the same fill, dropped): RSS +${mib(before.rss - start.rss)}, young generation +${mib(before.youngGeneration - start.youngGeneration)}`,
  );
  console.log(`  filled in ${(filled / 1000).toFixed(1)} s`);
  console.log(`  heap used   +${mib(heap)}  ${Math.round(heap / ENTRIES)} B/entry`);
  console.log(`  external    +${mib(external)}  ${Math.round(external / ENTRIES)} B/entry`);
  console.log(`  RSS         +${mib(rss)}  ${Math.round(rss / ENTRIES)} B/entry`);
  console.log(
    `  (young generation during the fill: +${mib(after.youngGeneration - before.youngGeneration)})`,
  );
  const worst = Math.max(heap + external, rss) * (100_000 / ENTRIES);
  console.log(
    `  100 000 entries: ${mib(worst)} (target ${mib(TARGET_BYTES)}): ${worst <= TARGET_BYTES ? 'met' : 'MISSED'}`,
  );
  // Keeps the cache alive through the measurement.
  tokens.close();
}

main().then(
  () => clearTimeout(watchdog),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
