import { createHash } from 'node:crypto';
import { decodeJwt } from 'jose';
import { AssertionExpiredError, AssertionMissingError } from '../errors.js';
import { samlNotOnOrAfter } from '../grants/saml.js';
import type { Token } from '../token-endpoint/token.js';
import { type RetryPolicy, TokenSource, type TokenSourceEvents } from './token-source.js';

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
  readonly #name: string;

  constructor(opts: {
    name: string;
    /** Lower-case names of the request headers that carry the values. */
    headers: readonly string[];
    maxEntries: number;
    fetch: Fetch;
    retry?: RetryPolicy;
    events?: TokenSourceEvents;
  }) {
    this.#retry = opts.retry;
    this.#name = opts.name;
    this.#headers = opts.headers;
    this.#maxEntries = opts.maxEntries;
    this.#fetch = opts.fetch;
    this.#events = opts.events;
  }

  get size(): number {
    return this.#entries.size;
  }

  /** The token for the values in these request headers; throws if one is missing or expired. */
  get(headers: Readonly<Record<string, string | string[] | undefined>>, now = Date.now()): Promise<Token> {
    const values = new Map<string, string>();
    let bound = Number.POSITIVE_INFINITY;
    for (const name of this.#headers) {
      const raw = headers[name];
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
    return source.get();
  }

  /** Drops a token an upstream refused, so the next request with these values fetches anew. */
  invalidate(headers: Readonly<Record<string, string | string[] | undefined>>, accessToken: string): void {
    const key = this.#key(headers);
    if (key !== undefined) this.#entries.get(key)?.invalidate(accessToken);
  }

  #key(headers: Readonly<Record<string, string | string[] | undefined>>): string | undefined {
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
