// Issue 10 (outside review), token side: an upstream that refuses every token with
// `401 invalid_token` used to cost one token request per app request (300 requests at concurrency
// 10 made 64 token requests). Now concurrent refusals of one token share one refetch, and a
// replacement that is refused too is kept for a backoff step: the app gets the upstream's 401 and
// the token endpoint gets nothing until the step has passed; then one refetch.
import { request } from 'undici';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { nextArrival } from '../support/arrivals.js';
import { type FakeTokenEndpoint, startFakeTokenEndpoint } from '../support/fake-token-endpoint.js';
import { type FaultUpstream, startFaultUpstream } from '../support/fault-upstream.js';
import { startInjector, type TestInjector } from '../support/injector.js';
import { watchSecret } from '../support/leak-watch.js';

const HOST = 'orders.test';
const REFUSED = { 'www-authenticate': 'Bearer error="invalid_token", error_description="nope"' };

let fake: FakeTokenEndpoint;
let up: FaultUpstream;
let proxy: TestInjector | undefined;

beforeEach(async () => {
  fake = await startFakeTokenEndpoint();
  up = await startFaultUpstream({ kind: 'respond', status: 401, headers: REFUSED, body: 'refused' });
});
afterEach(async () => {
  await proxy?.close();
  proxy = undefined;
  for (const token of fake.issuedTokens) watchSecret(token);
  await fake.close();
  await up.close();
});

async function start(retry: object): Promise<void> {
  proxy = await startInjector({
    credentials: {
      orders: {
        token_endpoint: fake.url,
        grant_type: 'client_credentials',
        client_id: 'storm-client',
        client_secret: 'storm-client-secret-4c1d8e',
        retry,
      },
    },
    routes: [{ name: 'orders', match: { host: HOST }, upstream: up.url, credential: 'orders' }],
  });
}

async function call(): Promise<{ status: number; text: string; wwwAuthenticate: unknown }> {
  const res = await request(`${proxy!.url}/v1/orders`, { headers: { host: HOST } });
  return {
    status: res.statusCode,
    text: await res.body.text(),
    wwwAuthenticate: res.headers['www-authenticate'],
  };
}

/** `total` requests, `concurrency` at a time; the statuses in completion order. */
async function storm(total: number, concurrency: number): Promise<number[]> {
  const statuses: number[] = [];
  let started = 0;
  const worker = async () => {
    while (started < total) {
      started++;
      statuses.push((await call()).status);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return statuses;
}

/**
 * Calls (each answered 401) one after the other until one of them makes the proxy request a
 * token: how many calls that took, when the token request came, and when the last call started.
 */
async function callUntilTokenRequest(): Promise<{
  calls: number;
  fetchedAt: number;
  lastCallStartedAt: number;
}> {
  let fetchedAt: number | undefined;
  void nextArrival(fake.requests).then(() => {
    fetchedAt = performance.now();
  });
  let calls = 0;
  let lastCallStartedAt = 0;
  while (fetchedAt === undefined) {
    lastCallStartedAt = performance.now();
    expect((await call()).status).toBe(401);
    calls++;
  }
  return { calls, fetchedAt, lastCallStartedAt };
}

describe('an upstream that refuses every token (401 invalid_token)', () => {
  it('300 requests at concurrency 10: two token requests, every app request gets the 401', async () => {
    // A step far longer than the storm, so the count does not depend on the machine's speed.
    await start({ initial_backoff: '1m', max_backoff: '1m' });
    const statuses = await storm(300, 10);
    expect(statuses).toHaveLength(300);
    expect(new Set(statuses)).toEqual(new Set([401]));
    // The first token (one fetch for the 10 concurrent cold requests), refused; one replacement
    // for all 10 refusals, refused too and then held.
    expect(fake.requests).toHaveLength(2);
    // Only requests refused with the first token were retried (with the replacement), at most once
    // each; one refused with the first token after the replacement was held was not retried.
    const [first, second] = fake.issuedTokens;
    const withFirst = up.requests.filter((r) => r.authorization === `Bearer ${first}`).length;
    const retries = up.requests.length - 300;
    expect(withFirst).toBeGreaterThanOrEqual(1);
    expect(withFirst).toBeLessThanOrEqual(10);
    expect(retries).toBeGreaterThanOrEqual(1);
    expect(retries).toBeLessThanOrEqual(withFirst);
    expect(up.requests.filter((r) => r.authorization === `Bearer ${second}`)).toHaveLength(
      300 - withFirst + retries,
    );
  });

  it('passes the upstream’s own 401 to the app while the replacement is held', async () => {
    await start({ initial_backoff: '1m', max_backoff: '1m' });
    await call();
    const res = await call();
    expect(res.status).toBe(401);
    expect(res.text).toBe('refused');
    expect(res.wwwAuthenticate).toBe(REFUSED['www-authenticate']);
  });

  it('after the backoff step, one refetch; its token refused too, the next step is longer', async () => {
    await start({ initial_backoff: '300ms', max_backoff: '10s' });
    const heldAt = performance.now();
    expect((await call()).status).toBe(401); // first token, refused; replacement, refused: held
    expect(fake.requests).toHaveLength(2);

    // Requests keep coming; the third token request comes once the 300 ms step has passed.
    const step1 = await callUntilTokenRequest();
    expect(step1.fetchedAt - heldAt).toBeGreaterThanOrEqual(300);
    expect(step1.calls).toBeGreaterThan(1); // the requests during the step did not fetch
    expect(fake.requests).toHaveLength(3);

    // The third token was refused too (no retry: the app got that 401), during the call that
    // fetched it: held for 600 ms from then.
    const step2 = await callUntilTokenRequest();
    expect(step2.fetchedAt - step1.lastCallStartedAt).toBeGreaterThanOrEqual(600);
    expect(fake.requests).toHaveLength(4);
  });
});
