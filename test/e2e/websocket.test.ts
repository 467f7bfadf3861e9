// Issue 13, WebSockets: an `Upgrade: websocket` request is routed and given its token like any
// request (reverse and forward mode), the upstream's 101 is relayed and both connections are
// spliced with backpressure until either side closes or the pair stays silent for
// limits.tunnel_idle_timeout. No token: the same JSON error as any request, and no upgrade upstream. An
// upstream refusing the token gets one retry with a fresh one; any other non-101 answer is
// relayed as the HTTP response it is. The `ws` package is the app and the upstream, which checks
// every token against the real authorization server's keys.
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import http from 'node:http';
import { connect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { type AuthServer, BASIC_CLIENT, startAuthServer } from '../support/auth-server.js';
import { startInjector, type TestInjector } from '../support/injector.js';
import { tempDir, writeNewCa } from '../support/interception.js';
import { watchSecret } from '../support/leak-watch.js';
import { credentialFor } from '../support/stack.js';
import { createTestCa, type TestCa } from '../support/test-ca.js';
import { startWsUpstream, type WsUpstream } from '../support/ws-upstream.js';

const MiB = 1 << 20;

let auth: AuthServer;
let ca: TestCa;
let up: WsUpstream;
let secureUp: WsUpstream;
let proxy: TestInjector;
/** The same routes with a short limits.tunnel_idle_timeout (500 ms). */
let brief: TestInjector;

function routes(upstream: string, secure: string) {
  return [
    { name: 'chat', match: { host: 'chat.test' }, upstream, credential: 'chat' },
    { name: 'broken', match: { host: 'broken.test' }, upstream, credential: 'broken' },
    { name: 'retry', match: { host: 'retry.test' }, upstream, credential: 'retry' },
    { name: 'refused', match: { host: 'refused.test' }, upstream, credential: 'refused' },
    {
      name: 'secure',
      match: { host: 'secure.test' },
      upstream: secure,
      credential: 'chat',
      tls: { ca_file: ca.caFile },
    },
    { name: 'untrusted', match: { host: 'untrusted.test' }, upstream: secure, credential: 'chat' },
    { name: 'h2', match: { host: 'h2.test' }, upstream, credential: 'chat', upstream_protocol: 'http2' },
  ];
}

function credentials() {
  return {
    chat: credentialFor(auth),
    retry: credentialFor(auth),
    refused: credentialFor(auth),
    // The authorization server refuses this secret: no token can be had.
    broken: credentialFor(auth, { ...BASIC_CLIENT, secret: 'not-the-secret-9d1f' }),
  };
}

beforeAll(async () => {
  auth = await startAuthServer();
  ca = await createTestCa();
  const keys = { issuer: auth.issuer, jwksUri: auth.jwksUri, audience: auth.audience };
  up = await startWsUpstream(keys);
  secureUp = await startWsUpstream({ ...keys, tls: await ca.issue(['localhost']) });
  // An idle limit no test reaches: on this proxy, only the other side's close ends a pair.
  proxy = await startInjector({
    limits: { tunnel_idle_timeout: '10m' },
    credentials: credentials(),
    routes: routes(up.url, secureUp.url),
  });
  brief = await startInjector({
    limits: { tunnel_idle_timeout: '500ms' },
    credentials: credentials(),
    routes: routes(up.url, secureUp.url),
  });
});

afterAll(async () => {
  await proxy?.close();
  await brief?.close();
  await up?.close();
  await secureUp?.close();
  for (const token of auth?.issuedTokens ?? []) watchSecret(token);
  await auth?.close();
  await ca?.cleanup();
});

function portOf(p: TestInjector): number {
  return Number(new URL(p.url).port);
}

/** A `ws` client for `ws://host/path`, connected to the proxy (reverse mode: origin-form, Host). */
function reverse(p: TestInjector, host: string, path: string, protocols: string[] = []): WebSocket {
  return new WebSocket(`ws://${host}${path}`, protocols, {
    createConnection: () => connect(portOf(p), '127.0.0.1'),
  });
}

/**
 * A `ws` client using the proxy as HTTP_PROXY (forward mode): the agent rewrites the request
 * target to absolute-form, as proxy agents do.
 */
function forward(p: TestInjector, url: string): WebSocket {
  const agent = new http.Agent();
  agent.createConnection = () => connect(portOf(p), '127.0.0.1');
  const proxied = agent as unknown as { addRequest(req: http.ClientRequest, options: object): void };
  const addRequest = proxied.addRequest.bind(agent);
  proxied.addRequest = (req, options) => {
    req.path = `http://${new URL(url).host}${req.path}`;
    addRequest(req, options);
  };
  return new WebSocket(url, { agent });
}

function opened(ws: WebSocket): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    ws.once('open', () => resolve(ws));
    ws.once('unexpected-response', (_req, res) => reject(new Error(`handshake answered ${res.statusCode}`)));
    ws.once('error', reject);
  });
}

