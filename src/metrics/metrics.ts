import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import { BatchedCounter } from './batched-counter.js';

const PREFIX = 'token_injector_';

export type StatusClass = '1xx' | '2xx' | '3xx' | '4xx' | '5xx';

/**
 * Every state a credential can be in (credentials.ts `state()`): each is exported for each
 * credential, 1 for the current one and 0 for the others, so a query can compare states or
 * alert on one without `absent()` tricks.
 */
export const CREDENTIAL_STATES = [
  'fresh',
  'refreshing',
  'stale',
  'failing',
  'expired',
  'empty',
  'per_request',
] as const;
export type CredentialState = (typeof CREDENTIAL_STATES)[number];

/**
 * What the credential gauges are read from at each scrape (credentials/credentials.ts
 * `Credentials`): read when Prometheus asks, never kept up to date on the request path.
 */
export interface CredentialReadings {
  names(): readonly string[];
  state(name: string): CredentialState;
  lastErrorCode(name: string): string | undefined;
  /** Seconds until the soonest expiry among the credential's cached tokens. */
  expiresInSeconds(name: string): number | undefined;
  /** When that soonest-expiring token expires, in epoch milliseconds. */
  expiresAt(name: string): number | undefined;
}

/**
 * Every metric token-injector exports. Labels come from configuration names (credential, route)
 * and fixed outcome words only, never from request data, so cardinality is bounded and no secret
 * can reach a label.
 */
