import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import type { DestinationStream } from 'pino';
import { type AdminServer, startAdminServer } from './admin/server.js';
import type { Config, TlsInterceptConfig } from './config/types.js';
import { Credentials } from './credentials/credentials.js';
import type { TokenSource } from './credentials/token-source.js';
import { createLogger, type Logger } from './log/logger.js';
import { Metrics } from './metrics/metrics.js';
import { type ConnectInterception, createConnectHandler } from './proxy/connect.js';
import { createProxyHandler } from './proxy/handler.js';
import { createInterceptor, type Interceptor } from './proxy/intercept.js';
import { type ProxyServer, startProxyServer } from './proxy/server.js';
import { createUpgradeHandler } from './proxy/upgrade.js';
import { Upstreams } from './proxy/upstreams.js';
import { createWebSocketHandler } from './proxy/websocket.js';
import { configFileHash } from './reload/config-file.js';
import { fingerprint } from './reload/fingerprint.js';
import { ConfigReloader, type Reloadable } from './reload/reloader.js';
import { createRoutedHosts } from './router/routed-hosts.js';
import { createRouter } from './router/router.js';
import type { SharedCache } from './shared-cache/shared-cache.js';
import { openInterception } from './tls-intercept/open.js';
import { openTracing } from './tracing/open.js';
import type { Tracing } from './tracing/tracing.js';

export interface StartOptions {
  /** Where log lines go; defaults to stdout. Tests pass a capturing stream. */
  readonly logDestination?: DestinationStream;
  readonly logger?: Logger;
  /**
   * The file `config` was read from: it can then be reloaded ({@link RunningInjector.reloader}),
   * and `config_hash` is the SHA-256 of its bytes.
   */
  readonly configFile?: string;
}

export interface RunningInjector {
  readonly proxyAddress: AddressInfo;
  readonly adminAddress: AddressInfo;
  readonly credentials: Credentials;
  readonly metrics: Metrics;
  readonly logger: Logger;
  /**
   * SHA-256 (hex) of the configuration in force: of its file's bytes, or, started without a file,
   * of the normalized configuration.
   */
  readonly configHash: string;
  /** Reloads the configuration file; only when started with `configFile`. */
  readonly reloader: ConfigReloader | undefined;
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
  // Like the shared cache: OpenTelemetry is loaded only now, and only when configured.
  const tracing = config.tracing ? await openTracing(config.tracing, logger) : undefined;
  const credentials = new Credentials(config, {
    metrics,
    logger,
    ...(sharedCache ? { sharedCache } : {}),
    ...(tracing ? { tracing } : {}),
  });
  metrics.observeCredentials(credentials);
  const upstreams = new Upstreams(config.routes);
  let serving = false;
  let proxy: ProxyServer | undefined;
  let admin: AdminServer | undefined;
  let generation: Generation | undefined;
  const prefetching = new Map<TokenSource, () => void>();
  /** Keeps one prefetch loop per cache a `prefetch` credential must fill; stops the others. */
  const syncPrefetch = (cfg: Config) => {
    const wanted = new Set(prefetched(cfg).flatMap((name) => credentials.prefetchSources(name)));
    for (const [source, stop] of prefetching) {
      if (wanted.has(source)) continue;
      stop();
      prefetching.delete(source);
    }
    for (const source of wanted)
      if (!prefetching.has(source)) prefetching.set(source, prefetchUntilReady(source));
  };
  let configHash = startHash(config, options.configFile);
  metrics.configLastReloadSuccess.set(Date.now() / 1000);