interface Refusal {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** The handshake's answer when it is not a 101. */
function refused(ws: WebSocket): Promise<Refusal> {
  return new Promise((resolve, reject) => {
    ws.once('open', () => reject(new Error('the handshake was accepted')));
    ws.once('error', reject);
    ws.once('unexpected-response', (req, res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          body: Buffer.concat(chunks).toString(),
        });
        req.destroy();
      });
    });
  });
}

function nextMessage(ws: WebSocket): Promise<Buffer> {
  return new Promise((resolve) => ws.once('message', (data) => resolve(data as Buffer)));
}

function closed(ws: WebSocket): Promise<number> {
  if (ws.readyState === WebSocket.CLOSED) return Promise.resolve(-1);
  return new Promise((resolve) => ws.once('close', (code) => resolve(code)));
}

function closedWith(ws: WebSocket): Promise<{ code: number; reason: string }> {
  return new Promise((resolve) =>
    ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })),
  );
}

function sha(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}

function accessLines(p: TestInjector, path: string): Record<string, unknown>[] {
  return p.logs.filter((l) => l['event'] === 'request' && l['path'] === path);
}

describe('WebSocket upgrades get a token and a spliced connection', () => {
  it('reverse mode: the token is injected, the 101 relayed, and 16 MiB messages cross both ways intact', async () => {
    const connection = up.nextConnection();
    const client = await opened(reverse(proxy, 'chat.test', '/room?id=7', ['chat.v2']));
    const { handshake, ws: upstreamWs } = await connection;
    expect(handshake.tokenValid).toBe(true);
    expect(handshake.path).toBe('/room?id=7');
    // The handshake's own headers reach the upstream, whose answer (subprotocol) reaches the app.
    expect(handshake.headers['sec-websocket-key']).toMatch(/^[A-Za-z0-9+/]{22}==$/);
    expect(handshake.headers['sec-websocket-version']).toBe('13');
    expect(handshake.headers['upgrade']).toBe('websocket');
    expect(handshake.headers['connection']).toMatch(/upgrade/i);
    expect(handshake.headers.via).toBe('1.1 token-injector');
    expect(client.protocol).toBe('chat.v2');

    const big = randomBytes(16 * MiB);
    const echoed = nextMessage(client);
    client.send(big);
    const back = await echoed;
    expect(back.length).toBe(big.length);
    expect(sha(back)).toBe(sha(big));
    const text = nextMessage(client);
    client.send('hello', { binary: false });
    expect((await text).toString()).toBe('hello');

    // A close handshake passes through as frames, then both connections end.
    const upstreamClosed = closedWith(upstreamWs);
    client.close(1000, 'bye');
    expect(await closed(client)).toBe(1000);
    expect(await upstreamClosed).toEqual({ code: 1000, reason: 'bye' });
    expect(accessLines(proxy, '/room')).toEqual([
      expect.objectContaining({ route: 'chat', method: 'GET', host: 'chat.test', status: 101 }),
    ]);
    const metrics = await (await request(`${proxy.adminUrl}/metrics`)).body.text();
    expect(metrics).toMatch(/token_injector_proxied_requests_total\{route="chat",status_class="1xx"\} [1-9]/);
  });
});

