// Issue 11: one token per credential for the whole fleet. Five real `token-injector run` processes
// share one real redis-server; the token endpoints (fakes, for 4-second tokens on demand) count
// what the fleet asks for, and the upstream records which replica sent which token. Two
// credentials: `burst` (5-minute tokens) for the cold burst, `orders` (4 s tokens) for lifetimes.
import { Agent, request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nextArrival } from '../support/arrivals.js';
import { killAllCli, type RunningCli, tempDir, writeConfig } from '../support/cli-process.js';
import { type FakeTokenEndpoint, startFakeTokenEndpoint } from '../support/fake-token-endpoint.js';
import { type FaultUpstream, startFaultUpstream } from '../support/fault-upstream.js';
import {
  arrivalTimes,
  CACHE_KEY_ENV,
  clientsOn,
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

const REPLICAS = 5;
const SECRET_ENV = 'TI_FLEET_CLIENT_SECRET';
const SECRET = 'fleet-client-secret-5b0e7d21';
/** Token lifetime (expires_in) and what the replicas make of it. */
const LIFETIME_MS = 4_000;
/** 4 s tokens keep a 1 s safety margin (MIN_SAFETY_MS): usable for 3 s. */
const USABLE_MS = 3_000;
/** Early enough that a replica stalled by a loaded machine still refreshes well ahead (1.5 s). */
const REFRESH_AHEAD = 0.5;
/** The jitter subtracted from refresh_ahead (token-source.ts JITTER), so replicas spread out. */
const JITTER = 0.05;
/** The earliest refresh point of a token, after its issue: (0.5 − 0.05) × 3 s = 1.35 s. */
const EARLIEST_REFRESH_MS = (REFRESH_AHEAD - JITTER) * USABLE_MS;

let redis: RedisServer;
let fake: FakeTokenEndpoint;
let burstFake: FakeTokenEndpoint;
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
  burstFake = await startFakeTokenEndpoint();
  up = await startFaultUpstream({ kind: 'echo' });
  ({ dir, remove: removeDir } = tempDir('token-injector-fleet-'));
  watchSecret(SECRET);
  const path = writeConfig(dir, 'fleet.yaml', {
    listen: '127.0.0.1:0',
    admin: { listen: '127.0.0.1:0' },
    log: { level: 'info' },
    shared_cache: sharedCacheSection(redis.url),
    credentials: {
      burst: {
        token_endpoint: burstFake.url,
        grant_type: 'client_credentials',
        client_id: 'fleet-burst-client',
        client_secret: `\${env:${SECRET_ENV}}`,
      },
      orders: {
        token_endpoint: fake.url,
        grant_type: 'client_credentials',
        client_id: 'fleet-client',
        client_secret: `\${env:${SECRET_ENV}}`,
        refresh_ahead: REFRESH_AHEAD,
      },
    },
    routes: ['burst', 'orders'].map((name) => ({
      name,
      match: { host: `${name}.test` },
      upstream: up.url,
      credential: name,
    })),
  });
  fleet = await startFleet(REPLICAS, path, {
    env: { [SECRET_ENV]: SECRET, [CACHE_KEY_ENV]: newCacheKey() },
    connected: async () => (await clientsOn(redis.cli.bind(redis))) >= 2 * REPLICAS,
  });
}, 60_000);

afterAll(async () => {
  await killAllCli();
  for (const token of [...(fake?.issuedTokens ?? []), ...(burstFake?.issuedTokens ?? [])]) watchSecret(token);
  await client.close();
  await up?.close();
  await fake?.close();
  await burstFake?.close();
  await stopAllRedis();
  removeDir?.();
});

async function get(replica: number): Promise<number> {
  const res = await request(`${fleet[replica]!.proxyUrl}/v1/burst`, {
    headers: { host: 'burst.test', 'x-replica': String(replica) },
    dispatcher: client,
  });
  await res.body.dump();
  return res.statusCode;
}

function misses(replica: RunningCli): Promise<number> {
  return metric(replica.adminUrl, 'token_injector_token_cache_misses_total', '{credential="orders"}');
}

/** The Authorization header of every upstream request, with the replicas that sent it. */
function senders(path: string): Map<string, Set<unknown>> {
  const out = new Map<string, Set<unknown>>();
  for (const r of up.requests.filter((r) => r.path === path)) {
    const token = r.authorization ?? '';
    out.set(token, (out.get(token) ?? new Set()).add(r.headers['x-replica']));
  }
  return out;
}

