import { spawn } from 'node:child_process';
import { once } from 'node:events';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BASIC_CLIENT, POST_CLIENT } from '../support/auth-server.js';
import { REPO_ROOT } from '../support/cli-process.js';
import { type FakeTokenEndpoint, startFakeTokenEndpoint } from '../support/fake-token-endpoint.js';
import { startInjector, type TestInjector } from '../support/injector.js';
import { type OtlpReceiver, type ReceivedSpan, startOtlpReceiver } from '../support/otlp-receiver.js';
import { credentialFor, type Stack, startStack } from '../support/stack.js';
import type { ReceivedRequest } from '../support/upstream.js';

// OpenTelemetry's standard knob, read when the batch processor is made: spans leave within 50 ms
// instead of 5 s, so tests wait for them briefly (they still wait for the event, not a time).
process.env['OTEL_BSP_SCHEDULE_DELAY'] = '50';

const SERVER = 2;
const CLIENT = 3;
const ERROR = 2;
const BROKEN_SECRET = 'broken-secret-5f1e9a0c';
const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-(0[01])$/;

let stack: Stack;
let otlp: OtlpReceiver;
let fake: FakeTokenEndpoint;
let proxy: TestInjector;

beforeAll(async () => {
  stack = await startStack();
  otlp = await startOtlpReceiver();
  fake = await startFakeTokenEndpoint({ kind: 'json', status: 400, body: { error: 'invalid_client' } });
  const upstream = stack.upstream.url;
  proxy = await startInjector({
    tracing: { otlp_endpoint: otlp.url, service_name: 'token-injector-test' },
    credentials: {
      basic: credentialFor(stack.auth, BASIC_CLIENT),
      post: credentialFor(stack.auth, POST_CLIENT),
      broken: {
        token_endpoint: fake.url,
        grant_type: 'client_credentials',
        client_id: 'broken-client',
        client_secret: BROKEN_SECRET,
        auth_method: 'client_secret_post',
      },
    },
    routes: [
      { name: 'orders', match: { host: 'orders.test' }, upstream, credential: 'basic' },
      {
        name: 'continued',
        match: { host: 'continued.test' },
        upstream: `${upstream}/base`,
        credential: 'post',
      },
      { name: 'broken', match: { host: 'broken.test' }, upstream, credential: 'broken' },
    ],
  });
});

afterAll(async () => {
  await proxy?.close();
  await fake?.close();
  await otlp?.close();
  await stack?.close();
});

function get(base: string, host: string, path: string, headers: Record<string, string> = {}) {
  return request(`${base}${path}`, { headers: { host, ...headers } }).then(async (res) => {
    await res.body.dump();
    return res.statusCode;
  });
}

/** Another proxy, with `tracing` as given and one route `orders` to the stack's upstream. */
function startTraced(tracing: Record<string, unknown>): Promise<TestInjector> {
  return startInjector({
    tracing,
    credentials: { basic: credentialFor(stack.auth, BASIC_CLIENT) },
    routes: [
      { name: 'orders', match: { host: 'orders.test' }, upstream: stack.upstream.url, credential: 'basic' },
    ],
  });
}

/** The upstream's record of the request whose path starts with `path`. */
function upstreamGot(path: string): ReceivedRequest {
  const found = stack.upstream.requests.find((r) => r.path.startsWith(path));
  if (!found) throw new Error(`the upstream got no request for ${path}`);
  return found;
}

const named =
  (name: string, service = 'token-injector-test') =>
  (s: ReceivedSpan) =>
    s.name === name && s.resource['service.name'] === service;

