/**
 * Every failure token-injector reports has a class here and a stable `code`. The code is what
 * apps see in JSON error bodies, what metrics count and what tests assert; messages may change,
 * codes may not. Messages and fields never carry a secret or a token.
 */

export type ErrorCode =
  | 'config_invalid'
  | 'token_endpoint_unreachable'
  | 'token_endpoint_timeout'
  | 'token_endpoint_rejected'
  | 'token_response_invalid'
  | 'upstream_unreachable'
  | 'upstream_timeout'
  | 'route_not_found'
  | 'connect_not_allowed'
  | 'proxy_loop'
  | 'bad_request'
  | 'misdirected_request'
  | 'too_many_headers'
  | 'shared_cache_unavailable'
  | 'expectation_failed'
  | 'upgrade_not_supported'
  | 'unknown_credential'
  | 'internal_error'
  | 'certificate_unavailable'
  | 'assertion_missing'
  | 'assertion_expired'
  | 'assertion_invalid'
  | 'credential_input_unavailable'
  | DiscoveryCode
  | ResourceDiscoveryCode;

export abstract class TokenInjectorError extends Error {
  abstract readonly code: ErrorCode;

  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = this.constructor.name;
  }
}

/** One problem in a configuration file, with the exact key path it concerns. */
export interface ConfigProblem {
  readonly path: string;
  readonly message: string;
}

export class ConfigError extends TokenInjectorError {
  readonly code = 'config_invalid' as const;
  readonly problems: readonly ConfigProblem[];

  constructor(problems: readonly ConfigProblem[], options?: ErrorOptions) {
    super(problems.map(formatProblem).join('\n'), options);
    this.problems = problems;
  }
}

export function formatProblem(p: ConfigProblem): string {
  return p.path ? `${p.path}: ${p.message}` : p.message;
}

/** Base of every failure to obtain a token; carries the credential name, never its secret. */
export abstract class TokenError extends TokenInjectorError {
  abstract override readonly code:
    | 'token_endpoint_unreachable'
    | 'token_endpoint_timeout'
    | 'token_endpoint_rejected'
    | 'token_response_invalid'
    | 'credential_input_unavailable'
    | DiscoveryCode;
  readonly credential: string;

  constructor(credential: string, message: string, options?: ErrorOptions) {
    super(message, options);
    this.credential = credential;
  }
}

/** The token endpoint could not be reached (DNS, refused, reset, TLS failure). */
export class TokenEndpointUnreachableError extends TokenError {
  readonly code = 'token_endpoint_unreachable' as const;
}

/** The whole token request did not finish within the credential's `timeout`. */
export class TokenEndpointTimeoutError extends TokenError {
  readonly code = 'token_endpoint_timeout' as const;
}

/**
 * The token endpoint answered with an OAuth error (RFC 6749 §5.2) or a non-2xx status.
 * `oauthError` and `oauthErrorDescription` are the server's words and are safe to show.
 */
export class TokenEndpointRejectedError extends TokenError {
  readonly code = 'token_endpoint_rejected' as const;
  readonly status: number;
  readonly oauthError: string | undefined;
  readonly oauthErrorDescription: string | undefined;
  /** The server's Retry-After (429, 503), in milliseconds. */
  readonly retryAfterMs: number | undefined;

  constructor(
    credential: string,
    status: number,
    oauthError: string | undefined,
    oauthErrorDescription: string | undefined,
    retryAfterMs?: number,
  ) {
    const what = oauthError
      ? `${oauthError}${oauthErrorDescription ? ` (${oauthErrorDescription})` : ''}`
      : 'no OAuth error body';
    super(credential, `token endpoint answered HTTP ${status}: ${what}`);
    this.status = status;
    this.oauthError = oauthError;
    this.oauthErrorDescription = oauthErrorDescription;
    this.retryAfterMs = retryAfterMs;
  }
}

/** The token endpoint answered 2xx with something that is not a usable token response. */
export class TokenResponseInvalidError extends TokenError {
  readonly code = 'token_response_invalid' as const;
}

export class UpstreamUnreachableError extends TokenInjectorError {
  readonly code = 'upstream_unreachable' as const;
}

export class UpstreamTimeoutError extends TokenInjectorError {
  readonly code = 'upstream_timeout' as const;
}

export class RouteNotFoundError extends TokenInjectorError {
  readonly code = 'route_not_found' as const;
  readonly host: string;
  readonly path: string;

  constructor(host: string, path: string) {
    super(`no route matches host "${host}" and path "${path}"`);
    this.host = host;
    this.path = path;
  }
}

