// Issue 10, finding 4: interim (1xx) responses and `Expect: 100-continue`, through the real proxy.
// Upstream side (RFC 9110 §15.2): an unsolicited `100 Continue`, cut across TCP writes or in a run
// of 1xx heads, no longer turns the request into a 502, 103 Early Hints reach HTTP/1.1 apps, and
// the pooled connection stays usable. App side (RFC 9110 §10.1.1): `100 Continue` is sent only
// once the request is routed and has its token; a refusal comes without it and closes the
// connection; any other expectation gets 417.
import { createHash } from 'node:crypto';
import http from 'node:http';
import { type AddressInfo, connect, type Socket } from 'node:net';
import { Readable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type FakeTokenEndpoint, startFakeTokenEndpoint } from '../support/fake-token-endpoint.js';
import { startInjector, type TestInjector } from '../support/injector.js';
import { watchSecret } from '../support/leak-watch.js';
import { turn, writePieces } from '../support/socket-pieces.js';
import { startTokenGate, type TokenGate } from '../support/token-gate.js';

const HOST = 'orders.test';
const CONTINUE = 'HTTP/1.1 100 Continue\r\n\r\n';
const PROCESSING = 'HTTP/1.1 102 Processing\r\n\r\n';
const LINK = '</style.css>; rel=preload; as=style';
const HINTS = `HTTP/1.1 103 Early Hints\r\nLink: ${LINK}\r\n\r\n`;

/** What the upstream does for one request, besides answering `status` with `body`. */
interface Script {
  /** Raw pieces written before the request body is read, each in its own write. */
  early?: string[];
  /** Raw pieces written after the request body was read, before the final response. */
  late?: string[];
  /** The final response body (default `ok <path>`); chunked unless `contentLength`. */
  body?: string;
  contentLength?: boolean;
  /** The body in its own write, after the head went out. */
  bodyApart?: boolean;
}

interface UpstreamRequest {
  method: string;
  path: string;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
  /** Which connection (1, 2, …) carried it. */
  connection: number;
}

interface InterimUpstream {
  url: string;
  requests: UpstreamRequest[];
  readonly connections: number;
  close(): Promise<void>;
}

/**
 * A real node:http upstream that sends interim heads no one asked for: the raw `early` pieces
 * before it reads the body (as servers that answer 100 at once do), the `late` ones after, then a
 * normal keep-alive response.
 */
async function startInterimUpstream(script: (path: string) => Script): Promise<InterimUpstream> {
  const requests: UpstreamRequest[] = [];
  const ids = new WeakMap<Socket, number>();
  let connections = 0;
  const server = http.createServer(async (req, res) => {
    const plan = script(req.url ?? '');
    await writePieces(req.socket, plan.early ?? []);
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    requests.push({
      method: req.method ?? '',
      path: req.url ?? '',
      headers: req.headers,
      body: Buffer.concat(chunks),
      connection: ids.get(req.socket) ?? 0,
    });
    await writePieces(req.socket, plan.late ?? []);
    const body = plan.body ?? `ok ${req.url}`;
    res.writeHead(200, plan.contentLength ? { 'content-length': Buffer.byteLength(body) } : {});
    if (plan.bodyApart) {
      res.flushHeaders();
      await turn();
    }
    res.end(body);
  });
  server.on('connection', (socket: Socket) => ids.set(socket, ++connections));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    requests,
    get connections() {
      return connections;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

let fake: FakeTokenEndpoint;
let up: InterimUpstream | undefined;
let gate: TokenGate | undefined;
let proxy: TestInjector | undefined;

beforeEach(async () => {
  fake = await startFakeTokenEndpoint();
});
afterEach(async () => {
  await proxy?.close();
  proxy = undefined;
  for (const token of fake.issuedTokens) watchSecret(token);
  await fake.close();
  await up?.close();
  up = undefined;
  await gate?.close();
  gate = undefined;
});

async function start(script: (path: string) => Script, top: object = {}, tokenEndpoint = fake.url) {
  up = await startInterimUpstream(script);
  proxy = await startInjector({
    credentials: {
      orders: {
        token_endpoint: tokenEndpoint,
        grant_type: 'client_credentials',
        client_id: 'interim-client',
        client_secret: 'interim-client-secret-5c1f0a',
      },
    },
    routes: [{ name: 'orders', match: { host: HOST }, upstream: up.url, credential: 'orders' }],
    ...top,
  });
  return proxy;
}

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
  /** The 1xx the app received, in order. */
  interim: { status: number; headers: http.IncomingHttpHeaders }[];
}

/** A request as an HTTP/1.1 app sends it through node:http, recording the interim answers. */
function call(
  path: string,
  init: {
    method?: string;
    body?: string | Readable;
    headers?: http.OutgoingHttpHeaders;
    agent?: http.Agent;
  } = {},
): Promise<Answer> {
  const { port } = proxy!.injector.proxyAddress;
  return new Promise((resolve, reject) => {
    const interim: Answer['interim'] = [];
    const req = http.request(
      {
        host: '127.0.0.1',
        port,
        path,
        method: init.method ?? 'GET',
        headers: { host: HOST, ...init.headers },
        agent: init.agent ?? false,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: Buffer.concat(chunks).toString(),
            interim,
          }),
        );
        res.on('error', reject);
      },
    );
    req.on('information', (info) => interim.push({ status: info.statusCode, headers: info.headers }));
    req.on('error', reject);
    if (init.body instanceof Readable) init.body.pipe(req);
    else req.end(init.body);
  });
}

