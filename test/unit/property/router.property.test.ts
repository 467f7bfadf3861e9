/**
 * The indexed router (src/router/router.ts) against the plain definition of routing: try the
 * routes in configuration order, the first whose host, port, path prefix and methods all match
 * wins. Route tables mix exact hosts, `*.` wildcards, IPv6 literals, no host, prefixes that share
 * stems (or hold a `?`, or are empty), ports and methods; small tables and tables of thousands,
 * so both the per-host lists and the prefix tries answer. Requests are mostly derived from a route
 * of the table, then perturbed, so they land on, next to and between routes.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { RouteConfig, RouteMatch } from '../../../src/config/types.js';
import { createRouter, type RequestTarget } from '../../../src/router/router.js';
import { routeConfig } from '../fixtures.js';

/** The router as README documents it: a linear first match, as src/router/router.ts once was. */
function referenceRoute(routes: readonly RouteConfig[], t: RequestTarget): RouteConfig | undefined {
  const q = t.path.indexOf('?');
  const path = q === -1 ? t.path : t.path.slice(0, q);
  return routes.find(({ match: { host, port, pathPrefix, methods } }) => {
    const hostMatches =
      host === undefined ||
      (host.startsWith('*.')
        ? t.host.length > host.length - 1 && t.host.endsWith(host.slice(1))
        : t.host === host);
    return (
      (port === undefined || t.port === port) &&
      hostMatches &&
      (pathPrefix === undefined || path.startsWith(pathPrefix)) &&
      (methods === undefined || methods.has(t.method))
    );
  });
}

function route(index: number, match: RouteMatch): RouteConfig {
  return routeConfig(`r${index}`, match);
}

const DOMAINS = ['example.com', 'b.example.com', 'example.org', 'com', 'svc.cluster.local', 'local'];
const LABELS = ['a', 'b', 'api', 'x-1', 'badexample', 'svc', 'example'];
const V6 = ['[::1]', '[2001:db8::1]', '[::ffff:10.0.0.1]'];
const METHODS = ['GET', 'POST', 'PUT', 'DELETE'];
const PORTS = [80, 443, 8080, 8443];
/** Path pieces: shared stems, separators, and the `?` that ends a path. */
const PIECES = [
  '/',
  '/v1',
  '/v1/',
  '/v2/',
  'orders',
  '/orders',
  '/7',
  'a',
  'ab',
  'b',
  '/a',
  '?',
  '?x=/v1/',
  '-',
  '.',
];

/**
 * How a table is drawn. Small tables collide on few names, so routes shadow each other; large ones
 * spread over many names and seldom match every host or path, so late routes still win requests.
 */
interface Shape {
  /** Labels `h0`… beside LABELS: the more, the more distinct hosts. */
  readonly labels: number;
  /** Weights (beside 80 for a host, 60 for a prefix) of no host, no prefix, an empty prefix. */
  readonly anyHost: number;
  readonly noPrefix: number;
  readonly emptyPrefix: number;
  /** Fewest pieces in a path prefix. */
  readonly minPieces: number;
}
const NARROW: Shape = { labels: 40, anyHost: 25, noPrefix: 20, emptyPrefix: 10, minPieces: 0 };
const WIDE: Shape = { labels: 3_000, anyHost: 1, noPrefix: 4, emptyPrefix: 2, minPieces: 2 };

function label(shape: Shape): fc.Arbitrary<string> {
  return fc.oneof(
    fc.constantFrom(...LABELS),
    fc.integer({ min: 0, max: shape.labels }).map((n) => `h${n}`),
  );
}
function domain(shape: Shape): fc.Arbitrary<string> {
  return fc.oneof(
    { weight: 3, arbitrary: fc.constantFrom(...DOMAINS) },
    {
      weight: 1,
      arbitrary: fc.tuple(label(shape), fc.constantFrom(...DOMAINS)).map(([l, d]) => `${l}.${d}`),
    },
  );
}
/** A host as requests carry it (already normalised), including edge forms that must not match. */
function requestHost(shape: Shape): fc.Arbitrary<string> {
  return fc.oneof(
    {
      weight: 4,
      arbitrary: fc
        .tuple(fc.array(label(shape), { maxLength: 3 }), domain(shape))
        .map(([ls, d]) => [...ls, d].join('.')),
    },
    { weight: 1, arbitrary: fc.constantFrom(...V6) },
    { weight: 1, arbitrary: domain(shape).map((d) => `.${d}`) },
    { weight: 1, arbitrary: domain(shape).map((d) => `bad${d}`) },
  );
}
function pathText(minPieces = 0): fc.Arbitrary<string> {
  return fc
    .array(fc.constantFrom(...PIECES), { minLength: minPieces, maxLength: minPieces + 5 })
    .map((ps) => ps.join(''));
}
const methods = fc.option(
  fc.uniqueArray(fc.constantFrom(...METHODS), { minLength: 1, maxLength: 3 }).map((ms) => new Set(ms)),
  { nil: undefined },
);
const port = fc.option(fc.constantFrom(...PORTS), { nil: undefined });

function match(shape: Shape): fc.Arbitrary<RouteMatch> {
  const host = fc.oneof(
    { weight: shape.anyHost, arbitrary: fc.constant(undefined) },
    { weight: 40, arbitrary: requestHost(shape) },
    { weight: 40, arbitrary: domain(shape).map((d) => `*.${d}`) },
  );
  return fc.record({ host, port, pathPrefix: pathPrefix(shape), methods }).map(matchOf);
}