export class ConnectNotAllowedError extends TokenInjectorError {
  readonly code = 'connect_not_allowed' as const;
}

export class ProxyLoopError extends TokenInjectorError {
  readonly code = 'proxy_loop' as const;
}

export class BadRequestError extends TokenInjectorError {
  readonly code = 'bad_request' as const;
}

/**
 * A request on an intercepted connection for another host than the one the connection was
 * opened (CONNECT) and its certificate made for (RFC 9110 §15.5.20): it needs its own connection.
 */
export class MisdirectedRequestError extends TokenInjectorError {
  readonly code = 'misdirected_request' as const;
}

/** More header fields than `limits.max_headers`: refused whole, never truncated. */
export class TooManyHeadersError extends TokenInjectorError {
  readonly code = 'too_many_headers' as const;
}

/**
 * A WebSocket upgrade on a route whose upstream is spoken to in HTTP/2: WebSockets over HTTP/2
 * (RFC 8441) are not carried, and an HTTP/1.1 upgrade cannot be sent on an HTTP/2 connection.
 */
export class UpgradeNotSupportedError extends TokenInjectorError {
  readonly code = 'upgrade_not_supported' as const;
}

/** An `Expect` other than `100-continue`, which no one on the way can promise (RFC 9110 §10.1.1). */
export class ExpectationFailedError extends TokenInjectorError {
  readonly code = 'expectation_failed' as const;
}

export class UnknownCredentialError extends TokenInjectorError {
  readonly code = 'unknown_credential' as const;
}

/**
 * The shared cache (Redis/Valkey) did not answer in time, refused, or is disconnected. Never
 * reaches an app: the replica goes on with its own cache and token requests.
 */
export class SharedCacheUnavailableError extends TokenInjectorError {
  readonly code = 'shared_cache_unavailable' as const;
}

/** A bug in token-injector: never expected, always answered with 500 rather than a crash. */
export class InternalError extends TokenInjectorError {
  readonly code = 'internal_error' as const;
}

/**
 * No leaf certificate could be minted for an intercepted host: the interception CA is outside
 * its validity (it expired while we ran), or the host cannot be named in a certificate (the
 * caller should have refused it). Never a problem of the app's request: the proxy's own (500).
 */
export class CertificateMintError extends TokenInjectorError {
  readonly code = 'certificate_unavailable' as const;
  readonly host: string;
  readonly reason: 'ca_expired' | 'ca_not_yet_valid' | 'host_not_certifiable';

  constructor(host: string, reason: CertificateMintError['reason'], message: string, options?: ErrorOptions) {
    super(message, options);
    this.host = host;
    this.reason = reason;
  }
}

/** A route whose credential exchanges the app's assertion got a request without it. */
export class AssertionMissingError extends TokenInjectorError {
  readonly code = 'assertion_missing' as const;
  readonly header: string;

  constructor(header: string) {
    super(`the request has no ${header} header, which this route exchanges for a token`);
    this.header = header;
  }
}

/** The app's assertion (or subject token) expired before it could be exchanged. */
export class AssertionExpiredError extends TokenInjectorError {
  readonly code = 'assertion_expired' as const;
  readonly header: string;

  constructor(header: string) {
    super(`the assertion in the ${header} header has expired`);
    this.header = header;
  }
}

/** The app's assertion is not in a form we can send (e.g. a SAML value that is not base64 XML). */
export class AssertionInvalidError extends TokenInjectorError {
  readonly code = 'assertion_invalid' as const;
  readonly header: string;

  constructor(header: string, reason: string) {
    super(`the ${header} header is not a usable assertion: ${reason}`);
    this.header = header;
  }
}

/**
 * Something a token request needs from the local machine is not there: an assertion or token
 * file that is missing or unreadable (e.g. a projected token not yet written by the kubelet).
 */
export class CredentialInputError extends TokenError {
  readonly code = 'credential_input_unavailable' as const;
}

/** Failures of authorization-server discovery (RFC 8414), a credential with `issuer`. */
export type DiscoveryCode =
  | 'metadata_unavailable'
  | 'metadata_invalid'
  | 'issuer_mismatch'
  | 'auth_method_unsupported';

/** The issuer's metadata could not be fetched (unreachable, timeout, 5xx) and no earlier copy is held. */
export class MetadataUnavailableError extends TokenError {
  readonly code = 'metadata_unavailable' as const;
}

/** The issuer's metadata is missing (404 at both well-known URLs) or unusable (no `token_endpoint`, …). */
export class MetadataInvalidError extends TokenError {
  readonly code = 'metadata_invalid' as const;
}

