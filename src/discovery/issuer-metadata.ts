import {
  IssuerMismatchError,
  MetadataInvalidError,
  MetadataUnavailableError,
  TokenError,
} from '../errors.js';
import type { Logger } from '../log/logger.js';
import { type TlsTrust, trustOptions } from '../tls.js';
import { Agent, type Dispatcher } from '../undici.js';
import {
  type AuthServerMetadata,
  DiscoveryFailure,
  fetchAuthServerMetadata,
} from './authorization-server.js';

/** How long metadata is used before it is fetched again. */
export const METADATA_REFRESH_MS = 60 * 60 * 1000;
/** After a failed refresh, how long the last good copy is used before the next attempt. */
export const METADATA_RETRY_MS = 60 * 1000;

export interface IssuerMetadataOptions {
  /** Exactly as configured. */
  readonly issuer: string;
  readonly tls: TlsTrust;
  readonly timeoutMs: number;
  readonly connectTimeoutMs: number;
  readonly allowInsecureHttp: boolean;
  readonly logger: Logger;
  readonly refreshMs?: number;
  readonly retryMs?: number;
  readonly now?: () => number;
  /** Tests: a stand-in for the fetch (the real one is {@link fetchAuthServerMetadata}). */
  readonly fetch?: typeof fetchAuthServerMetadata;
}

/**
 * One issuer's metadata (RFC 8414), shared by every credential naming that issuer: fetched on
 * first use, used for an hour, then fetched again by the next token request that needs it. While
 * the server cannot be reached (connection error, timeout, 5xx) the last good copy stays in use
 * and another attempt is made a minute later; metadata the server now answers but that fails the
 * checks (another issuer, no token endpoint) replaces it, and token requests fail until it is
 * right again. One fetch at a time.
 */
export class IssuerMetadata {
  readonly issuer: string;
  readonly #opts: IssuerMetadataOptions;
  readonly #dispatcher: Dispatcher;
  readonly #now: () => number;
  readonly #log: Logger;
  #good: AuthServerMetadata | undefined;
  /** Until when `#good` is used without asking the server. */
  #until = Number.NEGATIVE_INFINITY;
  #flight: Promise<AuthServerMetadata> | undefined;
  #closed = false;

  constructor(opts: IssuerMetadataOptions) {
    this.issuer = opts.issuer;
    this.#opts = opts;
    this.#now = opts.now ?? Date.now;
    this.#log = opts.logger.child({ issuer: opts.issuer });
    this.#dispatcher = new Agent({
      keepAliveTimeout: 10_000,
      connections: 2,
      connect: { ...trustOptions(opts.tls), timeout: opts.connectTimeoutMs },
    });
  }

  /** The metadata in force, fetched first when it is due (a copy when the server is down). */
  get(): AuthServerMetadata | Promise<AuthServerMetadata> {
    if (this.#good !== undefined && (this.#closed || this.#now() < this.#until)) return this.#good;
    this.#flight ??= this.#fetch().finally(() => {
      this.#flight = undefined;
    });
    return this.#flight;
  }

  async #fetch(): Promise<AuthServerMetadata> {
    const fetch = this.#opts.fetch ?? fetchAuthServerMetadata;
    try {
      const metadata = await fetch({
        issuer: this.issuer,
        dispatcher: this.#dispatcher,
        timeoutMs: this.#opts.timeoutMs,
        allowInsecureHttp: this.#opts.allowInsecureHttp,
      });
      const changed = this.#good?.tokenEndpoint.href !== metadata.tokenEndpoint.href;
      this.#good = metadata;
      this.#until = this.#now() + (this.#opts.refreshMs ?? METADATA_REFRESH_MS);
      if (changed) {
        this.#log.info(
          { event: 'metadata_fetched', token_endpoint: metadata.tokenEndpoint.href },
          'authorization server metadata fetched',
        );
      }
      return metadata;
    } catch (err) {
      const failure =
        err instanceof DiscoveryFailure
          ? err
          : new DiscoveryFailure('unavailable', (err as Error).message, { cause: err });
      if (failure.kind === 'unavailable' && this.#good !== undefined) {
        this.#until = this.#now() + (this.#opts.retryMs ?? METADATA_RETRY_MS);
        this.#log.warn(
          { event: 'metadata_refresh_failed', detail: failure.message },
          'authorization server metadata could not be refreshed; keeping the last good copy',
        );
        return this.#good;
      }
      this.#good = undefined;
      this.#until = Number.NEGATIVE_INFINITY;
      this.#log.warn(
        { event: 'metadata_failed', error: failure.kind, detail: failure.message },
        'authorization server metadata unusable',
      );
      throw failure;
    }
  }

  close(): Promise<void> {
    this.#closed = true;
    return this.#dispatcher.close();
  }
}

/**
 * A discovery failure as the typed error of the credential that met it (the metadata is shared by
 * every credential naming the issuer, so the failure names none).
 */
export function discoveryError(credential: string, err: unknown): TokenError {
  if (err instanceof TokenError) return err;
  if (!(err instanceof DiscoveryFailure))
    return new MetadataUnavailableError(credential, (err as Error).message, { cause: err });
  switch (err.kind) {
    case 'issuer_mismatch':
      return new IssuerMismatchError(credential, err.message, err.metadataIssuer ?? '');
    case 'invalid':
      return new MetadataInvalidError(credential, err.message, { cause: err });
    default:
      return new MetadataUnavailableError(credential, err.message, { cause: err });
  }
}
