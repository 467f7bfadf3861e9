import { describe, expect, it } from 'vitest';
import { rawHeadersGetter, replaceTraceHeaders } from '../../../src/tracing/trace-headers.js';

const OURS = {
  traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-1111111111111111-01',
  tracestate: 'vendor=opaque',
};

describe('rawHeadersGetter', () => {
  it('finds a field in any letter case, and every line of a repeated one', () => {
    const raw = ['Host', 'a.test', 'TraceParent', 'tp', 'tracestate', 'a=1', 'TRACESTATE', 'b=2'];
    expect(rawHeadersGetter.get(raw, 'traceparent')).toBe('tp');
    expect(rawHeadersGetter.get(raw, 'tracestate')).toEqual(['a=1', 'b=2']);
    expect(rawHeadersGetter.get(raw, 'baggage')).toBeUndefined();
  });
});

describe('replaceTraceHeaders', () => {
  it("replaces the app's fields, in any letter case and however many, in the raw list and the parsed headers", () => {
    const raw = [
      'Host',
      'a.test',
      'TraceParent',
      'app-1',
      'x-other',
      'v',
      'traceparent',
      'app-2',
      'TraceState',
      'app=1',
    ];
    const headers: Record<string, string | string[] | undefined> = {
      traceparent: 'app-1, app-2',
      tracestate: 'app=1',
    };
    replaceTraceHeaders(raw, headers, OURS, 100);
    expect(raw).toEqual([
      'Host',
      'a.test',
      'x-other',
      'v',
      'traceparent',
      OURS.traceparent,
      'tracestate',
      OURS.tracestate,
    ]);
    expect(headers).toEqual(OURS);
  });

  it("drops the app's tracestate when ours has none: it belongs to the app's traceparent", () => {
    const raw = ['traceparent', 'app', 'tracestate', 'app=1'];
    const headers: Record<string, string | string[] | undefined> = {
      traceparent: 'app',
      tracestate: 'app=1',
    };
    replaceTraceHeaders(raw, headers, { traceparent: OURS.traceparent }, 100);
    expect(raw).toEqual(['traceparent', OURS.traceparent]);
    expect(headers).toEqual({ traceparent: OURS.traceparent });
  });

  it('adds no field past the header limit (HTTP/2 pseudo-headers not counted), so the request is not refused for it', () => {
    const raw = [':method', 'GET', ':path', '/', 'a', '1', 'b', '2'];
    replaceTraceHeaders(raw, {}, OURS, 6);
    // Two fields, room for one more: the traceparent, not the tracestate.
    expect(raw).toEqual([
      ':method',
      'GET',
      ':path',
      '/',
      'a',
      '1',
      'b',
      '2',
      'traceparent',
      OURS.traceparent,
    ]);
    const full = ['a', '1', 'b', '2'];
    replaceTraceHeaders(full, {}, OURS, 4);
    expect(full).toEqual(['a', '1', 'b', '2']);
  });

  it('a replaced field takes no more room than the one it replaces', () => {
    const raw = ['a', '1', 'traceparent', 'app'];
    replaceTraceHeaders(raw, {}, { traceparent: OURS.traceparent }, 4);
    expect(raw).toEqual(['a', '1', 'traceparent', OURS.traceparent]);
  });
});
