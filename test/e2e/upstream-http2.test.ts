// Issue 13, `upstream_protocol: http2`: the proxy speaks HTTP/2 to the upstream (h2c with prior
// knowledge over http://, h2 by ALPN over https://), with the token verified by a real node:http2
// upstream; trailers reach an HTTP/1.1 client that asked for them; the 401 retry works over h2.
import http from 'node:http';
import { Readable } from 'node:stream';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type AuthServer, startAuthServer } from '../support/auth-server.js';
import { type H2Request, type H2Upstream, startH2Upstream, TRAILERS } from '../support/h2-upstream.js';
import { startInjector, type TestInjector } from '../support/injector.js';
import { watchSecret } from '../support/leak-watch.js';
import { credentialFor } from '../support/stack.js';
import { createTestCa, type TestCa } from '../support/test-ca.js';
import { startUpstream, type Upstream } from '../support/upstream.js';

let ca: TestCa;
let auth: AuthServer;
let h2c: H2Upstream;
let h2: H2Upstream;
let h1Tls: Upstream;
let h1Trailers: http.Server;
let proxy: TestInjector;

beforeAll(async () => {
  ca = await createTestCa();
  auth = await startAuthServer();
  const verify = { issuer: auth.issuer, jwksUri: auth.jwksUri, audience: auth.audience };
  const cert = await ca.issue(['localhost', '127.0.0.1']);
  h2c = await startH2Upstream(verify);
  h2 = await startH2Upstream({ ...verify, tls: cert });
  // Speaks only HTTP/1.1 over TLS: a route that wants http2 must not quietly use it.
  h1Tls = await startUpstream({ ...verify, tls: cert });
  // An HTTP/1.1 upstream with chunked trailers (RFC 9112 §7.1.2).
  h1Trailers = http.createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain', trailer: 'x-checksum' });
    res.write('body before trailers');
    res.addTrailers(TRAILERS);
    res.end();
  });
  await new Promise<void>((resolve) => h1Trailers.listen(0, '127.0.0.1', resolve));
  const h1TrailersUrl = `http://127.0.0.1:${(h1Trailers.address() as { port: number }).port}`;
  const tls = { ca_file: ca.caFile };
  proxy = await startInjector({
    credentials: { orders: credentialFor(auth) },
    routes: [
      {
        name: 'h2c',
        match: { host: 'h2c.test' },
        upstream: h2c.url,
        credential: 'orders',
        upstream_protocol: 'http2',
      },
      {
        name: 'h2',
        match: { host: 'h2.test' },
        upstream: h2.url,
        credential: 'orders',
        upstream_protocol: 'http2',
        tls,
      },
      {
        name: 'no-h2',
        match: { host: 'no-h2.test' },
        upstream: h1Tls.url,
        credential: 'orders',
        upstream_protocol: 'http2',
        tls,
      },
      { name: 'h1-trailers', match: { host: 'h1.test' }, upstream: h1TrailersUrl, credential: 'orders' },
    ],
  });
});

afterAll(async () => {
  await proxy?.close();
  await h2c?.close();
  await h2?.close();
  await h1Tls?.close();
  await new Promise((resolve) => h1Trailers?.close(resolve));
  for (const token of auth?.issuedTokens ?? []) watchSecret(token);
  await auth?.close();
  await ca?.cleanup();
});

interface Answer {
  status: number;
  body: string;
  trailers: NodeJS.Dict<string>;
}

/** An HTTP/1.1 request through the proxy with node:http, which reports trailers. */
function call(host: string, path: string, headers: http.OutgoingHttpHeaders = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      `${proxy.url}${path}`,
      { headers: { host, ...headers }, agent: false },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          body += chunk;
        });
        res.on('end', () => resolve({ status: res.statusCode!, body, trailers: res.trailers }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end();
  });
}

