import type { Socket } from 'node:net';
import { Readable } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import { UpstreamUnreachableError } from '../errors.js';
import type { ConnectTls } from '../tls.js';
import { buildConnector, Dispatcher, Pool } from '../undici.js';

/**
 * Streams one HTTP/2 session carries before the pool opens another: the initial
 * SETTINGS_MAX_CONCURRENT_STREAMS of a Node server, and undici's own default for it.
 */
const STREAMS_PER_SESSION = 100;

export interface Http2Limits {
  readonly connectMs: number;
  readonly responseMs: number;
  /** Sessions to the upstream at most, per kind of request (see {@link Http2Upstream}). */
  readonly maxConnections: number;
}

/**
 * An upstream spoken to in HTTP/2 (`upstream_protocol: http2`): h2 negotiated by ALPN over TLS
 * (RFC 9113 §3.2), or h2c with prior knowledge over `http://` (RFC 9113 §3.3).
 *
 * undici multiplexes a request onto a busy session only if it could replay it should the session
 * fail: never one whose body is a stream, nor (unless told it is idempotent) a POST; those wait
 * until every other stream of the session has finished (client-h2.js `busy`). A proxy never
 * replays anything on a failed session (the client gets a 502), so requests without a streamed
 * body are declared idempotent and share one session, up to {@link STREAMS_PER_SESSION} at a
 * time; requests that stream a body (every gRPC call) each take a session of their own from a
 * second pool, kept alive and reused, so that one long stream never holds the others back.
 *
 * Every request says `te: trailers` (RFC 9110 §10.1.4, the one TE value RFC 9113 §8.2.2 allows):
 * this hop takes trailer fields, passing them on to a client that takes them too (forward.ts);
 * gRPC servers look for it.
 */
export class Http2Upstream extends Dispatcher {
  readonly #shared: Pool;
  readonly #streamed: Pool;

  constructor(origin: string, tls: ConnectTls, limits: Http2Limits) {
    super();
    const connect = h2Connector(origin, tls, limits.connectMs);
    const options = {
      connect,
      headersTimeout: limits.responseMs,
      connections: limits.maxConnections,
      keepAliveTimeout: 4_000,
    };
    this.#shared = new Pool(origin, { ...options, pipelining: STREAMS_PER_SESSION });
    this.#streamed = new Pool(origin, { ...options, pipelining: 1 });
  }

  override dispatch(opts: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
    const headers = Array.isArray(opts.headers) ? [...opts.headers, 'te', 'trailers'] : opts.headers;
    if (opts.body instanceof Readable) return this.#streamed.dispatch({ ...opts, headers }, handler);
    return this.#shared.dispatch({ ...opts, headers, idempotent: true }, handler);
  }

  override async close(): Promise<void> {
    await Promise.all([this.#shared.close(), this.#streamed.close()]);
  }

  override async destroy(): Promise<void> {
    await Promise.all([this.#shared.destroy(), this.#streamed.destroy()]);
  }
}

/**
 * Connects for HTTP/2 and nothing else: over TLS, an upstream that answers ALPN with anything
 * but `h2` is refused rather than spoken to in HTTP/1.1, since undici would then pipeline the
 * requests this dispatcher declared idempotent, and trailers (gRPC's status) could be lost.
 */
function h2Connector(origin: string, tls: ConnectTls, timeout: number): buildConnector.connector {
  const secure = origin.startsWith('https:');
  // `useH2c` (undici's connect.js) is missing from undici's types: it marks the socket as h2.
  const h2c: buildConnector.BuildOptions & { useH2c: boolean } = { timeout, useH2c: true };
  const connect = buildConnector(secure ? { ...tls, timeout, allowH2: true } : h2c);
  if (!secure) return connect;
  return (opts, callback) =>
    connect(opts, (err, socket) => {
      if (err !== null) {
        callback(err, null);
        return;
      }
      const chosen = (socket as Socket as TLSSocket).alpnProtocol;
      if (chosen === 'h2') {
        callback(null, socket);
        return;
      }
      socket.destroy();
      callback(
        new UpstreamUnreachableError(
          `${origin} did not agree to HTTP/2 (ALPN answer: ${chosen || 'none'}); the route has upstream_protocol: http2`,
        ),
        null,
      );
    });
}
