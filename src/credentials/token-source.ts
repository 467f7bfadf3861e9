import type { Token } from '../token-endpoint/token.js';

export type TokenState = 'empty' | 'fresh' | 'refreshing' | 'expired';

/** Hooks for metrics and logs, so the cache itself stays free of I/O. */
export interface TokenSourceEvents {
  cacheHit?(): void;
  cacheMiss?(): void;
  refreshStarted?(): void;
  refreshFailed?(error: unknown, retryInMs: number): void;
}

export interface TokenSourceOptions {
  readonly name: string;
  /**
   * Obtains a new token from the authorization server; called at most once at a time, with the
   * token it replaces (whose refresh token the password grant uses).
   */
  readonly fetch: (previous: Token | undefined) => Promise<Token>;
  /**
   * Fraction of the usable lifetime after which a background refresh starts (0..1); undefined
   * for no background refresh (tokens of per-request assertions are renewed on demand).
   */
  readonly refreshAhead: number | undefined;
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

export function usableUntil(token: Token): number {
  const lifetime = token.expiresAt - token.issuedAt;
  const safety = Math.min(MAX_SAFETY_MS, Math.max(MIN_SAFETY_MS, lifetime * 0.05), lifetime / 2);
  return token.expiresAt - safety;
}

/**
 * The cached token of one credential. Any number of concurrent callers that find no usable token
 * share one fetch (single flight); a usable token is refreshed in the background before it
 * runs out, so callers never wait while a valid token exists and never get an expired one.
 */
export class TokenSource {
  readonly name: string;
  #token: Token | undefined;
  #inflight: Promise<Token> | undefined;
  #timer: NodeJS.Timeout | undefined;
  #lastError: unknown;
  #closed = false;
  readonly #opts: TokenSourceOptions;
  readonly #now: () => number;
  readonly #random: () => number;

  constructor(opts: TokenSourceOptions) {
    this.name = opts.name;
    this.#opts = opts;
    this.#now = opts.now ?? Date.now;
    this.#random = opts.random ?? Math.random;
  }

  /** The cached token if it is usable right now; never waits, never fetches. */
  peek(): Token | undefined {
    const token = this.#token;
    return token !== undefined && this.#now() < usableUntil(token) ? token : undefined;
  }

  /** A usable token: the cached one, or the result of the (shared) fetch in progress or started now. */
  get(): Promise<Token> {
    const token = this.peek();
    if (token) {
      this.#opts.events?.cacheHit?.();
      return Promise.resolve(token);
    }
    this.#opts.events?.cacheMiss?.();
    return this.#fetch();
  }

  get state(): TokenState {
    if (this.peek()) return this.#inflight ? 'refreshing' : 'fresh';
    return this.#token ? 'expired' : 'empty';
  }

  /** Seconds until the cached token's own expiry; undefined without a token. */
  get expiresInSeconds(): number | undefined {
    return this.#token ? (this.#token.expiresAt - this.#now()) / 1000 : undefined;
  }

  get lastError(): unknown {
    return this.#lastError;
  }

  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
  }

  #fetch(): Promise<Token> {
    if (this.#inflight) return this.#inflight;
    const flight = this.#opts.fetch(this.#token).then(
      (token) => {
        this.#token = token;
        this.#lastError = undefined;
        this.#scheduleRefresh(token);
        return token;
      },
      (error: unknown) => {
        this.#lastError = error;
        throw error;
      },
    );
    this.#inflight = flight;
    // Only clear the slot if no newer flight replaced it meanwhile.
    const clear = () => {
      if (this.#inflight === flight) this.#inflight = undefined;
    };
    flight.then(clear, clear);
    return flight;
  }

  #scheduleRefresh(token: Token): void {
    const ahead = this.#opts.refreshAhead;
    if (this.#closed || ahead === undefined) return;
    const usable = usableUntil(token) - token.issuedAt;
    // Jitter spreads the refreshes of many replicas that started together.
    const delay = Math.max(0, usable * (ahead - JITTER * this.#random()));
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
      // Keep serving the current token while it lasts and try again well before it runs out.
      const left = this.#token ? usableUntil(this.#token) - this.#now() : 0;
      const retryIn = Math.min(60_000, Math.max(1_000, left / 4));
      this.#opts.events?.refreshFailed?.(error, retryIn);
      if (left > 0) this.#arm(retryIn);
    });
  }
}
