import type { IncomingMessage, ServerResponse } from 'node:http';
import { Writable } from 'node:stream';
import type { Dispatcher } from 'undici';
import { UpstreamTimeoutError, UpstreamUnreachableError } from '../errors.js';
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
   * Asked when the response headers arrive: true discards this response (the caller will retry)
   * instead of passing it to the client.
   */
  readonly discard?: (status: number, headers: Record<string, string | string[]>) => boolean;
  /** Called once the upstream's response headers arrive. */
  readonly onResponse?: (status: number) => void;
}

/**
 * What happened to a forwarded request, for logs and metrics: the status sent (499: the client
 * went away), or `discarded` when `discard` chose to drop the response.
 */
export type ForwardOutcome = number | 'discarded';

/** Logged and counted for requests whose client went away before an answer (nginx's convention). */
export const CLIENT_CLOSED = 499;

/**
 * Streams a request to the upstream and the answer back, both ways without buffering: undici
 * writes the upstream body straight into the client response with backpressure. A client that
 * goes away aborts the upstream request.
 */
export async function forward(
  dispatcher: Dispatcher,
  req: IncomingMessage,
  res: ServerResponse,
  fwd: ForwardRequest,
): Promise<ForwardOutcome> {
  const abort = new AbortController();
  const onClose = () => {
    if (!res.writableFinished) abort.abort();
  };
  res.once('close', onClose);
  let status = 0;
  let discarded = false;
  try {
    await dispatcher.stream(
      {
        ...(fwd.origin !== undefined ? { origin: fwd.origin } : {}),
        path: fwd.path,
        method: req.method as Dispatcher.HttpMethod,
        headers: fwd.headers,
        body: fwd.body !== undefined ? fwd.body : hasBody(req) ? req : null,
        signal: abort.signal,
      },
      ({ statusCode, headers }) => {
        fwd.onResponse?.(statusCode);
        const h = headers as Record<string, string | string[]>;
        if (fwd.discard?.(statusCode, h)) {
          discarded = true;
          return new Writable({ write: (_chunk, _enc, done) => done() });
        }
        status = statusCode;
        res.writeHead(statusCode, downstreamResponseHeaders(h));
        return res;
      },
    );
    return discarded ? 'discarded' : status;
  } catch (err) {
    if (abort.signal.aborted || res.destroyed) return CLIENT_CLOSED;
    if (status !== 0) {
      // The upstream failed mid-body: the status is sent, so the only honest signal is to cut.
      res.destroy();
      return status;
    }
    return sendError(res, upstreamError(err), fwd.route !== undefined ? { route: fwd.route } : {});
  } finally {
    res.off('close', onClose);
  }
}

export function hasBody(req: IncomingMessage): boolean {
  const length = req.headers['content-length'];
  if (length !== undefined) return length !== '0';
  return req.headers['transfer-encoding'] !== undefined;
}

function upstreamError(err: unknown): UpstreamTimeoutError | UpstreamUnreachableError {
  const e = err as { code?: string; message?: string };
  if (e.code === 'UND_ERR_CONNECT_TIMEOUT' || e.code === 'UND_ERR_HEADERS_TIMEOUT') {
    return new UpstreamTimeoutError(`upstream did not answer in time (${e.code})`, { cause: err });
  }
  return new UpstreamUnreachableError(`upstream request failed (${e.code ?? 'error'}: ${e.message ?? ''})`, {
    cause: err,
  });
}
