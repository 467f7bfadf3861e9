/** The validated, frozen configuration. Durations are milliseconds, sizes are bytes. */

import type { DpopConfig } from '../dpop/key.js';
import type { ConfigProblem } from '../errors.js';
import type { FileBacked } from '../files/live-file.js';
import type { SigningKeyConfig } from '../jwt/signing-key.js';
import type { LogLevel } from '../log/logger.js';
import type { TlsClient } from '../tls.js';

export type UnmatchedPolicy = 'deny' | 'passthrough';
/** How a route speaks to its upstream: HTTP/1.1, or HTTP/2 (h2 by ALPN over TLS, h2c over http://). */
export type UpstreamProtocol = 'http1' | 'http2';
export type ClientAuthMethod =
  | 'client_secret_basic'
  | 'client_secret_post'
  | 'client_secret_jwt'
  | 'private_key_jwt'
  | 'tls_client_auth'
  | 'self_signed_tls_client_auth'
  | 'none';
export type GrantType = 'client_credentials' | 'password' | 'jwt_bearer' | 'saml2_bearer' | 'token_exchange';
export interface ListenAddress {
  readonly host: string;
  readonly port: number;
}

/** Where an assertion or a token given to the token endpoint comes from. */
export type TokenInput =
  | { readonly source: 'file'; readonly path: string }
  | { readonly source: 'request_header'; readonly header: string; readonly maxEntries: number }
  | { readonly source: 'credential'; readonly credential: string }
  | {
      readonly source: 'sign';
      readonly signing: SigningKeyConfig;
      readonly issuer: string;
      readonly subject: string;
      /** Undefined: the token endpoint URL. */
      readonly audience?: string;
      readonly lifetimeMs: number;
      readonly claims: Readonly<Record<string, unknown>>;
    };

export type ClientAuthConfig =
  | { readonly method: 'client_secret_basic' | 'client_secret_post'; readonly secret: FileBacked }
  | { readonly method: 'client_secret_jwt'; readonly secret: FileBacked; readonly assertionAudience?: string }
  | {
      readonly method: 'private_key_jwt';
      /** Exactly one of `signing` and `assertionFile`. */
      readonly signing?: SigningKeyConfig;
      readonly assertionFile?: string;
      /**
       * With `assertionFile` only, when configured: its `client_assertion_type` (RFC 7521 §4.2);
       * absent means RFC 7523's jwt-bearer.
       */
      readonly assertionType?: string;
      readonly assertionAudience?: string;
    }
  | { readonly method: 'tls_client_auth' | 'self_signed_tls_client_auth' | 'none' };

export type GrantConfig =
  | { readonly type: 'client_credentials' }
  | { readonly type: 'password'; readonly username: string; readonly password: FileBacked }
  | { readonly type: 'jwt_bearer' | 'saml2_bearer'; readonly assertion: TokenInput }
  | {
      readonly type: 'token_exchange';
      readonly subjectToken: TokenInput;
      readonly subjectTokenType: string;
      readonly actorToken?: TokenInput;
      readonly actorTokenType?: string;
      readonly requestedTokenType?: string;
    };

/** What a route may override of its credential's token request; part of the cache key. */
export interface TokenScope {
  readonly scope?: string;
  readonly audience?: string;
  readonly resource?: string;
}

export interface CredentialConfig extends TokenScope {
  readonly name: string;
  /** Exactly one of `tokenEndpoint` and `issuer` is set. */
  readonly tokenEndpoint?: URL;
  /**
   * RFC 8414: the authorization server whose metadata names the token endpoint, exactly as
   * configured (the metadata must repeat it character for character).
   */
  readonly issuer?: string;
  /** RFC 8705 §5: the endpoint alias used for mTLS client authentication, when set. */
  readonly mtlsTokenEndpoint?: URL;
  readonly grant: GrantConfig;
  readonly clientId: string;
  readonly clientAuth: ClientAuthConfig;
  readonly params: Readonly<Record<string, string>>;
  readonly prefetch: boolean;
  readonly timeoutMs: number;
  /** Fraction of the token lifetime after which a background refresh starts. */
  readonly refreshAhead: number;
  readonly tls: TlsClient;
  readonly connectTimeoutMs: number;
  /** Token responses larger than this are refused. */
  readonly maxResponseBytes: number;
  /** Lifetime of a token whose response has no `expires_in`. */
  readonly defaultLifetimeMs: number;
  /** Longer lifetimes are cut to this, so a token is re-fetched at least this often. */
  readonly maxLifetimeMs: number;
  /** Lower-case `token_type` values accepted besides Bearer (none unless configured). */
  readonly tokenTypes: readonly string[];
  /** Backoff between retries of transient failures and between probes of a failing endpoint. */
  readonly initialBackoffMs: number;
  readonly maxBackoffMs: number;
  readonly allowInsecureHttp: boolean;
  /** RFC 9449: tokens bound to this key, presented with a proof per request. */
  readonly dpop?: DpopConfig;
}

export interface RouteMatch {
  /** Lower-case host pattern: exact, or `*.` + suffix. Undefined matches every host. */
  readonly host?: string;
  /** When set, the port the request's target must use. */
  readonly port?: number;
  readonly pathPrefix?: string;
  /** Upper-case methods; undefined matches every method. */
  readonly methods?: ReadonlySet<string>;
}

