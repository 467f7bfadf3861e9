import { createHash } from 'node:crypto';
import { decodeJwt } from 'jose';
import { AssertionExpiredError, AssertionInvalidError, AssertionMissingError } from '../errors.js';
import { samlNotOnOrAfter } from '../grants/saml.js';
import type { Token } from '../token-endpoint/token.js';
import { type CacheCounters, type RetryPolicy, TokenSource, type TokenSourceEvents } from './token-source.js';

/** Request headers, as `IncomingMessage.headersDistinct` gives them (or plain values). */
type Headers = Readonly<Record<string, string | string[] | undefined>>;

type Fetch = (
  request: ReadonlyMap<string, string>,
  previous: Token | undefined,
  deadline: number,
) => Promise<Token>;

/**
 * Tokens obtained for values the app sends with each request (an end user's assertion or
 * subject token), cached per value: a bounded LRU keyed by a hash of the values (never the values
 * themselves), each token living no longer than the assertion it was exchanged for.
 */
export class RequestTokens {
  readonly #entries = new Map<string, TokenSource>();
  readonly #headers: readonly string[];
  readonly #maxEntries: number;
  readonly #fetch: Fetch;
  readonly #retry: RetryPolicy | undefined;
  readonly #events: TokenSourceEvents | undefined;
  readonly #counters: CacheCounters | undefined;
  readonly #revoked: ((request: ReadonlyMap<string, string>, accessToken: string) => void) | undefined;
  readonly #name: string;

  constructor(opts: {
    name: string;
    /** Lower-case names of the request headers that carry the values. */
    headers: readonly string[];
    maxEntries: number;
    fetch: Fetch;
    retry?: RetryPolicy;
    events?: TokenSourceEvents;
    /** Counts each request that finds its token cached (hit) or not (miss). */
    counters?: CacheCounters;
    /** An upstream refused the token obtained for these values, and it is dropped here. */
    revoked?: (request: ReadonlyMap<string, string>, accessToken: string) => void;
  }) {
    this.#revoked = opts.revoked;
    this.#retry = opts.retry;
    this.#name = opts.name;
    this.#headers = opts.headers;
    this.#maxEntries = opts.maxEntries;
    this.#fetch = opts.fetch;
    this.#events = opts.events;
    this.#counters = opts.counters;
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
    const values = new Map<string, string>();
    let bound = Number.POSITIVE_INFINITY;
    for (const name of this.#headers) {
      const raw = headers[name];
      if (Array.isArray(raw) && raw.length > 1) {
        return Promise.reject(new AssertionInvalidError(name, 'the header is sent more than once'));
      }
      const value = (Array.isArray(raw) ? raw[0] : raw)?.trim();
      if (!value) return Promise.reject(new AssertionMissingError(name));
      const expiry = expiryOf(value);
      if (expiry !== undefined && expiry <= now) return Promise.reject(new AssertionExpiredError(name));
      if (expiry !== undefined) bound = Math.min(bound, expiry);
      values.set(name, value);
    }
    const key = this.#key(headers)!;
    let source = this.#entries.get(key);
    if (source) {
      // Most recently used goes last; the first entry is the one to evict.
      this.#entries.delete(key);
      this.#entries.set(key, source);
    } else {
      source = new TokenSource({
        name: this.#name,
        refreshAhead: undefined,
        ...(this.#events ? { events: this.#events } : {}),
        ...(this.#retry ? { retry: this.#retry } : {}),
        ...(this.#revoked ? { revoked: (accessToken: string) => this.#revoked?.(values, accessToken) } : {}),
        fetch: async (previous, deadline) => {
          const token = await this.#fetch(values, previous, deadline);
          // Never past the assertion's own end: after it, the app must send a new one.
          return token.expiresAt > bound ? { ...token, expiresAt: bound } : token;
        },
      });
      this.#entries.set(key, source);
      if (this.#entries.size > this.#maxEntries) {
        const oldest = this.#entries.keys().next().value as string;
        this.#entries.get(oldest)?.close();
        this.#entries.delete(oldest);
      }
    }
    const token = source.token();
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
    return this.#entries.get(key)?.invalidate(accessToken) ?? true;
  }

  /** An upstream took the token of these values ({@link TokenSource.accepted}). */
  accepted(headers: Headers, accessToken: string): void {
    const key = this.#key(headers);
    if (key !== undefined) this.#entries.get(key)?.accepted(accessToken);
  }

  #key(headers: Headers): string | undefined {
    const values: string[] = [];
    for (const name of this.#headers) {
      const raw = headers[name];
      const value = (Array.isArray(raw) ? raw[0] : raw)?.trim();
      if (!value) return undefined;
      values.push(value);
    }
    return createHash('sha256').update(values.join('\n')).digest('base64url');
  }

  close(): void {
    for (const source of this.#entries.values()) source.close();
    this.#entries.clear();
  }
}

/** When an assertion stops being valid, if it says: a JWT's `exp`, a SAML `NotOnOrAfter`. */
export function expiryOf(value: string): number | undefined {
  if (/^[\w-]+\.[\w-]+\.[\w-]*$/.test(value)) {
    try {
      const exp = decodeJwt(value).exp;
      return typeof exp === 'number' ? exp * 1000 : undefined;
    } catch {
      return undefined;
    }
  }
  return samlNotOnOrAfter(value);
}
