// Issue 11: Redis dies under a running fleet, at the worst moment (one replica holds the fleet's
// lock and is asking the token endpoint, the others wait for its word). No app request may fail:
// each replica goes on alone. Redis comes back (empty): the fleet converges on one token again.
import { Agent, request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nextArrival } from '../support/arrivals.js';
import { killAllCli, type LogLine, type RunningCli, tempDir, writeConfig } from '../support/cli-process.js';
import { type FakeTokenEndpoint, startFakeTokenEndpoint } from '../support/fake-token-endpoint.js';
import { type FaultUpstream, startFaultUpstream } from '../support/fault-upstream.js';
import {
  CACHE_KEY_ENV,
  clientsOn,
  eventually,
  metric,
  newCacheKey,
  sharedCacheSection,
  startFleet,
  steadyTraffic,
  troubles,
  within,
} from '../support/fleet.js';
import { watchSecret } from '../support/leak-watch.js';
import { type RedisServer, startRedis, stopAllRedis } from '../support/redis.js';
import { startTokenGate, type TokenGate } from '../support/token-gate.js';

const HOST = 'orders.test';
const REPLICAS = 5;
const SECRET_ENV = 'TI_FLEET_DOWN_SECRET';
const SECRET = 'fleet-down-secret-9c4e1a77';

let redis: RedisServer;
let fake: FakeTokenEndpoint;
let gate: TokenGate;
let up: FaultUpstream;
let fleet: RunningCli[];
let dir: string;
let removeDir: () => void;
const client = new Agent({ connections: 64 });

beforeAll(async () => {
  redis = await startRedis();
  // 6 s tokens, usable for 5 s, refreshed 2.25-2.5 s after their issue (refresh_ahead 0.5): time
  // to stage the outage while the refresh is under way, and still no token runs out meanwhile.
  fake = await startFakeTokenEndpoint({ kind: 'token', expiresIn: 6 });
  gate = await startTokenGate(fake.url);
  up = await startFaultUpstream({ kind: 'echo' });
  ({ dir, remove: removeDir } = tempDir('token-injector-fleet-down-'));
  watchSecret(SECRET);
  const path = writeConfig(dir, 'fleet.yaml', {
    listen: '127.0.0.1:0',
    admin: { listen: '127.0.0.1:0' },
    log: { level: 'info' },
    shared_cache: sharedCacheSection(redis.url),
    credentials: {
      orders: {
        token_endpoint: gate.url,
        grant_type: 'client_credentials',
        client_id: 'fleet-down-client',
        client_secret: `\${env:${SECRET_ENV}}`,
        refresh_ahead: 0.5,
        // A replica stuck waiting for a lock holder would fail its requests at this deadline.
        timeout: '4s',
      },
    },
    routes: [{ name: 'orders', match: { host: HOST }, upstream: up.url, credential: 'orders' }],
  });
  fleet = await startFleet(REPLICAS, path, {
    env: { [SECRET_ENV]: SECRET, [CACHE_KEY_ENV]: newCacheKey() },
    connected: async () => (await clientsOn(redis.cli.bind(redis))) >= 2 * REPLICAS,
  });
}, 60_000);

afterAll(async () => {
  await killAllCli();
  for (const token of fake?.issuedTokens ?? []) watchSecret(token);
  await client.close();
  await up?.close();
  await gate?.close();
  await fake?.close();
  await stopAllRedis();
  removeDir?.();
});

/** Resolves once every replica has sent one token upstream that was issued from index `from` on. */
function convergence(from: number): Promise<string> {
  const seen = new Map<string, Set<string>>();
  return nextArrival(up.requests, (r) => {
    const token = (r.authorization ?? '').replace(/^Bearer /, '');
    if (fake.issuedTokens.indexOf(token) < from) return false;
    const replicas = seen.get(token) ?? new Set<string>();
    replicas.add(String(r.headers['x-replica']));
    seen.set(token, replicas);
    return replicas.size === REPLICAS;
  }).then((r) => r.authorization ?? '');
}

