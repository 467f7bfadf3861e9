// Issue 14, request IDs: the app's `X-Request-Id` is kept when well formed, else one is generated
// (or the malformed one replaced); either way it goes upstream (HTTP/1.1, HTTP/2, WebSocket,
// passthrough), onto the access line (`request_id`), and into every error answer of the proxy
// (body `request_id` and an `X-Request-Id` header; gRPC metadata for a gRPC call). Real
// authorization server, real verifying upstreams that record what they received.
import http2 from 'node:http2';
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { type AuthServer, BASIC_CLIENT, startAuthServer } from '../support/auth-server.js';
import { type FaultUpstream, startFaultUpstream } from '../support/fault-upstream.js';
import { type H2Upstream, startH2Upstream } from '../support/h2-upstream.js';
import { plainRequest } from '../support/http-client.js';
import { startInjector, type TestInjector } from '../support/injector.js';
import { watchSecret } from '../support/leak-watch.js';
import { credentialFor } from '../support/stack.js';
import { startUpstream, type Upstream } from '../support/upstream.js';
import { startWsUpstream, type WsUpstream } from '../support/ws-upstream.js';

/** What the proxy generates: a per-process random prefix and a counter (proxy/request-id.ts). */
const GENERATED = /^[0-9a-f]{20}-[0-9a-z]+$/;
const APP_ID = 'f81d4fae-7dec-11d0-a765-00a0c91e6bf6';

let auth: AuthServer;
let up: Upstream;
let h2: H2Upstream;
let ws: WsUpstream;
let open: FaultUpstream;
let proxy: TestInjector;
/** `unmatched: passthrough`, no routes: every request goes on without a token. */
let pass: TestInjector;

beforeAll(async () => {
  auth = await startAuthServer();
  const verify = { issuer: auth.issuer, jwksUri: auth.jwksUri, audience: auth.audience };
  up = await startUpstream(verify);
  h2 = await startH2Upstream(verify);
  ws = await startWsUpstream(verify);
  open = await startFaultUpstream({ kind: 'echo' });
  proxy = await startInjector({
    credentials: {
      orders: credentialFor(auth),
      // The authorization server refuses this secret: no token can be had (502).
      broken: credentialFor(auth, { ...BASIC_CLIENT, secret: 'not-the-secret-4b7e' }),
    },
    routes: [
      { name: 'orders', match: { host: 'orders.test' }, upstream: up.url, credential: 'orders' },
      { name: 'broken', match: { host: 'broken.test' }, upstream: up.url, credential: 'broken' },
      {
        name: 'h2',
        match: { host: 'h2.test' },
        upstream: h2.url,
        credential: 'orders',
        upstream_protocol: 'http2',
      },
      { name: 'chat', match: { host: 'chat.test' }, upstream: ws.url, credential: 'orders' },
    ],
  });
  pass = await startInjector({ unmatched: 'passthrough', routes: [] });
});

afterAll(async () => {
  await proxy?.close();
  await pass?.close();
  await up?.close();
  await h2?.close();
  await ws?.close();
  await open?.close();
  for (const token of auth?.issuedTokens ?? []) watchSecret(token);
  await auth?.close();
});

function get(host: string, path: string, requestId?: string | string[]) {
  return plainRequest(proxy.url, path, {
    headers: { host, ...(requestId !== undefined ? { 'x-request-id': requestId } : {}) },
  });
}

/** Every value of X-Request-Id in a raw header list, as the upstream received them. */
function idFields(rawHeaders: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < rawHeaders.length; i += 2) {
    if (rawHeaders[i]!.toLowerCase() === 'x-request-id') out.push(rawHeaders[i + 1]!);
  }
  return out;
}

/** The upstream's record of the request with this path (each test uses its own). */
function received(path: string) {
  const found = up.requests.filter((r) => r.path === path);
  expect(found).toHaveLength(1);
  return found[0]!;
}

/** The access lines of one injector for this path. */
function accessLines(p: TestInjector, path: string): Record<string, unknown>[] {
  return p.logs.filter((l) => l['event'] === 'request' && l['path'] === path);
}

