// Issue 11: what Redis sees. Two replicas share one Redis with every kind of entry: a client
// credentials token, a password grant's token with its refresh token, per-user tokens of a
// jwt_bearer credential fed from a request header, and a failure record whose OAuth error echoes
// the request. Then every key and every value in every database is read back: no access token,
// refresh token, assertion, secret, user name or subject appears, in clear or simply encoded.
import { randomBytes, randomUUID } from 'node:crypto';
import { SignJWT } from 'jose';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type AuthServer,
  BASIC_CLIENT,
  clientMetadata,
  GRANT_TYPES,
  startAuthServer,
} from '../support/auth-server.js';
import { type ClientKeyPair, generateClientKey } from '../support/client-keys.js';
import { type FakeTokenEndpoint, startFakeTokenEndpoint } from '../support/fake-token-endpoint.js';
import { newCacheKey, sharedCacheSection } from '../support/fleet.js';
import { startInjector, type TestInjector } from '../support/injector.js';
import { watchSecret } from '../support/leak-watch.js';
import { type RedisServer, startRedis, stopAllRedis } from '../support/redis.js';
import { startUpstream, type Upstream } from '../support/upstream.js';

const USER_ISSUER = 'https://users.fleet-scan.test';
const RESOURCE_OWNER = { username: 'svc-scan-owner-5d1c', password: 'scan-owner-password-a8f2e611' };
const ECHO_SECRET = 'scan-echo-client-secret-0b7e93';
const ENV = {
  TI_SCAN_KEY: newCacheKey(),
  TI_SCAN_SECRET: BASIC_CLIENT.secret,
  TI_SCAN_PASSWORD: RESOURCE_OWNER.password,
  TI_SCAN_ECHO_SECRET: ECHO_SECRET,
};

let redis: RedisServer;
let auth: AuthServer;
let upstream: Upstream;
let echoing: FakeTokenEndpoint;
let userKey: ClientKeyPair;
const replicas: TestInjector[] = [];

beforeAll(async () => {
  redis = await startRedis();
  userKey = await generateClientKey('ES256');
  auth = await startAuthServer({
    users: [RESOURCE_OWNER],
    jwtBearerIssuers: [{ issuer: USER_ISSUER, publicKey: userKey.publicJwk }],
    clients: [
      clientMetadata(BASIC_CLIENT, {
        grant_types: [
          GRANT_TYPES.clientCredentials,
          GRANT_TYPES.password,
          GRANT_TYPES.refreshToken,
          GRANT_TYPES.jwtBearer,
        ],
      }),
    ],
  });
  upstream = await startUpstream({ issuer: auth.issuer, jwksUri: auth.jwksUri, audience: auth.audience });
  // An OAuth error that repeats the Authorization header and the form: it lands in a failure record.
  echoing = await startFakeTokenEndpoint({ kind: 'echo', status: 400 });
  watchSecret(ECHO_SECRET);
  const client = {
    token_endpoint: auth.tokenEndpoint,
    client_id: BASIC_CLIENT.id,
    client_secret: `\${env:TI_SCAN_SECRET}`,
    auth_method: BASIC_CLIENT.authMethod,
  };
  const config = {
    shared_cache: sharedCacheSection(redis.url, { encryption_keys: [`\${env:TI_SCAN_KEY}`] }),
    credentials: {
      machine: { ...client, grant_type: 'client_credentials', scope: 'orders.read' },
      owner: {
        ...client,
        grant_type: 'password',
        username: RESOURCE_OWNER.username,
        password: `\${env:TI_SCAN_PASSWORD}`,
        scope: 'orders.read offline_access',
      },
      users: {
        ...client,
        grant_type: 'jwt_bearer',
        assertion: { source: 'request_header', header: 'X-User-Assertion' },
      },
      echoed: {
        token_endpoint: echoing.url,
        grant_type: 'client_credentials',
        client_id: 'scan-echo-client',
        client_secret: `\${env:TI_SCAN_ECHO_SECRET}`,
      },
    },
    routes: ['machine', 'owner', 'users', 'echoed'].map((name) => ({
      name,
      match: { host: `${name}.test` },
      upstream: upstream.url,
      credential: name,
    })),
  };
  for (let i = 0; i < 2; i++) replicas.push(await startInjector(config, ENV));
}, 60_000);

afterAll(async () => {
  await Promise.all(replicas.map((r) => r.close()));
  for (const token of [...(auth?.issuedTokens ?? []), ...(auth?.issuedRefreshTokens ?? [])])
    watchSecret(token);
  await upstream?.close();
  await auth?.close();
  await echoing?.close();
  await stopAllRedis();
});

async function call(replica: number, host: string, headers: Record<string, string> = {}): Promise<number> {
  const res = await request(`${replicas[replica]!.url}/v1/items`, { headers: { host, ...headers } });
  await res.body.dump();
  return res.statusCode;
}

