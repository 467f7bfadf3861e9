import { describe, expect, it } from 'vitest';
import { Http2Upstream } from '../../../src/proxy/http2-upstream.js';
import { Upstreams } from '../../../src/proxy/upstreams.js';
import { routeConfig } from '../fixtures.js';

describe('Upstreams with upstream_protocol', () => {
  it('gives an http2 route its own HTTP/2 dispatcher, apart from an http1 route to the same origin', async () => {
    const h1 = routeConfig('h1', { host: 'a.test' });
    const h2 = routeConfig('h2', { host: 'b.test' }, { upstreamProtocol: 'http2' });
    const h2Too = routeConfig('h2-too', { host: 'c.test' }, { upstreamProtocol: 'http2' });
    const upstreams = new Upstreams([h1, h2, h2Too]);
    try {
      const one = upstreams.forRoute(h1);
      const two = upstreams.forRoute(h2);
      expect(one).not.toBeInstanceOf(Http2Upstream);
      expect(two).toBeInstanceOf(Http2Upstream);
      // Routes that agree on origin, protocol and settings share the session.
      expect(upstreams.forRoute(h2Too)).toBe(two);
      expect(upstreams.poolCount).toBe(2);
    } finally {
      await upstreams.close();
    }
  });
});
