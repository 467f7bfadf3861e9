/** An access token as token-injector holds it. Times are epoch milliseconds. */
export interface Token {
  readonly accessToken: string;
  /** As the server spelled it, e.g. "Bearer" or "bearer". */
  readonly tokenType: string;
  readonly issuedAt: number;
  readonly expiresAt: number;
  /** Granted scope when the server said it (RFC 6749 §5.1: it may differ from the requested one). */
  readonly scope?: string;
  /** RFC 6749 §6; a secret like the access token, never logged. */
  readonly refreshToken?: string;
}
