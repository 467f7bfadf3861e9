/**
 * The OpenTelemetry side of {@link Tracing}. Loaded only through open.ts, when `tracing` is
 * configured: a proxy without it never loads this module or OpenTelemetry.
 *
 * No context manager is installed (an AsyncLocalStorage one costs an async-hooks step on every
 * promise of every request): parents are passed explicitly, as a `Context` built from the app's
 * `traceparent` or from our request span. Nothing is registered globally, so an app embedding us
 * keeps its own OpenTelemetry setup.
 */
import type { IncomingMessage } from 'node:http';
import {
  type Context,
  defaultTextMapSetter,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  SpanStatusCode,
  type Tracer,
  trace,
} from '@opentelemetry/api';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import type { TracingConfig } from '../config/types.js';
import type { Logger } from '../log/logger.js';
import { startTracerProvider, type TracerProviderHandle } from './provider.js';
import { rawHeadersGetter, replaceTraceHeaders, type TraceHeaders } from './trace-headers.js';
import type { RequestHandler, TokenFetchSpan, TraceParent, Tracing } from './tracing.js';

/** Methods as sent; any other is `_OTHER`, so a client cannot fill span names with junk (semconv). */
const KNOWN_METHODS = new Set([
  'GET',
  'HEAD',
  'POST',
  'PUT',
  'DELETE',
  'CONNECT',
  'OPTIONS',
  'TRACE',
  'PATCH',
]);

/** Starts the tracer provider and exporter and returns the tracing the proxy uses. */
export function createOtelTracing(config: TracingConfig, logger: Logger): Tracing {
  return new OtelTracing(startTracerProvider(config, logger));
}

class OtelTracing implements Tracing {
  readonly #provider: TracerProviderHandle;
  readonly #tracer: Tracer;
  readonly #propagator = new W3CTraceContextPropagator();
  /** Each request's span, from its arrival to its answer (weak: a request never answered is not kept). */
  readonly #spans = new WeakMap<IncomingMessage, Span>();
  /** The span of the request whose handler runs right now (synchronously); see activeRequest(). */
  #active: Span | undefined;

  constructor(provider: TracerProviderHandle) {
    this.#provider = provider;
    this.#tracer = provider.tracer;
  }

  requests(handle: RequestHandler, maxRawHeaders: number): RequestHandler {
    return (req, res) => {
      const span = this.#start(req, maxRawHeaders);
      // A token fetch the handler starts synchronously (the request found no token) reads it;
      // anything that runs later never sees it, so no fetch is ever put under a wrong request.
      this.#active = span;
      try {
        handle(req, res);
      } finally {
        this.#active = undefined;
      }
    };
  }

  #start(req: IncomingMessage, maxRawHeaders: number): Span {
    const method = req.method !== undefined && KNOWN_METHODS.has(req.method) ? req.method : '_OTHER';
    // The app's trace, when its traceparent is valid; a new one otherwise (W3C Trace Context §4.3).
    const parent = this.#propagator.extract(ROOT_CONTEXT, req.rawHeaders, rawHeadersGetter);
    const span = this.#tracer.startSpan(
      'proxy',
      { kind: SpanKind.SERVER, attributes: { 'http.request.method': method } },
      parent,
    );
    // An unsampled span records nothing: there is nothing to end, and no entry to keep for it.
    if (span.isRecording()) this.#spans.set(req, span);
    // Sampled or not, the upstream gets our span as its parent: the sampled flag tells it our
    // decision (W3C Trace Context §3.2.2.5), so one trace is recorded whole or not at all.
    const ours: TraceHeaders = {};
    this.#propagator.inject(trace.setSpan(ROOT_CONTEXT, span), ours, defaultTextMapSetter);
    replaceTraceHeaders(req.rawHeaders, req.headers, ours, maxRawHeaders);
    return span;
  }

  answered(req: IncomingMessage, route: string, status: number, upstream: string | undefined): void {
    const span = this.#spans.get(req);
    if (span === undefined) return;
    this.#spans.delete(req);
    span.updateName(`proxy ${route}`);
    span.setAttribute('token_injector.route', route);
    span.setAttribute('http.response.status_code', status);
    if (upstream !== undefined) span.setAttribute('token_injector.upstream', upstream);
    // A server span is in error for a 5xx only: a 4xx is the client's (semconv for HTTP spans).
    if (status >= 500) {
      span.setAttribute('error.type', String(status));
      span.setStatus({ code: SpanStatusCode.ERROR });
    }
    span.end();
  }

  activeRequest(): TraceParent | undefined {
    return this.#active as unknown as TraceParent | undefined;
  }

  tokenFetch(credential: string, endpoint: URL, parent: TraceParent | undefined): TokenFetchSpan {
    const context: Context =
      parent === undefined ? ROOT_CONTEXT : trace.setSpan(ROOT_CONTEXT, parent as unknown as Span);
    // The endpoint's host and port only: its path and query are configuration that may carry a
    // secret (a query string is kept as configured), and the form body always does.
    const span = this.#tracer.startSpan(
      `token ${credential}`,
      {
        kind: SpanKind.CLIENT,
        attributes: {
          'token_injector.credential': credential,
          'server.address': endpoint.hostname,
          'server.port': endpointPort(endpoint),
        },
      },
      context,
    );
    return new TokenSpan(span);
  }

  close(): Promise<void> {
    return this.#provider.close();
  }
}

class TokenSpan implements TokenFetchSpan {
  readonly #span: Span;

  constructor(span: Span) {
    this.#span = span;
  }

  end(grantType: string, outcome: string): void {
    const span = this.#span;
    span.setAttribute('token_injector.grant_type', grantType);
    span.setAttribute('token_injector.outcome', outcome);
    if (outcome !== 'success') {
      span.setAttribute('error.type', outcome);
      span.setStatus({ code: SpanStatusCode.ERROR });
    }
    span.end();
  }
}

function endpointPort(url: URL): number {
  if (url.port !== '') return Number(url.port);
  return url.protocol === 'https:' ? 443 : 80;
}
