import type { IncomingMessage } from 'node:http';
import type { RouteConfig } from '../config/types.js';

/*
 * Replaying a request after the upstream refuses its token (RFC 6750 §3.1): which answers count
 * as a refusal, and the memory that keeping bodies for a second send may take. A body small
 * enough to keep can be sent again, as long as all such bodies together stay within
 * limits.replay_buffer_total; others stream, and their requests are not retried.
 */

/** Memory held for replayable bodies across all requests, bounded by `limits.replay_buffer_total`. */
export class ReplayBudget {
  #used = 0;
  constructor(readonly limit: number) {}

  take(bytes: number): boolean {
    if (this.#used + bytes > this.limit) return false;
    this.#used += bytes;
    return true;
  }

  give(bytes: number): void {
    this.#used -= bytes;
  }
}

/** The body's length when it may be kept for a replay (Content-Length within `limit`). */
export function replayableLength(req: IncomingMessage, limit: number): number | undefined {
  const length = Number(req.headers['content-length']);
  return Number.isFinite(length) && length <= limit ? length : undefined;
}

/** The whole request body, read into memory so it can be sent twice; null if the client left. */
export async function readBody(req: IncomingMessage): Promise<Buffer | null> {
  const chunks: Buffer[] = [];
  try {
    for await (const chunk of req) chunks.push(chunk as Buffer);
  } catch {
    return null; // the client went away; the caller sees res destroyed
  }
  return Buffer.concat(chunks);
}

/**
 * Whether an upstream answer refuses the token it was sent with: a 401, if the route retries on
 * every 401 (`retry_on_401`) or the upstream says the token is invalid.
 */
export function refusesToken(
  route: RouteConfig,
  status: number,
  headers: Record<string, string | string[] | undefined>,
): boolean {
  return status === 401 && (route.retryOn401 || saysInvalidToken(headers['www-authenticate']));
}

/**
 * RFC 6750 §3.1: `WWW-Authenticate: Bearer error="invalid_token"`, in any letter case; or the
 * same with the `DPoP` scheme (RFC 9449 §7.1), which a resource server uses for bound tokens.
 */
export function saysInvalidToken(header: string | string[] | undefined): boolean {
  if (header === undefined) return false;
  const value = Array.isArray(header) ? header.join(', ') : header;
  return /\b(?:bearer|dpop)\b/i.test(value) && /\berror\s*=\s*"?invalid_token"?/i.test(value);
}