export class Metrics {
  readonly registry = new Registry();
  readonly tokenRequests = new Counter({
    name: `${PREFIX}token_requests_total`,
    help: 'Token endpoint requests by credential and outcome (success or an error code).',
    labelNames: ['credential', 'outcome'] as const,
    registers: [this.registry],
  });
  readonly tokenRequestDuration = new Histogram({
    name: `${PREFIX}token_request_duration_seconds`,
    help: 'Duration of token endpoint requests.',
    labelNames: ['credential'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });
  readonly cacheHits = new BatchedCounter({
    name: `${PREFIX}token_cache_hits_total`,
    help: 'Requests served with a cached token, without waiting.',
    labelNames: ['credential'] as const,
    registers: [this.registry],
  });
  readonly cacheMisses = new Counter({
    name: `${PREFIX}token_cache_misses_total`,
    help: 'Requests that found no usable cached token: they waited for a fetch, or failed fast while the token endpoint was failing. Prefetches and background refreshes are not counted.',
    labelNames: ['credential'] as const,
    registers: [this.registry],
  });
  readonly cacheRefreshes = new Counter({
    name: `${PREFIX}token_refreshes_total`,
    help: 'Background refreshes started ahead of token expiry.',
    labelNames: ['credential'] as const,
    registers: [this.registry],
  });
  /** Set by {@link observeCredentials}; the credential gauges below are empty until then. */
  #credentials: CredentialReadings | undefined;
  readonly tokenExpiresIn: Gauge<'credential'> = new Gauge({
    name: `${PREFIX}token_expires_in_seconds`,
    help: "Seconds until each credential's cached token expires (negative once expired).",
    labelNames: ['credential'] as const,
    registers: [this.registry],
    collect: () => this.#perCredential(this.tokenExpiresIn, (c, name) => c.expiresInSeconds(name)),
  });
  readonly tokenExpiry: Gauge<'credential'> = new Gauge({
    name: `${PREFIX}token_expiry_timestamp_seconds`,
    help: "Unix time at which each credential's cached token expires; absent while it has none.",
    labelNames: ['credential'] as const,
    registers: [this.registry],
    collect: () =>
      this.#perCredential(this.tokenExpiry, (c, name) => {
        const at = c.expiresAt(name);
        return at === undefined ? undefined : at / 1000;
      }),
  });
  readonly credentialState: Gauge<'credential' | 'state'> = new Gauge({
    name: `${PREFIX}credential_state`,
    help: "Each credential's state: 1 for the current one, 0 for the others (fresh, refreshing, stale, failing, expired, empty, per_request).",
    labelNames: ['credential', 'state'] as const,
    registers: [this.registry],
    collect: () =>
      this.#eachCredential(this.credentialState, (c, credential) => {
        const current = c.state(credential);
        for (const state of CREDENTIAL_STATES) {
          this.credentialState.set({ credential, state }, state === current ? 1 : 0);
        }
      }),
  });
  readonly credentialLastError: Gauge<'credential' | 'code'> = new Gauge({
    name: `${PREFIX}credential_last_error`,
    help: "The error code of a credential's last failed token request, 1 while it has not succeeded since.",
    labelNames: ['credential', 'code'] as const,
    registers: [this.registry],
    collect: () =>
      this.#eachCredential(this.credentialLastError, (c, credential) => {
        const code = c.lastErrorCode(credential);
        if (code !== undefined) this.credentialLastError.set({ credential, code }, 1);
      }),
  });
  readonly proxiedRequests = new BatchedCounter({
    name: `${PREFIX}proxied_requests_total`,
    help: 'Requests answered by the proxy, by route ("none" when unmatched) and status class.',
    labelNames: ['route', 'status_class'] as const,
    registers: [this.registry],
  });
  readonly sharedCacheUp = new Gauge({
    name: `${PREFIX}shared_cache_up`,
    help: 'Whether the shared token cache (shared_cache) is connected: 1 or 0.',
    registers: [],
  });
  readonly sharedCacheOperations = new Counter({
    name: `${PREFIX}shared_cache_operations_total`,
    help: 'Shared token cache commands by operation and result (ok, error, timeout, invalid).',
    labelNames: ['op', 'result'] as const,
    registers: [],
  });
  readonly sharedCacheFetchesAvoided = new Counter({
    name: `${PREFIX}shared_cache_fetches_avoided_total`,
    help: 'Tokens taken from the shared cache instead of a token request of this replica.',
    labelNames: ['credential'] as const,
    registers: [],
  });
  readonly interceptedConnections = new Counter({
    name: `${PREFIX}intercepted_connections_total`,
    help: 'CONNECT tunnels terminated with a minted certificate (tls_intercept), by outcome: ok (handshake done), handshake_failed (a TLS error: the app refused the certificate, or spoke no TLS), abandoned (the app left or went quiet before the handshake ended), mint_failed.',
    labelNames: ['outcome'] as const,
    registers: [],
  });
  readonly connectionsDropped = new Counter({
    name: `${PREFIX}connections_dropped_total`,
    help: 'Client connections closed at accept because limits.max_connections were open.',
    registers: [this.registry],
  });
  readonly upstreamDuration = new Histogram({
    name: `${PREFIX}upstream_duration_seconds`,
    help: 'Time from forwarding a request to receiving the upstream response headers.',
    labelNames: ['route'] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });
  /** Every result exported from the start (at 0), so `increase()` sees the first failure. */
  readonly configReloads = withZeros(
    new Counter({
      name: `${PREFIX}config_reloads_total`,
      help: 'Configuration reloads (SIGHUP or a change of the file) by result: success (applied; keys that need a restart are logged), invalid (the file does not validate: nothing changed), error (valid, but it could not be applied: nothing changed).',
      labelNames: ['result'] as const,
      registers: [this.registry],
    }),
    'result',
    RELOAD_RESULTS,
  );
  readonly configLastReloadSuccess = new Gauge({
    name: `${PREFIX}config_last_reload_success_timestamp_seconds`,
    help: 'When the configuration in force was loaded (at start, then at each successful reload), in Unix seconds.',
    registers: [this.registry],
  });

  /** The shared cache's metrics appear only when `shared_cache` is configured. */
  enableSharedCache(): void {
    if (this.registry.getSingleMetric(`${PREFIX}shared_cache_up`)) return;
    this.registry.registerMetric(this.sharedCacheUp);
    this.registry.registerMetric(this.sharedCacheOperations as Counter<string>);
    this.registry.registerMetric(this.sharedCacheFetchesAvoided as Counter<string>);
  }

  /**
   * The interception metrics appear only when `tls_intercept` is configured. Certificates are
   * counted by the leaf cache; the counter catches up with it when read.
   */
  enableInterception(leaves: { readonly minted: number }): void {
    if (this.registry.getSingleMetric(`${PREFIX}intercepted_connections_total`)) return;
    this.registry.registerMetric(this.interceptedConnections as Counter<string>);
    let reported = 0;
    new Counter({
      name: `${PREFIX}intercept_certificates_minted_total`,
      help: 'Leaf certificates minted from the interception CA (each reused until near its expiry).',
      registers: [this.registry],
      collect() {
        this.inc(leaves.minted - reported);
        reported = leaves.minted;
      },
    });
  }

  /**
   * Node's process metrics keep their standard names (`process_resident_memory_bytes`,
   * `nodejs_eventloop_lag_seconds`, …), those of every Node service, so stock dashboards and
   * alerts find them; only the product's own metrics carry the `token_injector_` prefix.
   */
  constructor(options: { processMetrics?: boolean } = {}) {
    if (options.processMetrics !== false) collectDefaultMetrics({ register: this.registry });
  }

  /**
   * The credentials whose states, expiries and last errors the gauges show, read at each scrape;
   * called again with the new ones if they are replaced (a configuration reload), so credentials
   * that are gone disappear from the next scrape.
   */
  observeCredentials(credentials: CredentialReadings): void {
    this.#credentials = credentials;
  }

  /** Sets one gauge per credential from `value`, leaving out those without one. */
  #perCredential(
    gauge: Gauge<'credential'>,
    value: (c: CredentialReadings, name: string) => number | undefined,
  ): void {
    this.#eachCredential(gauge, (c, credential) => {
      const v = value(c, credential);
      if (v !== undefined) gauge.set({ credential }, v);
    });
  }

  /** Refills `gauge` at a scrape: emptied, then `fill` once a credential (none before observeCredentials). */
  #eachCredential<L extends string>(
    gauge: Gauge<L>,
    fill: (c: CredentialReadings, credential: string) => void,
  ): void {
    gauge.reset();
    const c = this.#credentials;
    if (c === undefined) return;
    for (const credential of c.names()) fill(c, credential);
  }
}

/** How a configuration reload ended (`config_reloads_total{result}`). */
export const RELOAD_RESULTS = ['success', 'invalid', 'error'] as const;
export type ReloadResult = (typeof RELOAD_RESULTS)[number];

function withZeros<L extends string>(counter: Counter<L>, label: L, values: readonly string[]): Counter<L> {
  for (const value of values) counter.inc({ [label]: value } as Partial<Record<L, string>>, 0);
  return counter;
}

export function statusClass(status: number): StatusClass {
  if (status < 200) return '1xx';
  if (status < 300) return '2xx';
  if (status < 400) return '3xx';
  if (status < 500) return '4xx';
  return '5xx';
}
