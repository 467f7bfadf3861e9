import { describe, expect, it } from 'vitest';
import type { RouteConfig, RouteMatch } from '../../../src/config/types.js';
import { createRouter, type RequestTarget } from '../../../src/router/router.js';
import { validConfig, withRoutes } from '../config/helpers.js';
import { routeConfig } from '../fixtures.js';

function route(name: string, match: RouteMatch = {}): RouteConfig {
  return routeConfig(name, match);
}

function target(partial: Partial<RequestTarget> = {}): RequestTarget {
  return { host: 'api.example.com', port: 443, path: '/', method: 'GET', ...partial };
}

function nameOf(routes: RouteConfig[], t: Partial<RequestTarget>): string | undefined {
  return createRouter(routes)(target(t))?.name;
}

describe('createRouter', () => {
  it('returns undefined when there are no routes or none matches', () => {
    expect(nameOf([], {})).toBeUndefined();
    expect(nameOf([route('a', { host: 'other.example.com' })], {})).toBeUndefined();
  });

  it('matches every request with an empty match', () => {
    expect(nameOf([route('all')], { host: 'anything', port: 1, path: '/x', method: 'PATCH' })).toBe('all');
  });

  it('returns the route object itself', () => {
    const r = route('a');
    expect(createRouter([r])(target())).toBe(r);
  });

  it('takes the first match in configuration order', () => {
    const specific = route('specific', { host: 'api.example.com', pathPrefix: '/admin/' });
    const general = route('general', { host: 'api.example.com' });
    expect(nameOf([specific, general], { path: '/admin/users' })).toBe('specific');
    expect(nameOf([specific, general], { path: '/users' })).toBe('general');
    expect(nameOf([general, specific], { path: '/admin/users' })).toBe('general');
  });

  describe('host', () => {
    const routes = [route('exact', { host: 'example.com' }), route('wild', { host: '*.example.com' })];

    it('matches an exact host only', () => {
      expect(nameOf([routes[0]!], { host: 'example.com' })).toBe('exact');
      expect(nameOf([routes[0]!], { host: 'www.example.com' })).toBeUndefined();
      expect(nameOf([routes[0]!], { host: 'example.com.evil.net' })).toBeUndefined();
      expect(nameOf([routes[0]!], { host: 'notexample.com' })).toBeUndefined();
    });

    it('matches *.example.com at any depth below example.com, but not example.com itself', () => {
      const wild = [routes[1]!];
      expect(nameOf(wild, { host: 'a.example.com' })).toBe('wild');
      expect(nameOf(wild, { host: 'a.b.example.com' })).toBe('wild');
      expect(nameOf(wild, { host: 'example.com' })).toBeUndefined();
      expect(nameOf(wild, { host: '.example.com' })).toBeUndefined();
      expect(nameOf(wild, { host: 'aexample.com' })).toBeUndefined();
      expect(nameOf(wild, { host: 'a.example.com.evil.net' })).toBeUndefined();
    });

    it('checks the port only when the pattern has one', () => {
      const routes2 = [
        route('tls', { host: 'api.example.com', port: 8443 }),
        route('any', { host: 'api.example.com' }),
      ];
      expect(nameOf(routes2, { port: 8443 })).toBe('tls');
      expect(nameOf(routes2, { port: 443 })).toBe('any');
      expect(nameOf(routes2, { port: 80 })).toBe('any');
      expect(nameOf([routes2[0]!], { port: 443 })).toBeUndefined();
    });

    it('matches bracketed IPv6 hosts', () => {
      expect(nameOf([route('v6', { host: '[::1]', port: 8080 })], { host: '[::1]', port: 8080 })).toBe('v6');
      expect(
        nameOf([route('v6', { host: '[::1]', port: 8080 })], { host: '[::1]', port: 8081 }),
      ).toBeUndefined();
    });
  });

  describe('path prefix', () => {
    const r = route('v1', { pathPrefix: '/v1/' });

    it('matches a plain prefix of the path', () => {
      expect(nameOf([r], { path: '/v1/' })).toBe('v1');
      expect(nameOf([r], { path: '/v1/orders/7' })).toBe('v1');
      expect(nameOf([r], { path: '/v1' })).toBeUndefined();
      expect(nameOf([r], { path: '/v2/orders' })).toBeUndefined();
      expect(nameOf([r], { path: '/api/v1/orders' })).toBeUndefined();
    });

    it('ignores the query string', () => {
      expect(nameOf([r], { path: '/v1/orders?limit=5' })).toBe('v1');
      expect(nameOf([r], { path: '/v2?next=/v1/' })).toBeUndefined();
      expect(nameOf([route('q', { pathPrefix: '/search' })], { path: '/search?q=1' })).toBe('q');
      expect(nameOf([route('q', { pathPrefix: '/search/' })], { path: '/search?/x' })).toBeUndefined();
    });

    it('is case-sensitive', () => {
      expect(nameOf([r], { path: '/V1/orders' })).toBeUndefined();
    });
  });

  it('matches methods', () => {
    const r = route('write', { methods: new Set(['POST', 'PUT']) });
    expect(nameOf([r], { method: 'POST' })).toBe('write');
    expect(nameOf([r], { method: 'PUT' })).toBe('write');
    expect(nameOf([r], { method: 'GET' })).toBeUndefined();
  });

  it('needs every part of a match to hold', () => {
    const r = route('all', {
      host: '*.example.com',
      port: 443,
      pathPrefix: '/v1/',
      methods: new Set(['GET']),
    });
    expect(nameOf([r], { host: 'a.example.com', port: 443, path: '/v1/x', method: 'GET' })).toBe('all');
    expect(nameOf([r], { host: 'example.org', port: 443, path: '/v1/x', method: 'GET' })).toBeUndefined();
    expect(nameOf([r], { host: 'a.example.com', port: 80, path: '/v1/x', method: 'GET' })).toBeUndefined();
    expect(nameOf([r], { host: 'a.example.com', port: 443, path: '/v2/x', method: 'GET' })).toBeUndefined();
    expect(nameOf([r], { host: 'a.example.com', port: 443, path: '/v1/x', method: 'POST' })).toBeUndefined();
  });

  it('routes with patterns as the validator produces them', () => {
    const config = validConfig(
      withRoutes(
        [
          '  - name: admin\n    upstream: https://a.example.com\n    credential: billing\n    match:\n      host: API.Example.com:8443\n      path_prefix: /admin/\n      methods: [get]\n',
          '  - name: wild\n    upstream: https://a.example.com\n    credential: orders\n    match:\n      host: "*.Example.com"\n',
        ].join(''),
      ),
    );
    const router = createRouter(config.routes);
    expect(
      router(target({ host: 'api.example.com', port: 8443, path: '/admin/x?y', method: 'GET' }))?.name,
    ).toBe('admin');
    expect(
      router(target({ host: 'api.example.com', port: 8443, path: '/admin/x', method: 'POST' }))?.name,
    ).toBe('wild');
    expect(router(target({ host: 'example.com', port: 443 }))).toBeUndefined();
  });
});
