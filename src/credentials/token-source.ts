import { CredentialBackoffError, isTransient, TokenError } from '../errors.js';

/** Re-exported where the retry rules live, for readers of this module. */
export { isTransient } from '../errors.js';

import type { Token } from '../token-endpoint/token.js';

/**
 * - `empty`: no token yet, no failure; `expired`: the token ran out and nobody asked since;
 * - `fresh`: a usable token; `refreshing`: usable, with a fetch in progress;
 * - `stale`: a refresh failed, and the token is served until its real expiry;
 * - `failing`: no usable token, and the last fetch failed: requests fail fast until the next probe.
 */
export type TokenState = 'empty' | 'fresh' | 'refreshing' | 'stale' | 'expired' | 'failing';

/** Hooks for metrics and logs, so the cache itself stays free of I/O. */
export interface TokenSourceEvents {
  refreshStarted?(): void;
  refreshFailed?(error: unknown, retryInMs: number): void;
}

/**
 * Counts the requests that found their token cached (hit) or not (miss). Kept on the request
 * path, not in the cache: prefetches and background refreshes look up the cache too, but are
 * no request finding (or missing) a token.
 */
export interface CacheCounters {
  hit(): void;
  miss(): void;
}

/** How failures are retried. Transient ones are retried with backoff within one deadline. */
export interface RetryPolicy {
  /** The time one fetch (all its attempts) may take: the credential's `timeout`. */
  readonly deadlineMs: number;
  readonly initialBackoffMs: number;
  readonly maxBackoffMs: number;
}

/**
 * How a source obtains its tokens. `R` is what a fetch needs from the request that asks for the
 * token (per-user tokens: the app's assertions); `void` for a credential's own token. Options
 * hold nothing of one source, so many sources can share one object.
 */
export interface TokenSourceOptions<R = void> {
  readonly name: string;
  /**
   * One attempt at a new token; called at most once at a time, with the token it replaces (whose
   * refresh token the password grant uses), the time by which it must be done, and the request
   * that started the fetch (every retry of that fetch gets the same one).
   */
  readonly fetch: (previous: Token | undefined, deadline: number, request: R) => Promise<Token>;
  /**
   * Fraction of the usable lifetime after which a background refresh starts (0..1); undefined
   * for no background refresh (tokens of per-request assertions are renewed on demand). Only a
   * source whose fetch needs no request can refresh in the background: no request is at hand then.
   */
  // biome-ignore lint/suspicious/noConfusingVoidType: `void` is what a source without requests takes.
  readonly refreshAhead: [R] extends [void] ? number | undefined : undefined;
  /**
   * Refresh ahead even while nobody uses the token (`prefetch: true`). Otherwise only a token
   * served since the last fetch is refreshed ahead: an idle credential with short-lived tokens
   * would ask for one every few seconds for nothing, and its next request renews it on demand.
   */
  readonly keepFresh?: boolean;
  /** Also sets how long a refused replacement token is held (see {@link TokenSource.invalidate}). */
  readonly retry?: RetryPolicy;
  readonly events?: TokenSourceEvents;
  /**
   * An upstream refused this token and it is dropped here (the fleet's copy should go too);
   * `request` is the one that the upstream refused.
   */
  readonly revoked?: (accessToken: string, request: R) => void;
  /** A fetch ended, with a token or not (see {@link TokenSource.settledToken}). */
  readonly flightEnded?: (source: TokenSource<R>, request: R) => void;
  readonly now?: () => number;
  readonly random?: () => number;
}

/** How much of the end of a token's life is never used, to absorb clock skew and transit time. */
const MAX_SAFETY_MS = 30_000;
/**
 * At least one second: servers compute `exp` from a whole-second `iat`, so a token can expire up
 * to a second before "received at + expires_in".
 */
const MIN_SAFETY_MS = 1_000;
const JITTER = 0.05;
const DEFAULT_RETRY: RetryPolicy = { deadlineMs: 10_000, initialBackoffMs: 250, maxBackoffMs: 30_000 };

export function usableUntil(token: Token): number {
  const lifetime = token.expiresAt - token.issuedAt;
  const safety = Math.min(MAX_SAFETY_MS, Math.max(MIN_SAFETY_MS, lifetime * 0.05), lifetime / 2);
  return token.expiresAt - safety;
}

