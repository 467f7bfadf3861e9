import type { Metrics } from '../admin/metrics.js';
import { clientAuthFor } from '../client-auth/client-auth.js';
import type { Config, CredentialConfig } from '../config/types.js';
import { TokenEndpointRejectedError, type TokenInjectorError, UnknownCredentialError } from '../errors.js';
import { clientCredentialsForm } from '../grants/client-credentials.js';
import type { Logger } from '../log.js';
import { createTokenEndpoint, type TokenEndpoint } from '../token-endpoint/post.js';
import type { Token } from '../token-endpoint/token.js';
import { TokenSource } from './token-source.js';

const MAX_TOKEN_RESPONSE_BYTES = 64 * 1024;
const DEFAULT_LIFETIME_MS = 5 * 60_000;
const MAX_LIFETIME_MS = 24 * 3_600_000;

/** The token sources of all configured credentials, by name. */
export class Credentials {
  readonly #sources = new Map<string, TokenSource>();
  readonly #endpoints: TokenEndpoint[] = [];

  constructor(config: Config, deps: { metrics?: Metrics; logger: Logger }) {
    for (const cred of config.credentials.values()) {
      const endpoint = createTokenEndpoint({
        credential: cred.name,
        url: cred.tokenEndpoint,
        timeoutMs: cred.timeoutMs,
        tls: cred.tls,
        maxResponseBytes: MAX_TOKEN_RESPONSE_BYTES,
        defaultLifetimeMs: DEFAULT_LIFETIME_MS,
        maxLifetimeMs: MAX_LIFETIME_MS,
      });
      this.#endpoints.push(endpoint);
      this.#sources.set(cred.name, tokenSourceFor(cred, endpoint, deps));
    }
  }

  get(name: string): TokenSource {
    const source = this.#sources.get(name);
    if (!source) {
      const known = [...this.#sources.keys()].join(', ') || 'none';
      throw new UnknownCredentialError(`unknown credential "${name}" (known: ${known})`);
    }
    return source;
  }

  [Symbol.iterator](): IterableIterator<TokenSource> {
    return this.#sources.values();
  }

  async close(): Promise<void> {
    for (const source of this.#sources.values()) source.close();
    await Promise.all(this.#endpoints.map((e) => e.close()));
  }
}

function tokenSourceFor(
  cred: CredentialConfig,
  endpoint: TokenEndpoint,
  { metrics, logger }: { metrics?: Metrics; logger: Logger },
): TokenSource {
  const auth = clientAuthFor(cred);
  const log = logger.child({ credential: cred.name });
  const labels = { credential: cred.name };

  async function fetchToken(): Promise<Token> {
    const form = clientCredentialsForm(cred);
    const headers: Record<string, string> = {};
    await auth(form, headers);
    const started = performance.now();
    try {
      const token = await endpoint.post(form, headers);
      const seconds = (performance.now() - started) / 1000;
      metrics?.tokenRequests.inc({ ...labels, outcome: 'success' });
      metrics?.tokenRequestDuration.observe(labels, seconds);
      log.info(
        {
          event: 'token_fetched',
          grant_type: cred.grantType,
          duration_ms: Math.round(seconds * 1000),
          expires_in: Math.round((token.expiresAt - token.issuedAt) / 1000),
          scope: token.scope,
        },
        'token fetched',
      );
      return token;
    } catch (err) {
      const e = err as TokenInjectorError;
      metrics?.tokenRequests.inc({ ...labels, outcome: e.code ?? 'error' });
      metrics?.tokenRequestDuration.observe(labels, (performance.now() - started) / 1000);
      log.warn(
        {
          event: 'token_failed',
          grant_type: cred.grantType,
          error: e.code,
          detail: e.message,
          ...(err instanceof TokenEndpointRejectedError
            ? {
                status: err.status,
                oauth_error: err.oauthError,
                oauth_error_description: err.oauthErrorDescription,
              }
            : {}),
        },
        'token request failed',
      );
      throw err;
    }
  }

  const source = new TokenSource({
    name: cred.name,
    fetch: fetchToken,
    refreshAhead: cred.refreshAhead,
    events: metrics
      ? {
          cacheHit: () => metrics.cacheHits.inc(labels),
          cacheMiss: () => metrics.cacheMisses.inc(labels),
          refreshStarted: () => metrics.cacheRefreshes.inc(labels),
          refreshFailed: (_e, retryIn) =>
            log.warn(
              { event: 'refresh_retry', retry_in_ms: retryIn },
              'refresh failed; keeping the current token',
            ),
        }
      : {
          refreshFailed: (_e, retryIn) =>
            log.warn(
              { event: 'refresh_retry', retry_in_ms: retryIn },
              'refresh failed; keeping the current token',
            ),
        },
  });
  metrics?.tokenExpiresIn.labels(labels); // exported from the start, updated on scrape
  return source;
}
