// Fault injection: the programmable fake token endpoint and a programmable fault upstream (the only
// fakes) switch behaviour mid-run, and each test asserts what the app saw, how many token requests
// the identity provider received, and that the proxy is still healthy afterwards.
import { createServer } from 'node:http';
import { type AddressInfo, createServer as createTcpServer, type Socket } from 'node:net';
import { Readable } from 'node:stream';
import { setTimeout as delay } from 'node:timers/promises';
import { request } from 'undici';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  type Behavior,
  type FakeTokenEndpoint,
  startFakeTokenEndpoint,
} from '../support/fake-token-endpoint.js';
import {
  type FaultBehavior,
  type FaultEcho,
  type FaultUpstream,
  startFaultUpstream,
} from '../support/fault-upstream.js';
import { startInjector, type TestInjector } from '../support/injector.js';
import { watchSecret } from '../support/leak-watch.js';

const CLIENT_SECRET = 'faults-client-secret-7b3e9c';
const HOST = 'orders.test';

let fake: FakeTokenEndpoint;
let up: FaultUpstream;
let proxy: TestInjector | undefined;
const others: { close(): Promise<void> }[] = [];

beforeEach(async () => {
  fake = await startFakeTokenEndpoint();
  up = await startFaultUpstream();
});
afterEach(async () => {
  await proxy?.close();
  proxy = undefined;
  for (const token of fake.issuedTokens) watchSecret(token);
  await fake.close();
  await up.close();
  await Promise.all(others.splice(0).map((o) => o.close()));
});

/** Starts the proxy with one credential (on the fake) and one route (to the fault upstream). */
async function start(credential: object = {}, route: object = {}): Promise<TestInjector> {
  proxy = await startInjector({
    credentials: {
      orders: {
        token_endpoint: fake.url,
        grant_type: 'client_credentials',
        client_id: 'faults-client',
        client_secret: CLIENT_SECRET,
        timeout: '2s',
        retry: { initial_backoff: '50ms', max_backoff: '200ms' },
        ...credential,
      },
    },
    routes: [{ name: 'orders', match: { host: HOST }, upstream: up.url, credential: 'orders', ...route }],
  });
  return proxy;
}

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  /** Milliseconds until the whole answer was read. */
  ms: number;
  json<T = Record<string, unknown>>(): T;
}

async function call(
  init: { method?: string; path?: string; body?: Buffer | Readable; headers?: Record<string, string> } = {},
): Promise<Answer> {
  const started = performance.now();
  const res = await request(`${proxy!.url}${init.path ?? '/v1/orders'}`, {
    method: (init.method ?? 'GET') as 'GET',
    headers: { host: HOST, ...init.headers },
    ...(init.body !== undefined ? { body: init.body } : {}),
  });
  const text = await res.body.text();
  return {
    status: res.statusCode,
    headers: res.headers,
    text,
    ms: performance.now() - started,
    json: <T>() => JSON.parse(text) as T,
  };
}

async function burst(n: number): Promise<Answer[]> {
  return Promise.all(Array.from({ length: n }, () => call()));
}

async function admin(path: string): Promise<{ status: number; text: string }> {
  const res = await request(`${proxy!.adminUrl}${path}`);
  return { status: res.statusCode, text: await res.body.text() };
}

interface Readyz {
  status: string;
  credentials: Record<string, string>;
  last_errors?: Record<string, string>;
}

async function readyz(): Promise<Readyz> {
  return JSON.parse((await admin('/readyz')).text) as Readyz;
}

/** A sample of a Prometheus metric, or undefined when it is not exported. */
async function metric(name: string, labels: string): Promise<number | undefined> {
  const text = (await admin('/metrics')).text;
  const line = text.split('\n').find((l) => l.startsWith(`${name}{${labels}} `));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
}

/** The proxy still serves: /healthz is 200 and a request with a working token endpoint gets through. */
async function expectHealthy(): Promise<void> {
  expect((await admin('/healthz')).status).toBe(200);
  fake.setBehavior({ kind: 'token' });
  up.setBehavior({ kind: 'echo' });
  const res = await pollUntil(
    () => call(),
    (r) => r.status === 200,
  );
  expect(res.status).toBe(200);
  expect(res.json<FaultEcho>().authorization).toBe(`Bearer ${fake.issuedTokens.at(-1)}`);
}

