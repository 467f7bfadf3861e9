// Issue 14, metrics on a running proxy's /metrics: Node's process metrics under their standard
// names, the token's expiry as a Unix timestamp, and every state of every credential (1 for the
// current one, 0 for the others). Real authorization server, real verifying upstream.
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CREDENTIAL_STATES } from '../../src/metrics/metrics.js';
import { type AuthServer, BASIC_CLIENT, startAuthServer } from '../support/auth-server.js';
import { samples } from '../support/exposition.js';
import { plainRequest } from '../support/http-client.js';
import { startInjector, type TestInjector } from '../support/injector.js';
import { watchSecret } from '../support/leak-watch.js';
import { credentialFor } from '../support/stack.js';
import { startUpstream, type Upstream } from '../support/upstream.js';

let auth: AuthServer;
let up: Upstream;
let proxy: TestInjector;

beforeAll(async () => {
  auth = await startAuthServer();
  up = await startUpstream({ issuer: auth.issuer, jwksUri: auth.jwksUri, audience: auth.audience });
  proxy = await startInjector({
    credentials: {
      orders: credentialFor(auth),
      // Never used: no token, no failure.
      idle: credentialFor(auth),
      // The authorization server refuses this secret.
      broken: credentialFor(auth, { ...BASIC_CLIENT, secret: 'not-the-secret-77c1' }),
    },
    routes: [
      { name: 'orders', match: { host: 'orders.test' }, upstream: up.url, credential: 'orders' },
      { name: 'broken', match: { host: 'broken.test' }, upstream: up.url, credential: 'broken' },
    ],
  });
  expect((await plainRequest(proxy.url, '/v1/orders', { headers: { host: 'orders.test' } })).status).toBe(
    200,
  );
  expect((await plainRequest(proxy.url, '/v1/orders', { headers: { host: 'broken.test' } })).status).toBe(
    502,
  );
});

afterAll(async () => {
  await proxy?.close();
  await up?.close();
  for (const token of auth?.issuedTokens ?? []) watchSecret(token);
  await auth?.close();
});

async function scrape(): Promise<string> {
  const res = await request(`${proxy.adminUrl}/metrics`);
  expect(res.statusCode).toBe(200);
  return res.body.text();
}

describe('/metrics of a running proxy', () => {
  it("has Node's process metrics under their standard names, none under the product prefix", async () => {
    const text = await scrape();
    for (const name of [
      'process_cpu_seconds_total',
      'process_resident_memory_bytes',
      'process_open_fds',
      'nodejs_eventloop_lag_seconds',
      'nodejs_heap_size_used_bytes',
      'nodejs_gc_duration_seconds',
    ]) {
      expect(text).toContain(`# TYPE ${name} `);
    }
    expect(samples(text, 'process_resident_memory_bytes')['']).toBeGreaterThan(0);
    expect(text).not.toMatch(/^(# (TYPE|HELP) )?token_injector_(process|nodejs)_/m);
  });

  it("exports the token's expiry as a Unix timestamp: the exp of the token the upstream got", async () => {
    const exp = up.requests.find((r) => r.tokenValid)!.claims!.exp!;
    const expiry = samples(await scrape(), 'token_injector_token_expiry_timestamp_seconds');
    // Only the credential holding a token has one.
    expect(Object.keys(expiry)).toEqual(['{credential="orders"}']);
    // The proxy counts the lifetime from the answer's arrival, the server from its own clock.
    expect(Math.abs(expiry['{credential="orders"}']! - exp)).toBeLessThanOrEqual(2);
    // Steady between scrapes, unlike the seconds left.
    expect(samples(await scrape(), 'token_injector_token_expiry_timestamp_seconds')).toEqual(expiry);
  });

  it('exports every state of every credential, 1 for the current one and 0 for the others', async () => {
    const states = samples(await scrape(), 'token_injector_credential_state');
    const expected: Record<string, number> = {};
    for (const [credential, current] of [
      ['orders', 'fresh'],
      ['idle', 'empty'],
      ['broken', 'failing'],
    ] as const) {
      for (const state of CREDENTIAL_STATES) {
        expected[`{credential="${credential}",state="${state}"}`] = state === current ? 1 : 0;
      }
    }
    expect(states).toEqual(expected);
  });
});
