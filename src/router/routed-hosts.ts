import type { RouteConfig } from '../config/types.js';

/** Whether some route names `host` (exactly or by a `*.` pattern) and accepts `port`. */
export type RoutedHost = (host: string, port: number) => boolean;

/**
 * Which hosts a CONNECT may be terminated for (HTTPS interception). Only routes that name a
 * host count: a route without `match.host` matches every name, and minting a certificate for
 * every name an app asks for would make the proxy a CA for the whole internet. Paths and
 * methods are not known at CONNECT time, so they do not take part; a request inside the tunnel
 * that no route takes follows `unmatched` like any other.
 */
export function createRoutedHosts(routes: readonly RouteConfig[]): RoutedHost {
  // host or wildcard suffix → ports its routes accept (undefined: any port)
  const exact = new Map<string, Set<number> | undefined>();
  const wildcard = new Map<string, Set<number> | undefined>();
  for (const route of routes) {
    const host = route.match.host;
    if (host === undefined) continue;
    if (host.startsWith('*.')) add(wildcard, host.slice(2), route.match.port);
    else add(exact, host, route.match.port);
  }
  const accepts = (ports: Set<number> | undefined, port: number) => ports === undefined || ports.has(port);

  return (host, port) => {
    if (exact.has(host) && accepts(exact.get(host), port)) return true;
    // `*.example.com` covers one or more labels before example.com, not example.com itself.
    for (let dot = host.indexOf('.', 1); dot !== -1; dot = host.indexOf('.', dot + 1)) {
      const suffix = host.slice(dot + 1);
      if (wildcard.has(suffix) && accepts(wildcard.get(suffix), port)) return true;
    }
    return false;
  };
}

function add(map: Map<string, Set<number> | undefined>, key: string, port: number | undefined): void {
  if (map.has(key) && map.get(key) === undefined) return;
  if (port === undefined) {
    map.set(key, undefined);
    return;
  }
  const ports = map.get(key) ?? new Set<number>();
  ports.add(port);
  map.set(key, ports);
}
