import { type ClientAuth, clientAuthFor } from '../client-auth/client-auth.js';
import type { CredentialConfig } from '../config/types.js';
import type { AuthServerMetadata } from '../discovery/authorization-server.js';
import { discoveryError, type IssuerMetadata } from '../discovery/issuer-metadata.js';
import { loadDpopKey } from '../dpop/key.js';
import { DpopProver } from '../dpop/proof.js';
import {
  AuthMethodUnsupportedError,
  CredentialInputError,
  TokenEndpointRejectedError,
  TokenInjectorError,
} from '../errors.js';
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
  // Not readonly: with `issuer`, the discovered token endpoint replaces them (#discover).
  #endpoint: TokenEndpoint;
  #url: URL;
  /** RFC 9449: the credential's proof signer, when it has `dpop`; its key lives as long as this. */
  readonly #dpop: DpopProver | undefined;
  /** The token endpoint's `htu` (no query, §4.2) and origin (where its nonces come from). */
  #htu: string;
  #origin: string;
  /** With `issuer`: its metadata, and the copy this provider's endpoint was set from. */
  readonly #discovery: IssuerMetadata | undefined;
  #metadata: AuthServerMetadata | undefined;
  /** Endpoints a metadata change replaced, closed once their requests had time to finish. */
  readonly #retired = new Set<TokenEndpoint>();
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
      /** The issuer's metadata, for a credential with `issuer`. */
      discovery?: IssuerMetadata;
    },
  ) {
    this.credential = cred;
    this.#grant = grantFor(cred, this.#files);
    this.#auth = clientAuthFor(cred, this.#files);
    const mtls =
      cred.clientAuth.method === 'tls_client_auth' ||
      cred.clientAuth.method === 'self_signed_tls_client_auth';
    // RFC 8705 §5: with mTLS client authentication, use the server's mTLS endpoint alias if known.
    // With `issuer`, the issuer stands in until #discover sets the endpoint its metadata names,
    // before any request is made.
    this.#url = (mtls ? cred.mtlsTokenEndpoint : undefined) ?? cred.tokenEndpoint ?? new URL(cred.issuer!);
    this.#discovery = deps.discovery;
    // Parsed (or generated) once: every token this provider fetches is bound to this key, and so
    // are the caches above it, which a changed credential replaces together with its provider.
    this.#dpop = cred.dpop ? new DpopProver(loadDpopKey(cred.dpop)) : undefined;
    this.#origin = this.#url.origin;
    this.#htu = this.#url.origin + this.#url.pathname;
    this.#endpoint = this.#newEndpoint(this.#url);
    this.#credentialToken = deps.credentialToken;
    this.#metrics = deps.metrics;
    this.#tracing = deps.tracing;
    this.#log = deps.logger.child({ credential: cred.name });
  }

  /** The DPoP proof signer of a credential with `dpop` (the proxy signs its upstream proofs too). */
  get dpop(): DpopProver | undefined {
    return this.#dpop;
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
    // Read now, synchronously: a fetch a request starts (it found no token) is that request's
    // child, and so are the retries below; a background refresh, or a retry after a backoff wait,
    // starts outside any request and is a trace of its own (tracing.ts activeRequest).
    const parent = this.#tracing?.activeRequest();
    if (this.#discovery !== undefined) await this.#discover(this.#discovery);
    const ctx: GrantContext = { ...pctx, endpoint: this.#url, credentialToken: this.#credentialToken };
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
    const all = [this.#endpoint, ...this.#retired];
    this.#retired.clear();
    return Promise.all(all.map((e) => e.close())).then(() => {});
  }

  #newEndpoint(url: URL): TokenEndpoint {
    const cred = this.credential;
    return createTokenEndpoint({
      credential: cred.name,
      url,
      timeoutMs: cred.timeoutMs,
      tls: cred.tls,
      files: this.#files,
      connectTimeoutMs: cred.connectTimeoutMs,
      maxResponseBytes: cred.maxResponseBytes,
      defaultLifetimeMs: cred.defaultLifetimeMs,
      maxLifetimeMs: cred.maxLifetimeMs,
    });
  }

  /**
   * RFC 8414: the token endpoint the issuer's metadata names (its RFC 8705 §5 mTLS alias for mTLS
   * client authentication), once the metadata is known to list this credential's client
   * authentication. A failure counts and logs as a failed token request, with its own code.
   */
  async #discover(discovery: IssuerMetadata): Promise<void> {
    let metadata: AuthServerMetadata;
    try {
      metadata = await discovery.get();
      if (metadata === this.#metadata) return;
      this.#assertSupported(metadata);
    } catch (err) {
      const e = discoveryError(this.credential.name, err);
      if (!this.#closing) {
        this.#metrics?.tokenRequests.inc({ credential: this.credential.name, outcome: e.code });
        this.#log.warn(
          { event: 'token_failed', grant_type: this.credential.grant.type, error: e.code, detail: e.message },
          'token request failed',
        );
      }
      throw e;
    }
    const method = this.credential.clientAuth.method;
    const mtls = method === 'tls_client_auth' || method === 'self_signed_tls_client_auth';
    const url = (mtls ? metadata.mtlsTokenEndpoint : undefined) ?? metadata.tokenEndpoint;
    if (url.href !== this.#url.href) {
      const old = this.#endpoint;
      this.#url = url;
      this.#origin = url.origin;
      this.#htu = url.origin + url.pathname;
      this.#endpoint = this.#newEndpoint(url);
      // Requests already posted there finish within their timeout.
      this.#retired.add(old);
      setTimeout(() => {
        if (this.#retired.delete(old)) old.close().catch(() => {});
      }, this.credential.timeoutMs).unref();
    }
    this.#metadata = metadata;
  }

  /**
   * The server lists the client authentication methods and signing algs its token endpoint takes
   * (RFC 8414 §2): one it does not list would be refused there anyway, less clearly. When it lists
   * none, nothing is assumed.
   */
  #assertSupported(metadata: AuthServerMetadata): void {
    const auth = this.credential.clientAuth;
    const name = this.credential.name;
    if (metadata.authMethods !== undefined && !metadata.authMethods.includes(auth.method)) {
      throw new AuthMethodUnsupportedError(
        name,
        `auth_method ${auth.method} is not among the methods issuer ${metadata.issuer} lists in token_endpoint_auth_methods_supported (${metadata.authMethods.join(', ') || 'none'})`,
        auth.method,
      );
    }
    const alg =
      auth.method === 'client_secret_jwt'
        ? 'HS256'
        : auth.method === 'private_key_jwt'
          ? auth.signing?.alg
          : undefined;
    if (alg !== undefined && metadata.signingAlgs !== undefined && !metadata.signingAlgs.includes(alg)) {
      throw new AuthMethodUnsupportedError(
        name,
        `signing alg ${alg} (${auth.method}) is not among the algs issuer ${metadata.issuer} lists in token_endpoint_auth_signing_alg_values_supported (${metadata.signingAlgs.join(', ') || 'none'})`,
        alg,
      );
    }
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
      const dpop = this.#dpop;
      let form: URLSearchParams;
      let headers: Record<string, string>;
      let token: Token;
      for (let round = 0; ; round++) {
        // Built afresh for a retry: client assertions carry a `jti` the server may remember.
        form = await this.#build(ctx);
        grant = form.get('grant_type') ?? grant;
        headers = {};
        await this.#authenticate(form, headers);
        const nonce = dpop?.nonce(this.#origin);
        if (dpop) headers['dpop'] = dpop.proof('POST', this.#htu, nonce);
        try {
          token = await this.#endpoint.post(form, headers, {
            extraTokenTypes: [...this.credential.tokenTypes, ...(this.#grant.extraTokenTypes ?? [])],
            ...(ctx.deadline !== undefined ? { deadline: ctx.deadline } : {}),
            ...(dpop ? { tokenType: 'dpop', onDpopNonce: (v) => dpop.heard(this.#origin, v) } : {}),
          });
          break;
        } catch (err) {
          // RFC 9449 §8: the server wants its nonce in the proof and sent it in DPoP-Nonce; once.
          if (
            round === 0 &&
            dpop &&
            isRejected(err, 'use_dpop_nonce') &&
            dpop.hasNewNonce(this.#origin, nonce)
          )
            continue;
          throw err;
        }
      }
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