describe('WebSocket upgrades in forward mode and to https upstreams', () => {
  it('forward mode: an absolute-form upgrade is routed by the URL host and gets the token', async () => {
    const connection = up.nextConnection();
    const client = await opened(forward(proxy, 'ws://chat.test/forward?x=1'));
    const { handshake } = await connection;
    expect(handshake.tokenValid).toBe(true);
    expect(handshake.path).toBe('/forward?x=1');
    const echoed = nextMessage(client);
    client.send('through HTTP_PROXY');
    expect((await echoed).toString()).toBe('through HTTP_PROXY');
    client.close();
    await closed(client);
    expect(accessLines(proxy, '/forward')).toEqual([
      expect.objectContaining({ route: 'chat', host: 'chat.test', status: 101 }),
    ]);
  });

  it('wss:// inside an intercepted CONNECT tunnel (tls_intercept) is upgraded like ws://', async () => {
    const dir = tempDir();
    const interceptCa = await writeNewCa(dir.path, 'intercept');
    const own = await startInjector({
      tls_intercept: { ca_cert_file: interceptCa.certFile, ca_key_file: interceptCa.keyFile },
      credentials: credentials(),
      routes: routes(up.url, secureUp.url),
    });
    try {
      const tunnel = await new Promise<Socket>((resolve, reject) => {
        const req = http.request({
          host: '127.0.0.1',
          port: portOf(own),
          method: 'CONNECT',
          path: 'chat.test:443',
        });
        req.once('connect', (res, socket) =>
          res.statusCode === 200 ? resolve(socket) : reject(new Error(`CONNECT answered ${res.statusCode}`)),
        );
        req.once('error', reject);
        req.end();
      });
      const tls = tlsConnect({ socket: tunnel, servername: 'chat.test', ca: interceptCa.certPem });
      await once(tls, 'secureConnect');
      const connection = up.nextConnection();
      const client = await opened(new WebSocket('wss://chat.test/inside', { createConnection: () => tls }));
      const { handshake } = await connection;
      expect(handshake.tokenValid).toBe(true);
      expect(handshake.path).toBe('/inside');
      const echoed = nextMessage(client);
      client.send('through the tunnel');
      expect((await echoed).toString()).toBe('through the tunnel');
      client.close();
      await closed(client);
      expect(accessLines(own, '/inside')).toEqual([
        expect.objectContaining({ route: 'chat', host: 'chat.test', status: 101 }),
      ]);
    } finally {
      await own.close();
      dir.remove();
    }
  });

  it('an https upstream is reached with the route TLS settings; an untrusted one gets 502 and no handshake', async () => {
    const connection = secureUp.nextConnection();
    const client = await opened(reverse(proxy, 'secure.test', '/tls'));
    expect((await connection).handshake.tokenValid).toBe(true);
    const echoed = nextMessage(client);
    client.send('over TLS');
    expect((await echoed).toString()).toBe('over TLS');
    client.close();
    await closed(client);

    const before = secureUp.handshakes.length;
    const answer = await refused(reverse(proxy, 'untrusted.test', '/tls'));
    expect(answer.status).toBe(502);
    expect(JSON.parse(answer.body)).toMatchObject({ error: 'upstream_unreachable', route: 'untrusted' });
    expect(secureUp.handshakes.length).toBe(before);
  });
});

