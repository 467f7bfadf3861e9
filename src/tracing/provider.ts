import http from 'node:http';
import https from 'node:https';
import type { Tracer } from '@opentelemetry/api';
import { type ExportResult, ExportResultCode } from '@opentelemetry/core';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { defaultResource, resourceFromAttributes } from '@opentelemetry/resources';
import {
  BasicTracerProvider,
  BatchSpanProcessor,
  ParentBasedSampler,
  type ReadableSpan,
  type SpanExporter,
  TraceIdRatioBasedSampler,
} from '@opentelemetry/sdk-trace-base';
import type { TracingConfig } from '../config/types.js';
import type { Logger } from '../log/logger.js';

/** How long close() waits for the last spans to reach the collector before it gives up on them. */
const TRACING_SHUTDOWN_MS = 2_000;
/** At most one warning per this interval about spans the collector did not take. */
const EXPORT_FAILURE_LOG_INTERVAL_MS = 60_000;

export interface TracerProviderHandle {
  readonly tracer: Tracer;
  /** Flushes and shuts the provider down, within {@link TRACING_SHUTDOWN_MS}; never rejects. */
  close(): Promise<void>;
}

/**
 * A tracer provider that batches spans to `<otlp_endpoint>/v1/traces` (OTLP/HTTP, JSON). New
 * traces are sampled at `sample_ratio` by trace ID; a span with a parent follows the parent's
 * decision, so an app's sampled `traceparent` is always recorded (ParentBased sampler).
 *
 * The exporter's connections go through an agent of our own, destroyed at close: a collector that
 * hangs cannot keep the process from exiting. Spans never wait for the collector: the batch
 * processor's queue is bounded and drops when full.
 */
export function startTracerProvider(config: TracingConfig, logger: Logger): TracerProviderHandle {
  const url = new URL('v1/traces', withSlash(config.otlpEndpoint));
  const connections = cuttableAgent(url.protocol);
  const exporter = new ReportingExporter(
    new OTLPTraceExporter({ url: url.href, httpAgentOptions: () => connections.agent }),
    logger,
  );
  const provider = new BasicTracerProvider({
    resource: defaultResource().merge(resourceFromAttributes({ 'service.name': config.serviceName })),
    sampler: new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(config.sampleRatio) }),
    spanProcessors: [new BatchSpanProcessor(exporter)],
  });
  let closed: Promise<void> | undefined;
  return {
    tracer: provider.getTracer('token-injector'),
    close() {
      closed ??= (async () => {
        let timer: NodeJS.Timeout | undefined;
        const bound = new Promise<void>((resolve) => {
          timer = setTimeout(resolve, TRACING_SHUTDOWN_MS);
        });
        await Promise.race([provider.shutdown().catch(() => {}), bound]);
        clearTimeout(timer);
        exporter.closing = true;
        // Whatever is still being sent goes now: its spans are lost, the process is not held.
        connections.cut();
      })();
      return closed;
    },
  };
}

/** Set on exports cut by close(). Without a `code`, the exporter takes it as final, not as a network error to retry. */
const STOPPED = new Error('tracing stopped: the collector did not take the last spans in time');

/**
 * The exporter's connections, which close() can cut for good: exports in flight fail with
 * {@link STOPPED} and none opens a connection any more. Destroying the agent alone is not enough:
 * the exporter retries a reset connection (after a timer that holds the process) until its own
 * timeout.
 */
function cuttableAgent(protocol: string): { agent: http.Agent; cut(): void } {
  const agent =
    protocol === 'https:' ? new https.Agent({ keepAlive: true }) : new http.Agent({ keepAlive: true });
  let cut = false;
  const connect = agent.createConnection.bind(agent);
  agent.createConnection = (options, callback) => {
    if (!cut) return connect(options, callback);
    callback?.(STOPPED, undefined as never);
    return undefined;
  };
  return {
    agent,
    cut() {
      cut = true;
      for (const sockets of Object.values(agent.sockets))
        for (const socket of sockets ?? []) socket.destroy(STOPPED);
      agent.destroy();
    },
  };
}

/** `http://collector:4318/base` and `…/base/` both become `…/base/v1/traces`. */
function withSlash(endpoint: URL): URL {
  const base = new URL(endpoint.href);
  if (!base.pathname.endsWith('/')) base.pathname += '/';
  return base;
}

/**
 * The OTLP exporter, with its failures logged: at most one warning per interval, counting the
 * spans lost meanwhile, so a collector that is down is neither silent nor a log flood.
 */
export class ReportingExporter implements SpanExporter {
  /** Set once close() gave up waiting: the failures that follow are our own doing. */
  closing = false;
  readonly #inner: SpanExporter;
  readonly #logger: Logger;
  readonly #now: () => number;
  #loggedAt = Number.NEGATIVE_INFINITY;
  #lost = 0;

  constructor(inner: SpanExporter, logger: Logger, now: () => number = () => performance.now()) {
    this.#inner = inner;
    this.#logger = logger;
    this.#now = now;
  }

  export(spans: ReadableSpan[], done: (result: ExportResult) => void): void {
    this.#inner.export(spans, (result) => {
      if (result.code !== ExportResultCode.SUCCESS) this.#failed(spans.length, result.error);
      done(result);
    });
  }

  shutdown(): Promise<void> {
    return this.#inner.shutdown();
  }

  forceFlush(): Promise<void> {
    return this.#inner.forceFlush?.() ?? Promise.resolve();
  }

  #failed(spans: number, error: Error | undefined): void {
    if (this.closing) return;
    this.#lost += spans;
    const now = this.#now();
    if (now - this.#loggedAt < EXPORT_FAILURE_LOG_INTERVAL_MS) return;
    this.#logger.warn(
      {
        event: 'tracing_export_failed',
        spans_lost: this.#lost,
        // The exporter's words name the failure (a refused connection, an HTTP status), never a
        // span's content.
        error: error?.message ?? 'unknown',
      },
      'spans could not be sent to the OpenTelemetry collector (tracing.otlp_endpoint)',
    );
    this.#loggedAt = now;
    this.#lost = 0;
  }
}
