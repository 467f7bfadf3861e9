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
  cacheHit?(): void;
  cacheMiss?(): void;
  refreshStarted?(): void;
  refreshFailed?(error: unknown, retryInMs: number): void;
}

/** How failures are retried. Transient ones are retried with backoff within one deadline. */
export interface RetryPolicy {
  /** The time one fetch (all its attempts) may take: the credential's `timeout`. */
  readonly deadlineMs: number;
  readonly initialBackoffMs: number;
  readonly maxBackoffMs: number;
}

export interface TokenSourceOptions {
  readonly name: string;
  /**
   * One attempt at a new token; called at most once at a time, with the token it replaces (whose
   * refresh token the password grant uses) and the time by which it must be done.
   */
  readonly fetch: (previous: Token | undefined, deadline: number) => Promise<Token>;
  /**
   * Fraction of the usable lifetime after which a background refresh starts (0..1); undefined
   * for no background refresh (tokens of per-request assertions are renewed on demand).
   */
  readonly refreshAhead: number | undefined;
  readonly retry?: RetryPolicy;
  readonly events?: TokenSourceEvents;
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
 * share one fetch (single flight); a usable token is refreshed in the background before it runs
 * out, so callers never wait while a valid token exists and never get an expired one.
 *
 * When the token endpoint fails, transient failures are retried with exponential backoff and
 * jitter (or the server's Retry-After) within the fetch's deadline. A token whose refresh fails is
 * served until its real expiry (stale-while-error). Without a usable token, callers fail fast
 * until the backoff step ends, and then one fetch probes the endpoint: however many requests
 * arrive, a failing endpoint sees at most one request per backoff step.
 */
export class TokenSource {
  readonly name: string;
  #token: Token | undefined;
  #inflight: Promise<Token> | undefined;
  #timer: NodeJS.Timeout | undefined;
  #lastError: unknown;
  /** A token an upstream refused: never served again, though kept for its refresh token. */
  #revoked: string | undefined;
  /** Consecutive failed attempts; sets the next backoff step. */
  #failures = 0;
  /** No new attempt before this time (epoch ms) while failing. */
  #retryAt = 0;
  #closed = false;
  /** The backoff wait between attempts, ended early by close(). */
  #sleep: { timer: NodeJS.Timeout; wake: () => void } | undefined;
  readonly #opts: TokenSourceOptions;
  readonly #retry: RetryPolicy;
  readonly #now: () => number;
  readonly #random: () => number;

  constructor(opts: TokenSourceOptions) {
    this.name = opts.name;
    this.#opts = opts;
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
    if (token === undefined || token.accessToken === this.#revoked) return undefined;
    const now = this.#now();
    if (now < usableUntil(token)) return token;
    const renewing = this.#inflight !== undefined || this.#lastError !== undefined;
    return renewing && now < token.expiresAt - MIN_SAFETY_MS ? token : undefined;
  }

  /**
   * The cached token if it is usable now, counted as a cache hit; otherwise undefined, and
   * {@link get} fetches one. Synchronous, so the request path does not wait a tick for a token
   * it already holds.
   */
  cached(): Token | undefined {
    const token = this.peek();
    if (token) this.#opts.events?.cacheHit?.();
    return token;
  }

  /** A usable token: the cached one, or the result of the (shared) fetch in progress or started now. */
  get(): Promise<Token> {
    const token = this.cached();
    if (token) return Promise.resolve(token);
    this.#opts.events?.cacheMiss?.();
    if (this.#inflight) return this.#inflight;
    const current = this.#token;
    if (
      current !== undefined &&
      current.accessToken !== this.#revoked &&
      this.#now() < current.expiresAt - MIN_SAFETY_MS &&
      this.#retryAt <= this.#now()
    ) {
      // Past the safety margin but still valid: renew on demand and serve this one meanwhile, so
      // the caller who starts the renewal does not wait for it either.
      this.#fetch().catch(() => {});
      return Promise.resolve(current);
    }
    const wait = this.#retryAt - this.#now();
    if (wait > 0 && this.#lastError !== undefined) {
      // Fail fast: the endpoint is failing and its next probe is not due yet.
      return Promise.reject(this.#backoffError(wait));
    }
    return this.#fetch();
  }

  /**
   * Forgets the cached token if it is still `accessToken` (an upstream said it is invalid), so
   * the next caller fetches a new one. A token already replaced is left alone.
   */
  invalidate(accessToken: string): void {
    if (this.#token?.accessToken !== accessToken) return;
    this.#revoked = accessToken;
    // A failure backoff must not block this fetch: the endpoint did nothing wrong.
    this.#retryAt = 0;
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

  /** The error of the last failed attempt, until an attempt succeeds. */
  get lastError(): unknown {
    return this.#lastError;
  }

  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
    if (this.#sleep) {
      clearTimeout(this.#sleep.timer);
      this.#sleep.wake();
    }
  }

  #fetch(): Promise<Token> {
    if (this.#inflight) return this.#inflight;
    const flight = this.#attempts();
    this.#inflight = flight;
    // Only clear the slot if no newer flight replaced it meanwhile.
    const clear = () => {
      if (this.#inflight === flight) this.#inflight = undefined;
    };
    flight.then(clear, clear);
    return flight;
  }

  /** Attempts until one succeeds, a failure is permanent, or the next try would miss the deadline. */
  async #attempts(): Promise<Token> {
    const deadline = this.#now() + this.#retry.deadlineMs;
    let attempt = 0;
    for (;;) {
      try {
        const token = await this.#opts.fetch(this.#token, deadline);
        this.#token = token;
        // A server may hand out the very token it issued before: it is new as far as we know.
        this.#revoked = undefined;
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
    const ahead = this.#opts.refreshAhead;
    if (this.#closed || ahead === undefined) return;
    const usable = usableUntil(token) - token.issuedAt;
    // Jitter spreads the refreshes of many replicas that started together.
    // At least a second apart, whatever the server says, so no lifetime can cause a refresh storm.
    const delay = Math.max(1_000, usable * (ahead - JITTER * this.#random()));
    this.#arm(token.issuedAt + delay - this.#now());
  }

  #arm(delayMs: number): void {
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => this.#refresh(), Math.max(0, delayMs));
    // A pending refresh must not keep a CLI process (`token` subcommand) alive.
    this.#timer.unref();
  }

  #refresh(): void {
    if (this.#closed) return;
    this.#opts.events?.refreshStarted?.();
    this.#fetch().catch((error: unknown) => {
      if (this.#closed) return;
      // Keep serving the current token while it lasts (stale) and probe again after the backoff.
      const token = this.#token;
      const left = token ? token.expiresAt - MIN_SAFETY_MS - this.#now() : 0;
      const retryIn = Math.max(0, this.#retryAt - this.#now());
      this.#opts.events?.refreshFailed?.(error, retryIn);
      if (left > retryIn) this.#arm(retryIn);
    });
  }
}
