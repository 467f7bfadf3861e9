/**
 * What the proxy and the credentials see of tracing: a narrow interface, imported as a type only.
 * The OpenTelemetry implementation behind it (otel-tracing.ts) is loaded by open.ts through
 * `import()` when `tracing` is configured; without it, nothing of OpenTelemetry is loaded and the
 * request path never calls in here.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';

export type RequestHandler = (req: IncomingMessage, res: ServerResponse) => void;

declare const parentBrand: unique symbol;
/** The span a token fetch is started under: the request span that found no token. Opaque. */
export interface TraceParent {
  readonly [parentBrand]: true;
}

/** One token request's span; ended once. */
export interface TokenFetchSpan {
  /** `outcome`: `success` or the error's stable code (errors.ts), as the token request metric. */
  end(grantType: string, outcome: string): void;
}

export interface Tracing {
  /**
   * The listener's handler with a span around each request: the app's `traceparent` (W3C Trace
   * Context) is continued, or a trace is started, and the request's `traceparent` (and
   * `tracestate`) are replaced by ones naming this span, so the upstream continues our trace.
   * `maxRawHeaders`: the raw header entries a request may have (limits.max_headers × 2).
   */
  requests(handle: RequestHandler, maxRawHeaders: number): RequestHandler;
  /**
   * Ends a request's span. `upstream`: the origin it was sent to (scheme, host, port: never a
   * path, a query or credentials), when known.
   */
  answered(req: IncomingMessage, route: string, status: number, upstream: string | undefined): void;
  /**
   * The span of the request being handled right now, synchronously; undefined outside a request
   * (a background refresh, a retry after a backoff wait).
   */
  activeRequest(): TraceParent | undefined;
  /** Starts a token request's span, a child of `parent` or the root of a trace of its own. */
  tokenFetch(credential: string, endpoint: URL, parent: TraceParent | undefined): TokenFetchSpan;
  /** Exports the spans still buffered and stops, within a bounded time. */
  close(): Promise<void>;
}
