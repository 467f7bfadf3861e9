// Issue 10 (outside review), token side: what the app and the logs see when the token endpoint
// refuses. A 429 is always "try later" (503 + Retry-After), whatever OAuth error its body names;
// and a token endpoint that echoes the request in its error_description never gets the request's
// secrets into the app's error body or into any log line.
import { request } from 'undici';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { nextArrival } from '../support/arrivals.js';
import { type FakeTokenEndpoint, startFakeTokenEndpoint } from '../support/fake-token-endpoint.js';
import { type FaultUpstream, startFaultUpstream } from '../support/fault-upstream.js';
import { startInjector, type TestInjector } from '../support/injector.js';
import { watchSecret } from '../support/leak-watch.js';

const HOST = 'orders.test';
// Spelled differently by every encoding: space, "/", "+", "=", "&", '"', "\", ":", "é".
const CLIENT_SECRET = 'review secret/+=&"\\:é-5e0b7c41';
const PASSWORD = 'user pass/+=&"\\:é-93a1d2';
const REFRESH_TOKEN = 'rt-review-0d3c7a9e44';

let fake: FakeTokenEndpoint;
let up: FaultUpstream;
let proxy: TestInjector | undefined;

beforeEach(async () => {
  fake = await startFakeTokenEndpoint();
  up = await startFaultUpstream();
  for (const s of [CLIENT_SECRET, PASSWORD, REFRESH_TOKEN]) watchSecret(s);
});
afterEach(async () => {
  await proxy?.close();
  proxy = undefined;
  for (const token of fake.issuedTokens) watchSecret(token);
  await fake.close();
  await up.close();
});

async function start(credential: object): Promise<TestInjector> {
  proxy = await startInjector({
    credentials: {
      orders: {
        token_endpoint: fake.url,
        grant_type: 'client_credentials',
        client_id: 'review-client',
        client_secret: CLIENT_SECRET,
        timeout: '2s',
        ...credential,
      },
    },
    routes: [{ name: 'orders', match: { host: HOST }, upstream: up.url, credential: 'orders' }],
  });
  return proxy;
}

async function call() {
  const res = await request(`${proxy!.url}/v1/orders`, { headers: { host: HOST } });
  const text = await res.body.text();
  return {
    status: res.statusCode,
    headers: res.headers,
    text,
    body: JSON.parse(text) as Record<string, unknown>,
  };
}

/** Every spelling of a secret an echoing server (or our own encodings) could produce. */
function spellings(secret: string): string[] {
  const json = JSON.stringify(secret).slice(1, -1);
  return [
    secret,
    encodeURIComponent(secret),
    new URLSearchParams({ s: secret }).toString().slice(2),
    json,
    JSON.stringify(json).slice(1, -1), // as it stands inside a JSON log line
    Buffer.from(secret).toString('base64'),
    Buffer.from(secret).toString('base64url'),
  ];
}

function expectNoSecret(texts: readonly string[], secrets: readonly string[]): void {
  for (const secret of secrets) {
    for (const spelling of spellings(secret)) {
      for (const text of texts) expect(text, `a spelling of ${secret.slice(0, 6)}…`).not.toContain(spelling);
    }
  }
}

describe('429 from the token endpoint', () => {
  it.each(['rate_limit_exceeded', 'slow_down', undefined])(
    'with OAuth error %s: 503 with the server’s Retry-After, and no second request before it',
    async (oauthError) => {
      fake.setBehavior({
        kind: 'json',
        status: 429,
        body: oauthError ? { error: oauthError, error_description: 'too many token requests' } : {},
        headers: { 'retry-after': '7' },
      });
      await start({ retry: { initial_backoff: '50ms', max_backoff: '5s' } });
      const first = await call();
      expect(first.status).toBe(503);
      expect(first.headers['retry-after']).toBe('7');
      expect(first.body).toMatchObject({ error: 'token_endpoint_rejected', credential: 'orders' });
      // The wait asked for is longer than the 2 s timeout: one attempt, then fail fast.
      const second = await call();
      expect(second.status).toBe(503);
      expect(Number(second.headers['retry-after'])).toBeGreaterThanOrEqual(6);
      expect(fake.requests).toHaveLength(1);
      expect(up.requests).toHaveLength(0);
    },
  );

  it('is retried within the timeout when its Retry-After fits, and the app never sees it', async () => {
    fake.setBehavior({
      kind: 'json',
      status: 429,
      body: { error: 'rate_limit_exceeded' },
      headers: { 'retry-after': '1' },
    });
    await start({ timeout: '5s', retry: { initial_backoff: '50ms', max_backoff: '2s' } });
    const arrived = nextArrival(fake.requests);
    const pending = call();
    // The first request has taken its answer (429) by now; the retry, a second later, gets a token.
    await arrived;
    fake.setBehavior({ kind: 'token' });
    const res = await pending;
    expect(res.status).toBe(200);
    expect(fake.requests.map((r) => r.status)).toEqual([429, 200]);
  });
});

