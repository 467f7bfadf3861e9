import type { SecureContext } from 'node:tls';

/** What the cache needs of a minted leaf: its TLS context and its validity. */
export interface CachedLeaf {
  readonly context: SecureContext;
  readonly notAfter: number;
  /** The CA's end cut the leaf short: a new one would end at the same time, so none is minted. */
  readonly cappedByCa: boolean;
}

/** Counters for metrics; read them when scraping, they cost nothing per handshake. */
export interface LeafCacheStats {
  /** Leaves minted (each one signature). */
  readonly minted: number;
  /** Calls answered without minting: from the cache, or by joining a mint already under way. */
  readonly hits: number;
  /** Mints that failed (the CA expired, a host no certificate can name). */
  readonly failures: number;
  /** Hosts dropped, least recently used first, to stay within `maxHosts`. */
  readonly evicted: number;
  /** Hosts held now, mints under way included. */
  readonly hosts: number;
}

export interface LeafCacheOptions {
  /** Milliseconds since the epoch; injected by tests. Default `Date.now`. */
  readonly now?: () => number;
  /** Hosts kept at most. Default {@link DEFAULT_MAX_HOSTS}. */
  readonly maxHosts?: number;
}

/**
 * Wildcard routes (`*.example.com`) let apps name any number of hosts, so the cache is bounded.
 * Each entry is a TLS context, i.e. an OpenSSL `SSL_CTX` with its own copy of the key: about
 * 25-30 KB of memory (measured with Node 20 and OpenSSL 3.0), so 1000 hosts hold about 30 MB. One
 * workload talks to far fewer hosts; past the bound, a host costs a new mint (about 3 ms).
 */
export const DEFAULT_MAX_HOSTS = 1000;

/**
 * A leaf is renewed once 90% of its lifetime from minting has passed (2.4 hours early for the
 * default 24 hours): early enough that an app whose clock runs ahead still sees a valid one,
 * late enough that a host seen all day costs a handful of signatures.
 */
export const RENEW_AT_FRACTION = 0.9;

interface Entry {
  /** Shared by every caller for this host: a pending mint, or the minted context. */
  readonly context: Promise<SecureContext>;
  /** When a new leaf should be minted; infinite while the mint is under way. */
  renewAt: number;
}

/**
 * Host → TLS context of its leaf certificate: reused until near expiry, minted once however many
 * connections for a host arrive together (single flight), at most `maxHosts` hosts (least
 * recently used are dropped). `mint` is called with the host and the current time.
 */
export class LeafCache {
  readonly #mint: (host: string, now: number) => Promise<CachedLeaf>;
  readonly #now: () => number;
  readonly #maxHosts: number;
  /** Map order is recency: a hit moves its host to the end, eviction takes from the front. */
  readonly #entries = new Map<string, Entry>();
  readonly #counts = { minted: 0, hits: 0, failures: 0, evicted: 0 };

  constructor(mint: (host: string, now: number) => Promise<CachedLeaf>, options: LeafCacheOptions = {}) {
    this.#mint = mint;
    this.#now = options.now ?? Date.now;
    this.#maxHosts = options.maxHosts ?? DEFAULT_MAX_HOSTS;
    if (!Number.isInteger(this.#maxHosts) || this.#maxHosts < 1) {
      throw new RangeError(`maxHosts must be a whole number of at least 1, got ${this.#maxHosts}`);
    }
  }

  /** The TLS context for `host` (validated and normalised by the caller). */
  secureContextFor(host: string): Promise<SecureContext> {
    const now = this.#now();
    const entry = this.#entries.get(host);
    if (entry !== undefined && now < entry.renewAt) {
      this.#counts.hits++;
      this.#entries.delete(host);
      this.#entries.set(host, entry);
      return entry.context;
    }
    return this.#start(host, now);
  }

  /** Read by metrics when scraped; the same object for the life of the cache. */
  readonly stats: LeafCacheStats = statsView(this.#counts, this.#entries);

  #start(host: string, now: number): Promise<SecureContext> {
    // Assigned below, before either callback can run (they run asynchronously).
    let entry: Entry;
    const context = this.#mint(host, now).then(
      (leaf) => {
        this.#counts.minted++;
        entry.renewAt = leaf.cappedByCa ? leaf.notAfter : now + (leaf.notAfter - now) * RENEW_AT_FRACTION;
        return leaf.context;
      },
      (err: unknown) => {
        this.#counts.failures++;
        // The next connection tries again; a later mint for this host may already be there.
        if (this.#entries.get(host) === entry) this.#entries.delete(host);
        throw err;
      },
    );
    entry = { context, renewAt: Number.POSITIVE_INFINITY };
    this.#entries.delete(host);
    this.#entries.set(host, entry);
    while (this.#entries.size > this.#maxHosts) {
      this.#entries.delete(this.#entries.keys().next().value as string);
      this.#counts.evicted++;
    }
    return context;
  }
}

function statsView(
  counts: Omit<LeafCacheStats, 'hosts'>,
  entries: ReadonlyMap<string, Entry>,
): LeafCacheStats {
  return Object.freeze({
    get minted() {
      return counts.minted;
    },
    get hits() {
      return counts.hits;
    },
    get failures() {
      return counts.failures;
    },
    get evicted() {
      return counts.evicted;
    },
    get hosts() {
      return entries.size;
    },
  });
}