describe('tracing: spans by OTLP/HTTP', () => {
  it('a proxied request gets a server span (route, method, status, upstream) with its token fetch as a child', async () => {
    expect(await get(proxy.url, 'orders.test', '/v1/orders?api_key=qs-secret-value')).toBe(200);
    const req = await otlp.span(named('proxy orders'));
    const fetch = await otlp.span(named('token basic'));

    expect(req.kind).toBe(SERVER);
    expect(req.attributes).toMatchObject({
      'token_injector.route': 'orders',
      'http.request.method': 'GET',
      'http.response.status_code': 200,
      'token_injector.upstream': new URL(stack.upstream.url).origin,
    });
    expect(req.statusCode).not.toBe(ERROR);
    expect(req.resource['service.name']).toBe('token-injector-test');

    expect(fetch.kind).toBe(CLIENT);
    expect(fetch.traceId).toBe(req.traceId);
    expect(fetch.parentSpanId).toBe(req.spanId);
    const endpoint = new URL(stack.auth.tokenEndpoint);
    expect(fetch.attributes).toMatchObject({
      'token_injector.credential': 'basic',
      'token_injector.grant_type': 'client_credentials',
      'token_injector.outcome': 'success',
      'server.address': endpoint.hostname,
      'server.port': Number(endpoint.port),
    });
    // The exporter's encoding, which the receiver parses.
    expect(otlp.contentTypes[0]).toMatch(/^application\/json/);
    expect(otlp.refused).toEqual([]);
  });

  it("continues the app's traceparent and sends upstream one naming our span, with the tracestate", async () => {
    const appTrace = '4bf92f3577b34da6a3ce929d0e0e4736';
    const appSpan = '00f067aa0ba902b7';
    const status = await get(proxy.url, 'continued.test', '/continued', {
      traceparent: `00-${appTrace}-${appSpan}-01`,
      tracestate: 'vendor=opaque',
    });
    expect(status).toBe(200);
    const req = await otlp.span(named('proxy continued'));
    expect(req.traceId).toBe(appTrace);
    expect(req.parentSpanId).toBe(appSpan);

    const sent = upstreamGot('/base/continued');
    const [, traceId, spanId, flags] = TRACEPARENT.exec(String(sent.headers.traceparent)) ?? [];
    expect(traceId).toBe(appTrace);
    expect(spanId).toBe(req.spanId);
    expect(flags).toBe('01');
    expect(sent.headers.tracestate).toBe('vendor=opaque');
    // Replaced, not added: the app's own fields are gone.
    expect(sent.rawHeaders.filter((h) => h.toLowerCase() === 'traceparent')).toHaveLength(1);

    // The token this request waited for was fetched in the app's trace, under our span.
    const fetch = await otlp.span(named('token post'));
    expect(fetch.traceId).toBe(appTrace);
    expect(fetch.parentSpanId).toBe(req.spanId);
  });

  it('starts a trace when the app sent none, and propagates it upstream', async () => {
    expect(await get(proxy.url, 'orders.test', '/new-trace')).toBe(200);
    const sent = upstreamGot('/new-trace');
    const [, traceId, spanId] = TRACEPARENT.exec(String(sent.headers.traceparent)) ?? [];
    const req = await otlp.span((s) => s.name === 'proxy orders' && s.spanId === spanId);
    expect(req.traceId).toBe(traceId);
    expect(req.parentSpanId).toBeUndefined();
  });

  it('a failed token fetch is an error span, and the request span a 5xx in error', async () => {
    const status = await get(proxy.url, 'broken.test', '/broken');
    expect(status).toBeGreaterThanOrEqual(500);
    const req = await otlp.span(named('proxy broken'));
    const fetch = await otlp.span(named('token broken'));
    expect(fetch.parentSpanId).toBe(req.spanId);
    expect(fetch.statusCode).toBe(ERROR);
    expect(fetch.attributes).toMatchObject({
      'token_injector.credential': 'broken',
      'token_injector.outcome': 'token_endpoint_rejected',
      'error.type': 'token_endpoint_rejected',
    });
    expect(req.statusCode).toBe(ERROR);
    expect(req.attributes).toMatchObject({
      'http.response.status_code': status,
      'error.type': String(status),
    });
  });

  it('a request no route takes gets a span too, as route "none", without an upstream', async () => {
    expect(await get(proxy.url, 'nowhere.test', '/denied')).toBe(403);
    const req = await otlp.span(named('proxy none'));
    expect(req.attributes['token_injector.route']).toBe('none');
    expect(req.attributes['http.response.status_code']).toBe(403);
    expect(req.attributes['token_injector.upstream']).toBeUndefined();
    expect(req.statusCode).not.toBe(ERROR);
  });

  it('no span carries a token, a client secret, a query string or a header value', async () => {
    expect(await get(proxy.url, 'orders.test', '/leak?code=qs-secret-value', { 'x-app': 'hdr-value' })).toBe(
      200,
    );
    const sent = upstreamGot('/leak');
    const [, , spanId] = TRACEPARENT.exec(String(sent.headers.traceparent)) ?? [];
    await otlp.span((s) => s.spanId === spanId);
    const all = otlp.spans.map((s) => s.raw).join('\n');
    expect(all).toContain('proxy orders');
    const secrets = [
      BASIC_CLIENT.secret,
      POST_CLIENT.secret,
      BROKEN_SECRET,
      ...stack.auth.issuedTokens,
      'qs-secret-value',
      'hdr-value',
      '/leak',
    ];
    expect(stack.auth.issuedTokens.length).toBeGreaterThan(0);
    for (const secret of secrets) expect(all).not.toContain(secret);
  });
});

