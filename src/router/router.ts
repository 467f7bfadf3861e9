import type { RouteConfig } from '../config/types.js';

/** What a request asks for, after the listener has worked out its target. */
export interface RequestTarget {
  /** Lower-case host without port, brackets kept for IPv6, no trailing dot. */
  readonly host: string;
  readonly port: number;
  /** Path and query as sent by the client (origin-form). */
  readonly path: string;
  readonly method: string;
}

export type Router = (target: RequestTarget) => RouteConfig | undefined;

/**
 * Builds the route matcher once at start-up. Routes are tried in configuration order and the
 * first match wins, so a specific route placed before a general one takes precedence.
 */
export function createRouter(routes: readonly RouteConfig[]): Router {
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

/** `*.example.com` matches any name below example.com (any depth), but not example.com itself. */
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
