import type { ServerResponse } from 'node:http';
import { downstreamResponseHeaders } from './headers.js';

/**
 * Passes an upstream's 103 Early Hints (RFC 8297) on to the app while its response has not
 * started. Never to an HTTP/1.0 client, which cannot take a 1xx (RFC 9110 §15.2); never without
 * `Link`, the only thing hints are for.
 */
export function relayEarlyHints(
  res: ServerResponse,
  headers: Record<string, string | string[] | undefined>,
): void {
  if (headers['link'] === undefined || res.headersSent || res.destroyed) return;
  const req = res.req;
  if (req.httpVersionMajor === 1 && req.httpVersionMinor === 0) return;
  try {
    res.writeEarlyHints(downstreamResponseHeaders(headers) as Record<string, string | string[]>);
  } catch {
    // A Link value Node refuses to write (ERR_INVALID_ARG_VALUE): hints are advice, drop them.
  }
}
