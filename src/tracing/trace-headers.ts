import type { TextMapGetter } from '@opentelemetry/api';

const TRACEPARENT = 'traceparent';
const TRACESTATE = 'tracestate';

/**
 * Reads W3C Trace Context fields from a request's raw header list (`[name, value, …]`), names in
 * any letter case. A field sent more than once comes back as a list: the propagator joins
 * `tracestate` lines (a list-valued field, W3C Trace Context §3.3) and takes the first
 * `traceparent`.
 */
export const rawHeadersGetter: TextMapGetter<readonly string[]> = {
  keys(raw) {
    const names: string[] = [];
    for (let i = 0; i < raw.length; i += 2) names.push(raw[i]!.toLowerCase());
    return names;
  },
  get(raw, key) {
    let found: string | string[] | undefined;
    for (let i = 0; i < raw.length; i += 2) {
      if (raw[i]!.toLowerCase() !== key) continue;
      const value = raw[i + 1]!;
      if (found === undefined) found = value;
      else if (typeof found === 'string') found = [found, value];
      else found.push(value);
    }
    return found;
  },
};

/** What {@link replaceTraceHeaders} writes: the propagator's output for our span. */
export interface TraceHeaders {
  traceparent?: string;
  tracestate?: string;
}

/**
 * Replaces a request's `traceparent` and `tracestate` with `ours`, in its raw list (which is what
 * headers.ts copies upstream, for every kind of request) and its parsed headers, as request-id.ts
 * does for `X-Request-Id`. The app's fields are dropped even when `ours` has no `tracestate`: a
 * tracestate belongs with the traceparent it came with (W3C Trace Context §3.3).
 *
 * A field is added only while the list stays within `maxRawHeaders` entries (pseudo-header fields
 * of HTTP/2 not counted), so a request at the header limit is not refused for a field it did not
 * send; such a request goes upstream without a traceparent.
 */
export function replaceTraceHeaders(
  raw: string[],
  headers: Record<string, string | string[] | undefined>,
  ours: TraceHeaders,
  maxRawHeaders: number,
): void {
  let fields = 0;
  for (let i = 0; i < raw.length; ) {
    const lower = raw[i]!.toLowerCase();
    if (lower === TRACEPARENT || lower === TRACESTATE) {
      raw.splice(i, 2);
      continue;
    }
    if (!lower.startsWith(':')) fields += 2;
    i += 2;
  }
  delete headers[TRACEPARENT];
  delete headers[TRACESTATE];
  for (const name of [TRACEPARENT, TRACESTATE] as const) {
    const value = ours[name];
    if (value === undefined || fields + 2 > maxRawHeaders) continue;
    raw.push(name, value);
    headers[name] = value;
    fields += 2;
  }
}
