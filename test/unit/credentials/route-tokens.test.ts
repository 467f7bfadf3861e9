/**
 * Issue 12: the handler asks for a route's token lookup on the route's first request, so what
 * `forRoute` makes must be shared by routes that want the same tokens, and what depends on the
 * routes (readiness, prefetch) must not wait for their traffic.
 */
import { Writable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import type { Config } from '../../../src/config/types.js';
import { Credentials } from '../../../src/credentials/credentials.js';
import { createLogger } from '../../../src/log/logger.js';
import { configFrom } from '../../support/injector.js';

const TOKEN_ENDPOINT = 'http://127.0.0.1:9/token';

function credential(extra: Record<string, unknown> = {}) {
  return {
    token_endpoint: TOKEN_ENDPOINT,
    grant_type: 'client_credentials',
    client_id: 'orders-client',
    client_secret: 'orders-secret',
    scope: ['orders.read', 'orders.write'],
    ...extra,
  };
}

function route(name: string, credentialName: string, extra: Record<string, unknown> = {}) {
  return {
    name,
    match: { host: `${name}.test` },
    upstream: 'https://upstream.test',
    credential: credentialName,
    ...extra,
  };
}

let open: Credentials | undefined;
afterEach(async () => {
  await open?.close();
  open = undefined;
});

function credentialsFor(config: Config): Credentials {
  open = new Credentials(config, {
    logger: createLogger('error', new Writable({ write: (_c, _e, done) => done() })),
  });
  return open;
}

function routeNamed(config: Config, name: string) {
  return config.routes.find((r) => r.name === name)!;
}

describe('Credentials.forRoute', () => {
  it('gives routes with the same credential and scope combination one shared object', () => {
    const config = configFrom({
      credentials: { orders: credential(), billing: credential() },
      routes: [
        route('a', 'orders'),
        route('b', 'orders'),
        // Written out, the credential's own scopes are the same combination.
        route('c', 'orders', { scope: ['orders.read', 'orders.write'] }),
        route('read', 'orders', { scope: 'orders.read' }),
        route('billing', 'billing'),
      ],
    });
    const credentials = credentialsFor(config);
    const [a, b, c, read, billing] = ['a', 'b', 'c', 'read', 'billing'].map((n) =>
      credentials.forRoute(routeNamed(config, n)),
    );
    expect(b).toBe(a);
    expect(c).toBe(a);
    expect(read).not.toBe(a);
    expect(billing).not.toBe(a);
    expect(credentials.forRoute(routeNamed(config, 'read'))).toBe(read);
    // One cache per combination, whatever the number of routes.
    expect(credentials.sourcesOf('orders')).toHaveLength(2);
  });

  it('makes no cache for a route before it is asked for', () => {
    const config = configFrom({
      credentials: { orders: credential() },
      routes: [route('a', 'orders', { scope: 'orders.read' }), route('b', 'orders')],
    });
    const credentials = credentialsFor(config);
    expect(credentials.sourcesOf('orders')).toHaveLength(0);
    expect(credentials.state('orders')).toBe('empty');
  });

  it('a prefetched credential has the caches of all its routes from the start, for prefetch and /readyz', () => {
    const config = configFrom({
      credentials: { orders: credential({ prefetch: true }) },
      routes: [route('read', 'orders', { scope: 'orders.read' }), route('all', 'orders')],
    });
    const credentials = credentialsFor(config);
    const prefetched = credentials.prefetchSources('orders');
    expect(prefetched).toHaveLength(2);
    // The route's first request uses the cache that was prefetched, not a new one.
    credentials.forRoute(routeNamed(config, 'read'));
    credentials.forRoute(routeNamed(config, 'all'));
    expect(credentials.sourcesOf('orders')).toEqual(prefetched);
  });

  it('a credential whose tokens follow request headers is per_request before any route was used', () => {
    const config = configFrom({
      credentials: {
        obo: credential({
          grant_type: 'jwt_bearer',
          assertion: { source: 'request_header', header: 'X-User-Assertion' },
        }),
      },
      routes: [route('obo', 'obo')],
    });
    const credentials = credentialsFor(config);
    expect(credentials.state('obo')).toBe('per_request');
    const tokens = credentials.forRoute(routeNamed(config, 'obo'));
    expect(tokens.consumedHeaders).toEqual(['x-user-assertion']);
    expect(credentials.state('obo')).toBe('per_request');
  });
});