describe('an upgrade that gets no 101', () => {
  it('no token: the JSON error any request gets, before any upgrade, and the upstream sees nothing', async () => {
    const before = up.handshakes.length;
    const answer = await refused(reverse(proxy, 'broken.test', '/no-token'));
    expect(answer.status).toBe(502);
    expect(answer.headers['content-type']).toBe('application/json');
    expect(answer.headers['cache-control']).toBe('no-store');
    expect(answer.headers['upgrade']).toBeUndefined();
    expect(JSON.parse(answer.body)).toMatchObject({
      error: 'token_endpoint_rejected',
      credential: 'broken',
      route: 'broken',
    });
    // The same request without Upgrade (and with the same request ID) gets the same answer.
    const id = JSON.parse(answer.body).request_id as string;
    expect(answer.headers['x-request-id']).toBe(id);
    const plain = await request(`${proxy.url}/no-token`, {
      headers: { host: 'broken.test', 'x-request-id': id },
    });
    expect(plain.statusCode).toBe(answer.status);
    expect(await plain.body.json()).toEqual(JSON.parse(answer.body));
    expect(up.handshakes.length).toBe(before);
    expect(accessLines(proxy, '/no-token')[0]).toMatchObject({ route: 'broken', status: 502 });
  });

  it('an upgrade on a route that speaks HTTP/2 upstream gets 501, and the upstream sees nothing', async () => {
    const before = up.handshakes.length;
    const answer = await refused(reverse(proxy, 'h2.test', '/h2'));
    expect(answer.status).toBe(501);
    expect(JSON.parse(answer.body)).toMatchObject({ error: 'upgrade_not_supported', route: 'h2' });
    expect(up.handshakes.length).toBe(before);
  });

  it('an upstream refusing the token (401 invalid_token) gets one retry with a fresh token, then 101', async () => {
    let refusedOnce = false;
    up.answer = (h) => {
      if (h.path !== '/retry' || refusedOnce) return undefined;
      refusedOnce = true;
      return { status: 401, headers: { 'www-authenticate': 'Bearer error="invalid_token"' } };
    };
    try {
      const tokenRequests = auth.tokenRequests.length;
      const connection = up.nextConnection();
      const client = await opened(reverse(proxy, 'retry.test', '/retry'));
      const { handshake } = await connection;
      const tried = up.handshakes.filter((h) => h.path === '/retry');
      expect(tried).toHaveLength(2);
      expect(tried[1]).toBe(handshake);
      expect(tried[1]!.tokenValid).toBe(true);
      expect(tried[1]!.token).not.toBe(tried[0]!.token);
      expect(auth.tokenRequests.length - tokenRequests).toBe(2);
      const echoed = nextMessage(client);
      client.send('after retry');
      expect((await echoed).toString()).toBe('after retry');
      client.close();
      await closed(client);
      expect(accessLines(proxy, '/retry')).toEqual([
        expect.objectContaining({ route: 'retry', status: 101 }),
      ]);
    } finally {
      up.answer = () => undefined;
    }
  });

  it('a second refusal is the answer: the app gets the upstream 401 after exactly one retry', async () => {
    up.answer = (h) =>
      h.path === '/always-401'
        ? { status: 401, headers: { 'www-authenticate': 'Bearer error="invalid_token"' }, body: 'go away' }
        : undefined;
    try {
      const answer = await refused(reverse(proxy, 'refused.test', '/always-401'));
      expect(answer.status).toBe(401);
      expect(answer.headers['www-authenticate']).toBe('Bearer error="invalid_token"');
      expect(answer.body).toBe('go away');
      expect(up.handshakes.filter((h) => h.path === '/always-401')).toHaveLength(2);
    } finally {
      up.answer = () => undefined;
    }
  });

  it('any other upstream answer (404) is relayed with its headers and body', async () => {
    up.answer = (h) =>
      h.path === '/missing'
        ? {
            status: 404,
            headers: { 'content-type': 'application/json', 'x-upstream': 'yes' },
            body: '{"nope":true}',
          }
        : undefined;
    try {
      const answer = await refused(reverse(proxy, 'chat.test', '/missing'));
      expect(answer.status).toBe(404);
      expect(answer.headers['x-upstream']).toBe('yes');
      expect(answer.headers['content-type']).toBe('application/json');
      expect(answer.body).toBe('{"nope":true}');
      expect(up.handshakes.filter((h) => h.path === '/missing')).toHaveLength(1);
      expect(accessLines(proxy, '/missing')[0]).toMatchObject({ route: 'chat', status: 404 });
    } finally {
      up.answer = () => undefined;
    }
  });

  it('a large non-101 answer streams to the app with backpressure, whole', async () => {
    const body = randomBytes(6 * MiB).toString('base64'); // 8 MiB of text
    up.answer = (h) => (h.path === '/large-refusal' ? { status: 403, body } : undefined);
    try {
      const answer = await refused(reverse(proxy, 'chat.test', '/large-refusal'));
      expect(answer.status).toBe(403);
      expect(answer.body.length).toBe(body.length);
      expect(sha(Buffer.from(answer.body))).toBe(sha(Buffer.from(body)));
    } finally {
      up.answer = () => undefined;
    }
  });

  it('an upgrade no route matches is refused with the JSON 403 of any unmatched request', async () => {
    const before = up.handshakes.length;
    const answer = await refused(reverse(proxy, 'nowhere.test', '/x'));
    expect(answer.status).toBe(403);
    expect(JSON.parse(answer.body)).toMatchObject({
      error: 'route_not_found',
      host: 'nowhere.test',
      path: '/x',
    });
    expect(up.handshakes.length).toBe(before);
  });

  it('unmatched: passthrough forwards an unrouted upgrade without a token, and refuses one that would loop', async () => {
    const open = await startWsUpstream({
      issuer: auth.issuer,
      jwksUri: auth.jwksUri,
      audience: auth.audience,
      requireToken: false,
    });
    const own = await startInjector({
      unmatched: 'passthrough',
      credentials: credentials(),
      routes: routes(up.url, secureUp.url),
    });
    try {
      const target = new URL(open.url);
      const connection = open.nextConnection();
      const client = await opened(forward(own, `ws://${target.host}/anywhere`));
      const { handshake } = await connection;
      expect(handshake.token).toBeUndefined();
      expect(handshake.headers.via).toBe('1.1 token-injector');
      const echoed = nextMessage(client);
      client.send('no token here');
      expect((await echoed).toString()).toBe('no token here');
      client.close();
      await closed(client);
      expect(accessLines(own, '/anywhere')).toEqual([
        expect.objectContaining({ route: 'none', status: 101 }),
      ]);

      // Reverse mode whose Host is the proxy itself would come back for ever.
      const looped = await refused(reverse(own, `127.0.0.1:${portOf(own)}`, '/loop'));
      expect(looped.status).toBe(508);
      expect(JSON.parse(looped.body)).toMatchObject({ error: 'proxy_loop' });
    } finally {
      await own.close();
      await open.close();
    }
  });

  it('an upgrade request with a body is refused (400) rather than its body taken for frames', async () => {
    const before = up.handshakes.length;
    const socket = connect(portOf(proxy), '127.0.0.1');
    socket.end(
      'GET /body HTTP/1.1\r\nHost: chat.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n' +
        `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n` +
        'Content-Length: 5\r\n\r\nhello',
    );
    const text = await readAll(socket);
    expect(text).toMatch(/^HTTP\/1\.1 400 /);
    expect(text).toContain('"error":"bad_request"');
    expect(up.handshakes.length).toBe(before);
  });
});

