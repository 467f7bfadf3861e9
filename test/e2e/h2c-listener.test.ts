// Issue 13: the proxy port also accepts HTTP/2 with prior knowledge (h2c), told apart from
// HTTP/1.1 by the connection preface; each stream is routed, authorised and forwarded like an
// HTTP/1.1 request, to HTTP/1.1 and HTTP/2 upstreams alike.
import { createHash } from 'node:crypto';
import http from 'node:http';
import http2 from 'node:http2';
import { connect, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nextArrival } from '../support/arrivals.js';
import { type AuthServer, startAuthServer } from '../support/auth-server.js';
import { type FakeTokenEndpoint, startFakeTokenEndpoint } from '../support/fake-token-endpoint.js';
import { type H2Request, type H2Upstream, startH2Upstream, TRAILERS } from '../support/h2-upstream.js';
import { startInjector, type TestInjector } from '../support/injector.js';
import { watchSecret } from '../support/leak-watch.js';
import { credentialFor } from '../support/stack.js';
import { type EchoResponse, patternSha256, startUpstream, type Upstream } from '../support/upstream.js';

const MAX_HEADERS = 20;
const HEADER_SIZE = 8 * 1024;

let auth: AuthServer;
let h1: Upstream;
let h2: H2Upstream;
let proxy: TestInjector;
let client: http2.ClientHttp2Session;
/** Reads token requests and never answers them. */
let slow: FakeTokenEndpoint;
/** Streams FLOOD_BYTES as fast as it is taken; `written` counts what left it so far. */
let flood: http.Server;
const flooded = { written: 0, finished: false };
const FLOOD_BYTES = 64 * 1024 * 1024;

beforeAll(async () => {
  auth = await startAuthServer();
  const verify = { issuer: auth.issuer, jwksUri: auth.jwksUri, audience: auth.audience };
  h1 = await startUpstream(verify);
  h2 = await startH2Upstream(verify);
  slow = await startFakeTokenEndpoint({ kind: 'hang' });
  flood = http.createServer(async (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/octet-stream' });
    const chunk = Buffer.alloc(64 * 1024, 7);
    while (flooded.written < FLOOD_BYTES && !res.destroyed) {
      flooded.written += chunk.length;
      if (!res.write(chunk)) await new Promise((resolve) => res.once('drain', resolve));
    }
    flooded.finished = true;
    res.end();
  });
  await new Promise<void>((resolve) => flood.listen(0, '127.0.0.1', resolve));
  const floodUrl = `http://127.0.0.1:${(flood.address() as { port: number }).port}`;
  proxy = await startInjector({
    limits: { max_headers: MAX_HEADERS, max_header_size: HEADER_SIZE },
    credentials: {
      orders: credentialFor(auth),
      slow: {
        token_endpoint: slow.url,
        grant_type: 'client_credentials',
        client_id: 'slow-client',
        client_secret: 'slow-client-secret-5e2a',
        timeout: '300ms',
      },
      // Nothing listens there: no token can be had.
      down: {
        ...credentialFor(auth),
        token_endpoint: 'http://127.0.0.1:9/token',
        timeout: '300ms',
        connect_timeout: '300ms',
      },
    },
    routes: [
      { name: 'flood', match: { host: 'flood.test' }, upstream: floodUrl, credential: 'orders' },
      { name: 'slow', match: { host: 'slow.test' }, upstream: h1.url, credential: 'slow' },
      { name: 'h1', match: { host: 'h1.test' }, upstream: h1.url, credential: 'orders' },
      {
        name: 'h2',
        match: { host: 'h2.test' },
        upstream: h2.url,
        credential: 'orders',
        upstream_protocol: 'http2',
      },
      { name: 'down', match: { host: 'down.test' }, upstream: h1.url, credential: 'down' },
    ],
  });
  client = http2.connect(proxy.url);
});

afterAll(async () => {
  client?.close();
  await proxy?.close();
  await h1?.close();
  await h2?.close();
  await slow?.close();
  flood?.closeAllConnections();
  await new Promise((resolve) => flood?.close(resolve));
  for (const token of auth?.issuedTokens ?? []) watchSecret(token);
  await auth?.close();
});

interface H2Answer {
  status: number;
  headers: http2.IncomingHttpHeaders;
  body: Buffer;
  trailers: http2.IncomingHttpHeaders | undefined;
}

