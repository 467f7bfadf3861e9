import type { IncomingMessage, ServerResponse } from 'node:http';
import {
  constants,
  createServer,
  type Http2ServerRequest,
  Http2ServerResponse,
  type ServerHttp2Session,
} from 'node:http2';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { ListenerLimits } from '../config/types.js';

/** RFC 9113 §3.4: what a client speaking HTTP/2 with prior knowledge sends first. */
const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
const P = 0x50;

/**
 * Pseudo-header fields a request carries besides its header fields (RFC 9113 §8.3.1:
 * `:method`, `:scheme`, `:authority`, `:path`, and `:protocol` for extended CONNECT).
 */
const PSEUDO_HEADERS = 5;

/** The HTTP/2 side of the proxy listener. */
export interface H2Listener {
  /** Serves an HTTP/2 connection: h2c with prior knowledge, or TLS that negotiated `h2` by ALPN. */
  serve(socket: Duplex): void;
  /** Sends GOAWAY on every session: streams in flight finish, new ones go elsewhere. */
  drain(): void;
  /** Cuts every session. */
  destroy(): void;
}

/**
 * An HTTP/2 server whose streams go to `onRequest` as Node's compatibility request and response
 * (Http2ServerRequest/Response), i.e. through the same handler as HTTP/1.1 requests. It listens on
 * nothing: connections come from the proxy listener ({@link sniffPreface}) or from interception.
 */
export function createH2Listener(
  limits: ListenerLimits,
  onRequest: (req: IncomingMessage, res: ServerResponse) => void,
): H2Listener {
  const server = createServer({
    // The HTTP/1.1 listener's limits, as HTTP/2 settings (RFC 9113 §6.5.2): a longer header list,
    // or more fields, resets the stream (ENHANCE_YOUR_CALM) before it reaches the handler.
    // One field more than allowed gets through, so that the handler answers it 431 as for HTTP/1.1.
    maxHeaderListPairs: limits.maxHeaders + 1 + PSEUDO_HEADERS,
    settings: { maxHeaderListSize: limits.maxHeaderSize, enablePush: false },
    Http2ServerResponse: StreamAwareResponse,
  });
  const sessions = new Set<ServerHttp2Session>();
  let draining = false;
  server.on('session', (session: ServerHttp2Session) => {
    sessions.add(session);
    session.once('close', () => sessions.delete(session));
    // A session with no stream for the listener's idle time is closed, as a kept-alive
    // HTTP/1.1 connection would be; one with a stream open (a quiet gRPC stream) is not.
    if (limits.idleTimeoutMs > 0) {
      let open = 0;
      session.on('stream', (stream) => {
        open++;
        stream.once('close', () => open--);
      });
      session.setTimeout(limits.idleTimeoutMs, () => {
        if (open === 0) session.close();
      });
    }
    if (draining) session.close();
  });
  // A session's protocol errors end that session; they are no failure of the proxy.
  server.on('sessionError', () => {});
  server.on('request', (req: Http2ServerRequest, res: Http2ServerResponse) => {
    // A stream reset by the client: the handler sees the response closed, as for a gone client.
    req.on('error', noop);
    // Node's compatibility request then ends its body as if it were whole (compat.js pushes null
    // when the stream closes): it must fail instead, or the upstream would get a cut body as a
    // complete one. So before compat's own listener, a stream that closes without its END_STREAM
    // fails the body.
    if (!req.stream.endAfterHeaders) req.stream.prependOnceListener('end', () => failCutBody(req));
    if (limits.requestTimeoutMs > 0 && !req.stream.endAfterHeaders)
      bodyDeadline(req, limits.requestTimeoutMs);
    onRequest(req as unknown as IncomingMessage, res as unknown as ServerResponse);
  });
  return {
    serve(socket) {
      // A server-side TLSSocket made by hand (interception) still says `secureConnecting` after
      // its handshake (Node clears it only on its own TLS servers' sockets): a session would wait
      // for a 'secureConnect' that never comes. Served here only once the handshake is done.
      const tls = socket as { secureConnecting?: boolean };
      if (tls.secureConnecting === true) tls.secureConnecting = false;
      server.emit('connection', socket);
    },
    drain() {
      draining = true;
      for (const session of sessions) session.close();
    },
    destroy() {
      for (const session of sessions) session.destroy();
    },
  };
}

