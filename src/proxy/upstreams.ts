import type { RouteConfig, UpstreamProtocol } from '../config/types.js';
import { FileSet } from '../files/live-file.js';
import { interimTolerantConnector } from '../interim-responses.js';
import type { TlsClient } from '../tls.js';
import { type ConnectTls, liveTlsOptions } from '../tls.js';
import { Agent, type Dispatcher, Pool } from '../undici.js';
import { Http2Upstream } from './http2-upstream.js';

const PASSTHROUGH_CONNECT_TIMEOUT_MS = 10_000;
/** Per origin, for passthrough traffic, which has no route to configure it. */
const PASSTHROUGH_MAX_CONNECTIONS = 256;
/** How often a route's client certificate files are checked for rotation. */
const CERT_CHECK_INTERVAL_MS = 10_000;

interface LiveTls {
  readonly key: string;
  readonly live: () => ConnectTls;
  /** As read at start-up. */
  readonly initial: ConnectTls;
}

interface RoutePool {
  pool: Dispatcher;
  readonly origin: string;
  readonly protocol: UpstreamProtocol;
  readonly timeouts: Timeouts;
  readonly tls: () => ConnectTls;
  connect: ConnectTls;
  nextCheck: number;
}

/**
 * Connection pools for upstreams: one keep-alive pool per route origin, protocol (`upstream_protocol`:
 * HTTP/1.1, or HTTP/2 sessions in http2-upstream.ts) and TLS settings, and one
 * agent for passthrough traffic to arbitrary origins. A pool is made on the first request to its
 * origin, so configured routes that carry no traffic cost no pool. A route's client certificate
 * (RFC 8705 §3, certificate-bound tokens) is re-read when it rotates, at most every few seconds
 * so the per-request path stays a clock comparison.
 */
export class Upstreams {
  /**
   * Filled on each route's first request. Keyed by the route object, not its name: after a reload
   * a request still in flight on the old route must not find the pool of a new route of that name.
   */
  readonly #byRoute = new Map<RouteConfig, RoutePool>();
  /** Per origin, TLS settings and timeouts: routes that agree share a pool and its warm connections. */
  readonly #pools = new Map<string, RoutePool>();
  /** Per distinct TLS settings, read at start-up: a missing certificate file fails the start. */
  readonly #tls = new Map<string, LiveTls>();
  readonly #passthrough: Agent;
  readonly #files = new FileSet();
  readonly #retired = new Set<Dispatcher>();
  #closing = false;

