// Issue 11: a password credential (RFC 6749 §4.3) whose server rotates refresh tokens (§6): every
// refresh token is good once, and presenting a used one again is invalid_grant. The real
// authorization server of the suite does exactly that. Five replicas sharing one Redis refresh
// through the lock holder with the shared entry's newest refresh token: never twice the same one.
import { Agent } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nextArrival } from '../support/arrivals.js';
import {
  type AuthServer,
  BASIC_CLIENT,
  clientMetadata,
  GRANT_TYPES,
  startAuthServer,
} from '../support/auth-server.js';
import { killAllCli, type RunningCli, tempDir, writeConfig } from '../support/cli-process.js';
import {
  CACHE_KEY_ENV,
  clientsOn,
  newCacheKey,
  sharedCacheSection,
  startFleet,
  steadyTraffic,
  troubles,
  within,
} from '../support/fleet.js';
import { watchSecret } from '../support/leak-watch.js';
import { type RedisServer, startRedis, stopAllRedis } from '../support/redis.js';
import { startUpstream, type Upstream } from '../support/upstream.js';

const HOST = 'legacy.test';
const REPLICAS = 5;
const USER = { username: 'svc-fleet-legacy', password: 'fleet-legacy-password-3e9d0c' };
const SECRET_ENV = 'TI_FLEET_RT_SECRET';
const PASSWORD_ENV = 'TI_FLEET_RT_PASSWORD';
/** Refresh-token grants to see, after the password grant. */
const REFRESHES = 4;

let redis: RedisServer;
let auth: AuthServer;
let upstream: Upstream;
let fleet: RunningCli[];
let dir: string;
let removeDir: () => void;
const client = new Agent({ connections: 64 });

beforeAll(async () => {
  redis = await startRedis();
  auth = await startAuthServer({
    // 4 s access tokens (usable 3 s): refreshed by the fleet every 1.35-1.5 s (refresh_ahead 0.5).
    accessTokenTtlSeconds: 4,
    users: [USER],
    clients: [
      clientMetadata(BASIC_CLIENT, { grant_types: [GRANT_TYPES.password, GRANT_TYPES.refreshToken] }),
    ],
    refreshTokens: { issue: 'offline_access', rotate: true },
  });
  upstream = await startUpstream({ issuer: auth.issuer, jwksUri: auth.jwksUri, audience: auth.audience });
  ({ dir, remove: removeDir } = tempDir('token-injector-fleet-rt-'));
  watchSecret(USER.password);
  watchSecret(BASIC_CLIENT.secret);
  const path = writeConfig(dir, 'fleet.yaml', {
    listen: '127.0.0.1:0',
    admin: { listen: '127.0.0.1:0' },
    log: { level: 'info' },
    shared_cache: sharedCacheSection(redis.url),
    credentials: {
      legacy: {
        token_endpoint: auth.tokenEndpoint,
        grant_type: 'password',
        username: USER.username,
        password: `\${env:${PASSWORD_ENV}}`,
        client_id: BASIC_CLIENT.id,
        client_secret: `\${env:${SECRET_ENV}}`,
        auth_method: BASIC_CLIENT.authMethod,
        scope: 'orders.read offline_access',
        refresh_ahead: 0.5,
      },
    },
    routes: [{ name: 'legacy', match: { host: HOST }, upstream: upstream.url, credential: 'legacy' }],
  });
  fleet = await startFleet(REPLICAS, path, {
    env: { [SECRET_ENV]: BASIC_CLIENT.secret, [PASSWORD_ENV]: USER.password, [CACHE_KEY_ENV]: newCacheKey() },
    connected: async () => (await clientsOn(redis.cli.bind(redis))) >= 2 * REPLICAS,
  });
}, 60_000);

afterAll(async () => {
  await killAllCli();
  for (const token of [...(auth?.issuedTokens ?? []), ...(auth?.issuedRefreshTokens ?? [])])
    watchSecret(token);
  await client.close();
  await upstream?.close();
  await auth?.close();
  await stopAllRedis();
  removeDir?.();
});

describe('refresh tokens shared by a fleet', () => {
  it('5 replicas over several rotations: one password grant, then a chain of refreshes, each refresh token presented once; never invalid_grant', async () => {
    // Steady traffic until every replica has sent the token of the REFRESHES-th refresh.
    const seen = new Map<string, Set<string>>();
    const allOnLast = nextArrival(upstream.requests, (r) => {
      const token = r.headers.authorization ?? '';
      const replicas = seen.get(token) ?? new Set<string>();
      replicas.add(String(r.headers['x-replica']));
      seen.set(token, replicas);
      return (
        auth.issuedTokens.length > REFRESHES &&
        token === `Bearer ${auth.issuedTokens[REFRESHES]}` &&
        replicas.size === REPLICAS
      );
    });
    const traffic = steadyTraffic(fleet, { host: HOST, intervalMs: 50, dispatcher: client });
    try {
      await within(allOnLast, 30_000, `every replica on the token of refresh #${REFRESHES}`);
    } finally {
      await traffic.stop();
    }

    expect(
      traffic.answers.filter((a) => a.status !== 200),
      troubles(fleet),
    ).toEqual([]);
    expect(upstream.requests.filter((r) => !r.tokenValid)).toEqual([]);
    // What the server saw: one password grant, then refreshes (REFRESHES of them, or one more if
    // the next cycle began meanwhile), each with the refresh token the previous answer rotated in;
    // every one answered 200.
    const requests = auth.tokenRequests.slice();
    expect(requests.length).toBeGreaterThanOrEqual(1 + REFRESHES);
    expect(requests.map((r) => [r.form['grant_type'], r.status])).toEqual([
      [GRANT_TYPES.password, 200],
      ...requests.slice(1).map(() => [GRANT_TYPES.refreshToken, 200]),
    ]);
    const presented = requests.slice(1).map((r) => r.form['refresh_token']);
    expect(presented).toEqual(auth.issuedRefreshTokens.slice(0, presented.length));
    expect(new Set(presented).size).toBe(presented.length);
    // And what the replicas logged: no failed token request, no invalid_grant anywhere.
    for (const r of fleet) {
      expect(r.proc.logs.filter((l) => l['event'] === 'token_failed')).toEqual([]);
      expect(r.proc.stdout + r.proc.stderr).not.toContain('invalid_grant');
    }
  }, 90_000);
});