describe('the spliced connection ends with either side', () => {
  it('an app that drops its connection closes the upstream one', async () => {
    const connection = up.nextConnection();
    const client = await opened(reverse(proxy, 'chat.test', '/drop-client'));
    const { ws, socket } = await connection;
    const upstreamClosed = closedWith(ws);
    const socketClosed = once(socket, 'close');
    client.terminate(); // a TCP close without a close frame
    expect((await upstreamClosed).code).toBe(1006);
    await socketClosed;
  });

  it('an upstream that drops its connection closes the app one', async () => {
    const connection = up.nextConnection();
    const client = await opened(reverse(proxy, 'chat.test', '/drop-upstream'));
    const { ws } = await connection;
    const clientClosed = closed(client);
    ws.terminate();
    expect(await clientClosed).toBe(1006);
  });

  it('a pair silent for limits.tunnel_idle_timeout is closed on both sides', async () => {
    const connection = up.nextConnection();
    const client = await opened(reverse(brief, 'chat.test', '/silent'));
    const { ws } = await connection;
    const [clientCode, upstream] = await Promise.all([closed(client), closedWith(ws)]);
    expect(clientCode).toBe(1006);
    expect(upstream.code).toBe(1006);
  });

  it('backpressure: an app that does not read stops the proxy reading the upstream, until the idle limit ends the pair', async () => {
    // Without backpressure the proxy would take everything the upstream sends into its memory,
    // and the upstream would keep writing; with it, the upstream's writes stall once the socket
    // buffers on the way are full, the pair falls silent, and the idle limit closes it.
    const cap = 256 * MiB;
    const connection = up.nextConnection();
    const client = await opened(reverse(brief, 'chat.test', '/flood'));
    client.pause();
    const { ws, socket } = await connection;
    const chunk = Buffer.alloc(MiB, 7);
    let sent = 0;
    const outcome = await new Promise<'stalled' | 'unbounded'>((resolve) => {
      ws.once('close', () => resolve('stalled'));
      const pump = () => {
        while (socket.writableLength < 4 * MiB) {
          if (sent >= cap) {
            resolve('unbounded');
            return;
          }
          ws.send(chunk, { binary: true });
          sent += chunk.length;
        }
      };
      socket.on('drain', pump);
      pump();
    });
    expect(outcome).toBe('stalled');
    expect(sent).toBeLessThan(cap);
    client.terminate();
  });

  it('shutdown closes open WebSocket connections', async () => {
    const own = await startInjector({ credentials: credentials(), routes: routes(up.url, secureUp.url) });
    const connection = up.nextConnection();
    const client = await opened(reverse(own, 'chat.test', '/shutdown'));
    const { ws } = await connection;
    const clientClosed = closed(client);
    const upstreamClosed = closedWith(ws);
    await own.close();
    await clientClosed;
    await upstreamClosed;
  });
});