/** One stream on the shared h2c session; `body` is written in the given pieces (a stream, no length). */
function h2Request(headers: http2.OutgoingHttpHeaders, body?: Buffer[]): Promise<H2Answer> {
  return new Promise((resolve, reject) => {
    const stream = client.request(
      { ':method': body ? 'POST' : 'GET', ...headers },
      { endStream: body === undefined },
    );
    let status = 0;
    let responseHeaders: http2.IncomingHttpHeaders = {};
    let trailers: http2.IncomingHttpHeaders | undefined;
    const chunks: Buffer[] = [];
    stream.on('response', (h) => {
      status = Number(h[':status']);
      responseHeaders = h;
    });
    stream.on('trailers', (t) => {
      trailers = t;
    });
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('end', () =>
      resolve({ status, headers: responseHeaders, body: Buffer.concat(chunks), trailers }),
    );
    stream.on('error', reject);
    if (body) {
      for (const piece of body) stream.write(piece);
      stream.end();
    }
  });
}

describe('h2c with prior knowledge on the proxy port', () => {
  it('routes a stream by :authority, injects the token and forwards to an HTTP/1.1 upstream', async () => {
    const res = await h2Request({ ':authority': 'h1.test', ':path': '/v1/orders?id=7', 'x-app': 'kept' });
    expect(res.status).toBe(200);
    const echo = JSON.parse(res.body.toString()) as EchoResponse;
    expect(echo.path).toBe('/v1/orders?id=7');
    expect(echo.headers['x-app']).toBe('kept');
    const seen = h1.requests.at(-1)!;
    expect(seen.tokenValid).toBe(true);
    // Pseudo-header fields stay on the HTTP/2 hop.
    expect(seen.rawHeaders.filter((_, i) => i % 2 === 0).some((name) => name.startsWith(':'))).toBe(false);
    expect(res.headers['connection']).toBeUndefined();
  });

  it('refuses a stream whose :authority and Host name different hosts (RFC 9113 §8.3.1)', async () => {
    const res = await h2Request({ ':authority': 'h1.test', ':path': '/v1/x', host: 'h2.test' });
    expect(res.status).toBe(400);
    expect(JSON.parse(res.body.toString())).toMatchObject({ error: 'bad_request' });
  });

  it('streams a request body that has no Content-Length (HTTP/2 framing) to the upstream', async () => {
    const pieces = [Buffer.alloc(70_000, 1), Buffer.alloc(30_000, 2)];
    const res = await h2Request({ ':authority': 'h1.test', ':path': '/v1/upload' }, pieces);
    expect(res.status).toBe(200);
    const echo = JSON.parse(res.body.toString()) as EchoResponse;
    expect(echo.bodyBytes).toBe(100_000);
    expect(echo.bodySha256).toBe(createHash('sha256').update(Buffer.concat(pieces)).digest('hex'));
  });

  it('carries a large response body intact, within HTTP/2 flow control', async () => {
    const bytes = 4 * 1024 * 1024;
    const res = await h2Request({ ':authority': 'h1.test', ':path': `/download?bytes=${bytes}` });
    expect(res.status).toBe(200);
    expect(res.body.length).toBe(bytes);
    expect(createHash('sha256').update(res.body).digest('hex')).toBe(patternSha256(bytes));
  });

  it('holds the upstream back while the HTTP/2 client does not read (flow control, backpressure)', async () => {
    const stream = client.request({ ':authority': 'flood.test', ':path': '/flood' });
    await new Promise((resolve) => stream.once('response', resolve));
    stream.pause();
    // Nothing to wait for but time: with the client still, the upstream can only fill the
    // buffers on the way (HTTP/2 windows, socket buffers), never send the whole body.
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(flooded.finished).toBe(false);
    expect(flooded.written).toBeLessThan(FLOOD_BYTES / 2);
    let received = 0;
    stream.on('data', (c: Buffer) => {
      received += c.length;
    });
    stream.resume();
    await new Promise((resolve) => stream.once('end', resolve));
    expect(received).toBe(FLOOD_BYTES);
    expect(flooded.finished).toBe(true);
  });

  it('forwards to an HTTP/2 upstream and passes its trailers to the HTTP/2 client', async () => {
    const res = await h2Request({ ':authority': 'h2.test', ':path': '/trailers' });
    expect(res.status).toBe(200);
    expect(res.body.toString()).toBe('body before trailers');
    expect(res.trailers).toMatchObject(TRAILERS);
    const seen = h2.requests.at(-1)!;
    expect(seen).toMatchObject({ httpVersion: '2.0', tokenValid: true });
  });

  it('retries once with a new token when the upstream refuses the first, over h2 both ways', async () => {
    await h2Request({ ':authority': 'h2.test', ':path': '/v1/warm' });
    const first = h2.requests.at(-1)!.token!;
    h2.revoke(first);
    const before = h2.requests.length;
    const res = await h2Request({ ':authority': 'h2.test', ':path': '/v1/again' });
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body.toString()) as H2Request).toMatchObject({ tokenValid: true });
    expect(h2.requests.slice(before).map((r) => r.tokenValid)).toEqual([false, true]);
  });

  it('answers a stream whose token cannot be had with the JSON error, on that stream only', async () => {
    const [down, up] = await Promise.all([
      h2Request({ ':authority': 'down.test', ':path': '/v1/x' }),
      h2Request({ ':authority': 'h1.test', ':path': '/v1/y' }),
    ]);
    expect(down.status).toBe(503);
    expect(JSON.parse(down.body.toString())).toMatchObject({
      error: 'token_endpoint_unreachable',
      credential: 'down',
    });
    expect(up.status).toBe(200);
  });

  it('a stream the client resets while its token is awaited is logged 499, and never forwarded', async () => {
    const before = h1.requests.length;
    const asked = nextArrival(slow.requests);
    const stream = client.request({ ':authority': 'slow.test', ':path': '/v1/slow' });
    stream.on('error', () => {});
    await asked;
    const logged = nextArrival(proxy.logs, (l) => l['route'] === 'slow' && l['path'] === '/v1/slow');
    stream.close(http2.constants.NGHTTP2_CANCEL);
    const line = await logged;
    expect(line['status']).toBe(499);
    expect(line['host']).toBe('slow.test');
    expect(h1.requests.length).toBe(before);
  });

  it(`refuses a stream with more than limits.max_headers (${MAX_HEADERS}) fields with 431`, async () => {
    const fields = (n: number) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`x-f${i}`, 'v']));
    const ok = await h2Request({ ':authority': 'h1.test', ':path': '/v1/x', ...fields(MAX_HEADERS - 1) });
    expect(ok.status).toBe(200);
    const refused = await h2Request({
      ':authority': 'h1.test',
      ':path': '/v1/x',
      ...fields(MAX_HEADERS + 1),
    });
    expect(refused.status).toBe(431);
  });

  it('resets a stream far beyond the header limits before it reaches an upstream', async () => {
    const before = h1.requests.length;
    const many = Object.fromEntries(Array.from({ length: MAX_HEADERS + 20 }, (_, i) => [`x-f${i}`, 'v']));
    const tooMany = await h2Request({ ':authority': 'h1.test', ':path': '/v1/x', ...many }).catch(
      (err: NodeJS.ErrnoException) => err.code,
    );
    const tooLarge = await h2Request({
      ':authority': 'h1.test',
      ':path': '/v1/x',
      'x-big': 'b'.repeat(HEADER_SIZE + 1024),
    }).catch((err: NodeJS.ErrnoException) => err.code);
    expect([tooMany, tooLarge]).toEqual(['ERR_HTTP2_STREAM_ERROR', 'ERR_HTTP2_STREAM_ERROR']);
    expect(h1.requests.length).toBe(before);
    // The session itself carries on.
    expect((await h2Request({ ':authority': 'h1.test', ':path': '/v1/x' })).status).toBe(200);
  });

  it('still serves HTTP/1.1 on the same port, kept alive across requests', async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const sockets = new Set<unknown>();
    try {
      for (const method of ['GET', 'POST', 'PUT']) {
        const status = await new Promise<number>((resolve, reject) => {
          const req = http.request(`${proxy.url}/v1/${method}`, {
            method,
            agent,
            headers: { host: 'h1.test' },
          });
          req.on('socket', (s) => sockets.add(s));
          req.on('response', (res) => {
            res.resume();
            res.on('end', () => resolve(res.statusCode!));
          });
          req.on('error', reject);
          req.end(method === 'GET' ? undefined : 'body');
        });
        expect(status).toBe(200);
      }
      expect(sockets.size).toBe(1);
    } finally {
      agent.destroy();
    }
  });

  it('refuses an HTTP/1.1 request line that claims HTTP/2.0, as before', async () => {
    const socket: Socket = connect(Number(new URL(proxy.url).port), '127.0.0.1');
    socket.write('GET /v1/x HTTP/2.0\r\nHost: h1.test\r\n\r\n');
    const answer = await new Promise<string>((resolve) => {
      let text = '';
      socket.on('data', (d: Buffer) => {
        text += d.toString('latin1');
      });
      socket.on('close', () => resolve(text));
      socket.on('error', () => resolve(text));
    });
    expect(answer).toMatch(/^HTTP\/1\.1 400/);
  });
});