function pathPrefix(shape: Shape): fc.Arbitrary<string | undefined> {
  return fc.oneof(
    { weight: shape.noPrefix, arbitrary: fc.constant(undefined) },
    { weight: shape.emptyPrefix, arbitrary: fc.constant('') },
    { weight: 60, arbitrary: pathText(shape.minPieces) },
  );
}

/** The match without the keys that are undefined, as the validator builds it. */
function matchOf(parts: {
  host?: string | undefined;
  port: number | undefined;
  pathPrefix: string | undefined;
  methods: ReadonlySet<string> | undefined;
}): RouteMatch {
  const { host, port, pathPrefix, methods } = parts;
  return {
    ...(host === undefined ? {} : { host }),
    ...(port === undefined ? {} : { port }),
    ...(pathPrefix === undefined ? {} : { pathPrefix }),
    ...(methods === undefined ? {} : { methods }),
  };
}

function randomTarget(shape: Shape): fc.Arbitrary<RequestTarget> {
  return fc.record({
    host: requestHost(shape),
    port: fc.constantFrom(...PORTS, 1),
    path: pathText().map((p) => `/${p}`),
    method: fc.constantFrom(...METHODS, 'PATCH'),
  });
}

/** A request aimed at one route's match, each part then kept or replaced by a random one. */
function targetFor(m: RouteMatch, shape: Shape): fc.Arbitrary<RequestTarget> {
  const host =
    m.host === undefined
      ? requestHost(shape)
      : m.host.startsWith('*.')
        ? fc
            .array(label(shape), { minLength: 1, maxLength: 2 })
            .map((ls) => `${ls.join('.')}${m.host!.slice(1)}`)
        : fc.constant(m.host);
  const path = fc
    .tuple(pathText(), fc.option(pathText(), { nil: undefined }))
    .map(([tail, query]) => `${m.pathPrefix ?? ''}${tail}${query === undefined ? '' : `?${query}`}`);
  const method = m.methods === undefined ? fc.constantFrom(...METHODS) : fc.constantFrom(...m.methods);
  const random = randomTarget(shape);
  const keepOrNot = <T>(kept: fc.Arbitrary<T>, other: fc.Arbitrary<T>) =>
    fc.oneof({ weight: 5, arbitrary: kept }, { weight: 1, arbitrary: other });
  return fc.record({
    host: keepOrNot(
      host,
      random.map((t) => t.host),
    ),
    port: keepOrNot(fc.constant(m.port ?? 443), fc.constantFrom(...PORTS, 1)),
    path: keepOrNot(
      path,
      random.map((t) => t.path),
    ),
    method: keepOrNot(method, fc.constantFrom(...METHODS, 'PATCH')),
  });
}

/** Requests against a table: most aimed at one of its routes, some random. */
function targetsFor(matches: readonly RouteMatch[], shape: Shape, count: number) {
  const aimed =
    matches.length === 0
      ? randomTarget(shape)
      : fc.integer({ min: 0, max: matches.length - 1 }).chain((i) => targetFor(matches[i]!, shape));
  const target = fc.oneof({ weight: 4, arbitrary: aimed }, { weight: 1, arbitrary: randomTarget(shape) });
  return fc.array(target, { minLength: 1, maxLength: count, size: 'max' });
}

/** A route table of the given shape and requests against it. */
function tableWithTargets(shape: Shape, minRoutes: number, maxRoutes: number, targets: number) {
  return fc
    .array(match(shape), { minLength: minRoutes, maxLength: maxRoutes, size: 'max' })
    .chain((matches) => fc.tuple(fc.constant(matches), targetsFor(matches, shape, targets)));
}

function expectSameAsReference(matches: readonly RouteMatch[], targets: readonly RequestTarget[]): void {
  const routes = matches.map((m, i) => route(i, m));
  const router = createRouter(routes);
  for (const t of targets) {
    const expected = referenceRoute(routes, t);
    const got = router(t);
    if (got !== expected) {
      expect({ target: t, got: got?.name, match: got?.match }).toEqual({
        target: t,
        got: expected?.name,
        match: expected?.match,
      });
    }
  }
}

describe('createRouter: the same route as a linear first-match scan', () => {
  it('for small tables (each host key tried as a list)', () => {
    fc.assert(
      fc.property(tableWithTargets(NARROW, 0, 12, 30), ([matches, targets]) =>
        expectSameAsReference(matches, targets),
      ),
      { numRuns: 1_000 },
    );
  });

  it('for tables of tens of routes (host keys and the any-host group get prefix tries)', () => {
    fc.assert(
      fc.property(tableWithTargets(NARROW, 9, 80, 60), ([matches, targets]) =>
        expectSameAsReference(matches, targets),
      ),
      { numRuns: 300 },
    );
  });

  it('for tables of hundreds to thousands of routes', () => {
    fc.assert(
      fc.property(tableWithTargets(WIDE, 200, 3_000, 300), ([matches, targets]) =>
        expectSameAsReference(matches, targets),
      ),
      { numRuns: 15 },
    );
  });

  it('when many routes share one host key and differ by prefix, port and method', () => {
    const table = fc
      .tuple(
        fc.constantFrom('api.example.com', '*.example.com', undefined),
        fc.array(fc.record({ pathPrefix: pathPrefix(NARROW), port, methods }), {
          minLength: 9,
          maxLength: 400,
          size: 'max',
        }),
      )
      .map(([host, parts]) => parts.map((part) => matchOf({ host, ...part })))
      .chain((matches) => fc.tuple(fc.constant(matches), targetsFor(matches, NARROW, 100)));
    fc.assert(
      fc.property(table, ([matches, targets]) => expectSameAsReference(matches, targets)),
      { numRuns: 200 },
    );
  });
});
