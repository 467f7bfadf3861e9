// Issue 10, finding 1: a request-target with a fragment (`/a/..#`) matched the `/a/` route while
// a WHATWG-URL upstream resolved it to `/`, so the route's token reached a path outside its
// prefix. Fragments are refused now, and so are spellings an upstream may decode into a dot
// segment, a NUL or a "." (`..%3B`, `%00`, `%c0%ae`, `%252e`) unless the route sets
// `strict_path: false`. The real proxy, a real authorization server and a real verifying upstream.
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { plainRequest } from '../support/http-client.js';
import { startInjector, type TestInjector } from '../support/injector.js';
import { credentialFor, type Stack, startStack } from '../support/stack.js';

let stack: Stack;
let proxy: TestInjector;

beforeAll(async () => {
  stack = await startStack();
  const { auth, upstream } = stack;
  proxy = await startInjector({
    unmatched: 'passthrough',
    credentials: { orders: credentialFor(auth) },
    routes: [
      {
        name: 'strict',
        match: { host: 'strict.test', path_prefix: '/a/' },
        upstream: upstream.url,
        credential: 'orders',
      },
      {
        name: 'lenient',
        match: { host: 'lenient.test', path_prefix: '/a/' },
        upstream: upstream.url,
        credential: 'orders',
        strict_path: false,
      },
    ],
  });
});

afterAll(async () => {
  await proxy?.close();
  await stack?.close();
});

/** Sends raw bytes (no client library to drop a fragment) and returns the whole answer. */
function raw(bytes: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(proxy.injector.proxyAddress.port, '127.0.0.1');
    const chunks: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('close', () => resolve(Buffer.concat(chunks).toString('utf8')));
    socket.on('error', (err) =>
      chunks.length > 0 ? resolve(Buffer.concat(chunks).toString('utf8')) : reject(err),
    );
    socket.write(bytes);
  });
}

function bodyOf(reply: string): Record<string, unknown> {
  return JSON.parse(reply.slice(reply.indexOf('\r\n\r\n') + 4)) as Record<string, unknown>;
}

describe('a fragment in the request-target is refused (RFC 9112 §3.2), on every route', () => {
  it.each([
    ['strict.test', '/a/..#'],
    ['strict.test', '/a/%2e%2e#'],
    ['strict.test', '/a/x#/../../admin'],
    ['strict.test', '/a/x?q=1#frag'],
    ['lenient.test', '/a/..#'],
    ['lenient.test', '/a/%2e%2e#'],
    ['unrouted.test', '/a/..#'],
    ['strict.test', 'http://strict.test/a/..#'],
  ])('%s GET %s → 400, and no upstream sees the token', async (host, target) => {
    const before = stack.upstream.requests.length;
    const reply = await raw(`GET ${target} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`);
    expect(reply).toMatch(/^HTTP\/1\.1 400 /);
    expect(bodyOf(reply)).toMatchObject({
      error: 'bad_request',
      detail: 'request target holds a "#": a fragment is never sent (RFC 9112 §3.2)',
    });
    expect(stack.upstream.requests.length).toBe(before);
  });

  it('the same path without the fragment still reaches the upstream with the token', async () => {
    const before = stack.upstream.requests.length;
    const reply = await raw('GET /a/x HTTP/1.1\r\nHost: strict.test\r\nConnection: close\r\n\r\n');
    expect(reply).toMatch(/^HTTP\/1\.1 200 /);
    expect(stack.upstream.requests.slice(before)).toMatchObject([{ path: '/a/x', tokenValid: true }]);
  });
});

/** Spellings that reach the upstream verbatim, and what the upstream receives when allowed. */
const LOOSE: [string, string, string][] = [
  ['/a/..%3B/x', '/a/..%3B/x', 'encoded dot segment'],
  ['/a/..%3bjsessionid=1/x', '/a/..%3Bjsessionid=1/x', 'encoded dot segment'],
  ['/a/..%00', '/a/..%00', 'encoded NUL'],
  ['/a/x%00.json', '/a/x%00.json', 'encoded NUL'],
  ['/a/%c0%ae%c0%ae/x', '/a/%C0%AE%C0%AE/x', 'overlong UTF-8 encoding'],
  ['/a/%252e%252e/x', '/a/%252e%252e/x', 'encoded dot segment'],
  ['/a/%252E%252E%252Fx', '/a/%252E%252E%252Fx', 'encoded dot segment'],
];

describe('loose spellings: refused by default, verbatim with strict_path: false', () => {
  it.each(LOOSE.map(([path, , what]) => [path, what]))(
    'strict route: GET %s → 400 (%s)',
    async (path, what) => {
      const before = stack.upstream.requests.length;
      const res = await plainRequest(proxy.url, path, { headers: { host: 'strict.test' } });
      expect(res.status).toBe(400);
      expect(res.json()['error']).toBe('bad_request');
      expect(res.json()['detail']).toContain(what);
      expect(stack.upstream.requests.length).toBe(before);
    },
  );

  it.each(LOOSE)(
    'route with strict_path: false: GET %s reaches the upstream as %s',
    async (path, forwarded) => {
      const before = stack.upstream.requests.length;
      const res = await plainRequest(proxy.url, path, { headers: { host: 'lenient.test' } });
      expect(res.status).toBe(200);
      expect(stack.upstream.requests.slice(before)).toMatchObject([{ path: forwarded, tokenValid: true }]);
    },
  );

  it.each(LOOSE)('no route (passthrough): GET %s → 400, never forwarded', async (path) => {
    const before = stack.upstream.requests.length;
    const res = await plainRequest(proxy.url, `http://127.0.0.1:${stack.upstream.port}${path}`);
    expect(res.status).toBe(400);
    expect(res.json()['error']).toBe('bad_request');
    expect(stack.upstream.requests.length).toBe(before);
  });

  it.each([
    ['/a/..%2Fx', 'encoded slash'],
    ['/a/..%5cx', 'encoded slash'],
    ['/a/%zz', 'not a valid percent-encoding'],
  ])('strict_path: false still refuses %s (%s)', async (path, what) => {
    const before = stack.upstream.requests.length;
    const res = await plainRequest(proxy.url, path, { headers: { host: 'lenient.test' } });
    expect(res.status).toBe(400);
    expect(res.json()['detail']).toContain(what);
    expect(stack.upstream.requests.length).toBe(before);
  });
});