describe('upstream_protocol: http2', () => {
  it('speaks h2c with prior knowledge to an http:// upstream, the token verified there', async () => {
    const res = await call('h2c.test', '/v1/orders?x=1');
    expect(res.status).toBe(200);
    const seen = JSON.parse(res.body) as H2Request;
    expect(seen).toMatchObject({
      httpVersion: '2.0',
      path: '/v1/orders?x=1',
      method: 'GET',
      tokenValid: true,
    });
    // Connection-specific fields are not allowed in HTTP/2 (RFC 9113 §8.2.2): none was sent.
    expect(seen.headers['connection']).toBeUndefined();
    expect(seen.headers[':authority']).toBe(new URL(h2c.url).host);
  });

  it('speaks h2 over TLS, negotiated by ALPN, with the route CA', async () => {
    const res = await call('h2.test', '/v1/orders');
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body)).toMatchObject({ httpVersion: '2.0', tokenValid: true });
    const post = await request(`${proxy.url}/v1/orders`, {
      method: 'POST',
      headers: { host: 'h2.test', 'content-type': 'application/json' },
      body: '{"a":1}',
    });
    expect(post.statusCode).toBe(200);
    const seen = (await post.body.json()) as H2Request;
    expect(seen).toMatchObject({ httpVersion: '2.0', method: 'POST', tokenValid: true, bodyBytes: 7 });
  });

  it('refuses an https upstream that does not agree to h2, with a 502 that says so', async () => {
    const before = h1Tls.requests.length;
    const res = await request(`${proxy.url}/v1/orders`, { headers: { host: 'no-h2.test' } });
    expect(res.statusCode).toBe(502);
    const body = (await res.body.json()) as Record<string, string>;
    expect(body['error']).toBe('upstream_unreachable');
    expect(body['detail']).toMatch(/did not agree to HTTP\/2 \(ALPN answer: http\/1\.1\)/);
    expect(h1Tls.requests.length).toBe(before);
  });

  it('multiplexes requests without a streamed body onto one session', async () => {
    const before = h2c.requests.length;
    const answers = await Promise.all(Array.from({ length: 8 }, () => call('h2c.test', '/v1/many')));
    expect(answers.map((a) => a.status)).toEqual(Array(8).fill(200));
    const sessions = new Set(h2c.requests.slice(before).map((r) => r.session));
    expect(sessions.size).toBe(1);
  });

  it('does not hold a streamed request body behind a stream that is still open', async () => {
    const held = call('h2c.test', '/held');
    await h2c.nextHeld();
    // A chunked upload: undici would queue it behind /held on the same session.
    const upload = await request(`${proxy.url}/v1/upload`, {
      method: 'POST',
      headers: { host: 'h2c.test' },
      body: Readable.from([Buffer.alloc(1000, 1), Buffer.alloc(24, 2)]),
    });
    expect(upload.statusCode).toBe(200);
    expect(((await upload.body.json()) as H2Request).bodyBytes).toBe(1024);
    h2c.release();
    expect((await held).status).toBe(200);
  });

  it('retries once with a new token when the h2 upstream refuses the first', async () => {
    await call('h2c.test', '/v1/warm');
    const first = h2c.requests.at(-1)!.token!;
    h2c.revoke(first);
    const before = h2c.requests.length;
    const res = await call('h2c.test', '/v1/retried');
    expect(res.status).toBe(200);
    const tried = h2c.requests.slice(before);
    expect(tried.map((r) => [r.path, r.httpVersion, r.tokenValid])).toEqual([
      ['/v1/retried', '2.0', false],
      ['/v1/retried', '2.0', true],
    ]);
    expect(tried[0]!.token).toBe(first);
    expect(tried[1]!.token).not.toBe(first);
  });
});

describe('response trailers', () => {
  it.each([
    ['an HTTP/2 upstream', 'h2c.test'],
    ['an HTTP/2 upstream over TLS', 'h2.test'],
    ['an HTTP/1.1 upstream (chunked)', 'h1.test'],
  ])('from %s reach an HTTP/1.1 client that sent TE: trailers', async (_what, host) => {
    const res = await call(host, '/trailers', { te: 'trailers' });
    expect(res.status).toBe(200);
    expect(res.body).toBe('body before trailers');
    expect(res.trailers).toEqual(TRAILERS);
  });

  it('are not sent to a client that did not ask for them, and the body is intact', async () => {
    const res = await call('h2c.test', '/trailers');
    expect(res.status).toBe(200);
    expect(res.body).toBe('body before trailers');
    expect(res.trailers).toEqual({});
  });

  it('are announced to an HTTP/2 upstream as taken (te: trailers), whatever the client sent', async () => {
    await call('h2c.test', '/v1/te', { te: 'gzip, trailers' });
    expect(h2c.requests.at(-1)!.headers['te']).toBe('trailers');
    await call('h2c.test', '/v1/te');
    expect(h2c.requests.at(-1)!.headers['te']).toBe('trailers');
  });
});