describe('a token endpoint that echoes the request in error_description', () => {
  it.each([
    ['client_secret_post', { auth_method: 'client_secret_post' }, [CLIENT_SECRET]],
    ['client_secret_basic', { auth_method: 'client_secret_basic' }, [CLIENT_SECRET]],
    [
      'the password grant',
      { grant_type: 'password', username: 'alice', password: PASSWORD, auth_method: 'client_secret_post' },
      [CLIENT_SECRET, PASSWORD],
    ],
  ])('%s: no secret in the 502 body nor in any log line', async (_what, credential, secrets) => {
    fake.setBehavior({ kind: 'echo', status: 400 });
    const p = await start(credential);
    const res = await call();
    expect(res.status).toBe(502);
    expect(res.body['error']).toBe('token_endpoint_rejected');
    // The echo did arrive, and what was not secret in it is still shown.
    expect(res.body['detail']).toContain('invalid_request');
    expect(res.body['detail']).toContain('[redacted]');
    expect(res.body['detail']).toContain('grant_type');
    const failed = p.logs.find((l) => l['event'] === 'token_failed');
    expect(failed?.['oauth_error_description']).toContain('[redacted]');
    // Basic sends base64(form-encoded id ":" form-encoded secret): that blob is a secret as well.
    const authorization = fake.requests[0]!.headers['authorization'];
    const basic = typeof authorization === 'string' ? authorization.replace(/^Basic /, '') : undefined;
    if (basic !== undefined) watchSecret(basic);
    expectNoSecret(
      [res.text, ...p.logs.map((l) => JSON.stringify(l))],
      [...secrets, ...(basic ? [basic] : [])],
    );
  });

  it('a client assertion made for this one request (client_secret_jwt) is kept out too', async () => {
    fake.setBehavior({ kind: 'echo', status: 400, field: 'client_assertion' });
    const p = await start({
      auth_method: 'client_secret_jwt',
      client_secret: 'hs256-review-secret-'.repeat(3),
    });
    const res = await call();
    expect(res.status).toBe(502);
    const assertion = fake.requests[0]!.form['client_assertion']!;
    expect(assertion).toMatch(/^ey/);
    expect(res.body['detail']).toContain('[redacted]');
    watchSecret(assertion);
    expectNoSecret([res.text, ...p.logs.map((l) => JSON.stringify(l))], [assertion]);
  });

  it('a granted scope that echoes the request is logged without its secrets', async () => {
    fake.setBehavior({ kind: 'token', extra: { scope: `orders.read ${CLIENT_SECRET}` } });
    const p = await start({ auth_method: 'client_secret_post' });
    expect((await call()).status).toBe(200);
    const fetched = p.logs.find((l) => l['event'] === 'token_fetched');
    expect(fetched?.['scope']).toBe('orders.read [redacted]');
    expectNoSecret(
      p.logs.map((l) => JSON.stringify(l)),
      [CLIENT_SECRET],
    );
  });

  it('a refresh token sent to replace a refused token is kept out too', async () => {
    fake.setBehavior({ kind: 'token', extra: { refresh_token: REFRESH_TOKEN } });
    up.setBehavior({
      kind: 'respond',
      status: 401,
      headers: { 'www-authenticate': 'Bearer error="invalid_token"' },
    });
    const p = await start({
      grant_type: 'password',
      username: 'alice',
      password: PASSWORD,
      auth_method: 'client_secret_post',
    });
    const first = nextArrival(fake.requests);
    const pending = call();
    await first; // answered with a token and the refresh token; what follows is echoed
    fake.setBehavior({ kind: 'echo', status: 400 });
    // The upstream refuses the token; the new one is asked for with the refresh token (RFC 6749 §6).
    const res = await pending;
    expect(res.status).toBe(502);
    expect(fake.requests.map((r) => r.form['grant_type'])).toEqual(['password', 'refresh_token']);
    expect(fake.requests[1]!.form['refresh_token']).toBe(REFRESH_TOKEN);
    expectNoSecret(
      [res.text, ...p.logs.map((l) => JSON.stringify(l))],
      [REFRESH_TOKEN, PASSWORD, CLIENT_SECRET],
    );
  });
});