/**
 * The cached token of one credential. Any number of concurrent callers that find no usable token
 * share one fetch (single flight); a token in use is refreshed in the background before it runs
 * out, so callers never wait while a valid token exists and never get an expired one. A token
 * nobody used since it came is not refreshed ahead (unless `keepFresh`): the next use renews it.
 *
 * When the token endpoint fails, transient failures are retried with exponential backoff and
 * jitter (or the server's Retry-After) within the fetch's deadline. A token whose refresh fails is
 * served until its real expiry (stale-while-error). Without a usable token, callers fail fast
 * until the backoff step ends, and then one fetch probes the endpoint: however many requests
 * arrive, a failing endpoint sees at most one request per backoff step.
 */
export class TokenSource<R = void> {
  readonly name: string;
  #token: Token | undefined;
  #inflight: Promise<Token> | undefined;
  #timer: NodeJS.Timeout | undefined;
  #lastError: unknown;
  /**
   * A token an upstream refused: not served again (except while held), though kept for its
   * refresh token.
   */
  #revoked: string | undefined;
  /** Until then (epoch ms) the refused token is still served and not replaced; see invalidate(). */
  #holdUntil = 0;
  /** The current token was fetched because an upstream refused its predecessor. */
  #replacesRefused = false;
  /** Consecutive holds; sets the length of the next one. */
  #holds = 0;
  /** A cached token was served to a caller since the last fetch started. */
  #used = false;
  /** The refresh-ahead point passed while the token was unused: the next use starts the refresh. */
  #refreshDue = false;
  /** Consecutive failed attempts; sets the next backoff step. */
  #failures = 0;
  /** No new attempt before this time (epoch ms) while failing. */
  #retryAt = 0;
  #closed = false;
  /** The backoff wait between attempts, ended early by close(). */
  #sleep: { timer: NodeJS.Timeout; wake: () => void } | undefined;
  readonly #opts: TokenSourceOptions<R>;
  readonly #retry: RetryPolicy;
  readonly #now: () => number;
  readonly #random: () => number;

  /** `token`: one to start with, as if fetched (see {@link settledToken}). */
  constructor(opts: TokenSourceOptions<R>, token?: Token) {
    this.name = opts.name;
    this.#opts = opts;
    this.#token = token;
    this.#retry = opts.retry ?? DEFAULT_RETRY;
    this.#now = opts.now ?? Date.now;
    this.#random = opts.random ?? Math.random;
  }

