// The fleet algorithm against a real redis-server: replicas are RedisStore instances sharing it,
// and each replica's "own token request" is a counting function, so every token request is seen.
import { randomBytes } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { SharedCacheConfig } from '../../../src/config/types.js';
import { TokenEndpointRejectedError } from '../../../src/errors.js';
import { fleetFetch, type LocalFetch } from '../../../src/shared-cache/fleet-fetch.js';
import { RedisStore } from '../../../src/shared-cache/redis-store.js';
import { Sealer } from '../../../src/shared-cache/sealer.js';
import type { SharedStore } from '../../../src/shared-cache/store.js';
import type { Token } from '../../../src/token-endpoint/token.js';
import { type RedisServer, startRedis, stopAllRedis } from '../../support/redis.js';

let redis: RedisServer;
const stores: RedisStore[] = [];
const KEY = randomBytes(32);

beforeAll(async () => {
  redis = await startRedis();
});

afterEach(async () => {
  for (const s of stores.splice(0)) await s.close();
});

afterAll(stopAllRedis);

function config(): SharedCacheConfig {
  return {
    url: new URL(redis.url),
    keyPrefix: `t${randomBytes(4).toString('hex')}:`,
    encryptionKeys: [KEY],
    timeoutMs: 500,
    tls: {},
    cluster: false,
  };
}

async function replica(cfg: SharedCacheConfig, events?: ConstructorParameters<typeof RedisStore>[2]) {
  const store = new RedisStore(cfg, new Sealer(cfg.encryptionKeys), events);
  stores.push(store);
  await store.ready(5_000);
  expect(store.state).toBe('up');
  return store;
}

function token(name: string, lifetimeMs = 60_000, extra: Partial<Token> = {}): Token {
  const now = Date.now();
  return { accessToken: name, tokenType: 'Bearer', issuedAt: now, expiresAt: now + lifetimeMs, ...extra };
}

/** A replica's own token requests: counted, each answering the next token of a shared series. */
function endpoint(opts: { delayMs?: number; fail?: () => Error | undefined } = {}) {
  const calls: (Token | undefined)[] = [];
  let n = 0;
  const local: LocalFetch = async (previous) => {
    calls.push(previous);
    if (opts.delayMs) await new Promise((r) => setTimeout(r, opts.delayMs));
    const err = opts.fail?.();
    if (err) throw err;
    n++;
    return token(`token-${n}`, 60_000, { refreshToken: `refresh-${n}` });
  };
  return { calls, local };
}

function fleet(store: SharedStore, local: LocalFetch, extra: Partial<Parameters<typeof fleetFetch>[0]> = {}) {
  return fleetFetch({
    store,
    credential: 'c',
    ids: ['entry-1'],
    lockTtlMs: 3_000,
    refreshAhead: 0.8,
    backoff: { initialMs: 300, maxMs: 2_000 },
    local,
    ...extra,
  });
}

