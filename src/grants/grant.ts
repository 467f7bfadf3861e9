import type { TokenScope } from '../config/types.js';
import type { Token } from '../token-endpoint/token.js';

/** What a grant may use to build one token request. */
export interface GrantContext {
  /** The token being renewed, if any (the password grant takes its refresh token). */
  readonly previous?: Token;
  /** Scope, audience and resource in force: the route's, else the credential's. */
  readonly tokenScope: TokenScope;
  /** The URL the request goes to: the default audience of assertions we sign. */
  readonly endpoint: URL;
  /** Values the app sent for `request_header` sources, by lower-case header name. */
  readonly request?: ReadonlyMap<string, string>;
  /** Epoch ms by which this token request must be done. */
  readonly deadline?: number;
  /** The current token of another credential (token exchange with `source: credential`). */
  readonly credentialToken: (name: string) => Promise<Token>;
}

/**
 * What a grant reads from each app request (`source: request_header`): its tokens then follow
 * the values the app sends, one cached token per distinct set of values.
 */
export interface PerRequestInputs {
  /** Lower-case names of the request headers that carry the values. */
  readonly headers: readonly string[];
  /** Tokens kept at most, one per set of values. */
  readonly maxEntries: number;
  /** When a value stops being valid (epoch ms), if it says: no token outlives its assertion. */
  expiryOf(value: string): number | undefined;
}

/** One grant type: the form of its token request, and how to recover from a failed one. */
export interface Grant {
  form(ctx: GrantContext): Promise<URLSearchParams>;
  /**
   * After a request built from `ctx` failed with `error`, the context of one more attempt, or
   * undefined. The password grant uses it to fall back from a rejected refresh token.
   */
  retry?(ctx: GrantContext, error: unknown): GrantContext | undefined;
  /** `token_type` values accepted besides Bearer, lower-case (RFC 8693 §2.2.1 allows "N_A"). */
  readonly extraTokenTypes?: readonly string[];
  /** Present when the grant's token depends on each request: what it reads from it. */
  readonly perRequest?: PerRequestInputs;
}

/**
 * The fields every grant shares: the grant type, the configured extra `params`, and scope,
 * audience and resource. Set after the params so that nothing in them can change the grant.
 */
export function baseForm(
  grantType: string,
  params: Readonly<Record<string, string>>,
  scope: TokenScope,
): URLSearchParams {
  const form = new URLSearchParams(params);
  form.set('grant_type', grantType);
  if (scope.scope !== undefined) form.set('scope', scope.scope);
  if (scope.audience !== undefined) form.set('audience', scope.audience);
  if (scope.resource !== undefined) form.set('resource', scope.resource);
  return form;
}
