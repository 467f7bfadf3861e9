import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Http2ServerResponse } from 'node:http2';
import { isTransient, type TokenInjectorError } from '../errors.js';
import { REQUEST_ID, requestIdOf } from './request-id.js';

/**
 * gRPC status codes (https://grpc.github.io/grpc/core/md_doc_statuscodes.html): UNAVAILABLE is
 * the one clients may retry; UNAUTHENTICATED says the call lacks valid credentials.
 */
export const GRPC_UNAVAILABLE = 14;
export const GRPC_UNAUTHENTICATED = 16;

/**
 * A gRPC call: `content-type: application/grpc` or `application/grpc+…` (gRPC's PROTOCOL-HTTP2.md),
 * on an HTTP/2 stream, the only transport gRPC has.
 */
export function isGrpcCall(req: IncomingMessage): boolean {
  if (req.httpVersionMajor !== 2) return false;
  const type = req.headers['content-type'];
  return type !== undefined && /^application\/grpc(?:[+;]|$)/i.test(type);
}

/**
 * Answers a gRPC call that could not be given a token the way a gRPC server would: a
 * trailers-only response (one HEADERS frame ending the stream) with HTTP 200, `grpc-status` 14
 * UNAVAILABLE when the failure may pass (errors.ts `isTransient`) or 16 UNAUTHENTICATED when it
 * will not, and a `grpc-message` naming the credential, never a secret; the request's ID as
 * `x-request-id` metadata. Returns the HTTP status.
 */
export function sendGrpcError(res: ServerResponse, err: TokenInjectorError, credential: string): number {
  const stream = (res as unknown as Http2ServerResponse).stream;
  if (res.headersSent || stream.destroyed) {
    res.destroy();
    return 200;
  }
  const status = isTransient(err) ? GRPC_UNAVAILABLE : GRPC_UNAUTHENTICATED;
  const message = `token-injector has no token for credential "${credential}" (${err.code}): ${err.message}`;
  const headers: Record<string, string | number> = {
    ':status': 200,
    'content-type': 'application/grpc',
    'grpc-status': String(status),
    'grpc-message': percentEncode(message),
  };
  const requestId = requestIdOf(res.req);
  if (requestId !== undefined) headers[REQUEST_ID] = requestId;
  stream.respond(headers, { endStream: true });
  return 200;
}

/**
 * gRPC's PROTOCOL-HTTP2.md: `grpc-message` is the UTF-8 text with every byte outside 0x20–0x7E,
 * and `%` itself, written as `%XX`.
 */
export function percentEncode(text: string): string {
  let out = '';
  for (const byte of Buffer.from(text, 'utf8')) {
    out +=
      byte >= 0x20 && byte <= 0x7e && byte !== 0x25
        ? String.fromCharCode(byte)
        : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}