  try {
    // A replica that starts finds the fleet's tokens instead of asking for its own; bounded, so a
    // Redis that is down delays the start by at most this much.
    await sharedCache?.ready(SHARED_CACHE_START_WAIT_MS);
    admin = await startAdminServer(config.admin.listen, {
      credentials,
      metrics,
      readiness: {
        serving: () => serving,
        get prefetch() {
          return prefetched(generation?.config ?? config);
        },
      },
      configHash: () => configHash,
      ...(sharedCache ? { sharedCache } : {}),
    });
    const intercept = config.tlsIntercept
      ? await openConnectInterception(config, config.tlsIntercept, metrics, logger)
      : undefined;
    generation = newGeneration(config, { credentials, upstreams, metrics, logger, tracing }, intercept);
    // The generation is read once per request and connection, here: a reload swaps it whole, so
    // a request is handled by one configuration from start to end.
    proxy = await startProxyServer(
      config.listen,
      config.limits,
      (req, res) => generation!.onRequest(req, res),
      (req, socket, head, serve) => generation!.onConnect(req, socket, head, serve),
      (req, socket, head, serve) => generation!.onUpgrade(req, socket, head, serve),
      { connectionDropped: dropCounter(metrics, logger) },
    );
    serving = true;
    syncPrefetch(config);
  } catch (err) {
    await admin?.close();
    await upstreams.close();
    await credentials.close();
    await sharedCache?.close();
    await tracing?.close();
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
      config_hash: configHash,
    },
    'token-injector started',
  );

  const proxyServer = proxy;
  const adminServer = admin;
  const interception = generation.intercept;
  let closed: Promise<void> | undefined;
  const target: Reloadable = {
    get config() {
      return generation!.config;
    },
    apply(plan, hash) {
      // Its listeners and pools are closing: a new generation would have nothing to run on.
      if (closed !== undefined) throw new Error('the proxy is stopping');
      const next = plan.config;
      // Everything that can fail comes first, so a failure leaves the old configuration whole.
      upstreams.prepare(next.routes);
      const built = newGeneration(next, { credentials, upstreams, metrics, logger, tracing }, interception);
      credentials.reconfigure(next, plan.kept);
      generation = built;
      upstreams.retain(next.routes);
      proxyServer.setLimits(next.limits);
      logger.level = next.log.level;
      syncPrefetch(next);
      configHash = hash;
    },
  };
  const reloader = options.configFile
    ? new ConfigReloader(options.configFile, configHash, target, { metrics, logger })
    : undefined;
  return {
    proxyAddress: proxy.address,
    adminAddress: admin.address,
    credentials,
    metrics,
    logger,
    get configHash() {
      return configHash;
    },
    reloader,
    close() {
      closed ??= (async () => {
        serving = false;
        for (const stop of prefetching.values()) stop();
        logger.info(
          { event: 'stopping', in_flight: proxyServer.inFlight },
          'stopping: draining in-flight requests',
        );
        await proxyServer.close(generation!.config.shutdownTimeoutMs);
        await adminServer.close();
        await upstreams.close();
        await credentials.close();
        await sharedCache?.close();
        await tracing?.close();
        logger.info({ event: 'stopped' }, 'token-injector stopped');
      })();
      return closed;
    },
  };
}

/**
 * Everything that depends on the routes: the router and the handlers built on it. A reload makes
 * a new one and swaps it in whole; requests in flight finish with the one they started with.
 * Credentials and upstream pools live longer: a reload reconfigures them in place.
 */
interface Generation {
  readonly config: Config;
  readonly intercept: Interceptor | undefined;
  readonly onRequest: (req: IncomingMessage, res: ServerResponse) => void;
  readonly onConnect: (
    req: IncomingMessage,
    socket: Duplex,
    head: Buffer,
    serve: (s: Duplex) => void,
  ) => void;
  readonly onUpgrade: (
    req: IncomingMessage,
    socket: Duplex,
    head: Buffer,
    serve: (s: Duplex) => void,
  ) => void;
}

function newGeneration(
  config: Config,
  deps: {
    credentials: Credentials;
    upstreams: Upstreams;
    metrics: Metrics;
    logger: Logger;
    tracing: Tracing | undefined;
  },
  intercept: Interceptor | undefined,
): Generation {
  const router = createRouter(config.routes);
  const proxyDeps = { config, ...deps, router };
  const interception: ConnectInterception | undefined = intercept
    ? { routedHost: createRoutedHosts(config.routes), intercept }
    : undefined;
  return {
    config,
    intercept,
    onRequest: createProxyHandler(proxyDeps),
    onConnect: createConnectHandler(config, deps.logger, router, interception),
    onUpgrade: createUpgradeHandler(createWebSocketHandler(proxyDeps)),
  };
}

/** Names of the credentials with `prefetch: true`. */
function prefetched(config: Config): string[] {
  return [...config.credentials.values()].filter((c) => c.prefetch).map((c) => c.name);
}

/** The configuration's identity in /readyz: its file's bytes when there is a file. */
function startHash(config: Config, file: string | undefined): string {
  if (file !== undefined) {
    try {
      return configFileHash(file);
    } catch {
      // Gone since it was loaded: the watch will see it come back.
    }
  }
  return fingerprint(config);
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
): Promise<Interceptor> {
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
  return createInterceptor({
    certificates,
    metrics,
    logger,
    handshakeTimeoutMs: config.limits.headersTimeoutMs,
  });
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
