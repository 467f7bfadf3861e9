import { describe, expect, it } from 'vitest';
import { Upstreams } from '../../../src/proxy/upstreams.js';
import { configFrom } from '../../support/injector.js';

function routesTo(origins: readonly string[]) {
  return configFrom(
    {
      credentials: {
        orders: {
          token_endpoint: 'https://idp.example.com/oauth2/token',
          grant_type: 'client_credentials',
          client_id: 'id',
          client_secret: '${env:UPSTREAMS_TEST_SECRET}',
        },
      },
      routes: origins.map((upstream, i) => ({
        name: `r${i}`,
        match: { host: `h${i}.example.com` },
        upstream,
        credential: 'orders',
      })),
    },
    { UPSTREAMS_TEST_SECRET: 'secret' },
  ).routes;
}

describe('Upstreams', () => {
  it('creates no pool before a route carries a request, then one per origin, shared by routes that agree', async () => {
    const routes = routesTo(['https://a.example.com', 'https://a.example.com/base', 'https://b.example.com']);
    const upstreams = new Upstreams(routes);
    try {
      expect(upstreams.poolCount).toBe(0);
      const a = upstreams.forRoute(routes[0]!);
      expect(upstreams.poolCount).toBe(1);
      // Same origin and settings, another base path: the same pool and its warm connections.
      expect(upstreams.forRoute(routes[1]!)).toBe(a);
      expect(upstreams.poolCount).toBe(1);
      expect(upstreams.forRoute(routes[2]!)).not.toBe(a);
      expect(upstreams.poolCount).toBe(2);
      // Looked up again, not created again.
      expect(upstreams.forRoute(routes[0]!)).toBe(a);
      expect(upstreams.poolCount).toBe(2);
    } finally {
      await upstreams.close();
    }
  });

  it('10 000 routes with their own origins create no pool until used', async () => {
    const routes = routesTo(Array.from({ length: 10_000 }, (_, i) => `https://u${i}.example.com`));
    const upstreams = new Upstreams(routes);
    try {
      expect(upstreams.poolCount).toBe(0);
      upstreams.forRoute(routes[9_999]!);
      expect(upstreams.poolCount).toBe(1);
    } finally {
      await upstreams.close();
    }
  });
});
