import { type Checker, join } from './checker.js';
import type { TracingConfig } from './types.js';

type Obj = Record<string, unknown>;

const KEYS = ['otlp_endpoint', 'service_name', 'sample_ratio'];

export const TRACING_DEFAULTS = { serviceName: 'token-injector', sampleRatio: 1 } as const;

/**
 * `tracing`: undefined when absent (no tracer is loaded and requests pay nothing). Spans carry
 * route, credential and status, never a secret, so a plain-http collector inside the cluster is
 * allowed, as OpenTelemetry's own defaults do.
 */
export function tracing(c: Checker, root: Obj): TracingConfig | undefined {
  const raw = root['tracing'];
  if (raw === undefined || raw === null) return undefined;
  const path = 'tracing';
  const obj = c.object(raw, path);
  if (!obj) return undefined;
  const before = c.problems.length;
  c.onlyKeys(obj, path, KEYS);
  c.required(obj, 'otlp_endpoint', path);
  const otlpEndpoint = c.url(obj, 'otlp_endpoint', path, { allowQuery: false });
  const serviceName = c.string(obj, 'service_name', path) ?? TRACING_DEFAULTS.serviceName;
  if (serviceName === '') c.add(join(path, 'service_name'), 'must not be empty');
  let sampleRatio: number = TRACING_DEFAULTS.sampleRatio;
  const ratio = obj['sample_ratio'];
  if (ratio !== undefined && ratio !== null) {
    if (typeof ratio !== 'number' || !(ratio >= 0 && ratio <= 1)) {
      c.add(join(path, 'sample_ratio'), 'must be a fraction from 0 to 1, e.g. 0.1 for one trace in ten');
    } else sampleRatio = ratio;
  }
  if (c.problems.length > before || !otlpEndpoint) return undefined;
  return Object.freeze({ otlpEndpoint, serviceName, sampleRatio });
}
