import type { AddressInfo } from 'node:net';
import type { DestinationStream } from 'pino';
import { Metrics } from './metrics/metrics.js';
import { type AdminServer, startAdminServer } from './admin/server.js';
import type { Config, TlsInterceptConfig } from './config/types.js';
import { Credentials } from './credentials/credentials.js';
import type { TokenSource } from './credentials/token-source.js';
import { createLogger, type Logger } from './log/logger.js';
import { type ConnectInterception, createConnectHandler } from './proxy/connect.js';
import { createProxyHandler } from './proxy/handler.js';
import { createInterceptor } from './proxy/intercept.js';
import { type ProxyServer, startProxyServer } from './proxy/server.js';
import { createUpgradeHandler } from './proxy/upgrade.js';
import { Upstreams } from './proxy/upstreams.js';
import { createWebSocketHandler } from './proxy/websocket.js';
import { createRoutedHosts } from './router/routed-hosts.js';
import { createRouter } from './router/router.js';
import type { SharedCache } from './shared-cache/shared-cache.js';
import { openInterception } from './tls-intercept/open.js';

export interface StartOptions {
  /** Where log lines go; defaults to stdout. Tests pass a capturing stream. */
  readonly logDestination?: DestinationStream;
  readonly logger?: Logger;
}

export interface RunningInjector {
  readonly proxyAddress: AddressInfo;
  readonly adminAddress: AddressInfo;
  readonly credentials: Credentials;
  readonly metrics: Metrics;
  readonly logger: Logger;
  /** Graceful stop: refuse new requests, finish in-flight ones (bounded), release everything. */
  close(): Promise<void>;
}

const PREFETCH_RETRY_MIN_MS = 1_000;
const SHARED_CACHE_START_WAIT_MS = 2_000;
const PREFETCH_RETRY_MAX_MS = 30_000;

/** Starts the proxy and admin listeners for a validated configuration. */
export async function startTokenInjector(
  config: Config,
  options: StartOptions = {},
): Promise<RunningInjector> {
  const logger = options.logger ?? createLogger(config.log.level, options.logDestination);
  const metrics = new Metrics();
  const sharedCache = config.sharedCache
    ? await openSharedCache(config.sharedCache, { metrics, logger })
    : undefined;
  const credentials = new Credentials(config, { metrics, logger, ...(sharedCache ? { sharedCache } : {}) });
  const upstreams = new Upstreams(config.routes);
  const router = createRouter(config.routes);
  let serving = false;
  let proxy: ProxyServer | undefined;
  let admin: AdminServer | undefined;
  const stopPrefetch: (() => void)[] = [];

  try {
    const prefetch = [...config.credentials.values()].filter((c) => c.prefetch).map((c) => c.name);
    // A replica that starts finds the fleet's tokens instead of asking for its own; bounded, so a
    // Redis that is down delays the start by at most this much.
    await sharedCache?.ready(SHARED_CACHE_START_WAIT_MS);
    admin = await startAdminServer(config.admin.listen, {
      credentials,
      metrics,
      readiness: { serving: () => serving, prefetch },
      ...(sharedCache ? { sharedCache } : {}),
    });
    const interception = config.tlsIntercept
      ? await openConnectInterception(config, config.tlsIntercept, metrics, logger)
      : undefined;
    const proxyDeps = { config, credentials, upstreams, metrics, logger, router };
    proxy = await startProxyServer(
      config.listen,
      config.limits,
      createProxyHandler(proxyDeps),
      createConnectHandler(config, logger, router, interception),
      createUpgradeHandler(createWebSocketHandler(proxyDeps)),
      { connectionDropped: dropCounter(metrics, logger) },
    );
    serving = true;
    for (const name of prefetch) {
      for (const source of credentials.prefetchSources(name)) stopPrefetch.push(prefetchUntilReady(source));
    }
  } catch (err) {
    await admin?.close();
    await upstreams.close();
    await credentials.close();
    await sharedCache?.close();
    throw err;
  }
  for (const w of config.warnings) {
    logger.warn({ event: 'config_warning', key: w.path }, `configuration: ${w.path}: ${w.message}`);
  }
  logger.info(
    {
      event: 'started',
      listen: `${proxy.address.address}:${proxy.address.port}`,
      admin: `${admin.address.address}:${admin.address.port}`,
      routes: config.routes.length,
      credentials: config.credentials.size,
    },
    'token-injector started',
  );

  const proxyServer = proxy;
  const adminServer = admin;
  let closed: Promise<void> | undefined;
  return {
    proxyAddress: proxy.address,
    adminAddress: admin.address,
    credentials,
    metrics,
    logger,
    close() {
      closed ??= (async () => {
        serving = false;
        for (const stop of stopPrefetch) stop();
        logger.info(
          { event: 'stopping', in_flight: proxyServer.inFlight },
          'stopping: draining in-flight requests',
        );
        await proxyServer.close(config.shutdownTimeoutMs);
        await adminServer.close();
        await upstreams.close();
        await credentials.close();
        await sharedCache?.close();
        logger.info({ event: 'stopped' }, 'token-injector stopped');
      })();
      return closed;
    },
  };
}

/**
 * The shared cache, with its Redis client loaded only now: a replica without `shared_cache` never
 * loads it at all.
 */
export async function openSharedCache(
  config: NonNullable<Config['sharedCache']>,
  deps: { metrics?: Metrics; logger: Logger },
): Promise<SharedCache> {
  const { SharedCache } = await import('./shared-cache/shared-cache.js');
  return new SharedCache(config, deps);
}

/**
 * HTTPS interception (`tls_intercept`): the X.509 library and the CA are loaded only now, so a
 * proxy without it never loads them.
 */
async function openConnectInterception(
  config: Config,
  tlsIntercept: TlsInterceptConfig,
  metrics: Metrics,
  logger: Logger,
): Promise<ConnectInterception> {
  const certificates = await openInterception(tlsIntercept);
  metrics.enableInterception(certificates.stats);
  logger.info(
    {
      event: 'tls_intercept',
      ca: certificates.ca.subject,
      ca_sha256: certificates.ca.fingerprint256,
      ca_not_after: certificates.ca.notAfter.toISOString(),
    },
    'CONNECT to routed hosts is intercepted with certificates from this CA',
  );
  return {
    routedHost: createRoutedHosts(config.routes),
    intercept: createInterceptor({
      certificates,
      metrics,
      logger,
      handshakeTimeoutMs: config.limits.headersTimeoutMs,
    }),
  };
}

/** Counts every dropped connection; logs at most one warning a minute, so a flood is not a log flood. */
function dropCounter(metrics: Metrics, logger: Logger): () => void {
  let loggedAt = Number.NEGATIVE_INFINITY;
  let since = 0;
  return () => {
    metrics.connectionsDropped.inc();
    since++;
    const now = performance.now();
    if (now - loggedAt < 60_000) return;
    logger.warn(
      { event: 'connections_dropped', dropped: since },
      'limits.max_connections reached: new client connections are closed at accept',
    );
    loggedAt = now;
    since = 0;
  };
}

/**
 * Fetches a `prefetch` credential's first token, retrying with capped exponential backoff until
 * it succeeds, so /readyz turns ready by itself once the identity provider is reachable.
 */
function prefetchUntilReady(source: TokenSource): () => void {
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  let delay = PREFETCH_RETRY_MIN_MS;
  const attempt = () => {
    source.get().catch(() => {
      if (stopped) return;
      timer = setTimeout(attempt, delay * (0.8 + Math.random() * 0.4));
      delay = Math.min(delay * 2, PREFETCH_RETRY_MAX_MS);
    });
  };
  attempt();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
