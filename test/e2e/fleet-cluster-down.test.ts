// The shared cache on a 3-node Redis Cluster (`cluster: true`) whose every node hangs, then dies.
// The cluster client says nothing when they hang (no socket closes), and when they die only once
// its topology refresh fails, about 5 s later (node-redis 6.4). So /readyz and
// `token_injector_shared_cache_up` follow what the commands meet: a request that needs a new token
// finds the cache down at once, and is served anyway with a token of the replica's own. The next
// command that is answered, or a node reconnecting, says up again.
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nextArrival } from '../support/arrivals.js';
import { type FakeTokenEndpoint, startFakeTokenEndpoint } from '../support/fake-token-endpoint.js';
import { type FaultEcho, type FaultUpstream, startFaultUpstream } from '../support/fault-upstream.js';
import { CACHE_KEY_ENV, metric, newCacheKey, sharedCacheSection, within } from '../support/fleet.js';
import { startInjector, type TestInjector } from '../support/injector.js';
import { watchSecret } from '../support/leak-watch.js';
import { type RedisCluster, startRedisCluster, stopAllRedis } from '../support/redis.js';

/** One credential and route each: every phase needs a token this replica has never fetched. */
const PHASES = ['before', 'frozen', 'thawed', 'killed', 'restarted'] as const;
type Phase = (typeof PHASES)[number];
const UP_GAUGE = 'token_injector_shared_cache_up';

let cluster: RedisCluster;
let fake: FakeTokenEndpoint;
let up: FaultUpstream;
let proxy: TestInjector;
/** Nodes stopped with SIGSTOP, to be continued whatever happens. */
let frozen: number[] = [];

beforeAll(async () => {
  cluster = await startRedisCluster(3);
  fake = await startFakeTokenEndpoint();
  up = await startFaultUpstream({ kind: 'echo' });
  const credentials: Record<string, object> = {};
  for (const phase of PHASES) {
    credentials[phase] = {
      token_endpoint: fake.url,
      grant_type: 'client_credentials',
      client_id: `cluster-down-${phase}`,
      client_secret: 'cluster-down-secret-3f8b21',
    };
  }
  proxy = await startInjector(
    {
      shared_cache: sharedCacheSection(cluster.url, { cluster: true }),
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
  for (const pid of frozen) process.kill(pid, 'SIGCONT');
  frozen = [];
}

/** An app request that needs `phase`'s token; the status, and the token the upstream received. */
async function call(phase: Phase): Promise<{ status: number; authorization: string | null }> {
  const res = await request(`${proxy.url}/v1/orders`, { headers: { host: `${phase}.test` } });
  const text = await res.body.text();
  expect(res.statusCode, text).toBe(200);
  return { status: res.statusCode, authorization: (JSON.parse(text) as FaultEcho).authorization };
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

describe('every node of the cluster gone', () => {
  it('nodes that hang: down at the first command that gets no answer, up at the next answered one', async () => {
    if (!proxy.logs.some(isUpLine))
      await within(nextArrival(proxy.logs, isUpLine), 15_000, 'the first shared_cache_up');
    await call('before');
    expect(await sharedCacheState()).toBe('up');
    expect(await metric(proxy.adminUrl, UP_GAUGE)).toBe(1);

    // SIGSTOP: no socket closes, no node client reconnects; only the command's timeout tells.
    frozen = cluster.nodes.map((n) => n.pid);
    for (const pid of frozen) process.kill(pid, 'SIGSTOP');
    const before = fake.requests.length;
    expect((await call('frozen')).authorization).toBe(`Bearer ${fake.issuedTokens.at(-1)}`);
    expect(fake.requests.length).toBe(before + 1);
    expect(await sharedCacheState()).toBe('down');
    expect(await metric(proxy.adminUrl, UP_GAUGE)).toBe(0);
    expect(downLines()).toHaveLength(1);
    expect(downLines()[0]).toMatchObject({ reason: expect.stringContaining('did not answer') });

    thaw();
    await cluster.waitUntilOk();
    const back = nextArrival(proxy.logs, isUpLine);
    await call('thawed');
    await within(back, 5_000, 'shared_cache_up');
    expect(await sharedCacheState()).toBe('up');
    expect(await metric(proxy.adminUrl, UP_GAUGE)).toBe(1);
  }, 60_000);

  it('nodes that die: down at the first command, up again once they are back', async () => {
    expect(await sharedCacheState()).toBe('up');
    await Promise.all(cluster.nodes.map((n) => n.kill()));
    const before = fake.requests.length;
    expect((await call('killed')).authorization).toBe(`Bearer ${fake.issuedTokens.at(-1)}`);
    expect(fake.requests.length).toBe(before + 1);
    expect(await sharedCacheState()).toBe('down');
    expect(await metric(proxy.adminUrl, UP_GAUGE)).toBe(0);
    expect(downLines()).toHaveLength(2);

    const back = nextArrival(proxy.logs, isUpLine);
    await Promise.all(cluster.nodes.map((n) => n.restart()));
    await cluster.waitUntilOk();
    // The node clients reconnect with backoff (up to 5 s between attempts), and say so.
    await within(back, 15_000, 'shared_cache_up');
    await call('restarted');
    expect(await sharedCacheState()).toBe('up');
    expect(await metric(proxy.adminUrl, UP_GAUGE)).toBe(1);
    expect(downLines()).toHaveLength(2);
  }, 60_000);
});