describe('tracing: sampling', () => {
  it('sample_ratio 0 records no new trace yet forwards it; a sampled traceparent from the app is recorded', async () => {
    const service = 'token-injector-unsampled';
    const unsampled = await startTraced({ otlp_endpoint: otlp.url, service_name: service, sample_ratio: 0 });
    const appTrace = '0af7651916cd43dd8448eb211c80319c';
    try {
      expect(await get(unsampled.url, 'orders.test', '/unsampled')).toBe(200);
      // Not recorded, still propagated: a new trace with the sampled flag off.
      const [, , , flags] = TRACEPARENT.exec(String(upstreamGot('/unsampled').headers.traceparent)) ?? [];
      expect(flags).toBe('00');
      const status = await get(unsampled.url, 'orders.test', '/sampled-by-app', {
        traceparent: `00-${appTrace}-b7ad6b7169203331-01`,
      });
      expect(status).toBe(200);
    } finally {
      // Flushes every span still buffered to the receiver before it resolves.
      await unsampled.close();
    }
    const mine = otlp.spans.filter((s) => s.resource['service.name'] === service);
    expect(mine.map((s) => s.name)).toEqual(['proxy orders']);
    expect(mine[0]!.traceId).toBe(appTrace);
  });
});

describe('tracing: the collector', () => {
  it('a collector that refuses the spans is logged once per interval; requests go on', async () => {
    const wrong = http.createServer((_req, res) => res.writeHead(404).end('no such path'));
    wrong.listen(0, '127.0.0.1');
    await once(wrong, 'listening');
    const injector = await startTraced({
      otlp_endpoint: `http://127.0.0.1:${(wrong.address() as AddressInfo).port}`,
    });
    try {
      expect(await get(injector.url, 'orders.test', '/refused-1')).toBe(200);
      expect(await get(injector.url, 'orders.test', '/refused-2')).toBe(200);
    } finally {
      await injector.close();
      wrong.close();
    }
    const failures = injector.logs.filter((l) => l['event'] === 'tracing_export_failed');
    // However many exports failed meanwhile (close() sends the last one), one line in the interval.
    expect(failures).toHaveLength(1);
    expect(failures[0]).toMatchObject({ level: 'warn' });
    expect(failures[0]!['spans_lost']).toBeGreaterThan(0);
    expect(String(failures[0]!['error'])).toMatch(/Not Found|404/);
  });

  it('a collector that never answers does not hold close(): its connection is cut', async () => {
    const accepted: net.Socket[] = [];
    // Reads every request, answers none.
    const hanging = net.createServer((socket) => accepted.push(socket.resume()));
    hanging.listen(0, '127.0.0.1');
    await once(hanging, 'listening');
    const injector = await startTraced({
      otlp_endpoint: `http://127.0.0.1:${(hanging.address() as AddressInfo).port}`,
    });
    try {
      expect(await get(injector.url, 'orders.test', '/hanging-collector')).toBe(200);
      await injector.close();
      // The export at close reached the collector, and our side closed that connection.
      expect(accepted.length).toBeGreaterThan(0);
      await Promise.all(accepted.map((s) => (s.closed ? undefined : once(s, 'close'))));
    } finally {
      for (const s of accepted) s.destroy();
      hanging.close();
    }
  });
});

