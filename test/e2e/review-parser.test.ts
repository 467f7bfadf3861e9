// Issue 10, finding 11: parser leniency. An "HTTP/2.0" (or "HTTP/0.9") request line on this
// HTTP/1 listener and port 0 in an absolute-form target were routed and forwarded with a token;
// both get 400 now. A token endpoint answering a JSON array (or another JSON non-object) is
// reported as what it is, not as "not JSON". The real proxy and verifying upstream; the fake
// token endpoint only where a real authorization server cannot answer that way.
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type FakeTokenEndpoint, startFakeTokenEndpoint } from '../support/fake-token-endpoint.js';
import { plainRequest } from '../support/http-client.js';
import { startInjector, type TestInjector } from '../support/injector.js';
import { credentialFor, type Stack, startStack } from '../support/stack.js';

/** JSON bodies a token endpoint might answer that are not objects, and how each is described. */
const NOT_OBJECTS: [string, string][] = [
  ['[{"access_token":"t"}]', 'a JSON array'],
  ['"t"', 'a JSON string'],
  ['42', 'a JSON number'],
  ['null', 'JSON null'],
];

let stack: Stack;
/** One token endpoint per body, each behind its own credential and route (`odd-<i>.test`). */
const oddIdps: FakeTokenEndpoint[] = [];
let proxy: TestInjector;

beforeAll(async () => {
  stack = await startStack();
  const credentials: Record<string, object> = { orders: credentialFor(stack.auth) };
  const routes: object[] = [
    { name: 'orders', match: { host: 'orders.test' }, upstream: stack.upstream.url, credential: 'orders' },
  ];
  for (const [i, [body]] of NOT_OBJECTS.entries()) {
    const idp = await startFakeTokenEndpoint({
      kind: 'raw',
      status: 200,
      body,
      contentType: 'application/json',
    });
    oddIdps.push(idp);
    credentials[`odd-${i}`] = {
      token_endpoint: idp.url,
      grant_type: 'client_credentials',
      client_id: `odd-${i}`,
      client_secret: 'odd-secret-4e1f',
    };
    routes.push({
      name: `odd-${i}`,
      match: { host: `odd-${i}.test` },
      upstream: stack.upstream.url,
      credential: `odd-${i}`,
    });
  }
  proxy = await startInjector({ credentials, routes });
});

afterAll(async () => {
  await proxy?.close();
  for (const idp of oddIdps) await idp.close();
  await stack?.close();
});

/** Sends raw bytes and returns the whole answer, up to the proxy closing the connection. */
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

describe('request lines this HTTP/1 listener does not accept', () => {
  it.each(['2.0', '0.9'])('GET / HTTP/%s → 400, never forwarded', async (version) => {
    const before = stack.upstream.requests.length;
    const reply = await raw(`GET /v1/x HTTP/${version}\r\nHost: orders.test\r\nConnection: close\r\n\r\n`);
    expect(reply).toMatch(/^HTTP\/1\.1 400 /);
    expect(bodyOf(reply)).toEqual({
      error: 'bad_request',
      detail: `HTTP/${version} is not spoken on this listener; use HTTP/1.1`,
      request_id: expect.any(String),
    });
    expect(stack.upstream.requests.length).toBe(before);
  });

  it.each(['1.0', '1.1'])('HTTP/%s is served', async (version) => {
    const before = stack.upstream.requests.length;
    const reply = await raw(`GET /v1/x HTTP/${version}\r\nHost: orders.test\r\nConnection: close\r\n\r\n`);
    expect(reply).toMatch(/^HTTP\/1\.1 200 /);
    expect(stack.upstream.requests.slice(before)).toMatchObject([{ path: '/v1/x', tokenValid: true }]);
  });

  it.each(['http://orders.test:0/v1/x', 'http://orders.test:000/v1/x'])(
    'GET %s (port 0) → 400, never forwarded',
    async (target) => {
      const before = stack.upstream.requests.length;
      const res = await plainRequest(proxy.url, target, { headers: { host: 'orders.test' } });
      expect(res.status).toBe(400);
      expect(res.json()).toEqual({
        error: 'bad_request',
        detail: 'request target names port 0',
        request_id: expect.any(String),
      });
      expect(stack.upstream.requests.length).toBe(before);
    },
  );
});

describe('a token endpoint answering JSON that is not an object', () => {
  it.each(NOT_OBJECTS.map(([body, kind], i) => [body, kind, i] as const))(
    '%s: the app is told it was %s',
    async (_body, kind, i) => {
      const before = stack.upstream.requests.length;
      const res = await plainRequest(proxy.url, '/v1/x', { headers: { host: `odd-${i}.test` } });
      expect(res.status).toBe(502);
      expect(res.json()).toMatchObject({ error: 'token_response_invalid', credential: `odd-${i}` });
      // A held failure may add when the next attempt is due.
      expect(res.json()['detail']).toMatch(
        new RegExp(`^token endpoint answered HTTP 200 with ${kind}, not a JSON object(;|$)`),
      );
      expect(stack.upstream.requests.length).toBe(before);
    },
  );
});
