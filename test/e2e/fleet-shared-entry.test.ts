// Issue 11, the shared entry's edge cases, with replicas started in-process on one real Redis:
// an upstream's 401 drops the fleet's entry only while it still holds the refused token; an entry
// that does not open (garbage, another fleet's key, another entry's value) is ignored, counted and
// overwritten; and while Redis is down the replicas stay ready and say so.
import { request } from 'undici';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { nextArrival } from '../support/arrivals.js';
import { type FakeTokenEndpoint, startFakeTokenEndpoint } from '../support/fake-token-endpoint.js';
import { type FaultRequest, type FaultUpstream, startFaultUpstream } from '../support/fault-upstream.js';
import { metric, newCacheKey, sharedCacheSection, within } from '../support/fleet.js';
import { startInjector, type TestInjector } from '../support/injector.js';
import { watchSecret } from '../support/leak-watch.js';
import { type RedisServer, startRedis, stopAllRedis } from '../support/redis.js';
import { startTokenGate, type TokenGate } from '../support/token-gate.js';

const SECRET = 'shared-entry-secret-6f02c4d9';
const REFUSED = { 'www-authenticate': 'Bearer error="invalid_token"' };
const INVALID_GETS = ['token_injector_shared_cache_operations_total', '{op="get",result="invalid"}'] as const;

let redis: RedisServer;
let fake: FakeTokenEndpoint;
let gate: TokenGate;
let up: FaultUpstream;
/** Tokens the upstream refuses with 401 invalid_token. */
const refused = new Set<string>();
let replicas: TestInjector[] = [];

beforeAll(async () => {
  redis = await startRedis();
  fake = await startFakeTokenEndpoint();
  gate = await startTokenGate(fake.url);
  up = await startFaultUpstream((req: FaultRequest) =>
    refused.has(req.authorization ?? '')
      ? { kind: 'respond', status: 401, headers: REFUSED }
      : { kind: 'echo' },
  );
  watchSecret(SECRET);
});

beforeEach(async () => {
  await redis.cli('FLUSHALL');
  refused.clear();
});

afterEach(async () => {
  await Promise.all(replicas.map((r) => r.close()));
  replicas = [];
});

afterAll(async () => {
  for (const token of fake?.issuedTokens ?? []) watchSecret(token);
  await up?.close();
  await gate?.close();
  await fake?.close();
  await stopAllRedis();
});

/** A replica of the fleet whose cache key is `key`, with two credentials on the token gate. */
async function replica(key: string): Promise<TestInjector> {
  const credential = {
    token_endpoint: gate.url,
    grant_type: 'client_credentials',
    client_id: 'shared-entry-client',
    client_secret: `\${env:TI_ENTRY_SECRET}`,
  };
  const r = await startInjector(
    {
      shared_cache: sharedCacheSection(redis.url, { encryption_keys: [`\${env:TI_ENTRY_KEY}`] }),
      credentials: { orders: credential, billing: { ...credential, scope: 'billing' } },
      routes: ['orders', 'billing'].map((name) => ({
        name,
        match: { host: `${name}.test` },
        upstream: up.url,
        credential: name,
      })),
    },
    { TI_ENTRY_SECRET: SECRET, TI_ENTRY_KEY: key },
  );
  replicas.push(r);
  return r;
}

async function call(r: TestInjector, host = 'orders.test'): Promise<{ status: number; token: string }> {
  const before = up.requests.length;
  const res = await request(`${r.url}/v1/orders`, { headers: { host } });
  await res.body.dump();
  const sent = up.requests.slice(before).at(-1)?.authorization ?? '';
  return { status: res.statusCode, token: sent.replace(/^Bearer /, '') };
}

/** The keys of token entries in Redis. */
async function tokenKeys(): Promise<string[]> {
  return (await redis.cli('--scan', '--pattern', '*:token')).split('\n').filter(Boolean).sort();
}

/** The one token key that appeared since `before`. */
async function newKey(before: readonly string[]): Promise<string> {
  const added = (await tokenKeys()).filter((k) => !before.includes(k));
  expect(added).toHaveLength(1);
  return added[0]!;
}

async function value(key: string): Promise<string> {
  return (await redis.cli('GET', key)).replace(/\n$/, '');
}

