import { Agent, request } from 'undici';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { waitReady } from '../support/cli-process.js';
import { startInjector, type TestInjector } from '../support/injector.js';
import { credentialFor, type Stack, startStack } from '../support/stack.js';

let stack: Stack;
let proxy: TestInjector | undefined;
const client = new Agent({ connections: 256 });

beforeAll(async () => {
  stack = await startStack();
});
afterEach(async () => {
  await proxy?.close();
  proxy = undefined;
});
afterAll(async () => {
  await client.close();
  await stack.close();
});

function route() {
  return [
    { name: 'orders', match: { host: 'orders.test' }, upstream: stack.upstream.url, credential: 'orders' },
  ];
}

async function get(path = '/v1/x'): Promise<number> {
  const res = await request(`${proxy!.url}${path}`, { headers: { host: 'orders.test' }, dispatcher: client });
  await res.body.dump();
  return res.statusCode;
}

describe('token cache', () => {
  it('200 concurrent cold requests cause exactly one token request, and all reach the upstream with it', async () => {
    proxy = await startInjector({ credentials: { orders: credentialFor(stack.auth) }, routes: route() });
    const tokenRequestsBefore = stack.auth.tokenRequests.length;
    const upstreamBefore = stack.upstream.requests.length;
    const statuses = await Promise.all(Array.from({ length: 200 }, () => get()));
    expect(statuses.every((s) => s === 200)).toBe(true);
    expect(stack.auth.tokenRequests.length - tokenRequestsBefore).toBe(1);
    const received = stack.upstream.requests.slice(upstreamBefore);
    expect(received).toHaveLength(200);
    expect(new Set(received.map((r) => r.headers.authorization)).size).toBe(1);
    expect(received.every((r) => r.tokenValid)).toBe(true);
  });

  it('prefetch: the token is fetched at start and /readyz waits for it', async () => {
    const before = stack.auth.tokenRequests.length;
    proxy = await startInjector({
      credentials: { orders: credentialFor(stack.auth, undefined, { prefetch: true }) },
      routes: route(),
    });
    // Polled (bounded): readiness is only observable from outside, as a kubelet sees it.
    await waitReady(proxy.adminUrl);
    expect(stack.auth.tokenRequests.length - before).toBe(1);
    expect(await get()).toBe(200);
    expect(stack.auth.tokenRequests.length - before).toBe(1);
  });

  it('/readyz is 503 while a prefetch credential has no token', async () => {
    proxy = await startInjector({
      credentials: {
        orders: credentialFor(stack.auth, undefined, {
          prefetch: true,
          token_endpoint: 'http://127.0.0.1:9/unreachable',
        }),
      },
      routes: route(),
    });
    const ready = await request(`${proxy.adminUrl}/readyz`);
    expect(ready.statusCode).toBe(503);
    expect(await ready.body.json()).toMatchObject({ status: 'not_ready', waiting_for_tokens: ['orders'] });
  });

  it('short-lived tokens under steady traffic are refreshed ahead of expiry; no request waits or carries an expired token', async () => {
    const short = await startStack({ accessTokenTtlSeconds: 3 });
    try {
      proxy = await startInjector({
        credentials: { orders: credentialFor(short.auth) },
        routes: [
          {
            name: 'orders',
            match: { host: 'orders.test' },
            upstream: short.upstream.url,
            credential: 'orders',
          },
        ],
      });
      // Back-to-back traffic until the third token has been used: two refreshes under load.
      const statuses: number[] = [];
      for (let i = 0; i < 20_000; i++) {
        statuses.push(await get());
        const tokens = new Set(short.upstream.requests.map((r) => r.headers.authorization));
        if (tokens.size >= 3) break;
      }
      expect(
        new Set(short.upstream.requests.map((r) => r.headers.authorization)).size,
      ).toBeGreaterThanOrEqual(3);
      expect(statuses.every((s) => s === 200)).toBe(true);
      // The verifying upstream rejects an expired token: every one it saw was valid.
      expect(short.upstream.requests.every((r) => r.tokenValid)).toBe(true);
      const metrics = await (await request(`${proxy.adminUrl}/metrics`)).body.text();
      // Only the first, cold request waited; the rest were served from the cache while refreshes ran.
      expect(metrics).toMatch(/token_injector_token_cache_misses_total\{credential="orders"\} 1\n/);
      expect(metrics).toMatch(/token_injector_token_refreshes_total\{credential="orders"\} [2-9]/);
    } finally {
      await proxy?.close();
      proxy = undefined;
      await short.close();
    }
  });
});
