/**
 * Route matching cost, 1 route against 10 000 (exact hosts, `*.` wildcards and path prefixes
 * mixed, the route that matches last in configuration order): ns per lookup for the router and for
 * the linear scan it replaced, and the heap each holds per route.
 *
 *   node --expose-gc --import tsx bench/router-micro.ts
 *
 * Without --expose-gc the heap figures are skipped.
 */
import type { RouteConfig, RouteMatch } from '../src/config/types.js';
import { createRouter, type RequestTarget, type Router } from '../src/router/router.js';
import { routeConfig } from '../test/unit/fixtures.js';

const ROUTES = 10_000;
const HIT: RouteMatch = { host: 'api.example.com', pathPrefix: '/v1/', methods: new Set(['GET', 'POST']) };
const TARGET: RequestTarget = {
  host: 'api.example.com',
  port: 443,
  path: '/v1/orders/7?limit=5',
  method: 'GET',
};

function route(index: number, match: RouteMatch): RouteConfig {
  return routeConfig(`r${index}`, match);
}

/** Every kind of route, none matching TARGET, and HIT last. */
function table(size: number): RouteConfig[] {
  const routes = Array.from({ length: size - 1 }, (_, i) => {
    switch (i % 5) {
      case 0:
        return route(i, { host: `h${i}.example.com` });
      case 1:
        return route(i, { host: `*.w${i}.example.com`, pathPrefix: `/w${i}/` });
      case 2:
        return route(i, { host: `*.example${i}.com` });
      case 3:
        return route(i, { pathPrefix: `/svc/${i}/`, port: 8443 });
      default:
        return route(i, { host: 'api.example.com', pathPrefix: `/v1/orders-${i}/` });
    }
  });
  routes.push(route(size - 1, HIT));
  return routes;
}

/** The router before the index: every route tried in order (src/router/router.ts until issue 12). */
function linearRouter(routes: readonly RouteConfig[]): Router {
  const compiled = routes.map((route) => ({ route, matches: compileMatch(route) }));
  return (target) => {
    for (const { route, matches } of compiled) {
      if (matches(target)) return route;
    }
    return undefined;
  };
}

function compileMatch(route: RouteConfig): (t: RequestTarget) => boolean {
  const { host, port, pathPrefix, methods } = route.match;
  const hostMatches = host === undefined ? () => true : hostMatcher(host);
  return (t) =>
    (port === undefined || t.port === port) &&
    hostMatches(t.host) &&
    (pathPrefix === undefined || pathOf(t.path).startsWith(pathPrefix)) &&
    (methods === undefined || methods.has(t.method));
}

function hostMatcher(pattern: string): (host: string) => boolean {
  if (pattern.startsWith('*.')) {
    const suffix = pattern.slice(1);
    return (host) => host.length > suffix.length && host.endsWith(suffix);
  }
  return (host) => host === pattern;
}

function pathOf(pathAndQuery: string): string {
  const q = pathAndQuery.indexOf('?');
  return q === -1 ? pathAndQuery : pathAndQuery.slice(0, q);
}

/** ns per lookup: the best of a few rounds of about 150 ms each. */
function nsPerLookup(router: Router, expected: RouteConfig): number {
  if (router(TARGET) !== expected) throw new Error('the router did not find the expected route');
  let iterations = 1_000;
  for (;;) {
    const start = process.hrtime.bigint();
    for (let i = 0; i < iterations; i++) router(TARGET);
    if (Number(process.hrtime.bigint() - start) > 20e6) break;
    iterations *= 4;
  }
  iterations = Math.ceil(iterations * 7.5);
  let best = Number.POSITIVE_INFINITY;
  for (let round = 0; round < 5; round++) {
    const start = process.hrtime.bigint();
    for (let i = 0; i < iterations; i++) router(TARGET);
    best = Math.min(best, Number(process.hrtime.bigint() - start) / iterations);
  }
  return best;
}

const gc = (globalThis as { gc?: () => void }).gc;

/** Heap bytes the router built from `routes` holds, per route (the routes themselves excluded). */
function heapPerRoute(build: (routes: readonly RouteConfig[]) => Router, routes: RouteConfig[]): number {
  gc!();
  const before = process.memoryUsage().heapUsed;
  const router = build(routes);
  gc!();
  const held = process.memoryUsage().heapUsed - before;
  if (router(TARGET) !== routes.at(-1)) throw new Error('the router did not find the expected route');
  return held / routes.length;
}

const one = table(1);
const many = table(ROUTES);
const rows: [string, string, string][] = [];
for (const [kind, build] of [
  ['indexed', createRouter],
  ['linear', linearRouter],
] as const) {
  const single = nsPerLookup(build(one), one[0]!);
  const large = nsPerLookup(build(many), many.at(-1)!);
  rows.push([`${kind}, 1 route`, `${single.toFixed(1)} ns`, '']);
  rows.push([
    `${kind}, ${ROUTES} routes`,
    `${large.toFixed(1)} ns (${((large / single - 1) * 100).toFixed(0)} % over 1 route)`,
    gc ? `${heapPerRoute(build, many).toFixed(0)} B/route` : 'heap: run with node --expose-gc',
  ]);
}
for (const row of rows) console.log(row.map((cell, i) => cell.padEnd(i === 0 ? 24 : 36)).join(''));