describe('upstream 401 and the shared entry', () => {
  it('drops the entry while it holds the refused token, and only then', async () => {
    const key = newCacheKey();
    const [a, b] = [await replica(key), await replica(key)];
    const first = await call(a);
    expect(first.status).toBe(200);
    const entry = await newKey([]);
    expect(await call(b)).toEqual(first);
    expect(fake.requests).toHaveLength(1);

    // The upstream refuses the fleet's token. A's retry fetches a new one: held at the gate, so
    // the entry can be looked at in between. A's refusal deleted it (it held the refused token).
    refused.add(`Bearer ${first.token}`);
    const held = gate.holdNext();
    const retried = call(a);
    const refetch = await within(held, 10_000, "A's refetch");
    expect(await redis.cli('EXISTS', entry)).toBe('0\n');
    refetch.forward();
    const second = await retried;
    expect(second.status).toBe(200);
    expect(second.token).not.toBe(first.token);
    expect(fake.requests).toHaveLength(2);
    const republished = await value(entry);
    expect(republished).not.toBe('');

    // B still holds the refused token. Its 401 leaves the entry alone (it holds A's new token)
    // and B takes that one: no token request, the stored value untouched.
    const third = await call(b);
    expect(third).toEqual({ status: 200, token: second.token });
    expect(fake.requests).toHaveLength(2);
    expect(await value(entry)).toBe(republished);
  });
});

describe('an entry that does not open', () => {
  it('garbage, a value sealed by another fleet, another entry value: each ignored, counted, overwritten', async () => {
    const key = newCacheKey();
    const seeder = await replica(key);
    expect((await call(seeder)).status).toBe(200);
    const orders = await newKey([]);
    expect((await call(seeder, 'billing.test')).status).toBe(200);
    const billing = await newKey([orders]);
    // Another fleet on the same Redis, with a key of its own: its entries have other names.
    const other = await replica(newCacheKey());
    const beforeOther = await tokenKeys();
    expect((await call(other)).status).toBe(200);
    const othersEntry = await newKey(beforeOther);

    const cases: [string, string][] = [
      ['garbage', 'not-a-sealed-value'],
      ['a value sealed with another fleet key', await value(othersEntry)],
      // Sealed with our key, but bound to another entry's name (associated data).
      ["another entry's value", await value(billing)],
      ['a truncated value', (await value(orders)).slice(0, -8)],
    ];
    for (const [what, planted] of cases) {
      await redis.cli('SET', orders, planted);
      const requestsBefore = fake.requests.length;
      // A replica that starts now has nothing of its own: it reads the planted value first.
      const fresh = await replica(key);
      const answer = await call(fresh);
      expect(answer.status, what).toBe(200);
      expect(await metric(fresh.adminUrl, ...INVALID_GETS), what).toBeGreaterThanOrEqual(1);
      expect(fake.requests.length, what).toBe(requestsBefore + 1);
      // Overwritten with a good entry: the next replica takes it without a token request.
      expect(await value(orders), what).not.toBe(planted);
      const next = await replica(key);
      expect(await call(next), what).toEqual(answer);
      expect(fake.requests.length, what).toBe(requestsBefore + 1);
      expect(await metric(next.adminUrl, ...INVALID_GETS), what).toBe(0);
    }
  });
});

describe('Redis down and back', () => {
  it('/readyz stays 200 and shows shared_cache down; shared_cache_up is 0, then 1 after the restart', async () => {
    const r = await replica(newCacheKey());
    expect((await call(r)).status).toBe(200);
    expect(await metric(r.adminUrl, 'token_injector_shared_cache_up')).toBe(1);

    const down = nextArrival(r.logs, (l) => l['event'] === 'shared_cache_down');
    await redis.kill();
    await within(down, 5_000, 'shared_cache_down');
    const ready = await request(`${r.adminUrl}/readyz`);
    expect(ready.statusCode).toBe(200);
    expect(await ready.body.json()).toMatchObject({ status: 'ready', shared_cache: 'down' });
    expect(await metric(r.adminUrl, 'token_injector_shared_cache_up')).toBe(0);
    // The cached token still serves, and a token never fetched before comes from the endpoint.
    expect((await call(r)).status).toBe(200);
    const before = fake.requests.length;
    expect((await call(r, 'billing.test')).status).toBe(200);
    expect(fake.requests.length).toBe(before + 1);

    const back = nextArrival(r.logs, (l) => l['event'] === 'shared_cache_up');
    await redis.restart();
    // Reconnection backs off up to 5 s between attempts.
    await within(back, 15_000, 'shared_cache_up');
    const again = await request(`${r.adminUrl}/readyz`);
    expect(again.statusCode).toBe(200);
    expect(await again.body.json()).toMatchObject({ status: 'ready', shared_cache: 'up' });
    expect(await metric(r.adminUrl, 'token_injector_shared_cache_up')).toBe(1);
    expect(r.logs.filter((l) => l['event'] === 'shared_cache_down')).toHaveLength(1);
  }, 30_000);
});
