// Issue 11: the shared cache on a 3-node Redis Cluster (`cluster: true`, the url one seed node):
// five replicas, a cold burst of 500 requests, one token request for the whole fleet.
import { Agent, request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { killAllCli, type RunningCli, tempDir, writeConfig } from '../support/cli-process.js';
import { type FakeTokenEndpoint, startFakeTokenEndpoint } from '../support/fake-token-endpoint.js';
import { type FaultUpstream, startFaultUpstream } from '../support/fault-upstream.js';
import { CACHE_KEY_ENV, clientsOn, newCacheKey, sharedCacheSection, startFleet } from '../support/fleet.js';
import { watchSecret } from '../support/leak-watch.js';
import { type RedisCluster, startRedisCluster, stopAllRedis } from '../support/redis.js';

const HOST = 'orders.test';
const REPLICAS = 5;
const SECRET_ENV = 'TI_FLEET_CLUSTER_SECRET';
const SECRET = 'fleet-cluster-secret-71aa3f09';

let cluster: RedisCluster;
let fake: FakeTokenEndpoint;
let up: FaultUpstream;
let fleet: RunningCli[];
let dir: string;
let removeDir: () => void;
const client = new Agent({ connections: 128 });

beforeAll(async () => {
  cluster = await startRedisCluster(3);
  fake = await startFakeTokenEndpoint();
  up = await startFaultUpstream({ kind: 'echo' });
  ({ dir, remove: removeDir } = tempDir('token-injector-fleet-cluster-'));
  watchSecret(SECRET);
  const path = writeConfig(dir, 'fleet.yaml', {
    listen: '127.0.0.1:0',
    admin: { listen: '127.0.0.1:0' },
    log: { level: 'info' },
    shared_cache: sharedCacheSection(cluster.url, { cluster: true }),
    credentials: {
      orders: {
        token_endpoint: fake.url,
        grant_type: 'client_credentials',
        client_id: 'fleet-cluster-client',
        client_secret: `\${env:${SECRET_ENV}}`,
      },
    },
    routes: [{ name: 'orders', match: { host: HOST }, upstream: up.url, credential: 'orders' }],
  });
  fleet = await startFleet(REPLICAS, path, {
    env: { [SECRET_ENV]: SECRET, [CACHE_KEY_ENV]: newCacheKey() },
    // Each replica's two cluster clients connect to every master.
    connected: async () =>
      (await Promise.all(cluster.nodes.map((n) => clientsOn(n.cli.bind(n))))).every((c) => c >= 2 * REPLICAS),
  });
}, 90_000);

afterAll(async () => {
  await killAllCli();
  for (const token of fake?.issuedTokens ?? []) watchSecret(token);
  await client.close();
  await up?.close();
  await fake?.close();
  await stopAllRedis();
  removeDir?.();
});

async function get(replica: number): Promise<number> {
  const res = await request(`${fleet[replica]!.proxyUrl}/v1/orders`, {
    headers: { host: HOST },
    dispatcher: client,
  });
  await res.body.dump();
  return res.statusCode;
}

describe('5 replicas sharing a 3-node Redis Cluster', () => {
  it('a cold burst of 500 requests over all replicas makes exactly 1 token request', async () => {
    const statuses = await Promise.all(Array.from({ length: 500 }, (_, i) => get(i % REPLICAS)));
    expect(statuses.filter((s) => s !== 200)).toEqual([]);
    expect(fake.requests).toHaveLength(1);
    expect(up.requests).toHaveLength(500);
    expect(new Set(up.requests.map((r) => r.authorization))).toEqual(
      new Set([`Bearer ${fake.issuedTokens[0]}`]),
    );
    // The fleet's entry is in the cluster, on whichever node owns its slot.
    const keys = (await Promise.all(cluster.nodes.map((n) => n.cli('--scan'))))
      .flatMap((out) => out.split('\n'))
      .filter(Boolean);
    expect(keys.filter((k) => k.endsWith(':token'))).toHaveLength(1);
  }, 60_000);
});
