/**
 * Edge cases of the router's index (host key groups, per-group lists and prefix tries): each case
 * runs on the table as written, where every group is a short list, and on the same table behind
 * routes that never match (a method no request has) under every host key, so every group is large
 * enough to be a prefix trie.
 */
import { describe, expect, it } from 'vitest';
import type { RouteConfig, RouteMatch } from '../../../src/config/types.js';
import { createRouter, type RequestTarget, type Router } from '../../../src/router/router.js';
import { routeConfig } from '../fixtures.js';

function route(name: string, match: RouteMatch = {}): RouteConfig {
  return routeConfig(name, match);
}

const NEVER = new Set(['NO-SUCH-METHOD']);

/** The table, and the table behind 10 never-matching routes per host key and prefix. */
function routers(routes: RouteConfig[]): [string, Router][] {
  const fillers = routes.flatMap(({ match }) =>
    Array.from({ length: 10 }, (_, i) =>
      route(`filler-${i}`, {
        ...match,
        pathPrefix: `${match.pathPrefix ?? ''}${i % 2 ? '' : '/'}`,
        methods: NEVER,
      }),
    ),
  );
  return [
    ['list', createRouter(routes)],
    ['trie', createRouter([...fillers, ...routes])],
  ];
}

function expectRoutes(routes: RouteConfig[], cases: [Partial<RequestTarget>, string | undefined][]): void {
  for (const [kind, router] of routers(routes)) {
    for (const [partial, name] of cases) {
      const t: RequestTarget = { host: 'api.example.com', port: 443, path: '/', method: 'GET', ...partial };
      expect({ kind, t, name: router(t)?.name }).toEqual({ kind, t, name });
    }
  }
}

describe('createRouter index: the same answers as a scan in order', () => {
  it('an empty prefix matches every path, and a prefix may be the whole path', () => {
    expectRoutes(
      [
        route('empty', { host: 'a.example.com', pathPrefix: '' }),
        route('whole', { pathPrefix: '/v1/orders' }),
      ],
      [
        [{ host: 'a.example.com', path: '/anything?x' }, 'empty'],
        [{ host: 'a.example.com', path: '' }, 'empty'],
        [{ path: '/v1/orders' }, 'whole'],
        [{ path: '/v1/orders?x=1' }, 'whole'],
        [{ path: '/v1/orders/7' }, 'whole'],
        [{ path: '/v1/order' }, undefined],
        [{ path: '/v1/order?s' }, undefined],
      ],
    );
  });

  it('the query ends the path, even for a prefix that has a "?" in it', () => {
    expectRoutes(
      [route('q', { pathPrefix: '/search?' }), route('v1', { pathPrefix: '/v1/' })],
      [
        [{ path: '/search?q=1' }, undefined],
        [{ path: '/search' }, undefined],
        [{ path: '/x?/v1/' }, undefined],
        [{ path: '/v1?/' }, undefined],
        [{ path: '/v1/?/' }, 'v1'],
      ],
    );
  });

  it('a wildcard matches below its suffix at any depth, never the suffix or a look-alike', () => {
    expectRoutes(
      [route('wild', { host: '*.example.com' })],
      [
        [{ host: 'a.example.com' }, 'wild'],
        [{ host: 'a.b.c.example.com' }, 'wild'],
        [{ host: 'example.com' }, undefined],
        [{ host: '.example.com' }, undefined],
        [{ host: 'badexample.com' }, undefined],
        [{ host: 'a.badexample.com' }, undefined],
        [{ host: 'com' }, undefined],
      ],
    );
  });

  it('the earliest route wins across exact, wildcard and host-less routes', () => {
    const routes = [
      route('deep-wild', { host: '*.b.example.com', pathPrefix: '/x' }),
      route('any-host', { pathPrefix: '/shared' }),
      route('exact', { host: 'a.b.example.com' }),
      route('wild', { host: '*.example.com' }),
      route('tld', { host: '*.com' }),
    ];
    expectRoutes(routes, [
      [{ host: 'a.b.example.com', path: '/x/1' }, 'deep-wild'],
      [{ host: 'a.b.example.com', path: '/shared' }, 'any-host'],
      [{ host: 'a.b.example.com', path: '/y' }, 'exact'],
      [{ host: 'c.b.example.com', path: '/y' }, 'wild'],
      [{ host: 'example.com', path: '/y' }, 'tld'],
      [{ host: 'example.org', path: '/shared/1' }, 'any-host'],
      [{ host: 'example.org', path: '/x' }, undefined],
    ]);
  });

  it('routes of one host with nested prefixes, ports and methods: the first in order that fits', () => {
    const routes = [
      route('orders-post', { host: 'api.example.com', pathPrefix: '/v1/orders', methods: new Set(['POST']) }),
      route('v1-tls', { host: 'api.example.com', pathPrefix: '/v1/', port: 8443 }),
      route('orders', { host: 'api.example.com', pathPrefix: '/v1/orders/' }),
      route('v1', { host: 'api.example.com', pathPrefix: '/v1' }),
      route('rest', { host: 'api.example.com' }),
    ];
    expectRoutes(routes, [
      [{ path: '/v1/orders/7', method: 'POST' }, 'orders-post'],
      [{ path: '/v1/orders/7', port: 8443 }, 'v1-tls'],
      [{ path: '/v1/orders/7' }, 'orders'],
      [{ path: '/v1/orders' }, 'v1'],
      [{ path: '/v1' }, 'v1'],
      [{ path: '/v2' }, 'rest'],
      [{ path: '/v1/orders?x', method: 'POST', port: 8443 }, 'orders-post'],
    ]);
  });

  it('IPv6 literals, with dots inside, are exact hosts', () => {
    expectRoutes(
      [route('v6', { host: '[::ffff:10.0.0.1]' }), route('local', { host: '[::1]', port: 8080 })],
      [
        [{ host: '[::ffff:10.0.0.1]' }, 'v6'],
        [{ host: '[::1]', port: 8080 }, 'local'],
        [{ host: '[::1]', port: 80 }, undefined],
        [{ host: '::1', port: 8080 }, undefined],
      ],
    );
  });

  it('finds the last of 10 000 routes', () => {
    const routes = Array.from({ length: 10_000 }, (_, i) =>
      route(
        `r${i}`,
        i % 3 === 0
          ? { host: `h${i}.example.com` }
          : i % 3 === 1
            ? { host: `*.h${i}.example.net` }
            : { pathPrefix: `/p${i}/` },
      ),
    );
    const router = createRouter(routes);
    const target = { port: 443, method: 'GET' };
    expect(router({ ...target, host: 'h9999.example.com', path: '/' })?.name).toBe('r9999');
    expect(router({ ...target, host: 'a.h9997.example.net', path: '/' })?.name).toBe('r9997');
    expect(router({ ...target, host: 'x', path: '/p9998/y' })?.name).toBe('r9998');
    expect(router({ ...target, host: 'x', path: '/p9999/y' })).toBeUndefined();
  });
});
