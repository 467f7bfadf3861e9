import { type ClientAuth, clientAuthFor } from '../client-auth/client-auth.js';
import type { CredentialConfig } from '../config/types.js';
import { CredentialInputError, TokenEndpointRejectedError, TokenInjectorError } from '../errors.js';
import { FileSet } from '../files/live-file.js';
import type { Grant, GrantContext, PerRequestInputs } from '../grants/grant.js';
import { grantFor } from '../grants/grants.js';
import type { Logger } from '../log/logger.js';
import type { Metrics } from '../metrics/metrics.js';
import { createTokenEndpoint, type TokenEndpoint } from '../token-endpoint/post.js';
import { redactSecrets, requestSecrets } from '../token-endpoint/redact.js';
import type { Token } from '../token-endpoint/token.js';
import type { TraceParent, Tracing } from '../tracing/tracing.js';

export type ProviderContext = Omit<GrantContext, 'endpoint' | 'credentialToken'>;

/**
 * Obtains tokens for one credential from its token endpoint: builds the grant's form, adds the
 * client authentication, posts, and recovers once where a retry can succeed. Holds no token; the
 * caches above it do.
 */
export class TokenProvider {
  readonly credential: CredentialConfig;
  readonly #files = new FileSet();
  readonly #grant: Grant;
  readonly #auth: ClientAuth;
  readonly #endpoint: TokenEndpoint;
  readonly #url: URL;
  readonly #credentialToken: (name: string) => Promise<Token>;
  readonly #metrics: Metrics | undefined;
  readonly #tracing: Tracing | undefined;
  #closing = false;
  readonly #log: Logger;

