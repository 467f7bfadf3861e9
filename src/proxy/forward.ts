import type { IncomingMessage, ServerResponse } from 'node:http';
import { UpstreamTimeoutError, UpstreamUnreachableError } from '../errors.js';
import type { Dispatcher } from '../undici.js';
import { relayEarlyHints } from './early-hints.js';
import { sendError } from './error-response.js';
import { downstreamResponseHeaders } from './headers.js';

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
  const handler = new ForwardHandler(res, fwd, observer);
  let accepted: boolean;
  try {
    accepted = dispatcher.dispatch(
      {
        ...(fwd.origin !== undefined ? { origin: fwd.origin } : {}),
        path: fwd.path,
        method: req.method as Dispatcher.HttpMethod,
        headers: fwd.headers,
        body: fwd.body !== undefined ? fwd.body : hasBody(req) ? req : null,
      },
      handler,
    );
  } catch (err) {
    // Options undici refuses outright (it validates synchronously) answer like any failure.
    handler.onResponseError(undefined, err as Error);
    return;
  }
  // false: the pool is saturated (upstream_max_connections) and this request may be queued.
  if (!accepted && fwd.queueTimeoutMs !== undefined) handler.bound(fwd.queueTimeoutMs);
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

const clientClosed = () => new Error('client closed the connection');

class ForwardHandler implements Dispatcher.DispatchHandler {
  #controller: Dispatcher.DispatchController | undefined;
  #status = 0;
  #discarding = false;
  #done = false;
  readonly #res: ServerResponse;
  readonly #fwd: ForwardRequest;
  readonly #observer: ForwardObserver;
  readonly #onClose = () => {
    if (!this.#res.writableFinished) this.#controller?.abort(clientClosed());
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
    this.#res.writeHead(statusCode, downstreamResponseHeaders(headers));
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.#discarding) return;
    if (!this.#res.write(chunk)) {
      controller.pause();
      this.#onDrain ??= () => this.#controller?.resume();
      this.#res.once('drain', this.#onDrain);
    }
  }

  onResponseEnd(): void {
    if (this.#discarding) {
      this.#finish('discarded');
      return;
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
  return req.headers['transfer-encoding'] !== undefined;
}

function upstreamError(err: unknown): UpstreamTimeoutError | UpstreamUnreachableError {
  if (err instanceof UpstreamTimeoutError) return err;
  const e = err as { code?: string; message?: string };
  if (e.code === 'UND_ERR_CONNECT_TIMEOUT' || e.code === 'UND_ERR_HEADERS_TIMEOUT') {
    return new UpstreamTimeoutError(`upstream did not answer in time (${e.code})`, { cause: err });
  }
  return new UpstreamUnreachableError(`upstream request failed (${e.code ?? 'error'}: ${e.message ?? ''})`, {
    cause: err,
  });
}