function noop(): void {}

/**
 * The handler asks `res.destroyed` whether the client is gone (after waiting for a token, say);
 * Http2ServerResponse has no such property, its stream does. A reset stream counts as gone from
 * the reset on, before it is fully torn down. A class rather than a property set per stream.
 */
class StreamAwareResponse extends Http2ServerResponse {}
// Node's typings declare `destroyed` on it (as on any Writable), so it is defined, not overridden.
Object.defineProperty(StreamAwareResponse.prototype, 'destroyed', {
  get(this: Http2ServerResponse): boolean {
    return this.stream.destroyed || this.stream.rstCode > 0;
  },
});

function failCutBody(req: Http2ServerRequest): void {
  // A stream whose body ended normally is not closed yet (its response is still to come); one
  // reset by either side has its RST_STREAM code by the time Node ends its readable side.
  const code = req.stream.rstCode;
  if (code !== undefined && code !== constants.NGHTTP2_NO_ERROR) {
    req.destroy(new Error('the stream was reset before its body ended'));
  }
}

/**
 * `limits.request_timeout` for an HTTP/2 stream, as Node's HTTP/1.1 server applies it: the whole
 * request body must arrive in time, or the stream is cancelled (RST_STREAM CANCEL), so a client
 * that trickles bodies cannot hold streams, and upstream connections, for ever.
 */
function bodyDeadline(req: Http2ServerRequest, ms: number): void {
  const stream = req.stream;
  const timer = setTimeout(() => {
    if (!req.complete) stream.close(constants.NGHTTP2_CANCEL);
  }, ms);
  timer.unref();
  const clear = () => clearTimeout(timer);
  req.once('end', clear);
  stream.once('close', clear);
}

/**
 * Calls `decided(true)` once the connection's first bytes are the HTTP/2 preface, `decided(false)`
 * as soon as they cannot be; the bytes read stay in the socket for whoever serves it. Most
 * connections are decided on their first byte (no HTTP/1.1 method but PRI starts with "PRI", and
 * none but POST, PUT, PATCH, PROPFIND, PROPPATCH starts with "P"), and the cost is one read per
 * connection, never per request. A client that sends nothing is cut after `timeoutMs`, as the
 * HTTP/1.1 parser would cut it (headers_timeout).
 */
export function sniffPreface(socket: Socket, timeoutMs: number, decided: (h2: boolean) => void): void {
  const onTimeout = () => socket.destroy();
  socket.setTimeout(timeoutMs, onTimeout);
  // Until a server has it, a reset connection is nobody's error.
  socket.on('error', noop);
  /** A beginning of the preface, kept out of the socket until the rest decides. */
  let seen: Buffer | undefined;
  const look = () => {
    const chunk = socket.read() as Buffer | null;
    if (chunk === null) {
      socket.once('readable', look);
      return;
    }
    const data = seen === undefined ? chunk : Buffer.concat([seen, chunk]);
    const h2 = startsWithPreface(data);
    if (h2 === undefined) {
      // Not put back yet: bytes put back would wake this listener again at once.
      seen = data;
      socket.once('readable', look);
      return;
    }
    socket.unshift(data);
    socket.setTimeout(0);
    socket.off('timeout', onTimeout);
    socket.off('error', noop);
    decided(h2);
  };
  socket.once('readable', look);
}

/** True: the preface; false: not it; undefined: a beginning of it, too short to tell. */
function startsWithPreface(chunk: Buffer): boolean | undefined {
  if (chunk[0] !== P) return false;
  const n = Math.min(chunk.length, PREFACE.length);
  if (chunk.compare(PREFACE, 0, n, 0, n) !== 0) return false;
  return n === PREFACE.length ? true : undefined;
}