  constructor(routes: readonly RouteConfig[]) {
    for (const route of routes) this.#tlsOf(route.tls);
    this.#passthrough = new Agent({
      connect: interimTolerantConnector({ timeout: PASSTHROUGH_CONNECT_TIMEOUT_MS }),
      connections: PASSTHROUGH_MAX_CONNECTIONS,
      keepAliveTimeout: 4_000,
      pipelining: 1, // as for routes (src/interim-responses.ts)
    });
  }

  forRoute(route: RouteConfig): Dispatcher {
    const entry = this.#byRoute.get(route) ?? this.#firstUse(route);
    // Without a client certificate there is nothing to re-check, and no clock to read.
    if (entry.nextCheck !== Number.POSITIVE_INFINITY && performance.now() >= entry.nextCheck)
      this.#recheck(entry);
    return entry.pool;
  }

  /** Pools created so far: one per origin and settings that has carried a request. */
  get poolCount(): number {
    return this.#pools.size;
  }

  get passthrough(): Dispatcher {
    return this.#passthrough;
  }

  /** Before a reload: reads the routes' TLS files; throws, changing nothing, if one cannot be read. */
  prepare(routes: readonly RouteConfig[]): void {
    for (const route of routes) this.#tlsOf(route.tls);
  }

  /**
   * After a reload to `routes`: pools that one of them would use are kept, with their warm
   * connections; the others are closed, which lets their requests in flight finish first.
   */
  retain(routes: readonly RouteConfig[]): void {
    const current = new Set(routes);
    for (const route of this.#byRoute.keys()) if (!current.has(route)) this.#byRoute.delete(route);
    const used = new Set(routes.map((route) => this.#keyOf(route).key));
    for (const [key, entry] of this.#pools) {
      if (used.has(key)) continue;
      this.#pools.delete(key);
      this.#retire(entry.pool);
    }
  }

  async close(): Promise<void> {
    this.#closing = true;
    // After the drain every client connection is gone, and with it (by abort) every upstream request.
    const all = new Set<Dispatcher>([
      ...[...this.#pools.values()].map((e) => e.pool),
      ...this.#retired,
      this.#passthrough,
    ]);
    await Promise.all([...all].map((d) => d.close()));
  }

  /** The pool key of a route: routes that agree on all of it share a pool. */
  #keyOf(route: RouteConfig): { key: string; tls: LiveTls; timeouts: Timeouts } {
    const timeouts = {
      connectMs: route.connectTimeoutMs,
      responseMs: route.responseTimeoutMs,
      maxConnections: route.upstreamMaxConnections,
    };
    const tls = this.#tlsOf(route.tls);
    const key = [
      route.upstream.origin,
      route.upstreamProtocol,
      tls.key,
      timeouts.connectMs,
      timeouts.responseMs,
      timeouts.maxConnections,
    ].join('|');
    return { key, tls, timeouts };
  }

  /** The pool of a route's origin, made now if no route has used that origin yet. */
  #firstUse(route: RouteConfig): RoutePool {
    const { key, tls, timeouts } = this.#keyOf(route);
    let entry = this.#pools.get(key);
    if (!entry) {
      let connect: ConnectTls;
      try {
        connect = tls.live();
      } catch {
        connect = tls.initial; // unreadable right now: what was read at start-up
      }
      entry = {
        pool: newPool(route.upstream.origin, route.upstreamProtocol, connect, timeouts),
        origin: route.upstream.origin,
        protocol: route.upstreamProtocol,
        timeouts,
        tls: tls.live,
        connect,
        nextCheck: route.tls.cert ? performance.now() + CERT_CHECK_INTERVAL_MS : Number.POSITIVE_INFINITY,
      };
      // A request that outlived the drain gets a closed pool: it fails as on any closed pool.
      if (this.#closing) entry.pool.close().catch(() => {});
      this.#pools.set(key, entry);
    }
    this.#byRoute.set(route, entry);
    return entry;
  }

  #tlsOf(settings: TlsClient): LiveTls {
    // Routes whose TLS settings name the same files share the options (and their CA list).
    const key = `${settings.caFile ?? ''}|${settings.cert?.file ?? ''}|${settings.key?.file ?? ''}`;
    let tls = this.#tls.get(key);
    if (!tls) {
      const live = liveTlsOptions(settings, this.#files);
      tls = { key, live, initial: live() };
      this.#tls.set(key, tls);
    }
    return tls;
  }

  #recheck(entry: RoutePool): void {
    entry.nextCheck = performance.now() + CERT_CHECK_INTERVAL_MS;
    if (this.#closing) return;
    let connect: ConnectTls;
    try {
      connect = entry.tls();
    } catch {
      return; // unreadable right now: keep the connections we have
    }
    if (connect === entry.connect) return;
    const old = entry.pool;
    entry.connect = connect;
    entry.pool = newPool(entry.origin, entry.protocol, connect, entry.timeouts);
    this.#retire(old);
  }

  /** In-flight requests on the pool finish; then it closes. */
  #retire(pool: Dispatcher): void {
    this.#retired.add(pool);
    pool.close().then(
      () => this.#retired.delete(pool),
      () => this.#retired.delete(pool),
    );
  }
}

interface Timeouts {
  readonly connectMs: number;
  /** Until the response headers; the body may stream as long as it keeps coming. */
  readonly responseMs: number;
  /** Beyond this many connections requests wait in the pool's queue (bounded by `responseMs`). */
  readonly maxConnections: number;
}

function newPool(
  origin: string,
  protocol: UpstreamProtocol,
  connect: ConnectTls,
  timeouts: Timeouts,
): Dispatcher {
  if (protocol === 'http2') return new Http2Upstream(origin, connect, timeouts);
  return new Pool(origin, {
    connect: interimTolerantConnector({ ...connect, timeout: timeouts.connectMs }),
    headersTimeout: timeouts.responseMs,
    connections: timeouts.maxConnections,
    keepAliveTimeout: 4_000,
    // One request at a time per connection: src/interim-responses.ts relies on it.
    pipelining: 1,
  });
}
