/**
 * The entry to tracing, and the only module of this folder that start-up code may import
 * statically: OpenTelemetry is loaded (through `import()`) only when `tracing` is configured, so
 * a proxy without it never loads it.
 */
import type { TracingConfig } from '../config/types.js';
import type { Logger } from '../log/logger.js';
import type { Tracing } from './tracing.js';

export type { Tracing } from './tracing.js';

/** Starts tracing: the tracer provider and its OTLP/HTTP exporter to `tracing.otlp_endpoint`. */
export async function openTracing(config: TracingConfig, logger: Logger): Promise<Tracing> {
  const { createOtelTracing } = await import('./otel-tracing.js');
  return createOtelTracing(config, logger);
}
