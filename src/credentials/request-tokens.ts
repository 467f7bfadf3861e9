import { createHash } from 'node:crypto';
import { AssertionExpiredError, AssertionInvalidError, AssertionMissingError } from '../errors.js';
import type { PerRequestInputs } from '../grants/grant.js';
import type { Token } from '../token-endpoint/token.js';
import {
  type CacheCounters,
  type RetryPolicy,
  TokenSource,
  type TokenSourceEvents,
  type TokenSourceOptions,
  usableUntil,
} from './token-source.js';

/** Request headers, as `IncomingMessage.headersDistinct` gives them (or plain values). */
type Headers = Readonly<Record<string, string | string[] | undefined>>;

type Fetch = (
  request: ReadonlyMap<string, string>,
  previous: Token | undefined,
  deadline: number,
) => Promise<Token>;

/**
 * What a fetch gets from the request that started it: the values to exchange, the cache entry
 * they belong to, and the earliest expiry among them.
 */
interface ValuesRequest {
  readonly key: string;
  readonly values: ReadonlyMap<string, string>;
  readonly bound: number;
}

/**
 * Tokens obtained for values the app sends with each request (an end user's assertion or
 * subject token), cached per value: a bounded LRU keyed by a hash of the values (never the values
 * themselves), each token living no longer than the assertion it was exchanged for.
 *
 * Built for many users at little memory each: an entry at rest is its token alone, keyed by the
 * 32 raw bytes of the digest. The values are kept only while their fetch runs: a later fetch
 * comes from a request that carries them again. An entry that has more to remember (a fetch under
 * way, a failure, a refusal) is a {@link TokenSource} until it settles again; all of them share
 * one options object.
 */
export class RequestTokens {
  readonly #entries = new Map<string, Token | TokenSource<ValuesRequest>>();
  readonly #headers: readonly string[];
  readonly #maxEntries: number;
  readonly #expiryOf: (value: string) => number | undefined;
  readonly #counters: CacheCounters | undefined;
  readonly #sources: TokenSourceOptions<ValuesRequest>;

  constructor(opts: {
    name: string;
    /** The request headers that carry the values, as the grant reads them. */
    inputs: PerRequestInputs;
    fetch: Fetch;
    retry?: RetryPolicy;
    events?: TokenSourceEvents;
    /** Counts each request that finds its token cached (hit) or not (miss). */
    counters?: CacheCounters;
    /**
     * An upstream refused the token obtained for these values, and it is dropped here; `request`
     * holds the values of the request the upstream refused.
     */
    revoked?: (request: ReadonlyMap<string, string>, accessToken: string) => void;
  }) {
    this.#headers = opts.inputs.headers;
    this.#maxEntries = opts.inputs.maxEntries;
    this.#expiryOf = opts.inputs.expiryOf;
    this.#counters = opts.counters;
    const { fetch, revoked } = opts;
    this.#sources = {
      name: opts.name,
      refreshAhead: undefined,
      ...(opts.events ? { events: opts.events } : {}),
      ...(opts.retry ? { retry: opts.retry } : {}),
      ...(revoked ? { revoked: (accessToken, request) => revoked(request.values, accessToken) } : {}),
      fetch: async (previous, deadline, { values, bound }) => {
        const token = await fetch(values, previous, deadline);
        // Never past the assertion's own end: after it, the app must send a new one. A copy even
        // when the token ends first: the parser's object keeps room for fields it may not have.
        return { ...token, expiresAt: Math.min(token.expiresAt, bound) };
      },
      flightEnded: (source, { key }) => {
        if (this.#entries.get(key) === source) this.#entries.set(key, source.settledToken ?? source);
      },
    };
  }

  get size(): number {
    return this.#entries.size;
  }