/** A raw client connection to the proxy: exact bytes out, exact bytes in. */
class RawClient {
  readonly socket: Socket;
  #received = '';
  #ended = false;
  #wake: (() => void) | undefined;

  constructor(port: number) {
    this.socket = connect(port, '127.0.0.1');
    this.socket.setEncoding('latin1');
    this.socket.on('data', (text: string) => {
      this.#received += text;
      this.#wake?.();
    });
    this.socket.on('close', () => {
      this.#ended = true;
      this.#wake?.();
    });
  }

  /** Everything received so far. */
  get received(): string {
    return this.#received;
  }

  /** Resolves once the received bytes satisfy `done`; rejects if the connection closes first. */
  async until(done: (received: string) => boolean): Promise<string> {
    while (!done(this.#received)) {
      if (this.#ended) throw new Error(`connection closed; received ${JSON.stringify(this.#received)}`);
      await new Promise<void>((resolve) => {
        this.#wake = resolve;
      });
    }
    return this.#received;
  }

  /** Resolves once the proxy has closed the connection. */
  async closed(): Promise<string> {
    while (!this.#ended) {
      await new Promise<void>((resolve) => {
        this.#wake = resolve;
      });
    }
    return this.#received;
  }
}

/** Whether `text` holds a whole response with a Content-Length body after `from`. */
function wholeResponse(text: string, from = 0): boolean {
  const end = text.indexOf('\r\n\r\n', from);
  if (end === -1) return false;
  const length = /\r\ncontent-length: (\d+)/i.exec(text.slice(from, end));
  return length !== null && text.length >= end + 4 + Number(length[1]);
}

describe('upstream interim responses (RFC 9110 §15.2)', () => {
  it('an unsolicited 100 Continue before the response: the app gets the response, not a 502', async () => {
    await start(() => ({ late: [CONTINUE], body: 'hello' }));
    const res = await call('/v1/orders');
    expect(res.status).toBe(200);
    expect(res.body).toBe('hello');
    expect(res.interim).toEqual([]); // the upstream's 100 answered nothing the app asked
    expect(up!.requests[0]!.headers.authorization).toBe(`Bearer ${fake.issuedTokens[0]}`);
  });

  it('a 100 cut across TCP writes, in a run of 1xx heads: skipped; 103 Early Hints relayed', async () => {
    await start(() => ({
      late: [
        'HTTP/1.1 1',
        '00 Cont',
        'inue\r\n\r',
        `\n${PROCESSING}`,
        CONTINUE.slice(0, 20),
        `${CONTINUE.slice(20)}${HINTS}HTTP/1.1 100 Continue\r\n`,
        '\r\n',
      ],
      body: 'after the interim heads',
    }));
    const res = await call('/v1/orders');
    expect(res.status).toBe(200);
    expect(res.body).toBe('after the interim heads');
    // Only the hints reach the app: 100 and 102 were the upstream's business.
    expect(res.interim).toEqual([{ status: 103, headers: { link: LINK } }]);
  });

  it('no 103 for an HTTP/1.0 app, which cannot take a 1xx', async () => {
    await start(() => ({ late: [HINTS, CONTINUE], body: 'for an old client', contentLength: true }));
    const app = new RawClient(proxy!.injector.proxyAddress.port);
    app.socket.write(`GET /v1/orders HTTP/1.0\r\nHost: ${HOST}\r\n\r\n`);
    const reply = await app.closed();
    expect(reply).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
    expect(reply).not.toContain(' 103 ');
    expect(reply.endsWith('\r\n\r\nfor an old client')).toBe(true);
  });

  it('a 100 that arrives while the body is still uploading (larger than the replay buffer)', async () => {
    await start(() => ({ early: [CONTINUE], late: [CONTINUE] }));
    const chunk = Buffer.alloc(64 * 1024, 0x61);
    const chunks = 32; // 2 MiB, chunked: streamed, never buffered for a replay
    const res = await call('/v1/upload', {
      method: 'POST',
      body: Readable.from(
        (function* () {
          for (let i = 0; i < chunks; i++) yield chunk;
        })(),
      ),
    });
    expect(res.status).toBe(200);
    const received = up!.requests[0]!;
    expect(received.body.length).toBe(chunk.length * chunks);
    expect(createHash('sha256').update(received.body).digest('hex')).toBe(
      createHash('sha256')
        .update(Buffer.concat(Array(chunks).fill(chunk)))
        .digest('hex'),
    );
  });

  it('the pooled connection carries the next requests: bodies none, sized and chunked, both ways', async () => {
    // Each response body starts like a 100 head, in its own TCP write for the sized ones: only a
    // filter that stops at the final status line leaves it alone.
    await start((path) => ({
      late: path.endsWith('/3') ? [] : [CONTINUE, PROCESSING],
      body: `${CONTINUE}${path}`,
      contentLength: path.endsWith('/2') || path.endsWith('/5'),
      bodyApart: true,
    }));
    const app = new http.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const bodies: (string | undefined)[] = [undefined, 'sized body', 'chunked body', undefined, 'x', 'y'];
      for (const [i, body] of bodies.entries()) {
        const res = await call(`/v1/orders/${i}`, {
          method: body === undefined ? 'GET' : 'POST',
          agent: app,
          ...(body === undefined
            ? {}
            : i % 2 === 0
              ? { body: Readable.from([body]), headers: { 'transfer-encoding': 'chunked' } }
              : { body }),
        });
        expect(res.status).toBe(200);
        expect(res.body).toBe(`${CONTINUE}/v1/orders/${i}`);
        expect(up!.requests[i]!.body.toString()).toBe(body ?? '');
      }
      // One upstream connection for all six: none was closed over a 100.
      expect(up!.requests.map((r) => r.connection)).toEqual([1, 1, 1, 1, 1, 1]);
    } finally {
      app.destroy();
    }
  });

  it('passthrough traffic gets the same tolerance', async () => {
    await start(() => ({ late: [CONTINUE], body: 'passed through' }), { unmatched: 'passthrough' });
    const res = await new Promise<Answer>((resolve, reject) => {
      const req = http.request(
        {
          host: '127.0.0.1',
          port: proxy!.injector.proxyAddress.port,
          path: `${up!.url}/free`,
          agent: false,
        },
        (r) => {
          const chunks: Buffer[] = [];
          r.on('data', (c: Buffer) => chunks.push(c));
          r.on('end', () =>
            resolve({
              status: r.statusCode ?? 0,
              headers: r.headers,
              body: Buffer.concat(chunks).toString(),
              interim: [],
            }),
          );
        },
      );
      req.on('error', reject);
      req.end();
    });
    expect(res.status).toBe(200);
    expect(res.body).toBe('passed through');
    expect(up!.requests[0]!.headers.authorization).toBeUndefined();
  });
});

describe('Expect from the app (RFC 9110 §10.1.1)', () => {
  const head = (path: string, extra = '') =>
    `POST ${path} HTTP/1.1\r\nHost: ${HOST}\r\nContent-Length: 5\r\nExpect: 100-continue\r\n${extra}\r\n`;

  it('100 Continue only once the request has its token; then the body flows and the connection stays', async () => {
    gate = await startTokenGate(fake.url);
    await start(() => ({ contentLength: true }), {}, gate.url);
    const app = new RawClient(proxy!.injector.proxyAddress.port);
    const held = gate.holdNext();
    app.socket.write(head('/v1/orders/1'));
    const token = await held;
    // The token request took the proxy several event-loop turns to send: a 100 sent on arrival
    // (Node's default) would be here by now.
    expect(app.received).toBe('');
    token.respond(200, { access_token: 'gate-token-2f8a61', token_type: 'Bearer', expires_in: 300 });
    watchSecret('gate-token-2f8a61');
    await app.until((r) => r.startsWith(CONTINUE));
    app.socket.write('hello');
    await app.until((r) => wholeResponse(r, CONTINUE.length));
    expect(app.received.slice(CONTINUE.length)).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
    expect(app.received).toContain('\r\n\r\nok /v1/orders/1');
    expect(up!.requests[0]!.body.toString()).toBe('hello');
    expect(up!.requests[0]!.headers.expect).toBeUndefined();
    expect(up!.requests[0]!.headers.authorization).toBe('Bearer gate-token-2f8a61');
    // Same connection, next request: the body was read, so it stayed usable.
    const before = app.received.length;
    app.socket.write(head('/v1/orders/2'));
    await app.until((r) => r.slice(before).startsWith(CONTINUE));
    app.socket.write('again');
    await app.until((r) => wholeResponse(r, before + CONTINUE.length));
    expect(app.received.slice(before + CONTINUE.length)).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
    expect(up!.requests[1]!.body.toString()).toBe('again');
    app.socket.destroy();
  });

  it('no token: the JSON error without 100 Continue, and the connection closes (the body never came)', async () => {
    fake.setBehavior({ kind: 'json', status: 401, body: { error: 'invalid_client' } });
    await start(() => ({}));
    const app = new RawClient(proxy!.injector.proxyAddress.port);
    app.socket.write(head('/v1/orders'));
    const reply = await app.closed();
    expect(reply).toMatch(/^HTTP\/1\.1 502 /);
    expect(reply).not.toContain('100 Continue');
    expect(reply.toLowerCase()).toContain('\r\nconnection: close\r\n');
    expect(JSON.parse(reply.slice(reply.indexOf('\r\n\r\n') + 4))).toMatchObject({
      error: 'token_endpoint_rejected',
      route: 'orders',
    });
    expect(up!.requests).toEqual([]);
  });

  it('no route: 403 without 100 Continue, and the connection closes', async () => {
    await start(() => ({}));
    const app = new RawClient(proxy!.injector.proxyAddress.port);
    app.socket.write(head('/v1/orders').replace(`Host: ${HOST}`, 'Host: elsewhere.test'));
    const reply = await app.closed();
    expect(reply).toMatch(/^HTTP\/1\.1 403 /);
    expect(reply).not.toContain('100 Continue');
    expect(reply).toContain('"error":"route_not_found"');
    expect(fake.requests).toEqual([]);
  });

  it('any other expectation: 417 expectation_failed as JSON, nothing forwarded', async () => {
    await start(() => ({}));
    const res = await call('/v1/orders', {
      method: 'POST',
      body: 'hello',
      headers: { expect: 'something-else' },
    });
    expect(res.status).toBe(417);
    expect(JSON.parse(res.body)).toMatchObject({ error: 'expectation_failed' });
    expect(fake.requests).toEqual([]);
    expect(up!.requests).toEqual([]);
  });

  it('an HTTP/1.0 request’s Expect is ignored (RFC 9110 §10.1.1): forwarded, no 100', async () => {
    await start(() => ({ contentLength: true }));
    const app = new RawClient(proxy!.injector.proxyAddress.port);
    app.socket.write(
      `POST /v1/orders HTTP/1.0\r\nHost: ${HOST}\r\nContent-Length: 5\r\nExpect: something-else\r\n\r\nhello`,
    );
    const reply = await app.closed();
    expect(reply).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
    expect(up!.requests[0]!.body.toString()).toBe('hello');
    expect(up!.requests[0]!.headers.expect).toBeUndefined();
  });
});