describe('tracing off', () => {
  /** Runs the real proxy in a fresh process and returns its request's status and loaded OpenTelemetry files. */
  async function probe(config: object, headers: Record<string, string>) {
    const child = spawn(process.execPath, ['--import', 'tsx', 'test/support/loaded-modules-probe.ts'], {
      cwd: REPO_ROOT,
      env: {
        ...process.env,
        TRACING_PROBE_CONFIG: JSON.stringify({
          listen: '127.0.0.1:0',
          admin: { listen: '127.0.0.1:0' },
          ...config,
        }),
        TRACING_PROBE_HEADERS: JSON.stringify(headers),
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (c: Buffer) => {
      out += c.toString();
    });
    child.stderr.on('data', (c: Buffer) => {
      err += c.toString();
    });
    const [code] = (await once(child, 'exit')) as [number | null];
    if (code !== 0) throw new Error(`probe exited ${code}: ${err}`);
    return JSON.parse(out.trim().split('\n').at(-1)!) as {
      status: number;
      loaded: { file: string; by: string | undefined }[];
    };
  }

  const proxied = (path: string) => ({
    credentials: { basic: credentialFor(stack.auth, BASIC_CLIENT) },
    routes: [
      {
        name: 'probe',
        match: { host: 'probe.test' },
        upstream: `${stack.upstream.url}${path}`,
        credential: 'basic',
      },
    ],
  });

  it("never loads OpenTelemetry's SDK, and the upstream gets the app's traceparent and tracestate unchanged", async () => {
    const traceparent = '00-11111111111111111111111111111111-2222222222222222-01';
    const off = await probe(proxied('/off'), { host: 'probe.test', traceparent, tracestate: 'app=1' });
    expect(off.status).toBe(200);
    // prom-client requires the (no-op) API package for its exemplars whether we trace or not;
    // nothing of ours loads any OpenTelemetry file, and nothing else is loaded.
    const packageOf = (file: string) => /\/@opentelemetry\/([^/]+)\//.exec(file)?.[1];
    expect(new Set(off.loaded.map((m) => packageOf(m.file)))).toEqual(new Set(['api']));
    const entry = off.loaded.find((m) => m.file.endsWith('/@opentelemetry/api/build/src/index.js'));
    expect(entry?.by).toMatch(/\/node_modules\/prom-client\//);
    const sent = upstreamGot('/off/probe');
    expect(sent.headers.traceparent).toBe(traceparent);
    expect(sent.headers.tracestate).toBe('app=1');

    // The same probe sees OpenTelemetry when tracing is on: its empty list above means something.
    const on = await probe(
      { ...proxied('/on'), tracing: { otlp_endpoint: otlp.url, service_name: 'token-injector-probe' } },
      { host: 'probe.test', traceparent },
    );
    expect(on.status).toBe(200);
    expect(on.loaded.map((m) => packageOf(m.file))).toEqual(
      expect.arrayContaining(['sdk-trace-base', 'exporter-trace-otlp-http', 'core', 'resources']),
    );
    expect(upstreamGot('/on/probe').headers.traceparent).not.toBe(traceparent);
  });
});
