import { Agent, type Dispatcher, Pool } from 'undici';
import type { RouteConfig } from '../config/types.js';
import { trustOptions } from '../tls.js';

const CONNECT_TIMEOUT_MS = 10_000;

/**
 * Connection pools for upstreams: one keep-alive pool per route (its origin and TLS settings are
 * fixed by config), and one agent for passthrough traffic to arbitrary origins.
 */
export class Upstreams {
  readonly #byRoute = new Map<string, Dispatcher>();
  readonly #passthrough: Agent;

  constructor(routes: readonly RouteConfig[]) {
    const shared = new Map<string, Pool>();
    for (const route of routes) {
      // Routes with the same origin and trust share a pool, so they share warm connections.
      const key = `${route.upstream.origin}|${route.tls.caFile ?? ''}`;
      let pool = shared.get(key);
      if (!pool) {
        pool = new Pool(route.upstream.origin, {
          connect: { ...trustOptions(route.tls), timeout: CONNECT_TIMEOUT_MS },
          keepAliveTimeout: 4_000,
          pipelining: 1,
        });
        shared.set(key, pool);
      }
      this.#byRoute.set(route.name, pool);
    }
    this.#passthrough = new Agent({ connect: { timeout: CONNECT_TIMEOUT_MS }, keepAliveTimeout: 4_000 });
  }

  forRoute(route: RouteConfig): Dispatcher {
    return this.#byRoute.get(route.name)!;
  }

  get passthrough(): Dispatcher {
    return this.#passthrough;
  }

  async close(): Promise<void> {
    const all = new Set<Dispatcher>([...this.#byRoute.values(), this.#passthrough]);
    // After the drain every client connection is gone, and with it (by abort) every upstream request.
    await Promise.all([...all].map((d) => d.close()));
  }
}