describe('fleet single flight', () => {
  it('a cold burst on several replicas makes one token request; every replica gets that token', async () => {
    const cfg = config();
    const replicas = await Promise.all([1, 2, 3, 4].map(() => replica(cfg)));
    const idp = endpoint({ delayMs: 100 });
    let avoided = 0;
    const fetches = replicas.map((s) => fleet(s, idp.local, { avoided: () => avoided++ }));
    const tokens = await Promise.all(fetches.map((f) => f(undefined, Date.now() + 5_000)));
    expect(idp.calls).toHaveLength(1);
    expect(new Set(tokens.map((t) => t.accessToken))).toEqual(new Set(['token-1']));
    expect(avoided).toBe(3);
  });

  it('at the refresh point one replica refreshes with the shared refresh token; the others adopt the new token', async () => {
    const cfg = config();
    const [a, b] = [await replica(cfg), await replica(cfg)];
    const idp = endpoint();
    const first = await fleet(a, idp.local)(undefined, Date.now() + 5_000);
    // Both hold token-1 and reach their refresh point: the first asks, the second adopts.
    const refreshedA = await fleet(a, idp.local)(first, Date.now() + 5_000);
    const refreshedB = await fleet(b, idp.local)(first, Date.now() + 5_000);
    expect(refreshedA.accessToken).toBe('token-2');
    expect(refreshedB.accessToken).toBe('token-2');
    expect(idp.calls).toHaveLength(2);
    // The refresh used the fleet's entry, which carries the newest refresh token.
    expect(idp.calls[1]?.refreshToken).toBe('refresh-1');
  });

  it('a failure is shared: other replicas fail the same way without a token request until the next probe', async () => {
    const cfg = config();
    const [a, b] = [await replica(cfg), await replica(cfg)];
    let failing = true;
    const idp = endpoint({
      fail: () =>
        failing ? new TokenEndpointRejectedError('c', 503, 'temporarily_unavailable', undefined) : undefined,
    });
    await expect(fleet(a, idp.local)(undefined, Date.now() + 5_000)).rejects.toMatchObject({
      code: 'token_endpoint_rejected',
      status: 503,
    });
    const shared = fleet(b, idp.local)(undefined, Date.now() + 5_000);
    await expect(shared).rejects.toBeInstanceOf(TokenEndpointRejectedError);
    const err = (await shared.catch((e: unknown) => e)) as TokenEndpointRejectedError;
    expect(err.retryAfterMs).toBeGreaterThan(0);
    expect(err.retryAfterMs).toBeLessThanOrEqual(300);
    expect(idp.calls).toHaveLength(1);
    // Once the step is over (b's clock moved past it), one probe; it succeeds and ends the
    // failure for everyone.
    failing = false;
    const later = () => Date.now() + err.retryAfterMs! + 1;
    const ok = await fleet(b, idp.local, { now: later })(undefined, later() + 5_000);
    expect(ok.accessToken).toBe('token-1');
    expect((await fleet(a, idp.local)(undefined, Date.now() + 5_000)).accessToken).toBe('token-1');
    expect(idp.calls).toHaveLength(2);
  });

  it('a lock holder that never publishes (it died) costs a waiter one request of its own, not a failure', async () => {
    const cfg = config();
    const a = await replica(cfg);
    const owner = await a.lock('entry-1', 60_000);
    expect(owner).toBeDefined();
    const idp = endpoint();
    const started = Date.now();
    const got = await fleet(a, idp.local)(undefined, started + 600);
    expect(got.accessToken).toBe('token-1');
    expect(idp.calls).toHaveLength(1);
    // Within the deadline: it waited half of it for the holder, then asked itself.
    expect(Date.now() - started).toBeLessThan(600);
  });

  it('without Redis a replica goes on alone: one token request of its own, at once', async () => {
    const cfg = { ...config(), url: new URL('redis://127.0.0.1:1/0') };
    const store = new RedisStore(cfg, new Sealer(cfg.encryptionKeys));
    stores.push(store);
    expect(store.state).not.toBe('up');
    const idp = endpoint();
    const got = await fleet(store, idp.local)(undefined, Date.now() + 5_000);
    expect(got.accessToken).toBe('token-1');
    expect(idp.calls).toHaveLength(1);
  });

  it('an entry that does not open (garbage, or another key) is ignored, counted and overwritten', async () => {
    const cfg = config();
    const ops: string[] = [];
    const a = await replica(cfg, { operation: (op, result) => ops.push(`${op}:${result}`) });
    const name = `${cfg.keyPrefix}{entry-1}:token`;
    await redis.cli('SET', name, 'v1.garbage.AAAA');
    const idp = endpoint();
    const got = await fleet(a, idp.local)(undefined, Date.now() + 5_000);
    expect(got.accessToken).toBe('token-1');
    expect(ops).toContain('get:invalid');
    // Overwritten with a value that opens, bound to its name.
    expect(await a.read('entry-1')).toMatchObject({ accessToken: 'token-1' });
    expect(await redis.cli('GET', name)).toMatch(/^v1\./);
  });

  it('an upstream refusal drops the entry only while it still holds the refused token', async () => {
    const cfg = config();
    const a = await replica(cfg);
    const idp = endpoint();
    await fleet(a, idp.local)(undefined, Date.now() + 5_000);
    await a.invalidate('entry-1', 'some-older-token');
    expect(await a.read('entry-1')).toMatchObject({ accessToken: 'token-1' });
    await a.invalidate('entry-1', 'token-1');
    expect(await a.read('entry-1')).toBeUndefined();
  });
});

describe('servers that hand out the same token text again', () => {
  it('a refresh that brought the same text with a later issue time is adopted by the others', async () => {
    const cfg = config();
    const [a, b] = [await replica(cfg), await replica(cfg)];
    let n = 0;
    const calls: (Token | undefined)[] = [];
    const same: LocalFetch = async (previous) => {
      calls.push(previous);
      n++;
      const now = Date.now() + n; // each answer is issued later than the one before
      return { accessToken: 'same-text', tokenType: 'Bearer', issuedAt: now, expiresAt: now + 60_000 };
    };
    const first = await fleet(a, same)(undefined, Date.now() + 5_000);
    const refreshed = await fleet(a, same)(first, Date.now() + 5_000);
    expect(refreshed.issuedAt).toBeGreaterThan(first.issuedAt);
    const adopted = await fleet(b, same)(first, Date.now() + 5_000);
    expect(adopted.issuedAt).toBe(refreshed.issuedAt);
    expect(calls).toHaveLength(2);
  });
});
