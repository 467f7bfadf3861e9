import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { ListenAddress } from '../config/types.js';
import type { Credentials } from '../credentials/credentials.js';
import type { Metrics } from '../metrics/metrics.js';
import { listen } from '../net-listen.js';
import type { SharedCacheState } from '../shared-cache/store.js';

export interface Readiness {
  /** True once the proxy listener accepts connections and until shutdown begins. */
  serving(): boolean;
  /** Names of credentials with `prefetch: true`: /readyz waits until each holds a token. */
  readonly prefetch: readonly string[];
}

export interface AdminServer {
  readonly address: AddressInfo;
  close(): Promise<void>;
}

/**
 * The admin listener, apart from the proxy so probes and scrapes never compete with app traffic
 * and the proxy port never exposes metrics: /healthz (process alive), /readyz (able to serve
 * with tokens), /metrics (Prometheus).
 */
export async function startAdminServer(
  address: ListenAddress,
  deps: {
    credentials: Credentials;
    metrics: Metrics;
    readiness: Readiness;
    /** Shown in /readyz, never part of readiness: replicas serve without it. */
    sharedCache?: { readonly state: SharedCacheState };
    /** The hash of the configuration in force, shown in /readyz as `config_hash`. */
    configHash?: () => string;
  },
): Promise<AdminServer> {
  const { credentials, metrics, readiness } = deps;
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '').split('?')[0];
    const json = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
      res.end(JSON.stringify(body));
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') return json(405, { error: 'method_not_allowed' });
    if (path === '/healthz') return json(200, { status: 'ok' });
    if (path === '/readyz') {
      const states: Record<string, string> = {};
      const errors: Record<string, string> = {};
      for (const name of credentials.names()) {
        states[name] = credentials.state(name);
        const code = credentials.lastErrorCode(name);
        if (code !== undefined) errors[name] = code;
      }
      const waiting = readiness.prefetch.filter((name) =>
        credentials.prefetchSources(name).some((s) => s.peek() === undefined),
      );
      const ready = readiness.serving() && waiting.length === 0;
      return json(ready ? 200 : 503, {
        status: ready ? 'ready' : 'not_ready',
        serving: readiness.serving(),
        ...(waiting.length > 0 ? { waiting_for_tokens: waiting } : {}),
        credentials: states,
        ...(Object.keys(errors).length > 0 ? { last_errors: errors } : {}),
        ...(deps.sharedCache ? { shared_cache: deps.sharedCache.state } : {}),
        ...(deps.configHash ? { config_hash: deps.configHash() } : {}),
      });
    }
    if (path === '/metrics') {
      // The credential gauges read the credentials themselves as they are collected (metrics.ts).
      metrics.registry.metrics().then(
        (text) => {
          res.writeHead(200, { 'content-type': metrics.registry.contentType });
          res.end(text);
        },
        () => json(500, { error: 'metrics_failed' }),
      );
      return;
    }
    json(404, { error: 'not_found', detail: 'admin paths are /healthz, /readyz and /metrics' });
  });
  const bound = await listen(server, address);
  return {
    address: bound,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
