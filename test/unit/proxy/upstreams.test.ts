import { describe, expect, it } from 'vitest';
import { Upstreams } from '../../../src/proxy/upstreams.js';
import { routesTo } from '../../support/routes.js';

describe('Upstreams', () => {
  it('creates no pool before a route carries a request, then one per origin, shared by routes that agree', async () => {
    const routes = routesTo({
      r0: 'https://a.example.com',
      r1: 'https://a.example.com/base',
      r2: 'https://b.example.com',
    });
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
    const routes = routesTo(
      Object.fromEntries(Array.from({ length: 10_000 }, (_, i) => [`r${i}`, `https://u${i}.example.com`])),
    );
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