describe('5 replicas sharing one Redis', () => {
  it('a cold burst of 500 requests spread over all replicas makes exactly 1 token request', async () => {
    // 100 concurrent requests on each replica, none of which has a token.
    const statuses = await Promise.all(Array.from({ length: 500 }, (_, i) => get(i % REPLICAS)));
    expect(statuses.filter((s) => s !== 200)).toEqual([]);
    expect(burstFake.requests).toHaveLength(1);
    const sent = senders('/v1/burst');
    expect([...sent.keys()]).toEqual([`Bearer ${burstFake.issuedTokens[0]}`]);
    expect(sent.get(`Bearer ${burstFake.issuedTokens[0]}`)?.size).toBe(REPLICAS);
    // Four replicas took it from Redis.
    const avoided = await Promise.all(
      fleet.map((r) =>
        metric(r.adminUrl, 'token_injector_shared_cache_fetches_avoided_total', '{credential="burst"}'),
      ),
    );
    expect(avoided.filter((n) => n >= 1)).toHaveLength(REPLICAS - 1);
  }, 30_000);

  it('over 3 token lifetimes of steady traffic, 1 token request per refresh cycle for the whole fleet, and no request waits for one', async () => {
    // Steady traffic from the cold start until every replica has sent the 11th token: 10 refresh
    // cycles of 1.35 to 1.5 s each, more than 3 token lifetimes (12 s).
    const TOKENS = 11;
    const onFirst = new Set<string>();
    const allOnFirst = nextArrival(up.requests, (r) => {
      if (r.path !== '/v1/orders' || r.authorization !== `Bearer ${fake.issuedTokens[0]}`) return false;
      return onFirst.add(String(r.headers['x-replica'])).size === REPLICAS;
    });
    const onLast = new Set<string>();
    /** Token requests at the moment the last replica sent the last token (a later refresh may follow). */
    let tokenRequests = 0;
    const allOnLast = nextArrival(up.requests, (r) => {
      if (fake.issuedTokens.length < TOKENS || r.authorization !== `Bearer ${fake.issuedTokens[TOKENS - 1]}`)
        return false;
      tokenRequests = fake.requests.length;
      return onLast.add(String(r.headers['x-replica'])).size === REPLICAS;
    });
    const traffic = steadyTraffic(fleet, { host: 'orders.test', intervalMs: 50, dispatcher: client });
    let coldMisses: number[] = [];
    try {
      await within(allOnFirst, 15_000, 'every replica on the first token');
      // Each replica's first request waited for the fleet's one token; none waits from now on.
      coldMisses = await Promise.all(fleet.map(misses));
      for (const m of coldMisses) expect(m).toBeGreaterThanOrEqual(1);
      await within(allOnLast, 30_000, `every replica on token #${TOKENS}`);
    } finally {
      await traffic.stop();
    }

    expect(
      traffic.answers.filter((a) => a.status !== 200),
      troubles(fleet),
    ).toEqual([]);
    // One token request per refresh cycle for the whole fleet: had two replicas asked in one cycle,
    // their requests would be milliseconds apart, not a refresh interval.
    expect(tokenRequests).toBe(TOKENS);
    const times = tokenTimes.slice(0, TOKENS);
    const gaps = times.slice(1).map((t, i) => t - times[i]!);
    for (const gap of gaps) {
      // Not before the earliest refresh point, counted from when the previous request was sent
      // (issuedAt), which is up to its transit time before it arrived: 250 ms is ample for that, and
      // a second request in the same cycle would come within the replicas' jitter (<= 100 ms).
      expect(gap).toBeGreaterThanOrEqual(EARLIEST_REFRESH_MS - 250);
      // And before the token's usable end: refreshed ahead, not on demand.
      expect(gap).toBeLessThan(USABLE_MS);
    }
    expect(times[TOKENS - 1]! - times[0]!).toBeGreaterThan(3 * LIFETIME_MS);
    // Each token was used by every replica: none made its own.
    const sent = senders('/v1/orders');
    for (const token of fake.issuedTokens.slice(0, TOKENS)) {
      expect(sent.get(`Bearer ${token}`)?.size ?? 0, `replicas that sent ${token.slice(0, 8)}…`).toBe(
        REPLICAS,
      );
    }
    // No request waited for a refresh: no replica counted a cache miss after the cold start.
    expect(await Promise.all(fleet.map(misses))).toEqual(coldMisses);
  }, 90_000);
});
