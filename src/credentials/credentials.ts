import type { IncomingMessage } from 'node:http';
import type { Config, CredentialConfig, RouteConfig, TokenScope } from '../config/types.js';
import { IssuerMetadata } from '../discovery/issuer-metadata.js';
import type { DpopProver } from '../dpop/proof.js';
import { UnknownCredentialError } from '../errors.js';
import type { Logger } from '../log/logger.js';
import type { Metrics } from '../metrics/metrics.js';
import type { SharedCache } from '../shared-cache/shared-cache.js';
import type { Token } from '../token-endpoint/token.js';
import type { Tracing } from '../tracing/tracing.js';
import { RequestTokens } from './request-tokens.js';
import { TokenProvider } from './token-provider.js';
import {
  type CacheCounters,
  type RetryPolicy,
  TokenSource,
  type TokenSourceEvents,
  type TokenState,
} from './token-source.js';

/** How a route gets its token for one request. */
export interface RouteTokens {
  /** Lower-case request headers that carry the app's assertions: consumed, never forwarded. */
  readonly consumedHeaders: readonly string[];
  /**
   * The token for a request: the token itself when one is cached, else a promise of it. Only a
   * credential that takes values from request headers reads `req`.
   */
  token(req: IncomingMessage): Token | Promise<Token>;
  /**
   * An upstream refused `accessToken` for this request ({@link TokenSource.invalidate}); returns
   * whether retrying the request would send another token.
   */
  invalidate(req: IncomingMessage, accessToken: string): boolean;
  /** The retry after a refusal succeeded with `accessToken` ({@link TokenSource.accepted}). */
  accepted(req: IncomingMessage, accessToken: string): void;
  /** Set for a DPoP credential: its tokens go upstream as `DPoP`, each with a proof of this key. */
  readonly dpop?: DpopProver;
}

const NO_COUNTERS: CacheCounters = { hit() {}, miss() {} };

/**
 * Every credential's token provider and caches. A credential used with different scopes,
 * audiences or resources (route overrides) has one cache per combination, so two routes with
 * different scopes never share a token.
 */
export class Credentials {
  readonly #providers = new Map<string, TokenProvider>();
  readonly #sources = new Map<string, TokenSource>();
  readonly #requestTokens = new Map<string, RequestTokens>();
  /** Per credential and scope combination: routes that ask for the same tokens share one. */
  readonly #routeTokens = new Map<string, RouteTokens>();
  readonly #cacheCounters = new Map<string, CacheCounters>();
  readonly #sourceEvents = new Map<string, TokenSourceEvents>();
  /** Providers dropped by a reload, until they are closed (see #retire). */
  readonly #retiring = new Map<TokenProvider, NodeJS.Timeout>();
  /** Issuers' metadata (RFC 8414), shared by the credentials that name the same one the same way. */
  readonly #issuers = new Map<string, IssuerMetadata>();
  readonly #metrics: Metrics | undefined;
  readonly #logger: Logger;
  readonly #shared: SharedCache | undefined;
  readonly #tracing: Tracing | undefined;

  constructor(
    config: Config,
    deps: { metrics?: Metrics; logger: Logger; sharedCache?: SharedCache; tracing?: Tracing },
  ) {
    this.#metrics = deps.metrics;
    this.#logger = deps.logger;
    this.#shared = deps.sharedCache;
    this.#tracing = deps.tracing;
    for (const cred of config.credentials.values()) this.#providers.set(cred.name, this.#newProvider(cred));
    this.#prepareRoutes(config.routes);
  }