  /**
   * The token for the values in these request headers: synchronously when cached, else a promise.
   * Rejects if one is missing, expired, or sent more than once: Node joins repeated headers with
   * ", ", which would exchange a value the app never sent (hence `headersDistinct`).
   */
  get(headers: Headers, now = Date.now()): Token | Promise<Token> {
    const key = this.#key(headers);
    const entry = key === undefined ? undefined : this.#entries.get(key);
    // The common case, without reading the values again: a usable token ends before the
    // earliest expiry of the values it was obtained for, so none of them has expired either.
    if (entry !== undefined && !(entry instanceof TokenSource) && now < usableUntil(entry)) {
      // Most recently used goes last; the first entry is the one to evict.
      this.#entries.delete(key!);
      this.#entries.set(key!, entry);
      this.#counters?.hit();
      return entry;
    }
    const values = new Map<string, string>();
    let bound = Number.POSITIVE_INFINITY;
    for (const name of this.#headers) {
      const raw = headers[name];
      if (Array.isArray(raw) && raw.length > 1) {
        return Promise.reject(new AssertionInvalidError(name, 'the header is sent more than once'));
      }
      const value = (Array.isArray(raw) ? raw[0] : raw)?.trim();
      if (!value) return Promise.reject(new AssertionMissingError(name));
      const expiry = this.#expiryOf(value);
      if (expiry !== undefined && expiry <= now) return Promise.reject(new AssertionExpiredError(name));
      if (expiry !== undefined) bound = Math.min(bound, expiry);
      values.set(name, value);
    }
    // Every header is present and sent once, so there is a key.
    const request: ValuesRequest = { key: key!, values, bound };
    const source = entry instanceof TokenSource ? entry : new TokenSource(this.#sources, entry);
    const token = source.token(request);
    this.#entries.delete(request.key);
    this.#entries.set(request.key, source.settledToken ?? source);
    if (entry === undefined && this.#entries.size > this.#maxEntries) {
      const oldest = this.#entries.keys().next().value as string;
      const evicted = this.#entries.get(oldest);
      if (evicted instanceof TokenSource) evicted.close();
      this.#entries.delete(oldest);
    }
    if (token instanceof Promise) this.#counters?.miss();
    else this.#counters?.hit();
    return token;
  }

  /**
   * An upstream refused the token of these values ({@link TokenSource.invalidate}). Returns
   * whether a retry would be sent with another token (yes for values no longer cached: a retry
   * fetches theirs anew).
   */
  invalidate(headers: Headers, accessToken: string): boolean {
    const key = this.#key(headers);
    if (key === undefined) return false;
    const entry = this.#entries.get(key);
    if (entry === undefined) return true;
    // A token at rest holds no refusal: another token's changes nothing (TokenSource.invalidate).
    if (!(entry instanceof TokenSource) && entry.accessToken !== accessToken) return true;
    const source = entry instanceof TokenSource ? entry : new TokenSource(this.#sources, entry);
    const values = new Map<string, string>();
    let bound = Number.POSITIVE_INFINITY;
    for (const name of this.#headers) {
      const value = headerValue(headers[name])!;
      bound = Math.min(bound, this.#expiryOf(value) ?? bound);
      values.set(name, value);
    }
    const retry = source.invalidate(accessToken, { key, values, bound });
    this.#entries.set(key, source.settledToken ?? source);
    return retry;
  }

  /** An upstream took the token of these values ({@link TokenSource.accepted}). */
  accepted(headers: Headers, accessToken: string): void {
    const key = this.#key(headers);
    const entry = key === undefined ? undefined : this.#entries.get(key);
    if (entry instanceof TokenSource) {
      entry.accepted(accessToken);
      this.#entries.set(key!, entry.settledToken ?? entry);
    }
  }

  /**
   * The raw SHA-256 digest of the values (32 one-byte characters: the smallest string that keeps
   * all of it); undefined if a header is missing or sent more than once.
   */
  #key(headers: Headers): string | undefined {
    const hash = createHash('sha256');
    for (let i = 0; i < this.#headers.length; i++) {
      const value = headerValue(headers[this.#headers[i]!]);
      if (!value) return undefined;
      if (i > 0) hash.update('\n');
      hash.update(value);
    }
    return hash.digest('binary');
  }

  close(): void {
    for (const entry of this.#entries.values()) if (entry instanceof TokenSource) entry.close();
    this.#entries.clear();
  }
}

/** The one trimmed value of a header; undefined when absent, empty, or sent more than once. */
function headerValue(raw: string | string[] | undefined): string | undefined {
  if (Array.isArray(raw)) return raw.length === 1 ? raw[0]!.trim() : undefined;
  return raw?.trim();
}
