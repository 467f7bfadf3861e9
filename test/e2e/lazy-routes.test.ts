/**
 * Issue 12: many configured routes, few carrying traffic. Per-route state (token lookup, metric
 * children, upstream pools) is made on a route's first request, so idle routes cost neither
 * memory nor series, while the routes in use still get the right token and upstream, and
 * prefetched credentials are still fetched at start-up.
 */

import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { POST_CLIENT } from '../support/auth-server.js';
import { waitReady } from '../support/cli-process.js';
import { startInjector, type TestInjector } from '../support/injector.js';
import { credentialFor, type Stack, startStack } from '../support/stack.js';
import { startUpstream, type Upstream } from '../support/upstream.js';

const ROUTES = 2_000;

let stack: Stack;
/** A second real upstream: every other route goes there. */
let other: Upstream;

beforeAll(async () => {
  stack = await startStack();
  other = await startUpstream({
    issuer: stack.auth.issuer,
    jwksUri: stack.auth.jwksUri,
    audience: stack.auth.audience,
  });
});
afterAll(async () => {
  await other?.close();
  await stack?.close();
});

/**
 * Route i: an exact host, a `*.` wildcard or a path prefix (by i % 3); upstream A or B (i % 2);
 * every fifth route asks for `orders.read` only instead of the credential's two scopes.
 */
function manyRoutes(count: number, upstreams: readonly string[]) {
  return Array.from({ length: count }, (_, i) => ({
    name: `r${i}`,
    match:
      i % 3 === 0
        ? { host: `svc-${i}.test` }
        : i % 3 === 1
          ? { host: `*.zone-${i}.test` }
          : { host: 'api.test', path_prefix: `/p${i}/` },
    upstream: upstreams[i % upstreams.length],
    credential: 'orders',
    ...(i % 5 === 0 ? { scope: 'orders.read' } : {}),
  }));
}

/** Host and path that reach route i of {@link manyRoutes}. */
function addressOf(i: number): { host: string; path: string } {
  if (i % 3 === 0) return { host: `svc-${i}.test`, path: '/v1/x' };
  if (i % 3 === 1) return { host: `app.zone-${i}.test`, path: '/v1/x' };
  return { host: 'api.test', path: `/p${i}/x` };
}

async function metricLines(proxy: TestInjector, name: string): Promise<string[]> {
  const res = await request(`${proxy.adminUrl}/metrics`);
  const text = await res.body.text();
  return text.split('\n').filter((l) => l.startsWith(name));
}

function routesIn(lines: string[]): string[] {
  return [...new Set(lines.map((l) => /route="([^"]+)"/.exec(l)?.[1]).filter((r) => r !== undefined))].sort();
}

describe(`${ROUTES} routes, four with traffic`, () => {
  let proxy: TestInjector;
  const used = [3, 4, 5, 10]; // exact/B/default, wildcard/A/default, prefix/B/read, wildcard/A/read

  beforeAll(async () => {
    proxy = await startInjector({
      credentials: { orders: credentialFor(stack.auth) },
      routes: manyRoutes(ROUTES, [stack.upstream.url, other.url]),
    });
  });
  afterAll(async () => {
    await proxy?.close();
  });

  it('every used route reaches its upstream with a token for its scopes; one token per scope combination', async () => {
    const tokensBefore = stack.auth.tokenRequests.length;
    const [aBefore, bBefore] = [stack.upstream.requests.length, other.requests.length];
    for (const i of used) {
      const { host, path } = addressOf(i);
      for (let n = 0; n < 2; n++) {
        const res = await request(`${proxy.url}${path}`, { headers: { host } });
        await res.body.dump();
        expect(res.statusCode, `route r${i}`).toBe(200);
        const upstream = i % 2 === 0 ? stack.upstream : other;
        const received = upstream.requests.at(-1)!;
        expect(received.path).toBe(path);
        expect(received.tokenValid).toBe(true);
        expect(received.claims?.['scope']).toBe(i % 5 === 0 ? 'orders.read' : 'orders.read orders.write');
      }
    }
    expect(stack.upstream.requests.length - aBefore).toBe(4);
    expect(other.requests.length - bBefore).toBe(4);
    // Four routes, two scope combinations: the routes of one combination share its token.
    const fetched = stack.auth.tokenRequests.slice(tokensBefore).map((r) => r.form['scope']);
    expect(fetched.sort()).toEqual(['orders.read', 'orders.read orders.write']);
  });

  it('/metrics has per-route series only for the routes that carried traffic', async () => {
    const names = used.map((i) => `r${i}`).sort();
    const duration = await metricLines(proxy, 'token_injector_upstream_duration_seconds_count');
    expect(routesIn(duration)).toEqual(names);
    const proxied = await metricLines(proxy, 'token_injector_proxied_requests_total');
    expect(routesIn(proxied)).toEqual(names);
  });
});

describe('prefetch with lazy route state', () => {
  it('a prefetched credential fetches the scopes its routes ask for at start-up, before any request', async () => {
    const before = stack.auth.tokenRequests.length;
    const proxy = await startInjector({
      credentials: { orders: credentialFor(stack.auth, POST_CLIENT, { prefetch: true }) },
      routes: [
        {
          name: 'read',
          match: { host: 'read.test' },
          upstream: stack.upstream.url,
          credential: 'orders',
          scope: 'orders.read',
        },
      ],
    });
    try {
      // Polled (bounded): readiness is only observable from outside, as a kubelet sees it.
      await waitReady(proxy.adminUrl);
      // The route's scope combination, not the credential's default one.
      expect(stack.auth.tokenRequests.slice(before).map((r) => r.form['scope'])).toEqual(['orders.read']);
      const res = await request(`${proxy.url}/v1/x`, { headers: { host: 'read.test' } });
      await res.body.dump();
      expect(res.statusCode).toBe(200);
      expect(stack.auth.tokenRequests.length - before).toBe(1);
    } finally {
      await proxy.close();
    }
  });
});