  /**
   * The cached token if it may be used right now; never waits, never fetches. Past the safety
   * margin the token is still served while a refresh is under way or failing, until one second
   * before its real expiry.
   */
  peek(): Token | undefined {
    const token = this.#token;
    if (token === undefined) return undefined;
    const now = this.#now();
    if (token.accessToken === this.#revoked && now >= this.#holdUntil) return undefined;
    if (now < usableUntil(token)) return token;
    const renewing = this.#inflight !== undefined || this.#lastError !== undefined;
    return renewing && now < token.expiresAt - MIN_SAFETY_MS ? token : undefined;
  }

  /**
   * A usable token, synchronously when one is held (the request path neither waits a tick nor
   * allocates for it); otherwise the promise of the (shared) fetch in progress or started now,
   * or a rejection while the endpoint is failing and its next probe is not due. A promise means
   * the caller found no usable token: that is what the cache-miss metric counts. A fetch started
   * here is given `request`.
   */
  token(request: R): Token | Promise<Token> {
    const token = this.peek();
    if (token !== undefined) {
      if (!this.#used) this.#markUsed();
      return token;
    }
    if (this.#inflight) return this.#inflight;
    const current = this.#token;
    const now = this.#now();
    if (
      current !== undefined &&
      current.accessToken !== this.#revoked &&
      now < current.expiresAt - MIN_SAFETY_MS &&
      this.#retryAt <= now
    ) {
      // Past the safety margin but still valid: renew on demand and serve this one meanwhile, so
      // the caller who starts the renewal does not wait for it either.
      this.#fetch(request).catch(() => {});
      return current;
    }
    const wait = this.#retryAt - now;
    if (wait > 0 && this.#lastError !== undefined) {
      // Fail fast: the endpoint is failing and its next probe is not due yet.
      return Promise.reject(this.#backoffError(wait));
    }
    return this.#fetch(request);
  }

  /** {@link token}, always as a promise (for callers off the request path). */
  get(request: R): Promise<Token> {
    const token = this.token(request);
    return token instanceof Promise ? token : Promise.resolve(token);
  }

  /**
   * An upstream refused `accessToken` (RFC 6750 §3.1 `invalid_token`). If it is still the cached
   * token, it is not served again and the next caller fetches a new one; however many requests
   * report the same token, that is one fetch. If the cached token was itself fetched to replace
   * a refused one and is refused too, the upstream does not take this credential's tokens for now
   * (wrong audience, clock skew, a disabled client): a new token would only load the token
   * endpoint, one per request. So it is held instead: still served, so apps get the upstream's own
   * answer, and replaced only after a backoff step (`initial_backoff`, doubling up to
   * `max_backoff` while replacements keep being refused). A replacement stays on trial until a
   * request with it succeeds ({@link accepted}) or a token that simply lived its life follows it.
   *
   * Returns whether a request retried now would be sent with another token than a refused one.
   * `request` is the one the upstream refused; it goes to the `revoked` hook.
   */
  invalidate(accessToken: string, request: R): boolean {
    const current = this.#token;
    // Nothing was served from here that could be refused.
    if (current === undefined) return false;
    const now = this.#now();
    if (current.accessToken === accessToken && this.#revoked !== accessToken) {
      this.#revoked = accessToken;
      // An expired token says nothing about the next one: the upstream was right to refuse it.
      if (this.#replacesRefused && now < usableUntil(current)) {
        const { initialBackoffMs, maxBackoffMs } = this.#retry;
        this.#holdUntil = now + Math.min(maxBackoffMs, initialBackoffMs * 2 ** Math.min(this.#holds, 30));
        this.#holds++;
      } else {
        this.#holdUntil = 0;
        // A failure backoff must not block this fetch: the endpoint did nothing wrong.
        this.#retryAt = 0;
        this.#opts.revoked?.(accessToken, request);
      }
    }
    return !(current.accessToken === this.#revoked && now < this.#holdUntil);
  }

  /**
   * An upstream took `accessToken` (the retry after a refusal succeeded): if it is the current
   * token, it is no longer one on trial, and a later refusal replaces it at once again.
   */
  accepted(accessToken: string): void {
    if (this.#token?.accessToken !== accessToken) return;
    this.#replacesRefused = false;
    this.#holds = 0;
  }

  get state(): TokenState {
    const usable = this.peek();
    if (usable) {
      if (this.#lastError !== undefined) return 'stale';
      return this.#inflight ? 'refreshing' : 'fresh';
    }
    if (this.#lastError !== undefined) return 'failing';
    return this.#token ? 'expired' : 'empty';
  }

  /** Seconds until the cached token's own expiry; undefined without a token. */
  get expiresInSeconds(): number | undefined {
    return this.#token ? (this.#token.expiresAt - this.#now()) / 1000 : undefined;
  }

  /** The cached token's own expiry (epoch milliseconds); undefined without a token. */
  get expiresAt(): number | undefined {
    return this.#token?.expiresAt;
  }

  /** The error of the last failed attempt, until an attempt succeeds. */
  get lastError(): unknown {
    return this.#lastError;
  }

  /**
   * The token, when it is all this source holds: no fetch under way, no failure, no refusal on
   * record, nothing scheduled. A source built from it (`new TokenSource(opts, token)`) then
   * behaves exactly like this one, so a cache of many sources may keep just the token meanwhile.
   */
  get settledToken(): Token | undefined {
    if (
      this.#inflight !== undefined ||
      this.#lastError !== undefined ||
      this.#failures !== 0 ||
      this.#retryAt !== 0 ||
      this.#revoked !== undefined ||
      this.#holdUntil !== 0 ||
      this.#holds !== 0 ||
      this.#replacesRefused ||
      this.#refreshDue ||
      this.#closed ||
      this.#opts.refreshAhead !== undefined
    ) {
      return undefined;
    }
    return this.#token;
  }

  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
    if (this.#sleep) {
      clearTimeout(this.#sleep.timer);
      this.#sleep.wake();
    }
  }

  #fetch(request: R): Promise<Token> {
    if (this.#inflight) return this.#inflight;
    // Uses from now on count for the token this fetch brings (callers waiting for it do not).
    this.#used = false;
    const flight = this.#attempts(request);
    this.#inflight = flight;
    // Only clear the slot if no newer flight replaced it meanwhile.
    const clear = () => {
      if (this.#inflight === flight) this.#inflight = undefined;
      this.#opts.flightEnded?.(this, request);
    };
    flight.then(clear, clear);
    return flight;
  }

  /** Attempts until one succeeds, a failure is permanent, or the next try would miss the deadline. */
  async #attempts(request: R): Promise<Token> {
    const deadline = this.#now() + this.#retry.deadlineMs;
    let attempt = 0;
    for (;;) {
      try {
        const token = await this.#opts.fetch(this.#token, deadline, request);
        this.#token = token;
        this.#replacesRefused = this.#revoked !== undefined;
        // A token that simply lived its life ends a series of refusals.
        if (!this.#replacesRefused) this.#holds = 0;
        // A server may hand out the very token it issued before: it is new as far as we know.
        this.#revoked = undefined;
        this.#holdUntil = 0;
        this.#lastError = undefined;
        this.#failures = 0;
        this.#retryAt = 0;
        this.#scheduleRefresh(token);
        return token;
      } catch (error) {
        // The app's own input was unusable (e.g. a malformed assertion): the endpoint is fine,
        // so this is neither a failure to back off from nor one to hand to the next caller.
        if (!(error instanceof TokenError)) throw error;
        // A retry cut short by the deadline says nothing new: keep the failure that caused it.
        const cutShort = error.code === 'token_endpoint_timeout' && this.#now() >= deadline - 5;
        if (!(cutShort && this.#lastError instanceof TokenError && attempt > 0)) this.#lastError = error;
        attempt++;
        this.#failures++;
        const delay = this.#nextDelay(error);
        this.#retryAt = this.#now() + delay;
        if (this.#closed || !isTransient(error) || this.#now() + delay >= deadline) {
          // Every waiter learns when the next attempt is due (Retry-After), not only later callers.
          throw this.#backoffError(delay);
        }
        // Not unref'd: a caller is waiting for this token (the `token` command has nothing else).
        await new Promise<void>((resolve) => {
          this.#sleep = { timer: setTimeout(resolve, delay), wake: resolve };
        });
        this.#sleep = undefined;
        if (this.#closed) throw error;
      }
    }
  }

  /** Exponential backoff with full jitter in its upper half, or longer if the server asked. */
  #nextDelay(error: unknown): number {
    const { initialBackoffMs, maxBackoffMs } = this.#retry;
    const step = Math.min(maxBackoffMs, initialBackoffMs * 2 ** Math.min(this.#failures - 1, 30));
    const jittered = step * (0.5 + 0.5 * this.#random());
    const asked = (error as { retryAfterMs?: number }).retryAfterMs;
    return Math.max(jittered, typeof asked === 'number' ? Math.min(asked, maxBackoffMs * 4) : 0);
  }

  #backoffError(waitMs: number): CredentialBackoffError {
    const last = this.#lastError;
    return new CredentialBackoffError(this.name, last, Math.ceil(waitMs / 1000));
  }

  #scheduleRefresh(token: Token): void {
    this.#refreshDue = false;
    const ahead = this.#opts.refreshAhead;
    if (this.#closed || ahead === undefined) return;
    const usable = usableUntil(token) - token.issuedAt;
    // Jitter spreads the refreshes of many replicas that started together.
    // At least a second apart, whatever the server says, so no lifetime can cause a refresh storm.
    const delay = Math.max(1_000, usable * (ahead - JITTER * this.#random()));
    this.#arm(token.issuedAt + delay - this.#now(), true);
  }

  /** `ahead`: the refresh-ahead point, skipped while the token is unused; else a retry after a failure. */
  #arm(delayMs: number, ahead: boolean): void {
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => (ahead ? this.#refreshAhead() : this.#refresh()), Math.max(0, delayMs));
    // A pending refresh must not keep a CLI process (`token` subcommand) alive.
    this.#timer.unref();
  }

  #refreshAhead(): void {
    if (this.#used || this.#opts.keepFresh) this.#refresh();
    else this.#refreshDue = true;
  }

  /** The first use of a cached token since the last fetch; starts a refresh skipped while idle. */
  #markUsed(): void {
    this.#used = true;
    if (this.#refreshDue) {
      this.#refreshDue = false;
      this.#refresh();
    }
  }

  #refresh(): void {
    if (this.#closed) return;
    this.#opts.events?.refreshStarted?.();
    // Only a source whose fetch needs no request refreshes in the background (see refreshAhead).
    this.#fetch(undefined as R).catch((error: unknown) => {
      if (this.#closed) return;
      // Keep serving the current token while it lasts (stale) and probe again after the backoff.
      const token = this.#token;
      const left = token ? token.expiresAt - MIN_SAFETY_MS - this.#now() : 0;
      const retryIn = Math.max(0, this.#retryAt - this.#now());
      this.#opts.events?.refreshFailed?.(error, retryIn);
      if (left > retryIn) this.#arm(retryIn, false);
    });
  }
}
