// Issue 11: one token per credential for the whole fleet. Five real `token-injector run` processes
// share one real redis-server; the token endpoint (the fake, for 3-second tokens on demand) counts
// what the fleet asks for, and the upstream records which replica sent which token.
import { Agent, request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nextArrival } from '../support/arrivals.js';
import { killAllCli, type RunningCli, tempDir, writeConfig } from '../support/cli-process.js';
import { type FakeTokenEndpoint, startFakeTokenEndpoint } from '../support/fake-token-endpoint.js';
import { type FaultUpstream, startFaultUpstream } from '../support/fault-upstream.js';
import {
  arrivalTimes,
  CACHE_KEY_ENV,
  metric,
  newCacheKey,
  sharedCacheSection,
  startFleet,
  steadyTraffic,
  subscribersOn,
  within,
} from '../support/fleet.js';
import { watchSecret } from '../support/leak-watch.js';
import { type RedisServer, startRedis, stopAllRedis } from '../support/redis.js';

const HOST = 'orders.test';
const REPLICAS = 5;
const SECRET_ENV = 'TI_FLEET_CLIENT_SECRET';
const SECRET = 'fleet-client-secret-5b0e7d21';
/** Token lifetime (expires_in) and what the replicas make of it. */
const LIFETIME_MS = 3_000;
/** 3 s tokens keep a 1 s safety margin (MIN_SAFETY_MS): usable for 2 s. */
const USABLE_MS = 2_000;
/** Early enough that a replica stalled by a loaded machine still refreshes well ahead (0.8 s). */
const REFRESH_AHEAD = 0.6;
/** The jitter subtracted from refresh_ahead (token-source.ts JITTER), so replicas spread out. */
const JITTER = 0.05;
/** The earliest refresh point of a token, after its issue: (0.6 − 0.05) × 2 s = 1.1 s. */
const EARLIEST_REFRESH_MS = (REFRESH_AHEAD - JITTER) * USABLE_MS;

let redis: RedisServer;
let fake: FakeTokenEndpoint;
let tokenTimes: number[];
let up: FaultUpstream;
let fleet: RunningCli[];
let dir: string;
let removeDir: () => void;
const client = new Agent({ connections: 128 });

beforeAll(async () => {
  redis = await startRedis();
  fake = await startFakeTokenEndpoint({ kind: 'token', expiresIn: LIFETIME_MS / 1000 });
  tokenTimes = arrivalTimes(fake.requests);
  up = await startFaultUpstream({ kind: 'echo' });
  ({ dir, remove: removeDir } = tempDir('token-injector-fleet-'));
  watchSecret(SECRET);
  const path = writeConfig(dir, 'fleet.yaml', {
    listen: '127.0.0.1:0',
    admin: { listen: '127.0.0.1:0' },
    log: { level: 'info' },
    shared_cache: sharedCacheSection(redis.url),
    credentials: {
      orders: {
        token_endpoint: fake.url,
        grant_type: 'client_credentials',
        client_id: 'fleet-client',
        client_secret: `\${env:${SECRET_ENV}}`,
        refresh_ahead: REFRESH_AHEAD,
      },
    },
    routes: [{ name: 'orders', match: { host: HOST }, upstream: up.url, credential: 'orders' }],
  });
  fleet = await startFleet(REPLICAS, path, {
    env: { [SECRET_ENV]: SECRET, [CACHE_KEY_ENV]: newCacheKey() },
    subscribers: () => subscribersOn(redis.cli.bind(redis)),
  });
}, 60_000);

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
    headers: { host: HOST, 'x-replica': String(replica) },
    dispatcher: client,
  });
  await res.body.dump();
  return res.statusCode;
}

function misses(replica: number): Promise<number> {
  return metric(fleet[replica]!.adminUrl, 'token_injector_token_cache_misses_total', '{credential="orders"}');
}

describe('5 replicas sharing one Redis', () => {
  it('a cold burst of 500 requests over all replicas makes 1 token request; over 3 lifetimes of steady traffic, 1 per refresh cycle for the whole fleet, and no request waits for one', async () => {
    // --- The cold burst: 100 concurrent requests on each replica, none of which has a token.
    const statuses = await Promise.all(Array.from({ length: 500 }, (_, i) => get(i % REPLICAS)));
    expect(statuses.filter((s) => s !== 200)).toEqual([]);
    expect(fake.requests).toHaveLength(1);
    expect(new Set(up.requests.map((r) => r.authorization))).toEqual(
      new Set([`Bearer ${fake.issuedTokens[0]}`]),
    );
    const coldMisses = await Promise.all(fleet.map((_, i) => misses(i)));
    // Every replica's cold requests waited (for the fleet's one token); none waits from now on.
    for (const m of coldMisses) expect(m).toBeGreaterThanOrEqual(1);

    // --- Steady traffic until every replica has sent the 10th token: 9 refresh cycles of 1.1 to
    // 1.2 s each, more than 3 token lifetimes (9 s).
    const TOKENS = 10;
    const seen = new Map<string, Set<string>>();
    const allOnLast = nextArrival(up.requests, (r) => {
      const token = r.authorization ?? '';
      const replicas = seen.get(token) ?? new Set<string>();
      replicas.add(String(r.headers['x-replica']));
      seen.set(token, replicas);
      return (
        fake.issuedTokens.length >= TOKENS &&
        token === `Bearer ${fake.issuedTokens[TOKENS - 1]}` &&
        replicas.size === REPLICAS
      );
    });
    const traffic = steadyTraffic(fleet, { host: HOST, intervalMs: 50, dispatcher: client });
    try {
      await within(allOnLast, 30_000, `every replica on token #${TOKENS}`);
    } finally {
      await traffic.stop();
    }

    expect(traffic.answers.filter((a) => a.status !== 200)).toEqual([]);
    // One token request per refresh cycle for the whole fleet: had two replicas asked in one cycle,
    // their requests would be milliseconds apart, not a refresh interval.
    expect(fake.requests).toHaveLength(TOKENS);
    const gaps = tokenTimes.slice(1).map((t, i) => t - tokenTimes[i]!);
    for (const gap of gaps) {
      // Not before the earliest refresh point, counted from when the previous request was sent
      // (issuedAt), which is up to its transit time before it arrived: 250 ms is ample for that, and
      // a second request in the same cycle would come within the replicas' jitter (<= 100 ms).
      expect(gap).toBeGreaterThanOrEqual(EARLIEST_REFRESH_MS - 250);
      // And before the token's usable end: refreshed ahead, not on demand.
      expect(gap).toBeLessThan(USABLE_MS);
    }
    expect(tokenTimes[TOKENS - 1]! - tokenTimes[0]!).toBeGreaterThan(3 * LIFETIME_MS);
    // Each token was adopted by every replica (none made its own).
    for (const token of fake.issuedTokens) {
      expect(seen.get(`Bearer ${token}`)?.size ?? 0, `replicas that sent ${token.slice(0, 8)}…`).toBe(
        REPLICAS,
      );
    }
    // No request waited for a refresh: no replica counted a cache miss after the cold start.
    expect(await Promise.all(fleet.map((_, i) => misses(i)))).toEqual(coldMisses);
  }, 90_000);
});
