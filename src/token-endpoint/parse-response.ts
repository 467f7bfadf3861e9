import { TokenEndpointRejectedError, TokenResponseInvalidError } from '../errors.js';
import { parseHttpDate } from './http-date.js';
import type { Token } from './token.js';

/** The most characters of one server-provided text kept in an error. */
const MAX_SERVER_TEXT = 300;

export interface ParseOptions {
  readonly credential: string;
  /** Used when the server omits `expires_in` (RFC 6749 §5.1 makes it only RECOMMENDED). */
  readonly defaultLifetimeMs: number;
  /** Caps absurd lifetimes so a token is re-fetched at least this often. */
  readonly maxLifetimeMs: number;
  readonly now: number;
  /** Lower-case `token_type` values accepted besides Bearer. */
  readonly extraTokenTypes?: readonly string[];
  /** The only `token_type` accepted (lower-case), Bearer included: `dpop` for a DPoP credential. */
  readonly tokenType?: string;
  /**
   * Removes the request's secrets from server text before it goes into an error: servers echo
   * requests in `error_description` (see `redact.ts`). Called only on the way to an error.
   */
  readonly redact?: (text: string) => string;
}

export interface RawResponse {
  readonly status: number;
  readonly contentType: string | undefined;
  readonly body: string;
  /** The Retry-After header, if any (seconds or an HTTP date). */
  readonly retryAfter?: string | undefined;
}

/**
 * Turns a token endpoint's answer into a {@link Token} or a typed error, strictly: the error body
 * of RFC 6749 §5.2 first, then the required fields of §5.1. The access token is checked to be
 * safe in an HTTP header, since it is written into one.
 */
export function parseTokenResponse(res: RawResponse, opts: ParseOptions): Token {
  const { credential } = opts;
  if (res.status >= 300 && res.status < 400) {
    throw new TokenResponseInvalidError(
      credential,
      `token endpoint answered a redirect (HTTP ${res.status}); token requests are never redirected`,
    );
  }
  const json = tryParseJson(res.body);
  if (res.status < 200 || res.status >= 300 || (isObject(json) && typeof json['error'] === 'string')) {
    const error = isObject(json) ? safeText(json['error'], opts) : undefined;
    const description = isObject(json) ? safeText(json['error_description'], opts) : undefined;
    throw new TokenEndpointRejectedError(
      credential,
      res.status,
      error,
      description,
      retryAfterMs(res.retryAfter, opts.now),
    );
  }
  if (!isObject(json)) {
    throw new TokenResponseInvalidError(
      credential,
      `token endpoint answered HTTP ${res.status} with ${describeBody(res, json)}, not a JSON object`,
    );
  }
  const accessToken = json['access_token'];
  if (typeof accessToken !== 'string' || accessToken.length === 0) {
    throw new TokenResponseInvalidError(credential, 'token response has no access_token string');
  }
  // Visible ASCII only: a CR or LF would let the token endpoint inject headers upstream.
  if (!/^[\x21-\x7e]+$/.test(accessToken)) {
    throw new TokenResponseInvalidError(
      credential,
      'access_token holds characters that cannot be sent in an HTTP header',
    );
  }
  const tokenType = json['token_type'] ?? 'Bearer';
  if (opts.tokenType !== undefined) {
    // RFC 9449 §5: a client that asked for a DPoP-bound token MAY refuse a Bearer one. Taken, it
    // would travel unbound while the configuration asked for sender-constrained tokens.
    if (typeof tokenType !== 'string' || tokenType.toLowerCase() !== opts.tokenType) {
      throw new TokenResponseInvalidError(
        credential,
        `token_type ${JSON.stringify(safeText(tokenType, opts) ?? null)} is not ${opts.tokenType === 'dpop' ? 'DPoP: the server did not bind the token to the DPoP key (RFC 9449 §5)' : opts.tokenType}`,
      );
    }
  } else if (
    typeof tokenType !== 'string' ||
    (tokenType.toLowerCase() !== 'bearer' && !opts.extraTokenTypes?.includes(tokenType.toLowerCase()))
  ) {
    throw new TokenResponseInvalidError(
      credential,
      `token_type ${JSON.stringify(safeText(tokenType, opts) ?? null)} is not Bearer (RFC 6750)`,
    );
  }
  const lifetimeMs = lifetime(json['expires_in'], opts);
  const scope = typeof json['scope'] === 'string' ? json['scope'] : undefined;
  const refresh = json['refresh_token'];
  const refreshToken = typeof refresh === 'string' && refresh.length > 0 ? refresh : undefined;
  return {
    accessToken,
    tokenType,
    issuedAt: opts.now,
    expiresAt: opts.now + lifetimeMs,
    ...(scope !== undefined ? { scope } : {}),
    ...(refreshToken !== undefined ? { refreshToken } : {}),
  };
}

function lifetime(value: unknown, opts: ParseOptions): number {
  if (value === undefined || value === null) return opts.defaultLifetimeMs;
  // Some servers send expires_in as a string ("3600"); accept it when it is a plain number.
  const seconds = typeof value === 'string' && /^\d+(\.\d+)?$/.test(value.trim()) ? Number(value) : value;
  // Under a second is refused: such a token would be refreshed in a hot loop, and it cannot
  // survive the trip to the upstream anyway.
  if (typeof seconds !== 'number' || !Number.isFinite(seconds) || seconds < 1) {
    throw new TokenResponseInvalidError(
      opts.credential,
      `expires_in ${JSON.stringify(safeText(value, opts) ?? typeof value)} is not a number of seconds of at least 1`,
    );
  }
  return Math.min(seconds * 1000, opts.maxLifetimeMs);
}

/** RFC 9110 §10.2.3: delay-seconds or an HTTP-date. */
export function retryAfterMs(value: string | undefined, now: number): number | undefined {
  if (value === undefined) return undefined;
  const text = value.trim();
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  const at = parseHttpDate(text, now);
  return at === undefined ? undefined : Math.max(0, at - now);
}

function tryParseJson(body: string): unknown {
  try {
    return JSON.parse(body);
  } catch {
    return undefined;
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * Server-provided text, without the request's secrets, trimmed to printable characters and a sane
 * length for logs and errors. Redacted first: a cut or a `?` could hide a secret from the redactor.
 */
function safeText(value: unknown, opts: ParseOptions): string | undefined {
  if (typeof value !== 'string' && typeof value !== 'number') return undefined;
  const text = opts.redact ? opts.redact(String(value)) : String(value);
  return text.replace(/[^\x20-\x7e]/g, '?').slice(0, MAX_SERVER_TEXT);
}

/** What the body is, for an error; `json` is its parsed value, undefined when it is not JSON. */
function describeBody(res: RawResponse, json: unknown): string {
  if (json === null) return 'JSON null';
  if (Array.isArray(json)) return 'a JSON array';
  if (json !== undefined) return `a JSON ${typeof json}`;
  if (res.body.length === 0) return 'an empty body';
  const type = res.contentType?.split(';')[0]?.trim().toLowerCase();
  if (type === 'text/html' || /^\s*</.test(res.body)) return 'an HTML page';
  // The server chose this value: named only when it is a plain media type, never as free text.
  const named = type !== undefined && /^[a-z0-9!#$&^_.+-]{1,64}\/[a-z0-9!#$&^_.+-]{1,64}$/.test(type);
  return `a body of type ${named ? type : 'unknown'} that is not JSON`;
}