describe('other upgrade offers', () => {
  it('an h2c offer pipelined behind a request is served after it, as a plain request', async () => {
    const socket = connect(portOf(proxy), '127.0.0.1');
    // Written in one piece, and not half-closed: the second request closes the connection.
    socket.write(
      'GET /first HTTP/1.1\r\nHost: chat.test\r\n\r\n' +
        'GET /second HTTP/1.1\r\nHost: chat.test\r\nConnection: Upgrade, HTTP2-Settings, close\r\n' +
        'Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n',
    );
    const text = await readAll(socket);
    // The upstream answers plain requests 426: both were forwarded, in order.
    expect(text.match(/HTTP\/1\.1 426 /g)).toHaveLength(2);
    expect(accessLines(proxy, '/first')[0]).toMatchObject({ status: 426 });
    expect(accessLines(proxy, '/second')[0]).toMatchObject({ status: 426 });
  });
});

function readAll(socket: Socket): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('end', () => resolve(Buffer.concat(chunks).toString()));
    socket.on('error', reject);
  });
}

describe('half-closed connections', () => {
  it('an app that keeps its half open after the upstream has gone is closed, not kept until the idle limit', async () => {
    const connection = up.nextConnection();
    // allowHalfOpen: this app does not close its side when the proxy's FIN arrives.
    const raw = connect({ port: portOf(proxy), host: '127.0.0.1', allowHalfOpen: true });
    raw.on('error', () => {});
    raw.write(
      'GET /half HTTP/1.1\r\nHost: chat.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n' +
        `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
    );
    const [head] = (await once(raw, 'data')) as [Buffer];
    expect(head.toString()).toMatch(/^HTTP\/1\.1 101 /);
    const { socket } = await connection;
    const ended = once(raw, 'end');
    socket.destroy();
    await ended;
    // The proxy has let go of its side: what the app sends now is answered with a reset, which
    // its next write reports. A proxy keeping the half-open socket would take every write.
    const closedRaw = new Promise((resolve) => raw.once('close', resolve));
    const frame = Buffer.from([0x89, 0x80, 0, 0, 0, 0]); // a masked, empty ping
    const send = () => raw.write(frame, (err) => err || setImmediate(send));
    send();
    await closedRaw;
  });
});
