// Issue 10 (outside review), token side, the cache:
// - an idle credential with short-lived tokens is not refreshed forever (one token request a
//   second with no traffic); a `prefetch: true` one is kept fresh;
// - token_cache_misses_total counts requests that found no usable token, not prefetches;
// - a request-header input sent twice is refused (Node would join the values with ", ").
import { setTimeout as delay } from 'node:timers/promises';
import { request } from 'undici';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { nextArrival } from '../support/arrivals.js';
import { type FakeTokenEndpoint, startFakeTokenEndpoint } from '../support/fake-token-endpoint.js';
import { type FaultUpstream, startFaultUpstream } from '../support/fault-upstream.js';
import { plainRequest } from '../support/http-client.js';
import { startInjector, type TestInjector } from '../support/injector.js';
import { watchSecret } from '../support/leak-watch.js';

let fake: FakeTokenEndpoint;
let up: FaultUpstream;
let proxy: TestInjector | undefined;

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
});

function credential(clientId: string, extra: object = {}) {
  return {
    token_endpoint: fake.url,
    grant_type: 'client_credentials',
    client_id: clientId,
    client_secret: `${clientId}-secret-1f9a3c`,
    auth_method: 'client_secret_post', // the client id in the form tells the credentials apart
    ...extra,
  };
}

function route(name: string) {
  return { name, match: { host: `${name}.test` }, upstream: up.url, credential: name };
}

async function call(name: string, headers: Record<string, string | string[]> = {}) {
  return plainRequest(proxy!.url, '/v1/things', { headers: { host: `${name}.test`, ...headers } });
}

const tokenRequestsOf = (clientId: string) => fake.requests.filter((r) => r.form['client_id'] === clientId);

/** Rejects, naming `what`, if the promise has not settled within 10 s. */
async function within<T>(promise: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), 10_000);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

async function metric(name: string, credentialName: string): Promise<number> {
  const text = await (await request(`${proxy!.adminUrl}/metrics`)).body.text();
  const line = text
    .split('\n')
    .find((l) => l.startsWith(`token_injector_${name}{credential="${credentialName}"}`));
  return line ? Number(line.split(' ').at(-1)) : 0;
}

/** Bounded polling, only for what the proxy emits no event for (its readiness). */
async function waitUntilReady(): Promise<void> {
  for (let i = 0; i < 500; i++) {
    if ((await request(`${proxy!.adminUrl}/readyz`)).statusCode === 200) return;
    await delay(10);
  }
  throw new Error('timed out waiting for /readyz');
}

describe('refresh ahead only for tokens in use', () => {
  it('an idle credential with 1 s tokens asks for no token after the first; a prefetch one keeps refreshing', async () => {
    // expires_in 1: without traffic, each credential used to get a new token every second.
    fake.setBehavior({ kind: 'token', expiresIn: 1 });
    proxy = await startInjector({
      credentials: {
        idle: credential('idle-client'),
        warm: credential('warm-client', { prefetch: true }),
      },
      routes: [route('idle'), route('warm')],
    });
    expect((await call('idle')).status).toBe(200);
    expect(tokenRequestsOf('idle-client')).toHaveLength(1);

    // The prefetch credential's refreshes are the clock: each comes at least a second after the
    // previous one, so after three of them the idle credential has passed two refresh points.
    const warmBefore = tokenRequestsOf('warm-client').length;
    for (let i = 0; i < 3; i++) {
      await within(
        nextArrival(fake.requests, (r) => r.form['client_id'] === 'warm-client'),
        'a refresh of the prefetch credential',
      );
    }
    expect(tokenRequestsOf('warm-client').length).toBe(warmBefore + 3);
    expect(tokenRequestsOf('idle-client')).toHaveLength(1);

    // The next request renews the idle token on demand.
    expect((await call('idle')).status).toBe(200);
    expect(tokenRequestsOf('idle-client')).toHaveLength(2);
  });
});

describe('token_cache_misses_total', () => {
  it('does not count a prefetch, and counts a cold request exactly once', async () => {
    proxy = await startInjector({
      credentials: {
        warm: credential('warm-client', { prefetch: true }),
        cold: credential('cold-client'),
      },
      routes: [route('warm'), route('cold')],
    });
    await waitUntilReady();
    expect(await metric('token_cache_misses_total', 'warm')).toBe(0);

    expect((await call('warm')).status).toBe(200);
    expect((await call('cold')).status).toBe(200);
    expect((await call('cold')).status).toBe(200);
    expect(await metric('token_cache_misses_total', 'warm')).toBe(0);
    expect(await metric('token_cache_hits_total', 'warm')).toBe(1);
    expect(await metric('token_cache_misses_total', 'cold')).toBe(1);
    expect(await metric('token_cache_hits_total', 'cold')).toBe(1);
    expect(fake.requests).toHaveLength(2);
  });
});

describe('a request-header input sent more than once', () => {
  it('is refused with 400 assertion_invalid: no token request, no upstream call', async () => {
    proxy = await startInjector({
      credentials: {
        obo: credential('obo-client', {
          grant_type: 'token_exchange',
          subject_token: { source: 'request_header', header: 'X-User-Token', type: 'access_token' },
        }),
      },
      routes: [route('obo')],
    });
    // Node joins repeated headers: this used to exchange the subject token "user-a, user-b".
    const res = await call('obo', { 'x-user-token': ['user-a', 'user-b'] });
    expect(res.status).toBe(400);
    expect(res.json()).toMatchObject({ error: 'assertion_invalid', route: 'obo' });
    expect(res.text).not.toContain('user-a');
    expect(fake.requests).toHaveLength(0);
    expect(up.requests).toHaveLength(0);

    // Sent once, it is exchanged as it is.
    expect((await call('obo', { 'x-user-token': 'user-a' })).status).toBe(200);
    expect(fake.requests.map((r) => r.form['subject_token'])).toEqual(['user-a']);
  });
});
