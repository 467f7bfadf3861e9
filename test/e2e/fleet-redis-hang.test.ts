// A single Redis that hangs (SIGSTOP): no socket closes and the client says nothing, so /readyz
// and `token_injector_shared_cache_up` follow what the commands meet. A request that needs a new
// token finds the cache down at its first unanswered command and is served with a token of the
// replica's own; once Redis answers again, the next command says up.
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nextArrival } from '../support/arrivals.js';
import { type FakeTokenEndpoint, startFakeTokenEndpoint } from '../support/fake-token-endpoint.js';
import { type FaultEcho, type FaultUpstream, startFaultUpstream } from '../support/fault-upstream.js';
import { CACHE_KEY_ENV, metric, newCacheKey, sharedCacheSection, within } from '../support/fleet.js';
import { startInjector, type TestInjector } from '../support/injector.js';
import { watchSecret } from '../support/leak-watch.js';
import { type RedisServer, startRedis, stopAllRedis } from '../support/redis.js';

/** One credential and route each: every phase needs a token this replica has never fetched. */
const PHASES = ['before', 'frozen', 'thawed'] as const;
type Phase = (typeof PHASES)[number];
const UP_GAUGE = 'token_injector_shared_cache_up';

let redis: RedisServer;
let fake: FakeTokenEndpoint;
let up: FaultUpstream;
let proxy: TestInjector;
let frozen: number | undefined;

beforeAll(async () => {
  redis = await startRedis();
  fake = await startFakeTokenEndpoint();
  up = await startFaultUpstream({ kind: 'echo' });
  const credentials: Record<string, object> = {};
  for (const phase of PHASES) {
    credentials[phase] = {
      token_endpoint: fake.url,
      grant_type: 'client_credentials',
      client_id: `redis-hang-${phase}`,
      client_secret: 'redis-hang-secret-7c41d0',
    };
  }
  proxy = await startInjector(
    {
      shared_cache: sharedCacheSection(redis.url),
      credentials,
      routes: PHASES.map((phase) => ({
        name: phase,
        match: { host: `${phase}.test` },
        upstream: up.url,
        credential: phase,
      })),
    },
    { [CACHE_KEY_ENV]: newCacheKey() },
  );
}, 60_000);

afterAll(async () => {
  thaw();
  await proxy?.close();
  for (const token of fake?.issuedTokens ?? []) watchSecret(token);
  await up?.close();
  await fake?.close();
  await stopAllRedis();
});

function thaw(): void {
  if (frozen !== undefined) process.kill(frozen, 'SIGCONT');
  frozen = undefined;
}

/** An app request that needs `phase`'s token; the token the upstream received. */
async function call(phase: Phase): Promise<string | null> {
  const res = await request(`${proxy.url}/v1/orders`, { headers: { host: `${phase}.test` } });
  const text = await res.body.text();
  expect(res.statusCode, text).toBe(200);
  return (JSON.parse(text) as FaultEcho).authorization;
}

async function sharedCacheState(): Promise<unknown> {
  const res = await request(`${proxy.adminUrl}/readyz`);
  const body = (await res.body.json()) as Record<string, unknown>;
  // The shared cache is never part of readiness: replicas serve without it.
  expect(res.statusCode).toBe(200);
  return body['shared_cache'];
}

const downLines = () => proxy.logs.filter((l) => l['event'] === 'shared_cache_down');
const isUpLine = (l: Record<string, unknown>) => l['event'] === 'shared_cache_up';

describe('a single Redis that hangs', () => {
  it('down at the first command that gets no answer, up at the next answered one', async () => {
    if (!proxy.logs.some(isUpLine))
      await within(nextArrival(proxy.logs, isUpLine), 15_000, 'the first shared_cache_up');
    await call('before');
    expect(await sharedCacheState()).toBe('up');
    expect(await metric(proxy.adminUrl, UP_GAUGE)).toBe(1);

    frozen = redis.pid;
    process.kill(frozen, 'SIGSTOP');
    const before = fake.requests.length;
    expect(await call('frozen')).toBe(`Bearer ${fake.issuedTokens.at(-1)}`);
    expect(fake.requests.length).toBe(before + 1);
    expect(await sharedCacheState()).toBe('down');
    expect(await metric(proxy.adminUrl, UP_GAUGE)).toBe(0);
    expect(downLines()).toHaveLength(1);
    expect(downLines()[0]).toMatchObject({ reason: expect.stringContaining('did not answer') });

    thaw();
    const back = nextArrival(proxy.logs, isUpLine);
    await call('thawed');
    await within(back, 5_000, 'shared_cache_up');
    expect(await sharedCacheState()).toBe('up');
    expect(await metric(proxy.adminUrl, UP_GAUGE)).toBe(1);
  }, 60_000);
});