export interface RouteConfig {
  readonly name: string;
  readonly match: RouteMatch;
  /** Upstream origin and optional base path (no trailing slash). */
  readonly upstream: URL;
  readonly stripPrefix: boolean;
  readonly credential: string;
  /** Header name as configured; compared case-insensitively. */
  readonly header: string;
  readonly prefix: string;
  /** Overrides of the credential's scope, audience and resource for this route's tokens. */
  readonly tokenScope: TokenScope;
  readonly tls: TlsClient;
  /** Retry once with a new token after any 401, not only `error="invalid_token"` ones. */
  readonly retryOn401: boolean;
  /** `resource_metadata: discover`: the resource (RFC 9728) is discovered at the first 401. */
  readonly discoverResource: boolean;
  /** Request bodies up to this size are kept so a request can be replayed after a 401. */
  readonly replayBufferBytes: number;
  readonly connectTimeoutMs: number;
  /** Until the upstream's response headers arrive. */
  readonly responseTimeoutMs: number;
  /** Connections to the upstream at most; further requests queue within `responseTimeoutMs`. */
  readonly upstreamMaxConnections: number;
  readonly allowInsecureHttp: boolean;
  /**
   * Refuse path spellings that upstreams may decode into a dot segment or a NUL (`..%3B`, `%00`,
   * overlong UTF-8, `%252e`); false sends them verbatim.
   */
  readonly strictPath: boolean;
  /** `http2`: one multiplexed HTTP/2 session per upstream instead of a pool of HTTP/1.1 connections. */
  readonly upstreamProtocol: UpstreamProtocol;
}

/** Limits of the proxy listener, against slow or oversized clients. */
export interface ListenerLimits {
  readonly maxHeaderSize: number;
  readonly headersTimeoutMs: number;
  readonly idleTimeoutMs: number;
  /** A WebSocket or CONNECT tunnel with no traffic either way for this long is closed. */
  readonly tunnelIdleTimeoutMs: number;
  /** 0: no limit on the whole request (uploads may be long). */
  readonly requestTimeoutMs: number;
  /** Requests with more header fields are answered 431, never truncated. */
  readonly maxHeaders: number;
  /** Client connections beyond this are closed at accept (and counted). */
  readonly maxConnections: number;
  /** Memory, over all requests, held for replaying bodies after a 401; beyond it bodies stream. */
  readonly replayBufferTotal: number;
}

/** `shared_cache`: one token per credential for a whole fleet, through Redis or Valkey. */
export interface SharedCacheConfig {
  /** `redis://` or `rediss://` (TLS, verified), with an optional database number as path. */
  readonly url: URL;
  readonly username?: string;
  readonly password?: FileBacked;
  readonly keyPrefix: string;
  /** 32-byte keys; the first encrypts (and names entries), every one decrypts. */
  readonly encryptionKeys: readonly Buffer[];
  /** Per Redis command; past it the replica goes on alone. */
  readonly timeoutMs: number;
  /** Extra trust and a client certificate for `rediss://`. */
  readonly tls: TlsClient;
  /** The url is one seed node of a Redis or Valkey Cluster. */
  readonly cluster: boolean;
}

/** `tls_intercept`: HTTPS interception of CONNECT with leaves minted from this CA. */
export interface TlsInterceptConfig {
  /** PEM: the issuing CA first, then any certificates of its chain; read once at load. */
  readonly caCert: FileBacked;
  /** PEM (or JWK) private key of the issuing CA; its file is readable by its owner only. */
  readonly caKey: FileBacked;
  /** Lifetime of a minted leaf, cut to the CA's own end. */
  readonly leafLifetimeMs: number;
}

/** `tracing`: OpenTelemetry spans sent by OTLP/HTTP. */
export interface TracingConfig {
  /** The collector's base URL; spans go to `/v1/traces` under it. */
  readonly otlpEndpoint: URL;
  readonly serviceName: string;
  /** Fraction of new traces (no sampled `traceparent` from the app) that are recorded. */
  readonly sampleRatio: number;
}

export interface Config {
  readonly listen: ListenAddress;
  /** A `listen` beyond loopback was explicitly allowed. */
  readonly allowRemoteClients: boolean;
  readonly limits: ListenerLimits;
  readonly admin: { readonly listen: ListenAddress };
  readonly log: { readonly level: LogLevel };
  readonly unmatched: UnmatchedPolicy;
  /** How long in-flight requests may take to finish after SIGTERM. */
  readonly shutdownTimeoutMs: number;
  readonly credentials: ReadonlyMap<string, CredentialConfig>;
  readonly routes: readonly RouteConfig[];
  /** Undefined: every replica keeps its tokens to itself. */
  readonly sharedCache?: SharedCacheConfig;
  /** Undefined: CONNECT is never intercepted. */
  readonly tlsIntercept?: TlsInterceptConfig;
  /** Undefined: no tracer is loaded. */
  readonly tracing?: TracingConfig;
  /** Things that work but should be changed (e.g. a secret written inline); never fatal. */
  readonly warnings: readonly ConfigProblem[];
}