async function userAssertion(sub: string): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  const jwt = await new SignJWT({
    iss: USER_ISSUER,
    sub,
    aud: auth.tokenEndpoint,
    iat: now,
    exp: now + 300,
    jti: randomUUID(),
  })
    .setProtectedHeader({ alg: 'ES256', typ: 'JWT' })
    .sign(userKey.privateKey);
  watchSecret(jwt);
  return jwt;
}

/** Every spelling in which a string could sit in Redis without being encrypted. */
function spellings(s: string): string[] {
  const bytes = Buffer.from(s);
  return [
    s,
    encodeURIComponent(s),
    bytes.toString('base64'),
    bytes.toString('base64url'),
    bytes.toString('hex'),
  ];
}

/** Every key of every database, with its type and everything it holds, as redis-cli prints them. */
async function dump(): Promise<{ db: string; key: string; type: string; content: string }[]> {
  const info = await redis.cli('INFO', 'keyspace');
  const dbs = [...info.matchAll(/^db(\d+):/gm)].map((m) => m[1]!);
  const out: { db: string; key: string; type: string; content: string }[] = [];
  for (const db of dbs) {
    const keys: string[] = [];
    let cursor = '0';
    do {
      const [next, ...page] = (await redis.cli('-n', db, 'SCAN', cursor, 'COUNT', '1000')).split('\n');
      cursor = next!;
      keys.push(...page.filter(Boolean));
    } while (cursor !== '0');
    for (const key of keys) {
      const type = (await redis.cli('-n', db, 'TYPE', key)).trim();
      const read: Record<string, string[]> = {
        string: ['GET', key],
        hash: ['HGETALL', key],
        list: ['LRANGE', key, '0', '-1'],
        set: ['SMEMBERS', key],
        zset: ['ZRANGE', key, '0', '-1', 'WITHSCORES'],
        stream: ['XRANGE', key, '-', '+'],
      };
      // A key may expire between SCAN and TYPE: 'none', nothing to read.
      const content = read[type] ? await redis.cli('-n', db, ...read[type]!) : '';
      out.push({ db, key, type, content });
    }
  }
  return out;
}

describe('what Redis holds', () => {
  it('no token, refresh token, assertion, secret, user name or subject in any key or value', async () => {
    const alice = `alice-${randomBytes(6).toString('hex')}`;
    const bob = `bob-${randomBytes(6).toString('hex')}`;
    const assertions = { [alice]: await userAssertion(alice), [bob]: await userAssertion(bob) };
    // Each replica asks for each token once: the second finds the first's in Redis.
    for (const replica of [0, 1]) {
      expect(await call(replica, 'machine.test')).toBe(200);
      expect(await call(replica, 'owner.test')).toBe(200);
      for (const sub of [alice, bob]) {
        expect(await call(replica, 'users.test', { 'X-User-Assertion': assertions[sub]! })).toBe(200);
      }
    }
    expect(await call(0, 'echoed.test')).toBe(502);
    // One token request per token: the second replica took every one from Redis.
    expect(auth.tokenRequests.map((r) => r.form['grant_type'])).toEqual([
      GRANT_TYPES.clientCredentials,
      GRANT_TYPES.password,
      GRANT_TYPES.jwtBearer,
      GRANT_TYPES.jwtBearer,
    ]);
    expect(auth.issuedRefreshTokens).toHaveLength(1);

    const entries = await dump();
    // Four tokens (two of them per user) and the failure; locks are gone once published.
    expect(entries.filter((e) => e.type === 'string')).toHaveLength(5);
    const forbidden: Record<string, string> = {
      'client secret': BASIC_CLIENT.secret,
      'echoed client secret': ECHO_SECRET,
      'resource owner password': RESOURCE_OWNER.password,
      'resource owner name': RESOURCE_OWNER.username,
      'subject alice': alice,
      'subject bob': bob,
      'assertion of alice': assertions[alice]!,
      'assertion of bob': assertions[bob]!,
      'user issuer': USER_ISSUER,
      ...Object.fromEntries(auth.issuedTokens.map((t, i) => [`access token ${i}`, t])),
      ...Object.fromEntries(auth.issuedRefreshTokens.map((t, i) => [`refresh token ${i}`, t])),
      // Nothing that names a credential or a client either: keys are HMACs.
      'credential name': 'echoed',
      'client id': BASIC_CLIENT.id,
      'echo client id': 'scan-echo-client',
    };
    const found: string[] = [];
    for (const e of entries) {
      for (const [what, value] of Object.entries(forbidden)) {
        for (const spelling of spellings(value)) {
          if (e.key.includes(spelling) || e.content.includes(spelling)) found.push(`${what} in ${e.key}`);
        }
      }
    }
    expect(found).toEqual([]);
    // The key came from the environment, as it should: no warning about an inline key.
    expect(replicas[0]!.logs.filter((l) => l['event'] === 'config_warning')).toEqual([]);
  }, 60_000);
});
