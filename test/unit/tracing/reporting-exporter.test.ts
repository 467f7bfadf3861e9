import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { ExportResultCode } from '@opentelemetry/core';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  type ReadableSpan,
  SimpleSpanProcessor,
} from '@opentelemetry/sdk-trace-base';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../../src/log/logger.js';
import { ReportingExporter } from '../../../src/tracing/provider.js';

let collector: http.Server;
let url: string;

beforeAll(async () => {
  // A collector that takes nothing: the path is wrong as far as it is concerned.
  collector = http.createServer((_req, res) => res.writeHead(404).end());
  collector.listen(0, '127.0.0.1');
  await once(collector, 'listening');
  url = `http://127.0.0.1:${(collector.address() as AddressInfo).port}/v1/traces`;
});

afterAll(() => {
  collector.closeAllConnections();
  collector.close();
});

/** Real spans, as the SDK makes them. */
function spans(n: number): ReadableSpan[] {
  const memory = new InMemorySpanExporter();
  const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(memory)] });
  for (let i = 0; i < n; i++) provider.getTracer('t').startSpan(`s${i}`).end();
  return memory.getFinishedSpans();
}

describe('ReportingExporter', () => {
  it('logs failed exports at most once a minute, counting the spans lost meanwhile', async () => {
    const lines: Record<string, unknown>[] = [];
    const logger = createLogger(
      'info',
      new Writable({
        write(chunk, _enc, done) {
          for (const l of String(chunk).split('\n'))
            if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
          done();
        },
      }),
    );
    let now = 0;
    const exporter = new ReportingExporter(new OTLPTraceExporter({ url }), logger, () => now);
    const send = (n: number) =>
      new Promise<number>((resolve) => exporter.export(spans(n), (r) => resolve(r.code)));
    const failures = () => lines.filter((l) => l['event'] === 'tracing_export_failed');

    expect(await send(2)).toBe(ExportResultCode.FAILED);
    expect(failures()).toHaveLength(1);
    expect(failures()[0]).toMatchObject({ spans_lost: 2 });
    now = 30_000;
    expect(await send(3)).toBe(ExportResultCode.FAILED);
    expect(failures()).toHaveLength(1);
    now = 60_000;
    expect(await send(1)).toBe(ExportResultCode.FAILED);
    expect(failures()).toHaveLength(2);
    expect(failures()[1]).toMatchObject({ spans_lost: 4 });
    await exporter.shutdown();
  });
});