describe("the app's X-Request-Id", () => {
  it('is kept: the upstream gets it once, the access line logs it', async () => {
    const res = await get('orders.test', '/kept', APP_ID);
    expect(res.status).toBe(200);
    const seen = received('/kept');
    expect(seen.tokenValid).toBe(true);
    expect(idFields(seen.rawHeaders)).toEqual([APP_ID]);
    expect(accessLines(proxy, '/kept')).toEqual([
      expect.objectContaining({ request_id: APP_ID, status: 200 }),
    ]);
    // The upstream's answer passes unchanged: the proxy adds the header to its own answers only.
    expect(res.headers['x-request-id']).toBeUndefined();
  });

  it.each([
    ['200 characters, the longest kept', 'r'.repeat(200)],
    ['visible ASCII punctuation', 'trace:abc/12;x=y'],
  ])('is kept when it is %s', async (_name, id) => {
    const path = `/kept-${id.length}-${id.charCodeAt(1)}`;
    expect((await get('orders.test', path, id)).status).toBe(200);
    expect(idFields(received(path).rawHeaders)).toEqual([id]);
    expect(accessLines(proxy, path)[0]!['request_id']).toBe(id);
  });

  it.each<[string, string | string[]]>([
    ['empty', ''],
    ['201 characters', 'r'.repeat(201)],
    ['with a space', 'two words'],
    ['beyond ASCII', 'caf\u00e9'],
    ['sent twice', ['first-id', 'second-id']],
  ])('is replaced by a generated one when it is %s', async (name, bad) => {
    const path = `/malformed-${name.replaceAll(' ', '-')}`;
    expect((await get('orders.test', path, bad)).status).toBe(200);
    const fields = idFields(received(path).rawHeaders);
    expect(fields).toHaveLength(1);
    expect(fields[0]).toMatch(GENERATED);
    expect(accessLines(proxy, path)[0]!['request_id']).toBe(fields[0]);
  });
});

describe('a generated request ID', () => {
  it('is given to a request without one: sent upstream, logged, unique per request', async () => {
    const paths = Array.from({ length: 20 }, (_, i) => `/generated/${i}`);
    for (const path of paths) expect((await get('orders.test', path)).status).toBe(200);
    const ids = paths.map((path) => {
      const fields = idFields(received(path).rawHeaders);
      expect(fields).toHaveLength(1);
      expect(fields[0]).toMatch(GENERATED);
      expect(accessLines(proxy, path)[0]!['request_id']).toBe(fields[0]);
      return fields[0];
    });
    expect(new Set(ids).size).toBe(paths.length);
  });
});

/**
 * The proxy's error answer to `path`: its status and code, and one request ID (`sent`, or a
 * generated one) in its body, its X-Request-Id header and its access log line.
 */
async function expectErrorWithId(
  host: string,
  path: string,
  sent: string | undefined,
  status: number,
  error: string,
): Promise<void> {
  const res = await get(host, path, sent);
  expect(res.status).toBe(status);
  const body = res.json();
  expect(body['error']).toBe(error);
  const id = body['request_id'] as string;
  if (sent === undefined) expect(id).toMatch(GENERATED);
  else expect(id).toBe(sent);
  expect(res.headers['x-request-id']).toBe(id);
  expect(accessLines(proxy, path)).toEqual([expect.objectContaining({ request_id: id, status })]);
}

describe('error answers of the proxy', () => {
  it.each<[string, string | undefined]>([
    ["the app's ID", APP_ID],
    ['a generated ID', undefined],
  ])('carry %s in the body and an X-Request-Id header: route_not_found', async (_name, sent) => {
    const path = `/nowhere/${sent === undefined ? 'generated' : 'kept'}`;
    await expectErrorWithId('unknown.test', path, sent, 403, 'route_not_found');
  });

  it.each<[string, string | undefined]>([
    ["the app's ID", APP_ID],
    ['a generated ID', undefined],
  ])('carry %s in the body and an X-Request-Id header: a token failure (502)', async (_name, sent) => {
    const path = `/no-token/${sent === undefined ? 'generated' : 'kept'}`;
    await expectErrorWithId('broken.test', path, sent, 502, 'token_endpoint_rejected');
    expect(up.requests.filter((r) => r.path === path)).toHaveLength(0);
  });

  it('replace a malformed ID in the error answer too', async () => {
    const res = await get('unknown.test', '/nowhere/malformed', 'not valid');
    const id = res.json()['request_id'] as string;
    expect(id).toMatch(GENERATED);
    expect(res.headers['x-request-id']).toBe(id);
  });
});