/**
 * Bounded polling, only for state that cannot be awaited (a backoff step passing): returns the
 * first value that satisfies `done`, or the last one tried.
 */
async function pollUntil<T>(
  attempt: () => Promise<T>,
  done: (value: T) => boolean,
  { tries = 200, everyMs = 20 } = {},
): Promise<T> {
  let value = await attempt();
  for (let i = 1; i < tries && !done(value); i++) {
    await delay(everyMs);
    value = await attempt();
  }
  return value;
}

/** Records when each item is pushed to `array` (epoch ms), index for index. */
function stampArrivals<T>(array: T[]): number[] {
  const times: number[] = [];
  const push = array.push.bind(array);
  array.push = (...items: T[]) => {
    for (const _ of items) times.push(Date.now());
    return push(...items);
  };
  return times;
}

const invalidToken = (): FaultBehavior => ({
  kind: 'respond',
  status: 401,
  headers: { 'www-authenticate': 'Bearer error="invalid_token"', 'content-type': 'application/json' },
  body: '{"error":"invalid_token"}',
});

describe('token endpoint faults', () => {
  it('5xx then recovery: retried within the timeout, 503 to the app, then a token on the first good probe', async () => {
    fake.setBehavior({ kind: 'json', status: 500, body: { error: 'server_error' } });
    await start({ timeout: '400ms' });
    const failed = await call();
    // An identity provider that is down for now is "unavailable" (503), not a rejection (502).
    expect(failed.status).toBe(503);
    expect(Number(failed.headers['retry-after'])).toBeGreaterThan(0);
    expect(failed.json()).toMatchObject({
      error: 'token_endpoint_rejected',
      credential: 'orders',
      route: 'orders',
    });
    expect(failed.json()['detail']).toContain('HTTP 500');
    // Transient: retried with backoff, but only within the credential's 400 ms.
    const failedRequests = fake.requests.length;
    expect(failedRequests).toBeGreaterThan(1);
    expect(failedRequests).toBeLessThan(12);
    expect(up.requests).toHaveLength(0);

    fake.setBehavior({ kind: 'token' });
    const ok = await pollUntil(
      () => call(),
      (r) => r.status === 200,
    );
    expect(ok.status).toBe(200);
    expect(fake.requests).toHaveLength(failedRequests + 1);
    expect(fake.issuedTokens).toHaveLength(1);
    expect(up.requests.at(-1)!.authorization).toBe(`Bearer ${fake.issuedTokens[0]}`);
    expect(await readyz()).toMatchObject({ credentials: { orders: 'fresh' } });
    expect((await readyz()).last_errors).toBeUndefined();
    // Each request the endpoint saw is counted once. The last one may have reached it with only
    // a few ms of the 400 ms left, and been cut by the deadline before the 500 came back: that
    // one counts as a timeout (and the app still gets the 500 that caused the retry).
    const rejected =
      (await metric(
        'token_injector_token_requests_total',
        'credential="orders",outcome="token_endpoint_rejected"',
      )) ?? 0;
    const timedOut =
      (await metric(
        'token_injector_token_requests_total',
        'credential="orders",outcome="token_endpoint_timeout"',
      )) ?? 0;
    expect(rejected + timedOut).toBe(failedRequests);
    expect(timedOut).toBeLessThanOrEqual(1);
    expect(await metric('token_injector_token_requests_total', 'credential="orders",outcome="success"')).toBe(
      1,
    );
    await expectHealthy();
  });

  it('429 with Retry-After: 1: one token request per backoff step, however many app requests arrive', async () => {
    fake.setBehavior({
      kind: 'json',
      status: 429,
      body: { error: 'temporarily_unavailable' },
      headers: { 'retry-after': '1' },
    });
    const arrivals = stampArrivals(fake.requests);
    // The Retry-After (1 s) exceeds the 500 ms timeout: each fetch is a single request.
    await start({ timeout: '500ms', retry: { initial_backoff: '50ms', max_backoff: '2s' } });
    const first = await call();
    expect(first.status).toBe(503);
    expect(first.json()['detail']).toContain('HTTP 429');
    expect(fake.requests).toHaveLength(1);

    // 50 concurrent requests while failing: all fail fast, none reaches the token endpoint.
    const concurrent = await burst(50);
    for (const res of concurrent) {
      expect(res.status).toBe(503);
      expect(res.headers['retry-after']).toBe('1');
      expect(res.json()).toMatchObject({ error: 'token_endpoint_rejected', credential: 'orders' });
    }
    expect(fake.requests).toHaveLength(1);

    // Keep 10 concurrent requests coming every 20 ms: each Retry-After step lets one probe through.
    const statuses: number[] = [];
    const stop = Date.now() + 6_000;
    while (fake.requests.length < 3 && Date.now() < stop) {
      statuses.push(...(await burst(10)).map((r) => r.status));
      await delay(20);
    }
    expect(fake.requests).toHaveLength(3);
    expect(statuses.length).toBeGreaterThan(50);
    expect(new Set(statuses)).toEqual(new Set([503]));
    expect(arrivals[1]! - arrivals[0]!).toBeGreaterThanOrEqual(990);
    expect(arrivals[2]! - arrivals[1]!).toBeGreaterThanOrEqual(990);

    fake.setBehavior({ kind: 'token' });
    const ok = await pollUntil(
      () => burst(10),
      (rs) => rs.some((r) => r.status === 200),
      { tries: 150 },
    );
    expect(ok.some((r) => r.status === 200)).toBe(true);
    expect(fake.requests).toHaveLength(4);
    expect(arrivals[3]! - arrivals[2]!).toBeGreaterThanOrEqual(990);
    expect(up.requests.at(-1)!.authorization).toBe(`Bearer ${fake.issuedTokens[0]}`);
    await expectHealthy();
    expect(fake.requests).toHaveLength(4);
  });

  it('a hanging token endpoint: 504 after the credential timeout, the process stays fine', async () => {
    fake.setBehavior({ kind: 'hang' });
    await start({ timeout: '400ms' });
    const res = await call();
    expect(res.status).toBe(504);
    expect(res.json()).toMatchObject({
      error: 'token_endpoint_timeout',
      credential: 'orders',
      route: 'orders',
    });
    expect(res.ms).toBeGreaterThanOrEqual(350);
    expect(res.ms).toBeLessThan(3_000);
    expect(fake.requests).toHaveLength(1);
    expect(up.requests).toHaveLength(0);
    expect(await readyz()).toMatchObject({
      credentials: { orders: 'failing' },
      last_errors: { orders: 'token_endpoint_timeout' },
    });
    await expectHealthy();
  });

  it('a connection reset: 503 with Retry-After after retries, then fail fast until the next probe', async () => {
    fake.setBehavior({ kind: 'reset' });
    await start({ timeout: '600ms', retry: { initial_backoff: '100ms', max_backoff: '400ms' } });
    const res = await call();
    expect(res.status).toBe(503);
    expect(res.headers['retry-after']).toBeDefined();
    expect(res.json()).toMatchObject({ error: 'token_endpoint_unreachable', credential: 'orders' });
    const tried = fake.requests.length;
    expect(tried).toBeGreaterThan(1);
    expect(tried).toBeLessThan(10);
    const fast = await call();
    expect(fast.status).toBe(503);
    expect(fast.headers['retry-after']).toBe('1');
    expect(fake.requests).toHaveLength(tried);
    await expectHealthy();
  });

  describe('unusable token responses → 502 token_response_invalid, not retried', () => {
    it.each<[string, Behavior, object, string]>([
      [
        'malformed JSON',
        { kind: 'raw', status: 200, body: '{"access_token": "abc', contentType: 'application/json' },
        {},
        'not a JSON object',
      ],
      [
        'a body over max_response_size',
        { kind: 'token', extra: { padding: 'x'.repeat(2_000) } },
        { max_response_size: '1KiB' },
        'larger than 1024 bytes',
      ],
      [
        'a token with CR-LF',
        { kind: 'token', accessToken: 'tok-crlf-a1b2c3\r\nx-injected: 1' },
        {},
        'cannot be sent in an HTTP header',
      ],
      ['a token_type not listed', { kind: 'token', tokenType: 'DPoP' }, {}, 'is not Bearer'],
    ])('%s', async (_name, behavior, credential, detail) => {
      fake.setBehavior(behavior);
      await start({ timeout: '5s', ...credential });
      const res = await call();
      expect(res.status).toBe(502);
      expect(res.json()).toMatchObject({ error: 'token_response_invalid', credential: 'orders' });
      expect(res.json()['detail']).toContain(detail);
      expect(res.ms).toBeLessThan(2_000);
      expect(fake.requests).toHaveLength(1);
      expect(up.requests).toHaveLength(0);
      expect(up.totalConnections).toBe(0);
      await expectHealthy();
    });
  });

  it.each<[string, Behavior, object]>([
    ['a token_type listed in token_types', { kind: 'token', tokenType: 'DPoP' }, { token_types: ['DPoP'] }],
    [
      'a body just within max_response_size',
      { kind: 'token', extra: { padding: 'x'.repeat(500) } },
      { max_response_size: '1KiB' },
    ],
  ])('accepted: %s', async (_name, behavior, credential) => {
    fake.setBehavior(behavior);
    await start(credential);
    const res = await call();
    expect(res.status).toBe(200);
    expect(res.json<FaultEcho>().authorization).toBe(`Bearer ${fake.issuedTokens[0]}`);
    expect(fake.requests).toHaveLength(1);
  });

  describe('expires_in edge cases (observed as token_injector_token_expires_in_seconds)', () => {
    const lifetimes = { default_lifetime: '7m', max_lifetime: '2h' };
    it.each<[string, object, number]>([
      ['missing → default_lifetime', { extra: { expires_in: undefined } }, 420],
      ['null → default_lifetime', { extra: { expires_in: null } }, 420],
      ['"3600" as a string', { expiresIn: '3600' }, 3600],
      ['huge → max_lifetime', { expiresIn: 1_000_000_000 }, 7200],
      ['90 (in range)', { expiresIn: 90 }, 90],
    ])('%s', async (_name, behavior, seconds) => {
      fake.setBehavior({ kind: 'token', ...behavior });
      await start(lifetimes);
      expect((await call()).status).toBe(200);
      const left = await metric('token_injector_token_expires_in_seconds', 'credential="orders"');
      expect(left).toBeGreaterThan(seconds - 5);
      expect(left).toBeLessThanOrEqual(seconds);
      expect(fake.requests).toHaveLength(1);
    });

    it.each<[string, number | string]>([
      ['0', 0],
      ['negative', -30],
      ['not a number', 'soon'],
    ])('%s is rejected (502, one token request)', async (_name, expiresIn) => {
      fake.setBehavior({ kind: 'token', expiresIn });
      await start(lifetimes);
      const res = await call();
      expect(res.status).toBe(502);
      expect(res.json()).toMatchObject({ error: 'token_response_invalid' });
      expect(res.json()['detail']).toContain('expires_in');
      expect(fake.requests).toHaveLength(1);
      expect(up.requests).toHaveLength(0);
      expect(await metric('token_injector_token_expires_in_seconds', 'credential="orders"')).toBeUndefined();
    });
  });

  describe('permanent OAuth errors: one token request, 502 fast, then fail fast until the probe', () => {
    it.each<[string, number]>([
      ['invalid_grant', 400],
      ['invalid_client', 401],
      ['unauthorized_client', 400],
      ['invalid_scope', 400],
      ['unsupported_grant_type', 400],
    ])('%s (HTTP %i)', async (error, status) => {
      fake.setBehavior({ kind: 'json', status, body: { error, error_description: 'refused by the fake' } });
      // A long timeout and backoff: a retry would show in the request count and in the time.
      await start({ timeout: '5s', retry: { initial_backoff: '600ms', max_backoff: '5s' } });
      const first = await call();
      expect(first.status).toBe(502);
      expect(first.json()).toMatchObject({ error: 'token_endpoint_rejected', credential: 'orders' });
      expect(first.json()['detail']).toContain(error);
      expect(first.ms).toBeLessThan(1_000);
      expect(fake.requests).toHaveLength(1);

      const fast = await call();
      expect(fast.status).toBe(502);
      expect(fast.headers['retry-after']).toBe('1');
      expect(fast.json()['detail']).toContain(error);
      expect(fast.ms).toBeLessThan(200);
      expect(fake.requests).toHaveLength(1);

      // Once the backoff step (300..600 ms) ends, exactly one probe goes out.
      const probed = await pollUntil(
        async () => {
          await burst(5);
          return fake.requests.length;
        },
        (n) => n >= 2,
        { tries: 100 },
      );
      expect(probed).toBe(2);
      expect(up.requests).toHaveLength(0);
      expect(await readyz()).toMatchObject({
        credentials: { orders: 'failing' },
        last_errors: { orders: 'token_endpoint_rejected' },
      });
      expect(
        await metric(
          'token_injector_credential_last_error',
          'credential="orders",code="token_endpoint_rejected"',
        ),
      ).toBe(1);
      expect((await admin('/healthz')).status).toBe(200);
    });
  });

  describe('stale-while-error', () => {
    it.each<[string, Behavior, number, string]>([
      [
        'the token endpoint answers 503',
        { kind: 'json', status: 503, body: { error: 'temporarily_unavailable' } },
        503,
        'token_endpoint_rejected',
      ],
      ['the token endpoint resets connections', { kind: 'reset' }, 503, 'token_endpoint_unreachable'],
    ])(
      '%s: the cached token is served until it really expires, then fail fast, then recovery',
      async (_name, failure, failStatus, failCode) => {
        fake.setBehavior({ kind: 'token', expiresIn: 3 });
        // Refresh after ~25% of the usable 2 s; the token really expires 3 s after it was fetched.
        await start({
          refresh_ahead: 0.25,
          timeout: '300ms',
          retry: { initial_backoff: '50ms', max_backoff: '400ms' },
        });
        const t0 = Date.now();
        const first = await call();
        expect(first.status).toBe(200);
        // The token was fetched between t0 and t1.
        const t1 = Date.now();
        const cached = `Bearer ${fake.issuedTokens[0]}`;
        // Served from the cache, the token is in use: it is refreshed ahead (an idle one is not).
        expect((await call()).status).toBe(200);
        fake.setBehavior(failure);

        // The background refresh fails: the credential turns stale, and requests still get the token.
        const stale = await pollUntil(readyz, (r) => r.credentials['orders'] === 'stale', { everyMs: 10 });
        expect(stale).toMatchObject({
          status: 'ready',
          credentials: { orders: 'stale' },
          last_errors: { orders: failCode },
        });
        expect(await metric('token_injector_credential_state', 'credential="orders",state="stale"')).toBe(1);
        expect(
          await metric('token_injector_credential_last_error', `credential="orders",code="${failCode}"`),
        ).toBe(1);
        const refreshesFailed = fake.requests.length - 1;
        expect(refreshesFailed).toBeGreaterThan(0);

        let last200 = { sent: t0, answered: t0 };
        let sent = Date.now();
        let res = await call();
        while (res.status === 200 && Date.now() - t0 < 5_000) {
          expect(res.json<FaultEcho>().authorization).toBe(cached);
          last200 = { sent, answered: Date.now() };
          await delay(25);
          sent = Date.now();
          res = await call();
        }
        const firstFailure = Date.now();
        // Served until one second before the real expiry (3 s after it was fetched, between t0 and t1)…
        expect(last200.answered - t0).toBeGreaterThanOrEqual(1_500);
        expect(firstFailure - t0).toBeGreaterThanOrEqual(1_950);
        // …and not a moment longer.
        expect(last200.sent).toBeLessThanOrEqual(t1 + 2_000);
        expect(fake.issuedTokens).toHaveLength(1);
        // …and never afterwards, not even once.
        expect(res.status).toBe(failStatus);
        expect(res.json()).toMatchObject({ error: failCode, credential: 'orders', route: 'orders' });
        const upstreamBefore = up.requests.length;

        // Failing: between probes, requests fail fast with the last error's status and Retry-After.
        expect(await readyz()).toMatchObject({
          credentials: { orders: 'failing' },
          last_errors: { orders: failCode },
        });
        expect(await metric('token_injector_credential_state', 'credential="orders",state="failing"')).toBe(
          1,
        );
        let fastSeen = 0;
        for (let i = 0; i < 40 && fastSeen < 3; i++) {
          const before = fake.requests.length;
          const r = await call();
          expect(r.status).toBe(failStatus);
          expect(r.json()['error']).toBe(failCode);
          if (fake.requests.length === before) {
            expect(r.headers['retry-after']).toBe('1');
            expect(r.ms).toBeLessThan(150);
            fastSeen++;
          }
          await delay(15);
        }
        expect(fastSeen).toBe(3);
        expect(up.requests).toHaveLength(upstreamBefore);

        // The endpoint heals: the first successful probe recovers, without a restart.
        const beforeRecovery = fake.requests.length;
        fake.setBehavior({ kind: 'token', expiresIn: 300 });
        const ok = await pollUntil(
          () => call(),
          (r) => r.status === 200,
        );
        expect(ok.status).toBe(200);
        expect(fake.issuedTokens).toHaveLength(2);
        expect(fake.requests).toHaveLength(beforeRecovery + 1);
        expect(ok.json<FaultEcho>().authorization).toBe(`Bearer ${fake.issuedTokens[1]}`);
        expect(fake.issuedTokens[1]).not.toBe(fake.issuedTokens[0]);
        const ready = await readyz();
        expect(ready).toMatchObject({ status: 'ready', credentials: { orders: 'fresh' } });
        expect(ready.last_errors).toBeUndefined();
        expect(await metric('token_injector_credential_state', 'credential="orders",state="fresh"')).toBe(1);
        expect(
          await metric('token_injector_credential_last_error', `credential="orders",code="${failCode}"`),
        ).toBeUndefined();
        expect((await admin('/healthz')).status).toBe(200);
      },
    );
  });
});

