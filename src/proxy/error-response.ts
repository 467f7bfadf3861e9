import type { ServerResponse } from 'node:http';
import { type ErrorCode, InternalError, isTransient, TokenError, TokenInjectorError } from '../errors.js';
import { REQUEST_ID, requestIdOf } from './request-id.js';

/** Seconds a client is asked to wait when the identity provider cannot be reached. */
const RETRY_AFTER_SECONDS = 5;

/** The one place that decides which HTTP status each failure becomes. */
export function statusFor(code: ErrorCode): number {
  switch (code) {
    case 'bad_request':
    case 'assertion_invalid':
      return 400;
    case 'assertion_missing':
    case 'assertion_expired':
      return 401;
    case 'misdirected_request':
      return 421;
    case 'too_many_headers':
      return 431;
    case 'expectation_failed':
      return 417;
    case 'upgrade_not_supported':
      return 501;
    case 'route_not_found':
    case 'connect_not_allowed':
      return 403;
    case 'token_endpoint_rejected':
    case 'token_response_invalid':
    case 'upstream_unreachable':
    case 'metadata_invalid':
    case 'issuer_mismatch':
    case 'auth_method_unsupported':
    case 'resource_metadata_unavailable':
    case 'resource_metadata_invalid':
    case 'resource_mismatch':
    case 'authorization_server_not_listed':
      return 502;
    case 'token_endpoint_unreachable':
    case 'metadata_unavailable':
    case 'credential_input_unavailable':
    case 'shared_cache_unavailable':
      return 503;
    case 'token_endpoint_timeout':
    case 'upstream_timeout':
      return 504;
    case 'proxy_loop':
      return 508;
    case 'config_invalid':
    case 'unknown_credential':
    case 'internal_error':
    case 'certificate_unavailable':
      return 500;
  }
}

/**
 * The status of one failure: its code's, except that a token endpoint answering 5xx or 429 is
 * "unavailable for now" (503 with Retry-After), not a rejection of the request (502).
 */
export function statusOf(err: TokenInjectorError): number {
  if (err.code === 'token_endpoint_rejected' && isTransient(err)) return 503;
  return statusFor(err.code);
}

export interface ErrorBody {
  readonly error: ErrorCode;
  readonly detail: string;
  readonly credential?: string;
  readonly route?: string;
  readonly host?: string;
  readonly path?: string;
  /** The request's ID (request-id.ts), so the app can find the request in the proxy's logs. */
  readonly request_id?: string;
}

/** The JSON body the app receives; built from typed fields that never hold a secret. */
export function errorBody(
  err: TokenInjectorError,
  extra: Partial<ErrorBody> = {},
  requestId?: string,
): ErrorBody {
  return {
    ...extra,
    error: err.code,
    ...(err instanceof TokenError ? { credential: err.credential } : {}),
    detail: err.message,
    ...(requestId !== undefined ? { request_id: requestId } : {}),
  };
}

/**
 * Writes an error answer if the response has not started; otherwise cuts the connection. The
 * request's ID is in the body and in an `X-Request-Id` response header.
 */
export function sendError(res: ServerResponse, err: TokenInjectorError, extra?: Partial<ErrorBody>): number {
  const status = statusOf(err);
  if (res.headersSent) {
    res.destroy();
    return status;
  }
  const requestId = requestIdOf(res.req);
  const body = JSON.stringify(errorBody(err, extra, requestId));
  const headers: Record<string, string | number> = {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
  };
  if (requestId !== undefined) headers[REQUEST_ID] = requestId;
  const retryAfter = (err as { retryAfterSeconds?: number }).retryAfterSeconds;
  if (retryAfter !== undefined) headers['retry-after'] = Math.max(1, retryAfter);
  else if (status === 503) headers['retry-after'] = RETRY_AFTER_SECONDS;
  res.writeHead(status, headers);
  res.end(body);
  return status;
}

/** A failure as a known error: anything unexpected is an internal error (500), never a crash. */
export function asKnown(err: unknown): TokenInjectorError {
  if (err instanceof TokenInjectorError) return err;
  return new InternalError(`unexpected error: ${(err as Error).message}`, { cause: err });
}
