// Issue 10 (outside review), token side: `token NAME` makes one attempt (with the retries that
// fit in the timeout) and exits; its error must not promise a "next attempt" it never makes.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXIT } from '../../src/cli/exit-codes.js';
import { killAllCli, runCli, tempDir, writeConfig } from '../support/cli-process.js';
import { type FakeTokenEndpoint, startFakeTokenEndpoint } from '../support/fake-token-endpoint.js';
import { watchSecret } from '../support/leak-watch.js';

const SECRET = 'cli-review-secret-8e2f51';

let fake: FakeTokenEndpoint;
let dir: string;
let removeDir: () => void;

beforeAll(async () => {
  fake = await startFakeTokenEndpoint();
  ({ dir, remove: removeDir } = tempDir());
  watchSecret(SECRET);
});
afterAll(async () => {
  await killAllCli();
  await fake?.close();
  removeDir?.();
});

describe('token NAME when the token endpoint refuses', () => {
  it('prints the failure itself, without "next attempt in …"', async () => {
    fake.setBehavior({
      kind: 'json',
      status: 401,
      body: { error: 'invalid_client', error_description: 'client authentication failed' },
    });
    const path = writeConfig(dir, 'cli-review.yaml', {
      credentials: {
        orders: {
          token_endpoint: fake.url,
          grant_type: 'client_credentials',
          client_id: 'cli-review',
          client_secret: SECRET,
        },
      },
      routes: [],
    });
    const res = await runCli(['token', 'orders', '--config', path], { recordStdout: false });
    expect(res.code).toBe(EXIT.tokenFailed);
    expect(res.stdout).toBe('');
    expect(res.stderr).toBe(
      'token-injector: token_endpoint_rejected: token endpoint answered HTTP 401: invalid_client (client authentication failed)\n',
    );
    expect(fake.requests).toHaveLength(1);
  });
});
