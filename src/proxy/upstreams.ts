import { Agent, type Dispatcher, Pool } from 'undici';
import type { RouteConfig } from '../config/types.js';
import { FileSet } from '../files/live-file.js';
import { type ConnectTls, liveTlsOptions } from '../tls.js';
import { interimTolerantConnector } from './interim-responses.js';

const PASSTHROUGH_CONNECT_TIMEOUT_MS = 10_000;
/** Per origin, for passthrough traffic, which has no route to configure it. */
const PASSTHROUGH_MAX_CONNECTIONS = 256;
/** How often a route's client certificate files are checked for rotation. */
const CERT_CHECK_INTERVAL_MS = 10_000;

interface RoutePool {
  pool: Pool;
  readonly origin: string;
  readonly timeouts: Timeouts;
  readonly tls: () => ConnectTls;
  connect: ConnectTls;
  nextCheck: number;
}

/**
 * Connection pools for upstreams: one keep-alive pool per route origin and TLS settings, and one
 * agent for passthrough traffic to arbitrary origins. A route's client certificate (RFC 8705
 * §3, certificate-bound tokens) is re-read when it rotates, at most every few seconds so the
 * per-request path stays a clock comparison.
 */
export class Upstreams {
  readonly #byRoute = new Map<string, RoutePool>();
  readonly #passthrough: Agent;
  readonly #files = new FileSet();
  readonly #retired = new Set<Pool>();

  constructor(routes: readonly RouteConfig[]) {
    const shared = new Map<string, RoutePool>();
    for (const route of routes) {
      const t = route.tls;
      // Routes with the same origin and TLS settings share a pool, so they share warm connections.
      const timeouts = {
        connectMs: route.connectTimeoutMs,
        responseMs: route.responseTimeoutMs,
        maxConnections: route.upstreamMaxConnections,
      };
      const key = [
        route.upstream.origin,
        t.caFile,
        t.cert?.file,
        t.key?.file,
        timeouts.connectMs,
        timeouts.responseMs,
        timeouts.maxConnections,
      ].join('|');
      let entry = shared.get(key);
      if (!entry) {
        const tls = liveTlsOptions(route.tls, this.#files);
        const connect = tls();
        entry = {
          pool: newPool(route.upstream.origin, connect, timeouts),
          origin: route.upstream.origin,
          timeouts,
          tls,
          connect,
          nextCheck: t.cert ? performance.now() + CERT_CHECK_INTERVAL_MS : Number.POSITIVE_INFINITY,
        };
        shared.set(key, entry);
      }
      this.#byRoute.set(route.name, entry);
    }
    this.#passthrough = new Agent({
      connect: interimTolerantConnector({ timeout: PASSTHROUGH_CONNECT_TIMEOUT_MS }),
      connections: PASSTHROUGH_MAX_CONNECTIONS,
      keepAliveTimeout: 4_000,
      pipelining: 1, // as for routes (interim-responses.ts)
    });
  }

  forRoute(route: RouteConfig): Dispatcher {
    const entry = this.#byRoute.get(route.name)!;
    // Without a client certificate there is nothing to re-check, and no clock to read.
    if (entry.nextCheck !== Number.POSITIVE_INFINITY && performance.now() >= entry.nextCheck)
      this.#recheck(entry);
    return entry.pool;
  }

  get passthrough(): Dispatcher {
    return this.#passthrough;
  }

  async close(): Promise<void> {
    // After the drain every client connection is gone, and with it (by abort) every upstream request.
    const all = new Set<Dispatcher>([
      ...[...this.#byRoute.values()].map((e) => e.pool),
      ...this.#retired,
      this.#passthrough,
    ]);
    await Promise.all([...all].map((d) => d.close()));
  }

  #recheck(entry: RoutePool): void {
    entry.nextCheck = performance.now() + CERT_CHECK_INTERVAL_MS;
    let connect: ConnectTls;
    try {
      connect = entry.tls();
    } catch {
      return; // unreadable right now: keep the connections we have
    }
    if (connect === entry.connect) return;
    const old = entry.pool;
    entry.connect = connect;
    entry.pool = newPool(entry.origin, connect, entry.timeouts);
    // In-flight requests on the old pool finish; then it closes.
    this.#retired.add(old);
    old.close().then(
      () => this.#retired.delete(old),
      () => this.#retired.delete(old),
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

function newPool(origin: string, connect: ConnectTls, timeouts: Timeouts): Pool {
  return new Pool(origin, {
    connect: interimTolerantConnector({ ...connect, timeout: timeouts.connectMs }),
    headersTimeout: timeouts.responseMs,
    connections: timeouts.maxConnections,
    keepAliveTimeout: 4_000,
    // One request at a time per connection: interim-responses.ts relies on it.
    pipelining: 1,
  });
}
