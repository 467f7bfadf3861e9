import { request } from 'undici';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { BASIC_CLIENT } from '../support/auth-server.js';
import { type FakeTokenEndpoint, startFakeTokenEndpoint } from '../support/fake-token-endpoint.js';
import { startInjector, type TestInjector } from '../support/injector.js';
import { watchSecret } from '../support/leak-watch.js';
import { credentialFor, type Stack, startStack } from '../support/stack.js';

let stack: Stack;
let fake: FakeTokenEndpoint;
let proxy: TestInjector | undefined;

beforeAll(async () => {
  stack = await startStack();
  fake = await startFakeTokenEndpoint();
});
afterEach(async () => {
  await proxy?.close();
  proxy = undefined;
});
afterAll(async () => {
  for (const token of fake.issuedTokens) watchSecret(token);
  await fake.close();
  await stack.close();
});

async function start(credential: Record<string, unknown>) {
  proxy = await startInjector({
    credentials: { orders: credential },
    routes: [
      { name: 'orders', match: { host: 'orders.test' }, upstream: stack.upstream.url, credential: 'orders' },
    ],
  });
  return proxy;
}

async function call() {
  const res = await request(`${proxy!.url}/v1/orders`, { headers: { host: 'orders.test' } });
  const text = await res.body.text();
  return {
    status: res.statusCode,
    headers: res.headers,
    text,
    body: JSON.parse(text) as Record<string, unknown>,
  };
}

function fakeCredential(extra: object = {}) {
  return {
    token_endpoint: fake.url,
    grant_type: 'client_credentials',
    client_id: 'fake-client',
    client_secret: 'fake-secret-abcdef',
    ...extra,
  };
}

describe('no token, no upstream call', () => {
  it('token endpoint down → 503 with Retry-After and a JSON error', async () => {
    await start(
      credentialFor(stack.auth, BASIC_CLIENT, {
        token_endpoint: 'http://127.0.0.1:9/oauth2/v1/token',
        timeout: '1s',
      }),
    );
    const before = stack.upstream.requests.length;
    const res = await call();
    expect(res.status).toBe(503);
    // The seconds until the next attempt at the token endpoint.
    expect(Number(res.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    expect(res.headers['content-type']).toBe('application/json');
    expect(res.body).toMatchObject({
      error: 'token_endpoint_unreachable',
      credential: 'orders',
      route: 'orders',
    });
    expect(res.body['detail']).toContain('ECONNREFUSED');
    expect(stack.upstream.requests.length).toBe(before);
  });

  it('token endpoint rejects the client → 502 with the OAuth error, and no secret in the answer', async () => {
    const secret = 'wrong-secret-0123456789';
    watchSecret(secret);
    await start(credentialFor(stack.auth, { ...BASIC_CLIENT, secret }));
    const before = stack.upstream.requests.length;
    const res = await call();
    expect(res.status).toBe(502);
    expect(res.body).toMatchObject({ error: 'token_endpoint_rejected', credential: 'orders' });
    expect(res.body['detail']).toContain('invalid_client');
    expect(res.text).not.toContain(secret);
    expect(stack.upstream.requests.length).toBe(before);
    const failed = proxy!.logs.find((l) => l['event'] === 'token_failed');
    expect(failed).toMatchObject({
      error: 'token_endpoint_rejected',
      status: 401,
      oauth_error: 'invalid_client',
    });
  });

  it('token endpoint hangs → 504 after the credential timeout', async () => {
    fake.setBehavior({ kind: 'hang' });
    await start(fakeCredential({ timeout: '300ms' }));
    const before = stack.upstream.requests.length;
    const res = await call();
    expect(res.status).toBe(504);
    expect(res.body).toMatchObject({ error: 'token_endpoint_timeout', credential: 'orders' });
    expect(stack.upstream.requests.length).toBe(before);
  });

  it('token endpoint resets the connection → 503, after retries within the timeout', async () => {
    fake.setBehavior({ kind: 'reset' });
    await start(fakeCredential({ timeout: '1s', retry: { initial_backoff: '50ms' } }));
    const before = fake.requests.length;
    const res = await call();
    expect(res.status).toBe(503);
    expect(res.body['error']).toBe('token_endpoint_unreachable');
    // A transient failure is retried with backoff, but only within the credential's timeout.
    expect(fake.requests.length - before).toBeGreaterThan(1);
    expect(fake.requests.length - before).toBeLessThan(10);
  });

  it.each([
    [
      'malformed JSON',
      { kind: 'raw', status: 200, body: '{"access_token": "abc', contentType: 'application/json' },
    ],
    ['an HTML page', { kind: 'raw', status: 200, body: '<html>login</html>', contentType: 'text/html' }],
    ['an empty body', { kind: 'raw', status: 200, body: '' }],
    ['a token with CR/LF', { kind: 'token', accessToken: 'abc\r\nx-injected: 1' }],
    ['a non-Bearer token type', { kind: 'token', tokenType: 'mac' }],
    ['a negative expires_in', { kind: 'token', expiresIn: -5 }],
    ['a redirect', { kind: 'raw', status: 302, body: '' }],
  ] as const)('token endpoint answers %s → 502 token_response_invalid', async (_name, behavior) => {
    fake.setBehavior(behavior);
    await start(fakeCredential());
    const before = stack.upstream.requests.length;
    const res = await call();
    expect(res.status).toBe(502);
    expect(res.body).toMatchObject({ error: 'token_response_invalid', credential: 'orders' });
    expect(stack.upstream.requests.length).toBe(before);
  });

  it('a 5xx without an OAuth body → 503 token_endpoint_rejected naming the status', async () => {
    fake.setBehavior({ kind: 'raw', status: 500, body: 'oops' });
    await start(fakeCredential({ timeout: '300ms' }));
    const res = await call();
    expect(res.status).toBe(503);
    expect(res.body['detail']).toContain('HTTP 500');
  });

  it('recovers without a restart: once the endpoint heals, the next probe gets a token', async () => {
    fake.setBehavior({ kind: 'json', status: 503, body: { error: 'temporarily_unavailable' } });
    await start(
      fakeCredential({ timeout: '300ms', retry: { initial_backoff: '20ms', max_backoff: '50ms' } }),
    );
    // 503 for the 503s; 504 if the deadline ends during an attempt, as it may on a loaded machine.
    expect([503, 504]).toContain((await call()).status);
    fake.setBehavior({ kind: 'token', expiresIn: '3600' });
    // Until the backoff step ends requests fail fast (with Retry-After); then one probe succeeds.
    let ok = await call();
    for (let i = 0; i < 50 && ok.status >= 500; i++) {
      expect(ok.headers['retry-after']).toBeDefined();
      await new Promise((r) => setTimeout(r, 10));
      ok = await call();
    }
    expect(ok.status).toBe(401); // the fake's token is not one the verifying upstream trusts…
    const received = stack.upstream.requests.at(-1)!;
    expect(received.headers.authorization).toBe(`Bearer ${fake.issuedTokens.at(-1)}`); // …but it was injected
  });
});
