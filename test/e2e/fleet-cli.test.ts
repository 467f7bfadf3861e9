// Issue 11: `token NAME` with shared_cache configured, as a cron job calls it: each run is a new
// process with an empty cache of its own, so without Redis every run is a token request. Twenty
// runs in a row against the real authorization server: one token request, the same token printed.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXIT } from '../../src/cli/exit-codes.js';
import { type AuthServer, BASIC_CLIENT, startAuthServer } from '../support/auth-server.js';
import { killAllCli, runCli, tempDir, writeConfig } from '../support/cli-process.js';
import { CACHE_KEY_ENV, newCacheKey, sharedCacheSection } from '../support/fleet.js';
import { watchSecret } from '../support/leak-watch.js';
import { type RedisServer, startRedis, stopAllRedis } from '../support/redis.js';

const SECRET_ENV = 'TI_FLEET_CLI_SECRET';
const RUNS = 20;

let redis: RedisServer;
let auth: AuthServer;
let dir: string;
let removeDir: () => void;

beforeAll(async () => {
  redis = await startRedis();
  auth = await startAuthServer();
  ({ dir, remove: removeDir } = tempDir('token-injector-fleet-cli-'));
  watchSecret(BASIC_CLIENT.secret);
});

afterAll(async () => {
  await killAllCli();
  await auth?.close();
  await stopAllRedis();
  removeDir?.();
});

describe('token NAME with a shared cache', () => {
  it(`${RUNS} runs in a row make 1 token request and print the same token`, async () => {
    const path = writeConfig(dir, 'cli.yaml', {
      shared_cache: sharedCacheSection(redis.url),
      credentials: {
        orders: {
          token_endpoint: auth.tokenEndpoint,
          grant_type: 'client_credentials',
          client_id: BASIC_CLIENT.id,
          client_secret: `\${env:${SECRET_ENV}}`,
          auth_method: BASIC_CLIENT.authMethod,
          scope: 'orders.read',
        },
      },
      routes: [],
    });
    const env = { [SECRET_ENV]: BASIC_CLIENT.secret, [CACHE_KEY_ENV]: newCacheKey() };
    const printed: string[] = [];
    for (let i = 0; i < RUNS; i++) {
      // stdout carries the token by design: kept out of the leak registry, stderr is not.
      const res = await runCli(['token', 'orders', '--config', path], { env, recordStdout: false });
      expect(res, `run ${i}`).toMatchObject({ code: EXIT.ok, stderr: '' });
      printed.push(res.stdout);
    }
    expect(auth.tokenRequests).toHaveLength(1);
    expect(auth.tokenRequests[0]!.status).toBe(200);
    expect(new Set(printed)).toEqual(new Set([`${auth.issuedTokens[0]}\n`]));
  }, 180_000);
});