  constructor(
    cred: CredentialConfig,
    deps: {
      metrics?: Metrics;
      logger: Logger;
      tracing?: Tracing;
      credentialToken: (name: string) => Promise<Token>;
    },
  ) {
    this.credential = cred;
    this.#grant = grantFor(cred, this.#files);
    this.#auth = clientAuthFor(cred, this.#files);
    const mtls =
      cred.clientAuth.method === 'tls_client_auth' ||
      cred.clientAuth.method === 'self_signed_tls_client_auth';
    // RFC 8705 §5: with mTLS client authentication, use the server's mTLS endpoint alias if known.
    this.#url = (mtls ? cred.mtlsTokenEndpoint : undefined) ?? cred.tokenEndpoint;
    this.#endpoint = createTokenEndpoint({
      credential: cred.name,
      url: this.#url,
      timeoutMs: cred.timeoutMs,
      tls: cred.tls,
      files: this.#files,
      connectTimeoutMs: cred.connectTimeoutMs,
      maxResponseBytes: cred.maxResponseBytes,
      defaultLifetimeMs: cred.defaultLifetimeMs,
      maxLifetimeMs: cred.maxLifetimeMs,
    });
    this.#credentialToken = deps.credentialToken;
    this.#metrics = deps.metrics;
    this.#tracing = deps.tracing;
    this.#log = deps.logger.child({ credential: cred.name });
  }

  /** What the grant reads from each request, when its tokens follow requests. */
  get perRequest(): PerRequestInputs | undefined {
    return this.#grant.perRequest;
  }

  /**
   * One token. At most two requests: a rejected client (`invalid_client`) is retried once if
   * re-reading the credential's files found a rotated secret, key or certificate; otherwise the
   * grant may ask for one retry (the password grant after a rejected refresh token).
   */
  async requestToken(pctx: ProviderContext): Promise<Token> {
    const ctx: GrantContext = { ...pctx, endpoint: this.#url, credentialToken: this.#credentialToken };
    // Read now, synchronously: a fetch a request starts (it found no token) is that request's
    // child, and so are the retries below; a background refresh, or a retry after a backoff wait,
    // starts outside any request and is a trace of its own (tracing.ts activeRequest).
    const parent = this.#tracing?.activeRequest();
    try {
      return await this.#attempt(ctx, parent);
    } catch (err) {
      if (isRejected(err, 'invalid_client') && this.#files.reloadAll()) {
        this.#log.info(
          { event: 'files_reloaded' },
          'invalid_client: credential files changed on disk; retrying once',
        );
        return this.#attempt(ctx, parent);
      }
      const next = this.#grant.retry?.(ctx, err);
      if (next) return this.#attempt(next, parent);
      throw err;
    }
  }

  close(): Promise<void> {
    this.#closing = true;
    return this.#endpoint.close();
  }

  async #build(ctx: GrantContext): Promise<URLSearchParams> {
    try {
      return await this.#grant.form(ctx);
    } catch (err) {
      throw asInputError(this.credential.name, err);
    }
  }

  async #authenticate(form: URLSearchParams, headers: Record<string, string>): Promise<void> {
    try {
      await this.#auth(form, headers, { endpoint: this.#url });
    } catch (err) {
      throw asInputError(this.credential.name, err);
    }
  }

  async #attempt(ctx: GrantContext, parent: TraceParent | undefined): Promise<Token> {
    const labels = { credential: this.credential.name };
    const started = performance.now();
    const span = this.#tracing?.tokenFetch(this.credential.name, this.#url, parent);
    let grant = this.credential.grant.type as string;
    try {
      const form = await this.#build(ctx);
      grant = form.get('grant_type') ?? grant;
      const headers: Record<string, string> = {};
      await this.#authenticate(form, headers);
      let token = await this.#endpoint.post(form, headers, {
        extraTokenTypes: [...this.credential.tokenTypes, ...(this.#grant.extraTokenTypes ?? [])],
        ...(ctx.deadline !== undefined ? { deadline: ctx.deadline } : {}),
      });
      const seconds = (performance.now() - started) / 1000;
      // §6: a server that does not rotate refresh tokens keeps the one we have valid.
      const previousRefresh = grant === 'refresh_token' ? ctx.previous?.refreshToken : undefined;
      if (token.refreshToken === undefined && previousRefresh !== undefined) {
        token = { ...token, refreshToken: previousRefresh };
      }
      this.#metrics?.tokenRequests.inc({ ...labels, outcome: 'success' });
      span?.end(grant, 'success');
      this.#metrics?.tokenRequestDuration.observe(labels, seconds);
      this.#log.info(
        {
          event: 'token_fetched',
          grant_type: grant,
          duration_ms: Math.round(seconds * 1000),
          expires_in: Math.round((token.expiresAt - token.issuedAt) / 1000),
          // The server's words, like an error_description: they may echo the request.
          scope:
            token.scope === undefined ? undefined : redactSecrets(token.scope, requestSecrets(form, headers)),
          has_refresh_token: token.refreshToken !== undefined,
        },
        'token fetched',
      );
      return token;
    } catch (err) {
      // Cut short by our own shutdown: nothing failed at the token endpoint, so nothing to report.
      if (this.#closing) {
        span?.end(grant, 'cancelled');
        throw err;
      }
      const e = err as TokenInjectorError;
      span?.end(grant, e.code ?? 'error');
      this.#metrics?.tokenRequests.inc({ ...labels, outcome: e.code ?? 'error' });
      this.#metrics?.tokenRequestDuration.observe(labels, (performance.now() - started) / 1000);
      this.#log.warn(
        {
          event: 'token_failed',
          grant_type: grant,
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
}

/**
 * Local failures while building a request (a rotated key file that no longer parses, a signing
 * error) become typed errors naming the credential instead of internal errors.
 */
function asInputError(credential: string, err: unknown): unknown {
  if (err instanceof TokenInjectorError) return err;
  return new CredentialInputError(credential, (err as Error).message, { cause: err });
}

function isRejected(err: unknown, oauthError: string): boolean {
  return err instanceof TokenEndpointRejectedError && err.oauthError === oauthError;
}
