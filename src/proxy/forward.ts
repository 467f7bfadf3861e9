import type { IncomingHttpHeaders, IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import type { Http2ServerRequest, Http2ServerResponse } from 'node:http2';
import type { Duplex } from 'node:stream';
import { UpstreamTimeoutError, UpstreamUnreachableError } from '../errors.js';
import type { Dispatcher } from '../undici.js';
import { relayEarlyHints } from './early-hints.js';
import { sendError } from './error-response.js';
import { clientTakesTrailers, downstreamResponseHeaders } from './headers.js';

export interface ForwardRequest {
  /** Required for an Agent (passthrough); a Pool knows its origin. */
  readonly origin?: string;
  readonly path: string;
  readonly headers: string[];
  /** Named in error bodies. */
  readonly route?: string;
  /** The request body: the client's stream, a buffered copy (replayable), or none. */
  readonly body?: IncomingMessage | Buffer | null;
  /**
   * When every connection to the upstream is busy the request waits in the pool's queue, where
   * undici's own timeouts do not run yet: this bounds the wait plus the response headers.
   */
  readonly queueTimeoutMs?: number;
}

/**
 * Told how a forwarded request goes. An object with methods rather than callbacks: the request
 * path then allocates no closures per request.
 */
export interface ForwardObserver {
  /**
   * The upstream's response headers arrived. Returning true discards this response (the caller
   * will retry) instead of passing it to the client.
   */
  onUpstreamResponse?(status: number, headers: Record<string, string | string[]>): boolean;
  /** Called once when the exchange is over. */
  onForwarded(outcome: ForwardOutcome): void;
  /**
   * The upstream switched protocols (`101`) on a request sent by {@link forwardUpgrade}: the
   * socket is the observer's from now on. Returns the outcome to report (the status relayed, or
   * {@link CLIENT_CLOSED}), which {@link onForwarded} then receives.
   */
  onUpgrade?(statusCode: number, headers: IncomingHttpHeaders, upstream: Duplex): number;
}

/**
 * What happened to a forwarded request, for logs and metrics: the status sent (499: the client
 * went away), or `discarded` when the observer chose to drop the response.
 */
export type ForwardOutcome = number | 'discarded';

/** Logged and counted for requests whose client went away before an answer (nginx's convention). */
export const CLIENT_CLOSED = 499;

/**
 * Streams a request to the upstream and the answer back, both ways without buffering: upstream
 * body chunks are written straight into the client response, pausing the upstream socket while
 * the client is slow. A client that goes away aborts the upstream request.
 *
 * Written on undici's dispatch handler API rather than `stream()`: on the hot path this saves a
 * promise wrapper, an async resource and an AbortController per request.
 */
export function forward(
  dispatcher: Dispatcher,
  req: IncomingMessage,
  res: ServerResponse,
  fwd: ForwardRequest,
  observer: ForwardObserver,
): void {
  dispatchTo(
    dispatcher,
    {
      ...(fwd.origin !== undefined ? { origin: fwd.origin } : {}),
      path: fwd.path,
      method: req.method as Dispatcher.HttpMethod,
      headers: fwd.headers,
      body: fwd.body !== undefined ? fwd.body : hasBody(req) ? req : null,
    },
    new ForwardHandler(res, fwd, observer),
    fwd.queueTimeoutMs,
  );
}

/** {@link forward} for callers that await the outcome. */
export function forwarded(
  dispatcher: Dispatcher,
  req: IncomingMessage,
  res: ServerResponse,
  fwd: ForwardRequest,
): Promise<ForwardOutcome> {
  return new Promise((resolve) => forward(dispatcher, req, res, fwd, { onForwarded: resolve }));
}

/**
 * {@link forward} for a request that asks to switch protocols (RFC 9110 §7.8): the upstream's
 * `101` goes to `observer.onUpgrade` with the upstream socket; any other answer is relayed to
 * `res` like a plain response, retry decision (`onUpstreamResponse`) included.
 */
export function forwardUpgrade(
  dispatcher: Dispatcher,
  req: IncomingMessage,
  res: ServerResponse,
  fwd: ForwardRequest & { readonly protocol: string },
  observer: ForwardObserver & Required<Pick<ForwardObserver, 'onUpgrade'>>,
): void {
  dispatchTo(
    dispatcher,
    {
      ...(fwd.origin !== undefined ? { origin: fwd.origin } : {}),
      path: fwd.path,
      method: req.method as Dispatcher.HttpMethod,
      headers: fwd.headers,
      body: null,
      // undici writes `Connection: upgrade` and `Upgrade: <protocol>` itself.
      upgrade: fwd.protocol,
    },
    new ForwardHandler(res, fwd, observer),
    fwd.queueTimeoutMs,
  );
}

/**
 * Hands a request to undici. Options it refuses outright (it validates synchronously) answer like
 * any failure; `false` means the pool is saturated (upstream_max_connections) and the request may
 * be queued, so its wait is bounded.
 */
function dispatchTo(
  dispatcher: Dispatcher,
  options: Dispatcher.DispatchOptions,
  handler: ForwardHandler,
  queueTimeoutMs: number | undefined,
): void {
  let accepted: boolean;
  try {
    accepted = dispatcher.dispatch(options, handler);
  } catch (err) {
    handler.onResponseError(undefined, err as Error);
    return;
  }
  if (!accepted && queueTimeoutMs !== undefined) handler.bound(queueTimeoutMs);
}

const clientClosed = () => new Error('client closed the connection');

class ForwardHandler implements Dispatcher.DispatchHandler {
  #controller: Dispatcher.DispatchController | undefined;
  #status = 0;
  #discarding = false;
  /** The headers of a gRPC trailers-only response, until the stream ends. */
  #held: OutgoingHttpHeaders | undefined;
  #done = false;
  readonly #res: ServerResponse;
  readonly #fwd: ForwardRequest;
  readonly #observer: ForwardObserver;
  /**
   * Removed once the exchange is over (#finish), so a close heard here is a client gone before its
   * answer. Not asked `writableFinished`: Node's HTTP/2 compatibility response reports its stream's
   * writable side, which Node itself ends when the client resets the stream (RST_STREAM), so a
   * reset stream looks finished and the upstream request would go on with no one to answer.
   */
  readonly #onClose = () => {
    this.#controller?.abort(clientClosed());
  };
  /** Made on the first backpressure only: most responses never need it. */
  #onDrain: (() => void) | undefined;
  /** Armed only while the upstream's pool is saturated. */
  #queueTimer: NodeJS.Timeout | undefined;

  constructor(res: ServerResponse, fwd: ForwardRequest, observer: ForwardObserver) {
    this.#res = res;
    this.#fwd = fwd;
    this.#observer = observer;
    res.once('close', this.#onClose);
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.#controller = controller;
    // The client may have left, or been answered 504, while the request waited for a connection.
    if (this.#res.destroyed || this.#done) controller.abort(clientClosed());
  }

  /** Answers 504 if no response has started within `ms` (see {@link ForwardRequest.queueTimeoutMs}). */
  bound(ms: number): void {
    if (this.#done) return;
    this.#queueTimer = setTimeout(() => {
      if (this.#done || this.#status !== 0 || this.#discarding) return;
      const err = new UpstreamTimeoutError(
        `no upstream response within ${ms} ms: every connection to it was busy (upstream_max_connections)`,
      );
      // The body may be unread: this client connection cannot carry another request.
      this.#res.shouldKeepAlive = false;
      if (this.#controller) this.#controller.abort(err);
      else this.onResponseError(undefined, err);
    }, ms);
  }

  onResponseStart(
    _controller: Dispatcher.DispatchController,
    statusCode: number,
    headers: Record<string, string | string[] | undefined>,
  ): void {
    if (statusCode < 200) {
      // Interim answers (RFC 9110 §15.2) are not the response; only Early Hints are worth passing.
      if (statusCode === 103) relayEarlyHints(this.#res, headers);
      return;
    }
    clearTimeout(this.#queueTimer);
    if (this.#observer.onUpstreamResponse?.(statusCode, headers as Record<string, string | string[]>)) {
      this.#discarding = true;
      return;
    }
    this.#status = statusCode;
    const out = downstreamResponseHeaders(headers);
    // A gRPC status among the headers is a trailers-only response (gRPC's PROTOCOL-HTTP2.md):
    // an HTTP/2 client must get it as the one HEADERS frame that ends the stream, so it is held
    // until the end (or a body, which a trailers-only response never has).
    if (headers['grpc-status'] !== undefined && this.#res.req.httpVersionMajor === 2) {
      this.#held = out;
      return;
    }
    this.#res.writeHead(statusCode, out);
  }

  /** Only for {@link forwardUpgrade}: undici calls this instead of the response callbacks. */
  onRequestUpgrade(
    _controller: Dispatcher.DispatchController,
    statusCode: number,
    headers: IncomingHttpHeaders,
    socket: Duplex,
  ): void {
    // Already answered (a queue timeout): the switched connection has no one to serve.
    if (this.#done || this.#observer.onUpgrade === undefined) {
      socket.destroy();
      return;
    }
    this.#status = statusCode;
    this.#finish(this.#observer.onUpgrade(statusCode, headers, socket));
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.#discarding) return;
    if (this.#held !== undefined) {
      this.#res.writeHead(this.#status, this.#held);
      this.#held = undefined;
    }
    if (!this.#res.write(chunk)) {
      controller.pause();
      this.#onDrain ??= () => this.#controller?.resume();
      this.#res.once('drain', this.#onDrain);
    }
  }

  onResponseEnd(
    controller: Dispatcher.DispatchController,
    trailers: Record<string, string | string[] | undefined>,
  ): void {
    if (this.#discarding) {
      this.#finish('discarded');
      return;
    }
    if (this.#held !== undefined) {
      const stream = (this.#res as unknown as Http2ServerResponse).stream;
      if (!stream.destroyed) stream.respond({ ...this.#held, ':status': this.#status }, { endStream: true });
      this.#finish(this.#status);
      return;
    }
    const fields = trailerFields(controller, trailers);
    // Node sends them only on a chunked HTTP/1.1 response or an HTTP/2 stream, as it must.
    if (fields !== undefined && clientTakesTrailers(this.#res.req)) {
      this.#res.addTrailers(downstreamResponseHeaders(fields));
    }
    this.#res.end();
    this.#finish(this.#status);
  }

  onResponseError(_controller: Dispatcher.DispatchController | undefined, err: Error): void {
    // Already answered (a queue timeout): a late error of the aborted request changes nothing.
    if (this.#done) return;
    const res = this.#res;
    if (
      res.destroyed ||
      (this.#controller?.aborted && this.#controller.reason?.message === clientClosed().message)
    ) {
      this.#finish(CLIENT_CLOSED);
      return;
    }
    if (this.#status !== 0) {
      // The upstream failed mid-body: the status is sent, so the only honest signal is to cut.
      res.destroy();
      this.#finish(this.#status);
      return;
    }
    const extra = this.#fwd.route !== undefined ? { route: this.#fwd.route } : {};
    this.#finish(sendError(res, upstreamError(err), extra));
  }

  #finish(outcome: ForwardOutcome): void {
    if (this.#done) return;
    this.#done = true;
    clearTimeout(this.#queueTimer);
    this.#res.off('close', this.#onClose);
    if (this.#onDrain) this.#res.off('drain', this.#onDrain);
    this.#observer.onForwarded(outcome);
  }
}

export function hasBody(req: IncomingMessage): boolean {
  const length = req.headers['content-length'];
  if (length !== undefined) return length !== '0';
  if (req.headers['transfer-encoding'] !== undefined) return true;
  // HTTP/2 frames a body without either (RFC 9113 §8.1): a request has one unless its HEADERS
  // frame ended the stream.
  // (An "HTTP/2.0" request line on HTTP/1.1 has no stream: it is refused, not read.)
  return (
    req.httpVersionMajor === 2 &&
    (req as unknown as Partial<Http2ServerRequest>).stream?.endAfterHeaders === false
  );
}

/**
 * The upstream's trailer fields, or undefined when it sent none (the usual case: no allocation).
 * undici 7 parses an HTTP/2 stream's trailers as if they were a raw list and passes `{}`
 * (unwrap-handler.js `onComplete`); the controller keeps the object it was given.
 */
function trailerFields(
  controller: Dispatcher.DispatchController,
  parsed: Record<string, string | string[] | undefined>,
): Record<string, string | string[] | undefined> | undefined {
  for (const _ in parsed) return parsed;
  const raw = (controller as { rawTrailers?: unknown }).rawTrailers;
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) return undefined;
  for (const _ in raw) return raw as Record<string, string | string[] | undefined>;
  return undefined;
}

function upstreamError(err: unknown): UpstreamTimeoutError | UpstreamUnreachableError {
  // Ours already (an upstream refused HTTP/2 in ALPN: http2-upstream.ts), with its own message.
  if (err instanceof UpstreamTimeoutError || err instanceof UpstreamUnreachableError) return err;
  const e = err as { code?: string; message?: string };
  if (e.code === 'UND_ERR_CONNECT_TIMEOUT' || e.code === 'UND_ERR_HEADERS_TIMEOUT') {
    return new UpstreamTimeoutError(`upstream did not answer in time (${e.code})`, { cause: err });
  }
  return new UpstreamUnreachableError(`upstream request failed (${e.code ?? 'error'}: ${e.message ?? ''})`, {
    cause: err,
  });
}