  /**
   * Takes a reloaded configuration. Credentials named in `kept` (their configuration did not
   * change) keep their provider, their cached tokens and their refresh timers: no token request.
   * Every other one starts fresh; the caches of removed and changed credentials, and those no
   * route of `config` uses any more, are closed (their timers cleared) and dropped. Requests in
   * flight keep the caches they hold. Throws before changing anything if a new provider cannot be
   * made.
   */
  reconfigure(config: Config, kept: ReadonlySet<string>): void {
    const providers = new Map<string, TokenProvider>();
    for (const cred of config.credentials.values()) {
      const old = kept.has(cred.name) ? this.#providers.get(cred.name) : undefined;
      providers.set(cred.name, old ?? this.#newProvider(cred));
    }
    const live = new Set<string>();
    for (const [name, provider] of providers) {
      if (provider === this.#providers.get(name))
        live.add(scopeKey(name, effectiveScope(provider.credential, {})));
    }
    for (const route of config.routes) {
      const provider = providers.get(route.credential);
      if (provider !== undefined && provider === this.#providers.get(route.credential)) {
        live.add(scopeKey(route.credential, effectiveScope(provider.credential, route.tokenScope)));
      }
    }
    const dropped = [...this.#providers].filter(([name, p]) => providers.get(name) !== p);
    this.#providers.clear();
    for (const [name, provider] of providers) this.#providers.set(name, provider);
    for (const [key, source] of this.#sources) {
      if (live.has(key)) continue;
      source.close();
      this.#sources.delete(key);
    }
    for (const [key, cache] of this.#requestTokens) {
      if (live.has(key)) continue;
      cache.close();
      this.#requestTokens.delete(key);
    }
    for (const key of this.#routeTokens.keys()) if (!live.has(key)) this.#routeTokens.delete(key);
    for (const [name] of dropped) {
      if (providers.has(name)) continue;
      this.#sourceEvents.delete(name);
      this.#cacheCounters.delete(name);
    }
    for (const [, provider] of dropped) this.#retire(provider, config.shutdownTimeoutMs);
    // An issuer still named keeps its metadata, even by a changed credential: no refetch.
    const issuers = new Set([...config.credentials.values()].map(issuerKey));
    for (const [key, metadata] of this.#issuers) {
      if (issuers.has(key)) continue;
      this.#issuers.delete(key);
      // A retiring provider keeps the copy it holds: closed, it is never refetched.
      metadata.close().catch(() => {});
    }
    this.#prepareRoutes(config.routes);
  }

  /**
   * A provider no cache uses any more is closed once the requests in flight with it had the time
   * a drain gives them (`shutdown_timeout`): one of them may still need a token after a 401. Its
   * caches are closed already, so nothing fetches on its own meanwhile; the timer keeps nothing
   * alive.
   */
  #retire(provider: TokenProvider, afterMs: number): void {
    const timer = setTimeout(() => {
      this.#retiring.delete(provider);
      provider.close().catch(() => {});
    }, afterMs);
    timer.unref();
    this.#retiring.set(provider, timer);
  }

  #newProvider(cred: CredentialConfig): TokenProvider {
    return new TokenProvider(cred, {
      ...(this.#metrics ? { metrics: this.#metrics } : {}),
      ...(this.#tracing ? { tracing: this.#tracing } : {}),
      logger: this.#logger,
      // Token exchange with `source: credential`: that credential's own (default) token.
      credentialToken: (name) => this.source(name).get(),
      ...(cred.issuer !== undefined ? { discovery: this.#issuerMetadata(cred, cred.issuer) } : {}),
    });
  }

  #issuerMetadata(cred: CredentialConfig, issuer: string): IssuerMetadata {
    const key = issuerKey(cred);
    let metadata = this.#issuers.get(key);
    if (!metadata) {
      metadata = new IssuerMetadata({
        issuer,
        // The credential's own rules for reaching its authorization server.
        tls: cred.tls,
        timeoutMs: cred.timeoutMs,
        connectTimeoutMs: cred.connectTimeoutMs,
        allowInsecureHttp: cred.allowInsecureHttp,
        logger: this.#logger,
      });
      this.#issuers.set(key, metadata);
    }
    return metadata;
  }

  #prepareRoutes(routes: readonly RouteConfig[]): void {
    for (const route of routes) {
      // An unknown credential fails the start, not the route's first request.
      const cred = this.#provider(route.credential).credential;
      // A prefetched credential is ready once the caches its routes use hold a token, so those
      // exist from the start; every other route's cache is made on its first request.
      if (cred.prefetch) this.source(route.credential, route.tokenScope);
    }
  }

  /** The cache of a credential's token for a scope combination (default: the credential's own). */
  source(name: string, overrides: TokenScope = {}): TokenSource {
    const provider = this.#provider(name);
    const scope = effectiveScope(provider.credential, overrides);
    const key = scopeKey(name, scope);
    let source = this.#sources.get(key);
    if (!source) {
      const cred = provider.credential;
      const local = (previous: Token | undefined, deadline: number) =>
        provider.requestToken({ tokenScope: scope, deadline, ...(previous ? { previous } : {}) });
      const shared = this.#sharedFor(cred);
      source = new TokenSource({
        name,
        refreshAhead: cred.refreshAhead,
        // A prefetched credential is kept ready for the first request, however long it waits.
        keepFresh: cred.prefetch,
        retry: retryPolicy(cred),
        fetch: shared ? shared.fetch(cred, scope, local) : local,
        events: this.#events(name),
        ...(shared ? { revoked: (accessToken: string) => shared.invalidate(cred, scope, accessToken) } : {}),
      });
      this.#sources.set(key, source);
    }
    return source;
  }

  /**
   * How a route obtains its token; called once per route, on its first request. Routes with the
   * same credential and scope combination get the same object, so idle routes cost nothing here.
   */
  forRoute(route: RouteConfig): RouteTokens {
    const provider = this.#provider(route.credential);
    const scope = effectiveScope(provider.credential, route.tokenScope);
    const key = scopeKey(route.credential, scope);
    let tokens = this.#routeTokens.get(key);
    if (!tokens) {
      tokens = this.#newRouteTokens(provider, scope, key);
      this.#routeTokens.set(key, tokens);
    }
    return tokens;
  }

  #newRouteTokens(provider: TokenProvider, scope: TokenScope, key: string): RouteTokens {
    const name = provider.credential.name;
    const inputs = provider.perRequest;
    const counters = this.#counters(name);
    const dpop = provider.dpop ? { dpop: provider.dpop } : {};
    // The app's own DPoP header (if any) would sit beside ours, for another key: never forwarded.
    const own = provider.dpop ? ['dpop'] : [];
    if (inputs === undefined) {
      const source = this.source(name, scope);
      return {
        ...dpop,
        consumedHeaders: own,
        token: () => {
          const token = source.token();
          if (token instanceof Promise) counters.miss();
          else counters.hit();
          return token;
        },
        invalidate: (_req, accessToken) => source.invalidate(accessToken),
        accepted: (_req, accessToken) => source.accepted(accessToken),
      };
    }
    const requestTokens = new RequestTokens({
      name,
      inputs,
      retry: retryPolicy(provider.credential),
      fetch: (request, previous, deadline) => {
        const local = (prev: Token | undefined, until: number) =>
          provider.requestToken({
            tokenScope: scope,
            request,
            deadline: until,
            ...(prev ? { previous: prev } : {}),
          });
        const shared = this.#sharedFor(provider.credential);
        return (shared ? shared.fetch(provider.credential, scope, local, request) : local)(
          previous,
          deadline,
        );
      },
      ...(this.#sharedFor(provider.credential)
        ? {
            revoked: (request: ReadonlyMap<string, string>, accessToken: string) =>
              this.#shared?.invalidate(provider.credential, scope, accessToken, request),
          }
        : {}),
      events: this.#events(name),
      counters,
    });
    this.#requestTokens.set(key, requestTokens);
    return {
      ...dpop,
      consumedHeaders: [...inputs.headers, ...own],
      // Each value separately: `headers` joins a repeated header into one value.
      token: (req) => requestTokens.get(req.headersDistinct),
      invalidate: (req, accessToken) => requestTokens.invalidate(req.headersDistinct, accessToken),
      accepted: (req, accessToken) => requestTokens.accepted(req.headersDistinct, accessToken),
    };
  }

  /**
   * The fleet's cache, unless the credential has `dpop`: its tokens are bound to this process's
   * key (RFC 9449 §6), useless to a replica that does not hold it, and a generated key is
   * different in every replica and every start.
   */
  #sharedFor(cred: CredentialConfig): SharedCache | undefined {
    return cred.dpop ? undefined : this.#shared;
  }

  /** Every token cache of one credential that does not depend on request values. */
  sourcesOf(name: string): TokenSource[] {
    return [...this.#sources.values()].filter((s) => s.name === name);
  }

  /**
   * The caches to fill before the credential counts as ready: those the routes use, or the
   * credential's default one when no route uses it (e.g. only the `token` command does).
   */
  prefetchSources(name: string): TokenSource[] {
    const sources = this.sourcesOf(name);
    return sources.length > 0 ? sources : [this.source(name)];
  }

  /** The least ready state among a credential's caches; `per_request` if tokens follow requests. */
  state(name: string): TokenState | 'per_request' {
    const sources = this.sourcesOf(name);
    if (sources.length === 0) {
      // Known from the configuration: its caches appear only with the first request of a route.
      return this.#provider(name).perRequest ? 'per_request' : 'empty';
    }
    const order: TokenState[] = ['failing', 'empty', 'expired', 'stale', 'refreshing', 'fresh'];
    return sources.map((s) => s.state).sort((a, b) => order.indexOf(a) - order.indexOf(b))[0]!;
  }

  /** The code of the last failure among a credential's caches, if one has not recovered. */
  lastErrorCode(name: string): string | undefined {
    for (const source of this.sourcesOf(name)) {
      const err = source.lastError as { code?: string } | undefined;
      if (err !== undefined) return err.code ?? 'internal_error';
    }
    return undefined;
  }

  /** Seconds until the soonest expiry among a credential's cached tokens. */
  expiresInSeconds(name: string): number | undefined {
    const left = this.sourcesOf(name)
      .map((s) => s.expiresInSeconds)
      .filter((v): v is number => v !== undefined);
    return left.length > 0 ? Math.min(...left) : undefined;
  }

  /** When the soonest-expiring of a credential's cached tokens expires (epoch milliseconds). */
  expiresAt(name: string): number | undefined {
    let soonest: number | undefined;
    for (const source of this.sourcesOf(name)) {
      const at = source.expiresAt;
      if (at !== undefined && (soonest === undefined || at < soonest)) soonest = at;
    }
    return soonest;
  }

  names(): string[] {
    return [...this.#providers.keys()];
  }

  has(name: string): boolean {
    return this.#providers.has(name);
  }

  /** The credential's configuration (for readiness and CLI decisions). */
  config(name: string): CredentialConfig {
    return this.#provider(name).credential;
  }

  async close(): Promise<void> {
    for (const source of this.#sources.values()) source.close();
    for (const cache of this.#requestTokens.values()) cache.close();
    for (const timer of this.#retiring.values()) clearTimeout(timer);
    const all = [...this.#providers.values(), ...this.#retiring.keys()];
    this.#retiring.clear();
    await Promise.all(all.map((p) => p.close()));
    await Promise.all([...this.#issuers.values()].map((m) => m.close()));
    this.#issuers.clear();
  }

  #provider(name: string): TokenProvider {
    const provider = this.#providers.get(name);
    if (!provider) {
      const known = [...this.#providers.keys()].join(', ') || 'none';
      throw new UnknownCredentialError(`unknown credential "${name}" (known: ${known})`);
    }
    return provider;
  }

  /** One credential's refresh events, shared by all its caches. */
  #events(name: string): TokenSourceEvents {
    let events = this.#sourceEvents.get(name);
    if (events) return events;
    const labels = { credential: name };
    const log = this.#logger.child(labels);
    const refreshFailed = (_e: unknown, retryIn: number) =>
      log.warn({ event: 'refresh_retry', retry_in_ms: retryIn }, 'refresh failed; keeping the current token');
    const m = this.#metrics;
    if (m) {
      const refreshes = m.cacheRefreshes.labels(labels);
      events = { refreshStarted: () => refreshes.inc(), refreshFailed };
    } else events = { refreshFailed };
    this.#sourceEvents.set(name, events);
    return events;
  }

  /** One credential's hit and miss counters, shared by its routes; made on first use. */
  #counters(name: string): CacheCounters {
    const m = this.#metrics;
    if (!m) return NO_COUNTERS;
    let counters = this.#cacheCounters.get(name);
    if (!counters) {
      const misses = m.cacheMisses.labels({ credential: name });
      counters = { hit: m.cacheHits.child({ credential: name }), miss: () => misses.inc() };
      this.#cacheCounters.set(name, counters);
    }
    return counters;
  }
}

function retryPolicy(cred: CredentialConfig): RetryPolicy {
  return {
    deadlineMs: cred.timeoutMs,
    initialBackoffMs: cred.initialBackoffMs,
    maxBackoffMs: cred.maxBackoffMs,
  };
}

/**
 * Which credentials may share an issuer's metadata: the same issuer reached the same way (trust,
 * timeouts, plain HTTP allowed). Empty for a credential without `issuer`.
 */
function issuerKey(cred: CredentialConfig): string {
  if (cred.issuer === undefined) return '';
  return [
    cred.issuer,
    cred.tls.caFile ?? '',
    cred.timeoutMs,
    cred.connectTimeoutMs,
    cred.allowInsecureHttp,
  ].join('\n');
}

/** The cache key of a credential's tokens for one scope combination. */
function scopeKey(name: string, scope: TokenScope): string {
  return `${name}\n${scope.scope ?? ''}\n${scope.audience ?? ''}\n${scope.resource ?? ''}`;
}

function effectiveScope(cred: CredentialConfig, overrides: TokenScope): TokenScope {
  const scope = overrides.scope ?? cred.scope;
  const audience = overrides.audience ?? cred.audience;
  const resource = overrides.resource ?? cred.resource;
  return {
    ...(scope !== undefined ? { scope } : {}),
    ...(audience !== undefined ? { audience } : {}),
    ...(resource !== undefined ? { resource } : {}),
  };
}