/** The next log line of `event` on every replica, after the lines seen so far. */
function nextOnAll(event: string): Promise<LogLine[]> {
  return Promise.all(
    fleet.map((r) => {
      const before = new Set(r.proc.logs);
      return r.proc.waitForLog((l) => l['event'] === event && !before.has(l), `a new ${event}`);
    }),
  );
}

function refreshesStarted(replica: RunningCli): Promise<number> {
  return metric(replica.adminUrl, 'token_injector_token_refreshes_total', '{credential="orders"}');
}

function misses(replica: RunningCli): Promise<number> {
  return metric(replica.adminUrl, 'token_injector_token_cache_misses_total', '{credential="orders"}');
}

describe('Redis killed under a running fleet, then restarted', () => {
  it('0 failed app requests while a refresh is under way and after; back up, the fleet converges on one token', async () => {
    const traffic = steadyTraffic(fleet, { host: HOST, intervalMs: 50, dispatcher: client });
    try {
      // The fleet's first token, shared by all.
      await within(convergence(0), 10_000, 'the fleet on its first token');
      expect(fake.requests).toHaveLength(1);
      const coldMisses = await Promise.all(fleet.map(misses));

      // The first refresh: the lock holder's request is held at the gate while every replica
      // reaches its refresh point (they wait for the holder's word); then Redis dies.
      const held = await within(gate.holdNext(), 10_000, 'the first refresh');
      await eventually(
        async () => (await Promise.all(fleet.map(refreshesStarted))).every((n) => n >= 1),
        5_000,
        'every replica to start its refresh',
      );
      const down = nextOnAll('shared_cache_down');
      await redis.kill();
      await within(down, 5_000, 'shared_cache_down on every replica');
      const outageFrom = fake.issuedTokens.length;
      held.forward();

      // Each replica now goes on alone: its own token, and no request fails.
      const alone = new Map<string, Set<string>>();
      await within(
        nextArrival(up.requests, (r) => {
          const token = (r.authorization ?? '').replace(/^Bearer /, '');
          if (fake.issuedTokens.indexOf(token) < outageFrom) return false;
          const replica = String(r.headers['x-replica']);
          alone.set(replica, new Set([...(alone.get(replica) ?? []), token]));
          return alone.size === REPLICAS;
        }),
        10_000,
        'every replica on a token fetched during the outage',
      );
      const ready = await request(`${fleet[0]!.adminUrl}/readyz`);
      expect(ready.statusCode).toBe(200);
      expect(await ready.body.json()).toMatchObject({ status: 'ready', shared_cache: 'down' });

      // Redis back, empty: every replica reconnects, both of its connections.
      const back = nextOnAll('shared_cache_up');
      await redis.restart();
      await within(back, 15_000, 'shared_cache_up on every replica');
      // Both connections of every replica: the pub/sub one is needed to wait for another's token.
      await eventually(
        async () => (await clientsOn(redis.cli.bind(redis))) >= 2 * REPLICAS,
        10_000,
        'every replica reconnected',
      );
      const restartedAt = fake.issuedTokens.length;
      // Within two refresh cycles (< 6 s) every replica sends one token fetched after the restart.
      const shared = await within(convergence(restartedAt), 15_000, 'the fleet on one token again');
      expect(shared).toMatch(/^Bearer fake-/);
      // Nobody waited either: the replicas waiting for the lock holder's word when Redis died went
      // on alone at once, while their tokens were still usable.
      expect(await Promise.all(fleet.map(misses))).toEqual(coldMisses);
    } finally {
      await traffic.stop();
    }
    expect(traffic.answers.length).toBeGreaterThan(100);
    expect(
      traffic.answers.filter((a) => a.status !== 200),
      troubles(fleet),
    ).toEqual([]);
    // One line per change of state, not one per failed command.
    for (const r of fleet) {
      expect(r.proc.logs.filter((l) => l['event'] === 'shared_cache_down')).toHaveLength(1);
      expect(r.proc.logs.filter((l) => l['event'] === 'shared_cache_up')).toHaveLength(2);
    }
  }, 90_000);
});