/**
 * The metadata names another issuer than the one configured: RFC 8414 §3.3 forbids using it,
 * since it may come from a server impersonating the configured one.
 */
export class IssuerMismatchError extends TokenError {
  readonly code = 'issuer_mismatch' as const;
  /** The `issuer` the metadata gave (public information). */
  readonly metadataIssuer: string;

  constructor(credential: string, message: string, metadataIssuer: string) {
    super(credential, message);
    this.metadataIssuer = metadataIssuer;
  }
}

/**
 * The credential's `auth_method` (or its signing alg) is not among those the server's metadata
 * lists (`token_endpoint_auth_methods_supported`, `token_endpoint_auth_signing_alg_values_supported`).
 */
export class AuthMethodUnsupportedError extends TokenError {
  readonly code = 'auth_method_unsupported' as const;
  /** The method, or the signing alg, the server does not list. */
  readonly unsupported: string;

  constructor(credential: string, message: string, unsupported: string) {
    super(credential, message);
    this.unsupported = unsupported;
  }
}

/** Failures of protected-resource discovery (RFC 9728), a route with `resource_metadata: discover`. */
export type ResourceDiscoveryCode =
  | 'resource_metadata_unavailable'
  | 'resource_metadata_invalid'
  | 'resource_mismatch'
  | 'authorization_server_not_listed';

/** Base of the failures of a route's protected-resource discovery; names the route. */
export abstract class ResourceDiscoveryError extends TokenInjectorError {
  abstract override readonly code: ResourceDiscoveryCode;
  readonly route: string;

  constructor(route: string, message: string, options?: ErrorOptions) {
    super(message, options);
    this.route = route;
  }
}

/** The resource metadata could not be fetched (unreachable, timeout, not 200). */
export class ResourceMetadataUnavailableError extends ResourceDiscoveryError {
  readonly code = 'resource_metadata_unavailable' as const;
}

/** The metadata is not usable (not JSON, no `resource`), or its URL is not at the upstream's origin. */
export class ResourceMetadataInvalidError extends ResourceDiscoveryError {
  readonly code = 'resource_metadata_invalid' as const;
}

/** RFC 9728 §3.3: the metadata's `resource` is not the route's upstream: it must not be used. */
export class ResourceMismatchError extends ResourceDiscoveryError {
  readonly code = 'resource_mismatch' as const;
}

/** The credential's issuer is not among the resource's `authorization_servers`. */
export class AuthorizationServerNotListedError extends ResourceDiscoveryError {
  readonly code = 'authorization_server_not_listed' as const;
}

/**
 * A credential's token endpoint failed and its next attempt is not due yet: the request fails
 * fast with the last failure's code (so the same status) and a Retry-After, instead of waiting
 * or adding load to a provider that is down.
 */
export class CredentialBackoffError extends TokenError {
  readonly code: TokenError['code'];
  readonly retryAfterSeconds: number;

  constructor(credential: string, last: unknown, retryAfterSeconds: number) {
    const base = last instanceof TokenError ? last : undefined;
    super(
      credential,
      `${base?.message ?? 'the token endpoint is failing'}; next attempt in ${retryAfterSeconds}s`,
      { cause: last },
    );
    this.code = base?.code ?? 'token_endpoint_unreachable';
    this.retryAfterSeconds = retryAfterSeconds;
  }
}

/**
 * Whether a failure may succeed if tried again: connection errors, timeouts, 5xx and 429. OAuth
 * errors such as `invalid_client` or `invalid_grant` and unusable answers are permanent: trying
 * again only adds load to a provider that already said no. A 429 is transient whatever its body
 * says (`rate_limit_exceeded`, `slow_down`, …): RFC 6585 §4 asks for fewer requests, not none.
 */
export function isTransient(error: unknown): boolean {
  if (!(error instanceof TokenError)) return false;
  if (error instanceof CredentialBackoffError) return isTransient(error.cause);
  switch (error.code) {
    case 'token_endpoint_unreachable':
    case 'token_endpoint_timeout':
    case 'credential_input_unavailable':
    case 'metadata_unavailable':
      return true;
    case 'token_endpoint_rejected': {
      const { status, oauthError } = error as TokenEndpointRejectedError;
      if (status === 429) return true;
      return (
        status >= 500 &&
        (oauthError === undefined ||
          oauthError === 'temporarily_unavailable' ||
          oauthError === 'server_error')
      );
    }
    default:
      return false;
  }
}
