import type { Token } from '../token-endpoint/token.js';

/** How the shared store is doing, for /readyz, metrics and the state-change log lines. */
export type SharedCacheState = 'connecting' | 'up' | 'down';

/** What a replica records for the fleet when a token request failed: enough to fail the same way. */
export interface FailureRecord {
  readonly code: string;
  readonly message: string;
  readonly transient: boolean;
  readonly status?: number;
  readonly oauthError?: string;
  readonly oauthErrorDescription?: string;
  /** Consecutive failures: the next backoff step is twice as long. */
  readonly failures: number;
  /** Epoch ms of the fleet's next probe; until then every replica fails the same way. */
  readonly retryAt: number;
}

/**
 * One fleet-wide entry per token (credential, parameters, per-user input), addressed by an opaque
 * id. Every method may throw {@link SharedCacheUnavailableError}; callers then go on alone.
 */
export interface SharedStore {
  readonly state: SharedCacheState;
  /** Resolves once connected, or after `timeoutMs` (then callers go on alone until it is). */
  ready(timeoutMs: number): Promise<void>;
  /** The entry's token, if one is stored and opens; an entry that does not is dropped. */
  read(id: string): Promise<Token | undefined>;
  /** The last failure, kept past its `retryAt` so that consecutive failures back off longer. */
  failure(id: string): Promise<FailureRecord | undefined>;
  /** Takes the entry's lock for `ttlMs`; the owner token, or undefined when another replica holds it. */
  lock(id: string, ttlMs: number): Promise<string | undefined>;
  /** Stores the token (living until its expiry), clears any failure, releases the lock and tells the fleet. */
  publish(id: string, owner: string, token: Token): Promise<void>;
  /** Records a failure (kept for `keepMs`), releases the lock and tells the fleet. */
  fail(id: string, owner: string, record: FailureRecord, keepMs: number): Promise<void>;
  release(id: string, owner: string): Promise<void>;
  /** Drops the entry if it still holds `accessToken` (an upstream refused it). */
  invalidate(id: string, accessToken: string): Promise<void>;
  /**
   * Listens for the entry's lock holder to publish or fail. Once this resolves no word is missed,
   * so a caller that reads the entry after it cannot sleep through a publication.
   */
  watch(id: string): Promise<Watch>;
  close(): Promise<void>;
}

/** One caller's interest in one entry; {@link Watch.close} it when done. */
export interface Watch {
  /** Resolves at the next word about the entry (or one that came since the last call), or at `until` (epoch ms). */
  changed(until: number): Promise<void>;
  close(): void;
}

/** Hooks for metrics and logs, so the store stays free of them. */
export interface SharedStoreEvents {
  stateChanged?(state: SharedCacheState, reason?: string): void;
  operation?(op: string, result: 'ok' | 'error' | 'timeout' | 'invalid'): void;
}
