import type { CredentialConfig, SharedCacheConfig, TokenScope } from '../config/types.js';
import type { Logger } from '../log/logger.js';
import type { Metrics } from '../metrics/metrics.js';
import { type FleetFetchOptions, fleetFetch, type LocalFetch } from './fleet-fetch.js';
import { RedisStore } from './redis-store.js';
import { Sealer } from './sealer.js';
import type { SharedCacheState, SharedStore } from './store.js';

/** A lock holder gets the credential's whole token request and this much more before it lapses. */
const LOCK_MARGIN_MS = 2_000;

/**
 * The fleet-wide token cache: the piece credentials talk to. It names entries (HMAC of what
 * makes a token different), turns a replica's own fetch into one through the fleet, and drops
 * refused tokens. Off unless `shared_cache` is configured; then it costs nothing per request:
 * it is consulted only when a replica's own cache has no usable token or one is due for refresh.
 */
export class SharedCache {
  readonly #store: SharedStore;
  readonly #sealer: Sealer;
  readonly #metrics: Metrics | undefined;
  readonly #avoided = new Map<string, () => void>();

  constructor(config: SharedCacheConfig, deps: { metrics?: Metrics; logger: Logger; store?: SharedStore }) {
    this.#sealer = new Sealer(config.encryptionKeys);
    this.#metrics = deps.metrics;
    const log = deps.logger.child({ shared_cache: redactedUrl(config.url) });
    const metrics = deps.metrics;
    metrics?.enableSharedCache();
    metrics?.sharedCacheUp.set(0);
    this.#store =
      deps.store ??
      new RedisStore(config, this.#sealer, {
        // Once per change of state, so a Redis that stays down is one line, not one per request.
        stateChanged: (state, reason) => {
          metrics?.sharedCacheUp.set(state === 'up' ? 1 : 0);
          if (state === 'up') log.info({ event: 'shared_cache_up' }, 'shared cache connected');
          else
            log.warn(
              { event: 'shared_cache_down', reason },
              'shared cache unavailable: each replica fetches its own tokens until it is back',
            );
        },
        operation: (op, result) => metrics?.sharedCacheOperations.inc({ op, result }),
      });
  }

  get state(): SharedCacheState {
    return this.#store.state;
  }

  /** Waits (bounded) for the first connection, so a starting replica finds the fleet's tokens. */
  ready(timeoutMs: number): Promise<void> {
    return this.#store.ready(timeoutMs);
  }

  /**
   * `local` (the credential's own token request), through the fleet. `request` holds the values
   * of the app's request headers for per-user tokens: they only ever reach Redis inside an HMAC.
   */
  fetch(
    credential: CredentialConfig,
    scope: TokenScope,
    local: LocalFetch,
    request?: ReadonlyMap<string, string>,
  ): LocalFetch {
    const opts: FleetFetchOptions = {
      store: this.#store,
      credential: credential.name,
      ids: this.#ids(credential, scope, request),
      lockTtlMs: credential.timeoutMs + LOCK_MARGIN_MS,
      refreshAhead: request ? undefined : credential.refreshAhead,
      backoff: { initialMs: credential.initialBackoffMs, maxMs: credential.maxBackoffMs },
      local,
      avoided: this.#avoidedCounter(credential.name),
    };
    return fleetFetch(opts);
  }

  /** An upstream refused `accessToken`: the fleet's entry is dropped if it still holds it. */
  invalidate(
    credential: CredentialConfig,
    scope: TokenScope,
    accessToken: string,
    request?: ReadonlyMap<string, string>,
  ): void {
    // Under every key: during a rotation the refused token may sit in an entry named by the old one.
    for (const id of this.#ids(credential, scope, request))
      this.#store.invalidate(id, accessToken).catch(() => {});
  }

  close(): Promise<void> {
    return this.#store.close();
  }

  /** Everything that makes two tokens different; two fleets sharing a Redis never mix them up. */
  #ids(credential: CredentialConfig, scope: TokenScope, request?: ReadonlyMap<string, string>): string[] {
    const parts = [
      // With discovery, the issuer names the server (its token endpoint may move).
      credential.tokenEndpoint?.href ?? credential.issuer ?? '',
      credential.clientId,
      credential.grant.type,
      credential.name,
      scope.scope ?? '',
      scope.audience ?? '',
      scope.resource ?? '',
      ...[...(request ?? new Map<string, string>())].flat(),
    ];
    return this.#sealer.ids(parts);
  }

  #avoidedCounter(name: string): () => void {
    let inc = this.#avoided.get(name);
    if (!inc) {
      const child = this.#metrics?.sharedCacheFetchesAvoided.labels({ credential: name });
      inc = () => child?.inc();
      this.#avoided.set(name, inc);
    }
    return inc;
  }
}

/** The URL without anything secret (it has no user info: config refuses that). */
function redactedUrl(url: URL): string {
  return `${url.protocol}//${url.host}${url.pathname}`;
}
