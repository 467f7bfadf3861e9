import { usableUntil } from '../credentials/token-source.js';
import {
  CredentialInputError,
  isTransient,
  SharedCacheUnavailableError,
  TokenEndpointRejectedError,
  TokenEndpointTimeoutError,
  TokenEndpointUnreachableError,
  TokenError,
  TokenResponseInvalidError,
} from '../errors.js';
import type { Token } from '../token-endpoint/token.js';
import type { FailureRecord, SharedStore } from './store.js';

/** A replica's own way to get a token: its token provider, as without a shared cache. */
export type LocalFetch = (previous: Token | undefined, deadline: number) => Promise<Token>;

export interface FleetFetchOptions {
  readonly store: SharedStore;
  readonly credential: string;
  /** The entry's id under the sealing key, then under the other keys (read during a rotation). */
  readonly ids: readonly string[];
  /** How long a lock holder may take: the credential's whole token request, and a margin. */
  readonly lockTtlMs: number;
  /** Fraction of the usable lifetime at which a token is due for refresh; undefined: none. */
  readonly refreshAhead: number | undefined;
  readonly backoff: { readonly initialMs: number; readonly maxMs: number };
  readonly local: LocalFetch;
  /** A token came from the fleet instead of the token endpoint. */
  readonly avoided?: () => void;
  readonly now?: () => number;
}

/**
 * A replica's fetch through the fleet: adopt the shared token when it is newer and not due for
 * refresh; otherwise one replica (the lock holder) asks the token endpoint, using the shared
 * entry's refresh token, and publishes the result while the others wait for it; a failure is
 * published too, so the fleet backs off together (one probe per backoff step). Whenever the
 * store does not answer, the replica goes on alone, exactly as without a shared cache.
 */
export function fleetFetch(opts: FleetFetchOptions): LocalFetch {
  const now = opts.now ?? Date.now;
  const [id] = opts.ids;
  const { store } = opts;

  async function read(): Promise<Token | undefined> {
    for (const candidate of opts.ids) {
      const token = await store.read(candidate);
      if (token) return token;
    }
    return undefined;
  }

  /** Whether `shared` may be used instead of fetching, given the token the caller wants replaced. */
  function adoptable(shared: Token | undefined, previous: Token | undefined): shared is Token {
    if (!shared) return false;
    const t = now();
    if (t >= usableUntil(shared)) return false;
    if (previous === undefined || t >= usableUntil(previous)) return true;
    // The caller's token is due for refresh: only a newer token that is not due itself helps.
    // Newer by its issue time: some servers hand out the same token text again while it is valid.
    const newer =
      shared.issuedAt > previous.issuedAt ||
      (shared.issuedAt === previous.issuedAt && shared.accessToken !== previous.accessToken);
    return newer && t < refreshPoint(shared, opts.refreshAhead);
  }

  async function throughFleet(previous: Token | undefined, deadline: number): Promise<Token> {
    // Half the time is for waiting on another replica; the rest for a request of our own if the
    // lock holder died or hangs (its lock lapses only after a whole token request).
    const patience = now() + (deadline - now()) / 2;
    for (;;) {
      const shared = await read();
      if (adoptable(shared, previous)) {
        opts.avoided?.();
        return shared;
      }
      const failing = await store.failure(id!);
      if (failing && failing.retryAt > now())
        throw rebuild(opts.credential, failing, failing.retryAt - now());
      const owner = await store.lock(id!, opts.lockTtlMs);
      if (owner !== undefined) return holdLock(owner, previous, deadline);
      // Another replica is asking the token endpoint: wait for its word, within our patience.
      if (now() >= patience) break;
      const watch = await store.watch(id!);
      try {
        // Published between our lock attempt and the watch? Its message was not heard.
        const meanwhile = await read();
        if (adoptable(meanwhile, previous)) {
          opts.avoided?.();
          return meanwhile;
        }
        await watch.changed(Math.min(patience, now() + opts.lockTtlMs));
      } finally {
        watch.close();
      }
    }
    // The holder has not published in time: one more token request beats a failed app request.
    return opts.local(previous, deadline);
  }

  async function holdLock(owner: string, previous: Token | undefined, deadline: number): Promise<Token> {
    let latest: Token | undefined;
    try {
      // Published between our read and our lock?
      latest = await read();
      if (adoptable(latest, previous)) {
        await store.release(id!, owner).catch(() => {});
        opts.avoided?.();
        return latest;
      }
    } catch {
      latest = undefined;
    }
    let token: Token;
    try {
      // The shared entry holds the newest refresh token (rotated ones replace it atomically).
      token = await opts.local(latest ?? previous, deadline);
    } catch (err) {
      if (err instanceof TokenError) {
        const prior = await store.failure(id!).catch(() => undefined);
        const failures = (prior?.failures ?? 0) + 1;
        const retryAfter = (err as { retryAfterMs?: number }).retryAfterMs ?? 0;
        const step = Math.min(opts.backoff.maxMs, opts.backoff.initialMs * 2 ** Math.min(failures - 1, 30));
        const wait = Math.max(step, retryAfter);
        // Kept a step longer than the wait, so the next failure knows it follows this one.
        await store
          .fail(id!, owner, record(err, failures, now() + wait), wait + opts.backoff.maxMs)
          .catch(() => {});
      } else {
        await store.release(id!, owner).catch(() => {});
      }
      throw err;
    }
    // A failed write costs the fleet one more token request, never this one.
    await store.publish(id!, owner, token).catch(() => {});
    return token;
  }

  return async (previous, deadline) => {
    try {
      return await throughFleet(previous, deadline);
    } catch (err) {
      if (!(err instanceof SharedCacheUnavailableError)) throw err;
      return opts.local(previous, deadline);
    }
  };
}

/** When a token is due for refresh: at `refreshAhead` of its usable life (or at its end). */
export function refreshPoint(token: Token, refreshAhead: number | undefined): number {
  const usable = usableUntil(token) - token.issuedAt;
  return token.issuedAt + usable * (refreshAhead ?? 1);
}

function record(err: TokenError, failures: number, retryAt: number): FailureRecord {
  return {
    code: err.code,
    message: err.message,
    transient: isTransient(err),
    failures,
    retryAt,
    ...(err instanceof TokenEndpointRejectedError
      ? {
          status: err.status,
          ...(err.oauthError !== undefined ? { oauthError: err.oauthError } : {}),
          ...(err.oauthErrorDescription !== undefined
            ? { oauthErrorDescription: err.oauthErrorDescription }
            : {}),
        }
      : {}),
  };
}

/**
 * The failure another replica met, as the error it was, with the time left until the fleet's
 * next probe as its retry hint: the app sees the same status, and this replica waits too.
 */
function rebuild(credential: string, r: FailureRecord, remainingMs: number): TokenError {
  const retry = { retryAfterMs: remainingMs };
  switch (r.code) {
    case 'token_endpoint_rejected':
      return new TokenEndpointRejectedError(
        credential,
        r.status ?? 502,
        r.oauthError,
        r.oauthErrorDescription,
        remainingMs,
      );
    case 'token_endpoint_timeout':
      return Object.assign(new TokenEndpointTimeoutError(credential, r.message), retry);
    case 'token_response_invalid':
      return Object.assign(new TokenResponseInvalidError(credential, r.message), retry);
    case 'credential_input_unavailable':
      return Object.assign(new CredentialInputError(credential, r.message), retry);
    default:
      return Object.assign(new TokenEndpointUnreachableError(credential, r.message), retry);
  }
}