describe('every way a request leaves the proxy carries the ID', () => {
  it('an HTTP/2 upstream (upstream_protocol: http2)', async () => {
    expect((await get('h2.test', '/h2/kept', APP_ID)).status).toBe(200);
    expect((await get('h2.test', '/h2/generated')).status).toBe(200);
    const kept = h2.requests.find((r) => r.path === '/h2/kept')!;
    const generated = h2.requests.find((r) => r.path === '/h2/generated')!;
    expect(kept.tokenValid).toBe(true);
    expect(kept.headers['x-request-id']).toBe(APP_ID);
    expect(generated.headers['x-request-id']).toMatch(GENERATED);
  });

  it('the one retry after the upstream refused the token: the same ID as the first try', async () => {
    expect((await get('h2.test', '/h2/before-retry')).status).toBe(200);
    h2.revoke(h2.requests.find((r) => r.path === '/h2/before-retry')!.token!);
    expect((await get('h2.test', '/h2/retried')).status).toBe(200);
    const tries = h2.requests.filter((r) => r.path === '/h2/retried');
    expect(tries.map((r) => r.tokenValid)).toEqual([false, true]);
    const [first, second] = tries.map((r) => r.headers['x-request-id']);
    expect(first).toMatch(GENERATED);
    expect(second).toBe(first);
  });

  it('a WebSocket upgrade', async () => {
    const sent = await openWs('/ws/kept', { 'x-request-id': APP_ID });
    const generated = await openWs('/ws/generated', {});
    const handshake = (path: string) => ws.handshakes.find((h) => h.path === path)!;
    expect(handshake('/ws/kept').tokenValid).toBe(true);
    expect(handshake('/ws/kept').headers['x-request-id']).toBe(APP_ID);
    expect(handshake('/ws/generated').headers['x-request-id']).toMatch(GENERATED);
    expect(accessLines(proxy, '/ws/generated')[0]!['request_id']).toBe(
      handshake('/ws/generated').headers['x-request-id'],
    );
    sent.close();
    generated.close();
  });

  it('a passthrough of an unmatched request (unmatched: passthrough)', async () => {
    const target = (path: string) => `http://127.0.0.1:${open.port}${path}`;
    const host = `127.0.0.1:${open.port}`;
    expect(
      (await plainRequest(pass.url, target('/pass/kept'), { headers: { host, 'x-request-id': APP_ID } }))
        .status,
    ).toBe(200);
    expect((await plainRequest(pass.url, target('/pass/generated'), { headers: { host } })).status).toBe(200);
    const fields = (path: string) => idFields(open.requests.find((r) => r.path === path)!.rawHeaders);
    expect(fields('/pass/kept')).toEqual([APP_ID]);
    expect(fields('/pass/generated')).toHaveLength(1);
    expect(fields('/pass/generated')[0]).toMatch(GENERATED);
    expect(accessLines(pass, '/pass/generated')[0]!['request_id']).toBe(fields('/pass/generated')[0]);
  });
});

describe('an app speaking HTTP/2 to the proxy (h2c)', () => {
  it('keeps its ID, or gets one, as over HTTP/1.1', async () => {
    const client = http2.connect(proxy.url);
    try {
      const kept = await h2Get(client, {
        ':authority': 'orders.test',
        ':path': '/h2c/kept',
        'x-request-id': APP_ID,
      });
      const generated = await h2Get(client, { ':authority': 'orders.test', ':path': '/h2c/generated' });
      expect([kept[':status'], generated[':status']]).toEqual([200, 200]);
      expect(idFields(received('/h2c/kept').rawHeaders)).toEqual([APP_ID]);
      const fields = idFields(received('/h2c/generated').rawHeaders);
      expect(fields).toHaveLength(1);
      expect(fields[0]).toMatch(GENERATED);
      expect(accessLines(proxy, '/h2c/generated')[0]!['request_id']).toBe(fields[0]);
    } finally {
      client.close();
    }
  });

  it('gets the ID as metadata of a gRPC error', async () => {
    const client = http2.connect(proxy.url);
    try {
      const headers = await h2Get(client, {
        ':method': 'POST',
        ':authority': 'broken.test',
        ':path': '/orders.Orders/Get',
        'content-type': 'application/grpc',
        'x-request-id': APP_ID,
      });
      expect(headers['grpc-status']).toBe('16');
      expect(headers['x-request-id']).toBe(APP_ID);
    } finally {
      client.close();
    }
  });
});

/** A WebSocket through the proxy (reverse mode), open. */
function openWs(path: string, headers: Record<string, string>): Promise<WebSocket> {
  const port = Number(new URL(proxy.url).port);
  const socket = new WebSocket(`ws://chat.test${path}`, {
    headers,
    createConnection: () => connect(port, '127.0.0.1'),
  });
  return new Promise((resolve, reject) => {
    socket.once('open', () => resolve(socket));
    socket.once('error', reject);
  });
}

/** One HTTP/2 request (body-less, or an empty gRPC message), its response headers once it ended. */
function h2Get(
  client: http2.ClientHttp2Session,
  headers: http2.OutgoingHttpHeaders,
): Promise<http2.IncomingHttpHeaders & http2.IncomingHttpStatusHeader> {
  return new Promise((resolve, reject) => {
    const grpc = headers['content-type'] === 'application/grpc';
    const stream = client.request(headers, { endStream: !grpc });
    if (grpc) stream.end(Buffer.alloc(5));
    let got: http2.IncomingHttpHeaders & http2.IncomingHttpStatusHeader = {};
    stream.on('response', (h) => {
      got = h;
    });
    stream.on('data', () => {});
    stream.on('end', () => resolve(got));
    stream.on('error', reject);
  });
}
