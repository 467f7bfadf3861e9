/**
 * A local OpenTelemetry collector endpoint: OTLP/HTTP on 127.0.0.1, port 0, taking
 * `POST /v1/traces` as the OTLP JSON encoding (what @opentelemetry/exporter-trace-otlp-http sends,
 * `Content-Type: application/json`; gzip if the environment asks the exporter for it) and
 * recording every span, flattened. Anything else (another path, protobuf) is answered 415/404 and
 * counted in `refused`, so a test notices instead of waiting forever.
 *
 * {@link OtlpReceiver.span} resolves when a matching span has arrived (already or later): tests
 * wait for the event, never sleep.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { gunzipSync } from 'node:zlib';
import { nextArrival } from './arrivals.js';

export type AttributeValue = string | number | boolean;

export interface ReceivedSpan {
  readonly traceId: string;
  readonly spanId: string;
  /** Undefined for a root span. */
  readonly parentSpanId: string | undefined;
  readonly name: string;
  /** OTLP's numbering: 1 internal, 2 server, 3 client. */
  readonly kind: number;
  readonly attributes: Readonly<Record<string, AttributeValue>>;
  /** 0 unset, 1 ok, 2 error. */
  readonly statusCode: number;
  readonly resource: Readonly<Record<string, AttributeValue>>;
  /** The whole JSON of the span as it arrived, for "contains no secret" checks. */
  readonly raw: string;
}

export interface OtlpReceiver {
  /** http://127.0.0.1:PORT: the `otlp_endpoint` to configure. */
  readonly url: string;
  readonly spans: ReceivedSpan[];
  /** Content-Type of every export request received. */
  readonly contentTypes: string[];
  /** Requests that were not OTLP JSON to /v1/traces. */
  readonly refused: string[];
  /** The first span (already received, or the next to arrive) that matches. */
  span(match: (s: ReceivedSpan) => boolean): Promise<ReceivedSpan>;
  close(): Promise<void>;
}

export async function startOtlpReceiver(): Promise<OtlpReceiver> {
  const spans: ReceivedSpan[] = [];
  const contentTypes: string[] = [];
  const refused: string[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const type = req.headers['content-type'] ?? '';
      if (req.method !== 'POST' || req.url !== '/v1/traces') {
        refused.push(`${req.method} ${req.url}`);
        res.writeHead(404).end();
        return;
      }
      contentTypes.push(type);
      if (!type.startsWith('application/json')) {
        refused.push(`content-type ${type}`);
        res.writeHead(415).end();
        return;
      }
      let body = Buffer.concat(chunks);
      if (req.headers['content-encoding'] === 'gzip') body = gunzipSync(body);
      const received = flatten(JSON.parse(body.toString('utf8')) as ExportRequest);
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      spans.push(...received);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    spans,
    contentTypes,
    refused,
    span(match) {
      const seen = spans.find(match);
      return seen ? Promise.resolve(seen) : nextArrival(spans, match);
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

interface KeyValue {
  key: string;
  value: {
    stringValue?: string;
    intValue?: number | string;
    doubleValue?: number;
    boolValue?: boolean;
  };
}

interface ExportRequest {
  resourceSpans?: {
    resource?: { attributes?: KeyValue[] };
    scopeSpans?: {
      spans?: {
        traceId: string;
        spanId: string;
        parentSpanId?: string;
        name: string;
        kind: number;
        attributes?: KeyValue[];
        status?: { code?: number };
      }[];
    }[];
  }[];
}

function flatten(request: ExportRequest): ReceivedSpan[] {
  const out: ReceivedSpan[] = [];
  for (const rs of request.resourceSpans ?? []) {
    const resource = attributes(rs.resource?.attributes);
    for (const ss of rs.scopeSpans ?? []) {
      for (const s of ss.spans ?? []) {
        out.push({
          traceId: hexId(s.traceId),
          spanId: hexId(s.spanId),
          parentSpanId: s.parentSpanId ? hexId(s.parentSpanId) : undefined,
          name: s.name,
          kind: s.kind,
          attributes: attributes(s.attributes),
          statusCode: s.status?.code ?? 0,
          resource,
          raw: JSON.stringify(s),
        });
      }
    }
  }
  return out;
}

function attributes(list: KeyValue[] | undefined): Record<string, AttributeValue> {
  const out: Record<string, AttributeValue> = {};
  for (const { key, value } of list ?? []) {
    if (value.stringValue !== undefined) out[key] = value.stringValue;
    else if (value.intValue !== undefined) out[key] = Number(value.intValue);
    else if (value.doubleValue !== undefined) out[key] = value.doubleValue;
    else if (value.boolValue !== undefined) out[key] = value.boolValue;
  }
  return out;
}

/** OTLP/JSON writes IDs as hex (the spec's JSON mapping); base64 (protobuf's JSON default) too, just in case. */
function hexId(id: string): string {
  return /^[0-9a-f]+$/i.test(id) && (id.length === 32 || id.length === 16)
    ? id.toLowerCase()
    : Buffer.from(id, 'base64').toString('hex');
}