describe('upstream faults', () => {
  /** Warms the cache: returns the first token, as the upstream saw it. */
  async function warm(): Promise<string> {
    const res = await call();
    expect(res.status).toBe(200);
    return res.json<FaultEcho>().authorization!;
  }

  it('401 invalid_token: the token is dropped, a new one fetched, and the request retried once with the same body', async () => {
    await start({}, { replay_buffer: '1KiB' });
    const refused = await warm();
    up.setBehavior((req) => (req.authorization === refused ? invalidToken() : { kind: 'echo' }));
    const body = Buffer.from(Array.from({ length: 700 }, (_, i) => (i * 7 + 3) % 256));
    const before = up.requests.length;
    const res = await call({
      method: 'POST',
      body,
      headers: { 'content-type': 'application/octet-stream', 'x-request-id': 'replay-1' },
    });
    expect(res.status).toBe(200);
    const attempts = up.requests.slice(before);
    expect(attempts).toHaveLength(2);
    expect(attempts[0]!.authorization).toBe(refused);
    expect(attempts[1]!.authorization).toBe(`Bearer ${fake.issuedTokens[1]}`);
    for (const attempt of attempts) {
      expect(attempt.method).toBe('POST');
      expect(attempt.body.equals(body)).toBe(true);
      expect(attempt.headers['content-length']).toBe(String(body.length));
      expect(attempt.headers['x-request-id']).toBe('replay-1');
    }
    expect(res.json<FaultEcho>().authorization).toBe(`Bearer ${fake.issuedTokens[1]}`);
    expect(fake.requests).toHaveLength(2);
    // The new token stays cached.
    expect((await call()).json<FaultEcho>().authorization).toBe(`Bearer ${fake.issuedTokens[1]}`);
    expect(fake.requests).toHaveLength(2);
  });

  it('a second 401 goes to the app as it is; never more than one retry', async () => {
    await start({}, { replay_buffer: '1KiB' });
    await warm();
    up.setBehavior(invalidToken());
    const before = up.requests.length;
    const res = await call({ method: 'POST', body: Buffer.from('{"small":true}') });
    expect(res.status).toBe(401);
    expect(res.headers['www-authenticate']).toBe('Bearer error="invalid_token"');
    expect(res.json()).toEqual({ error: 'invalid_token' });
    expect(up.requests.slice(before).map((r) => r.authorization)).toEqual([
      `Bearer ${fake.issuedTokens[0]}`,
      `Bearer ${fake.issuedTokens[1]}`,
    ]);
    expect(fake.requests).toHaveLength(2);
    // The second token was refused as well: rather than a new token per request, it is kept for a
    // backoff step (retry.initial_backoff, 50 ms here), then a third is fetched.
    up.setBehavior({ kind: 'echo' });
    let next = await call();
    while (next.json<FaultEcho>().authorization === `Bearer ${fake.issuedTokens[1]}`) next = await call();
    expect(next.json<FaultEcho>().authorization).toBe(`Bearer ${fake.issuedTokens[2]}`);
    expect(fake.requests).toHaveLength(3);
  });

  it.each<[string, () => Buffer | Readable]>([
    ['larger than replay_buffer', () => Buffer.alloc(4096, 0x7a)],
    ['chunked (no Content-Length)', () => Readable.from([Buffer.from('part-1;'), Buffer.from('part-2')])],
  ])(
    'a body %s is not retried: the 401 goes to the app, but the token is still dropped',
    async (_name, body) => {
      await start({}, { replay_buffer: '1KiB' });
      const refused = await warm();
      up.setBehavior(invalidToken());
      const before = up.requests.length;
      const res = await call({ method: 'POST', body: body() });
      expect(res.status).toBe(401);
      expect(res.json()).toEqual({ error: 'invalid_token' });
      const attempts = up.requests.slice(before);
      expect(attempts).toHaveLength(1);
      expect(attempts[0]!.authorization).toBe(refused);
      expect(attempts[0]!.body.length).toBeGreaterThan(0);
      expect(fake.requests).toHaveLength(1);
      up.setBehavior({ kind: 'echo' });
      const next = await call();
      expect(fake.requests).toHaveLength(2);
      expect(next.json<FaultEcho>().authorization).toBe(`Bearer ${fake.issuedTokens[1]}`);
    },
  );

  it('retry_on_401: any 401 drops the token and retries once; without it a plain 401 keeps the token', async () => {
    proxy = await startInjector({
      credentials: Object.fromEntries(
        ['strict', 'lenient'].map((name) => [
          name,
          {
            token_endpoint: fake.url,
            grant_type: 'client_credentials',
            client_id: `${name}-client`,
            client_secret: CLIENT_SECRET,
          },
        ]),
      ),
      routes: [
        {
          name: 'strict',
          match: { host: 'strict.test' },
          upstream: up.url,
          credential: 'strict',
          retry_on_401: true,
        },
        { name: 'lenient', match: { host: 'lenient.test' }, upstream: up.url, credential: 'lenient' },
      ],
    });
    const get = (host: string) => call({ headers: { host } });
    const strictToken = (await get('strict.test')).json<FaultEcho>().authorization!;
    const lenientToken = (await get('lenient.test')).json<FaultEcho>().authorization!;
    const refused = new Set([strictToken, lenientToken]);
    const basic: FaultBehavior = {
      kind: 'respond',
      status: 401,
      headers: { 'www-authenticate': 'Basic realm="api"' },
      body: 'who are you?',
    };
    up.setBehavior((req) => (refused.has(req.authorization!) ? basic : { kind: 'echo' }));

    let before = up.requests.length;
    const strict = await get('strict.test');
    expect(strict.status).toBe(200);
    expect(up.requests.slice(before).map((r) => r.authorization)).toEqual([
      strictToken,
      `Bearer ${fake.issuedTokens[2]}`,
    ]);
    expect(fake.requests).toHaveLength(3);

    before = up.requests.length;
    const lenient = await get('lenient.test');
    expect(lenient.status).toBe(401);
    expect(lenient.text).toBe('who are you?');
    expect(up.requests.slice(before).map((r) => r.authorization)).toEqual([lenientToken]);
    // No invalid_token: the token is kept.
    expect((await get('lenient.test')).status).toBe(401);
    expect(up.requests.at(-1)!.authorization).toBe(lenientToken);
    expect(fake.requests).toHaveLength(3);

    // retry_on_401 never loops either.
    up.setBehavior(basic);
    before = up.requests.length;
    expect((await get('strict.test')).status).toBe(401);
    expect(up.requests.length - before).toBe(2);
    expect(fake.requests).toHaveLength(4);
  });

  it('a redirect to another host is passed to the app, never followed', async () => {
    const other = await startFaultUpstream();
    others.push(other);
    up.setBehavior({
      kind: 'respond',
      status: 302,
      headers: { location: `${other.url}/collect?from=proxy` },
    });
    await start();
    const res = await call({ method: 'POST', body: Buffer.from('payload') });
    expect(res.status).toBe(302);
    expect(res.headers['location']).toBe(`${other.url}/collect?from=proxy`);
    expect(up.requests).toHaveLength(1);
    expect(other.requests).toHaveLength(0);
    expect(other.totalConnections).toBe(0);
  });

  it('an upstream that never sends headers: 504 upstream_timeout after response_timeout, socket closed', async () => {
    up.setBehavior({ kind: 'hang' });
    await start({}, { response_timeout: '300ms' });
    const res = await call();
    expect(res.status).toBe(504);
    expect(res.json()).toMatchObject({ error: 'upstream_timeout', route: 'orders' });
    expect(res.ms).toBeGreaterThanOrEqual(250);
    expect(res.ms).toBeLessThan(3_000);
    expect(up.requests).toHaveLength(1);
    await up.idle();
    await expectHealthy();
  });

  it('an upstream that accepts TCP but never completes TLS: 504 upstream_timeout after connect_timeout', async () => {
    // The connect timeout covers the TLS handshake: a listener that says nothing holds it forever.
    const sockets = new Set<Socket>();
    let accepted = 0;
    let allClosed: () => void = () => {};
    const closed = new Promise<void>((resolve) => {
      allClosed = resolve;
    });
    const silent = createTcpServer((socket) => {
      accepted++;
      sockets.add(socket);
      socket.resume(); // read (and ignore) the ClientHello, so the client's FIN is seen
      socket.on('close', () => {
        sockets.delete(socket);
        if (sockets.size === 0) allClosed();
      });
    });
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    others.push({
      close: () =>
        new Promise<void>((resolve) => {
          for (const socket of sockets) socket.destroy();
          silent.close(() => resolve());
        }),
    });
    const port = (silent.address() as AddressInfo).port;
    await start(
      {},
      { upstream: `https://127.0.0.1:${port}`, connect_timeout: '300ms', response_timeout: '10s' },
    );
    const res = await call();
    expect(res.status).toBe(504);
    expect(res.json()).toMatchObject({ error: 'upstream_timeout', route: 'orders' });
    expect(res.json()['detail']).toContain('UND_ERR_CONNECT_TIMEOUT');
    expect(res.ms).toBeGreaterThanOrEqual(250);
    expect(res.ms).toBeLessThan(3_000);
    expect(accepted).toBe(1);
    // The proxy gave the connection up rather than leaving it open.
    await closed;
    expect(sockets.size).toBe(0);
    expect((await admin('/healthz')).status).toBe(200);
  });

  it('connection refused: 502 upstream_unreachable as JSON', async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    await start({}, { upstream: `http://127.0.0.1:${port}` });
    const res = await call();
    expect(res.status).toBe(502);
    expect(res.headers['content-type']).toBe('application/json');
    expect(res.json()).toMatchObject({ error: 'upstream_unreachable', route: 'orders' });
    expect(res.json()['detail']).toContain('ECONNREFUSED');
    expect((await admin('/healthz')).status).toBe(200);
    expect((await call()).status).toBe(502);
    expect(fake.requests).toHaveLength(1);
  });

  it.each<[string, FaultBehavior]>([
    ['with Content-Length', { kind: 'die-mid-body', sendBytes: 16_384, declaredBytes: 1_000_000 }],
    ['chunked', { kind: 'die-mid-body', sendBytes: 16_384 }],
    ['by a TCP reset', { kind: 'die-mid-body', sendBytes: 16_384, declaredBytes: 1_000_000, reset: true }],
  ])('an upstream dying mid-body (%s) ends the client response; no socket leaks', async (_name, behavior) => {
    up.setBehavior(behavior);
    await start();
    const outcomes = await Promise.all(
      Array.from({ length: 10 }, async () => {
        const res = await request(`${proxy!.url}/download`, { headers: { host: HOST } });
        let bytes = 0;
        try {
          for await (const chunk of res.body) bytes += (chunk as Buffer).length;
          return { status: res.statusCode, bytes, errored: false };
        } catch {
          return { status: res.statusCode, bytes, errored: true };
        }
      }),
    );
    for (const o of outcomes) {
      expect(o.status).toBe(200);
      expect(o.errored).toBe(true);
      expect(o.bytes).toBeLessThanOrEqual(16_384);
    }
    expect(up.requests).toHaveLength(10);
    await up.idle();
    await expectHealthy();
    await up.idle();
    expect(up.openConnections).toBe(0);
  });

  it('a client that leaves mid-stream: the proxy closes the upstream connection', async () => {
    up.setBehavior({ kind: 'drip', chunkBytes: 1024, intervalMs: 10 });
    await start();
    const res = await request(`${proxy!.url}/stream`, { headers: { host: HOST } });
    expect(res.statusCode).toBe(200);
    for await (const _chunk of res.body) {
      expect(up.openConnections).toBe(1);
      break; // one chunk, then leave
    }
    await up.idle();
    await expectHealthy();
  });
});
