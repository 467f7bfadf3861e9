import { connect } from 'node:net';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BASIC_CLIENT, POST_CLIENT, SPECIAL_CLIENT } from '../support/auth-server.js';
import { plainRequest } from '../support/http-client.js';
import { startInjector, type TestInjector } from '../support/injector.js';
import { credentialFor, type Stack, startStack } from '../support/stack.js';
import type { EchoResponse } from '../support/upstream.js';

let stack: Stack;
let proxy: TestInjector;

beforeAll(async () => {
  stack = await startStack();
  const { auth, upstream } = stack;
  proxy = await startInjector({
    credentials: {
      basic: credentialFor(auth, BASIC_CLIENT),
      post: credentialFor(auth, POST_CLIENT),
      special: credentialFor(auth, SPECIAL_CLIENT, { scope: 'orders.read' }),
    },
    routes: [
      { name: 'post', match: { host: 'post.test' }, upstream: upstream.url, credential: 'post' },
      { name: 'special', match: { host: 'special.test' }, upstream: upstream.url, credential: 'special' },
      {
        name: 'stripped',
        match: { host: 'orders.test', path_prefix: '/api/', methods: ['GET'] },
        upstream: `${upstream.url}/base`,
        strip_prefix: true,
        credential: 'basic',
      },
      { name: 'orders', match: { host: '*.orders.test' }, upstream: upstream.url, credential: 'basic' },
      {
        name: 'custom-header',
        match: { host: 'custom.test' },
        upstream: upstream.url,
        credential: 'basic',
        header: 'X-Api-Token',
        prefix: 'Token ',
      },
    ],
  });
});

afterAll(async () => {
  await proxy?.close();
  await stack?.close();
});

async function viaProxy(
  host: string,
  path: string,
  init: { method?: string; headers?: Record<string, string> } = {},
) {
  const res = await request(`${proxy.url}${path}`, {
    method: (init.method ?? 'GET') as 'GET',
    headers: { host, ...init.headers },
  });
  return {
    status: res.statusCode,
    headers: res.headers,
    body: (await res.body.json()) as EchoResponse & Record<string, unknown>,
  };
}

describe('client authentication against a real authorization server', () => {
  it('client_secret_basic: Basic header, no secret in the form, and the upstream accepts the token', async () => {
    const before = stack.auth.tokenRequests.length;
    const res = await viaProxy('eu.orders.test', '/v1/orders');
    expect(res.status).toBe(200);
    expect(res.body.claims?.client_id).toBe(BASIC_CLIENT.id);
    const sent = stack.auth.tokenRequests.slice(before);
    expect(sent).toHaveLength(1);
    expect(sent[0]!.headers.authorization).toMatch(/^Basic /);
    expect(sent[0]!.form).toEqual({ grant_type: 'client_credentials', scope: 'orders.read orders.write' });
    expect(stack.upstream.requests.at(-1)!.tokenValid).toBe(true);
  });

  it('client_secret_post: id and secret in the form, no Authorization header', async () => {
    const before = stack.auth.tokenRequests.length;
    const res = await viaProxy('post.test', '/x');
    expect(res.status).toBe(200);
    expect(res.body.claims?.client_id).toBe(POST_CLIENT.id);
    const sent = stack.auth.tokenRequests.slice(before);
    expect(sent[0]!.headers.authorization).toBeUndefined();
    expect(sent[0]!.form).toMatchObject({
      grant_type: 'client_credentials',
      client_id: POST_CLIENT.id,
      client_secret: POST_CLIENT.secret,
    });
  });

  it('client_secret_basic form-urlencodes id and secret before base64 (RFC 6749 §2.3.1)', async () => {
    const res = await viaProxy('special.test', '/x');
    expect(res.status).toBe(200);
    expect(res.body.claims?.client_id).toBe(SPECIAL_CLIENT.id);
    expect(res.body.claims?.scope).toBe('orders.read');
  });
});

describe('routing and injection', () => {
  it('reverse mode: Host selects the route; strip_prefix and the upstream base path shape the path', async () => {
    const res = await viaProxy('orders.test', '/api/items?page=2');
    expect(res.status).toBe(200);
    expect(res.body.path).toBe('/base/items?page=2');
  });

  it('forward mode: an absolute-form request (HTTP_PROXY) is routed by its target host', async () => {
    const res = await plainRequest(proxy.url, 'http://eu.orders.test/v1/orders?q=1');
    const body = res.json<EchoResponse>();
    expect(res.status).toBe(200);
    expect(body.path).toBe('/v1/orders?q=1');
    expect(body.claims?.client_id).toBe(BASIC_CLIENT.id);
  });

  it('replaces any Authorization the app sent, in any letter case, and drops Proxy-Authorization', async () => {
    const res = await viaProxy('eu.orders.test', '/v1/x', {
      headers: { AUTHORIZATION: 'Bearer forged', 'proxy-authorization': 'Basic cHJveHk6c2VjcmV0' },
    });
    expect(res.status).toBe(200);
    const received = stack.upstream.requests.at(-1)!;
    const authHeaders = received.rawHeaders.filter(
      (_, i) => i % 2 === 0 && /^authorization$/i.test(received.rawHeaders[i]!),
    );
    expect(authHeaders).toHaveLength(1);
    expect(received.headers.authorization).not.toContain('forged');
    expect(received.headers['proxy-authorization']).toBeUndefined();
    expect(received.tokenValid).toBe(true);
  });

  it('removes hop-by-hop headers, including those named in Connection, and adds Via', async () => {
    const res = await plainRequest(proxy.url, '/v1/x', {
      headers: {
        host: 'eu.orders.test',
        connection: 'keep-alive, x-secret-hop',
        'x-secret-hop': 'drop-me',
        'x-kept': 'keep-me',
        te: 'trailers',
      },
    });
    expect(res.status).toBe(200);
    const received = stack.upstream.requests.at(-1)!.headers;
    expect(received['x-secret-hop']).toBeUndefined();
    expect(received.te).toBeUndefined();
    expect(received['x-kept']).toBe('keep-me');
    expect(received.via).toContain('token-injector');
  });

  it('writes the token under a configured header and prefix', async () => {
    const before = stack.upstream.requests.length;
    const tokensBefore = stack.auth.tokenRequests.length;
    const res = await viaProxy('custom.test', '/x', { headers: { 'x-api-token': 'app-value' } });
    // The verifying upstream only reads Authorization, so it rejects: the token went elsewhere.
    expect(res.status).toBe(401);
    const received = stack.upstream.requests.at(-1)!.headers;
    expect(received['x-api-token']).toMatch(/^Token ey/);
    expect(received.authorization).toBeUndefined();
    // Its 401 says invalid_token: the token was dropped, a new one fetched, and the request
    // (no body, so replayable) retried exactly once with it; the second 401 went to the app.
    const attempts = stack.upstream.requests.slice(before);
    expect(attempts).toHaveLength(2);
    expect(attempts[1]!.headers['x-api-token']).not.toBe(attempts[0]!.headers['x-api-token']);
    expect(stack.auth.tokenRequests.length - tokensBefore).toBe(1);
  });

  it('methods restrict a route: a POST to a GET-only route falls through to deny', async () => {
    const res = await viaProxy('orders.test', '/api/items', { method: 'POST' });
    expect(res.status).toBe(403);
    expect(res.body.error).toBe('route_not_found');
  });

  it('a request that matches no route gets 403 JSON naming host and path, and reaches no upstream', async () => {
    const before = stack.upstream.requests.length;
    const res = await viaProxy('unknown.test', '/secret/path?token=abc');
    expect(res.status).toBe(403);
    expect(res.body).toMatchObject({ error: 'route_not_found', host: 'unknown.test', path: '/secret/path' });
    expect(JSON.stringify(res.body)).not.toContain('token=abc');
    expect(stack.upstream.requests.length).toBe(before);
  });

  it('CONNECT is refused with 403 and an explanation when unmatched is deny', async () => {
    const reply = await rawExchange(
      proxy.injector.proxyAddress.port,
      'CONNECT eu.orders.test:443 HTTP/1.1\r\nHost: eu.orders.test:443\r\n\r\n',
    );
    expect(reply).toMatch(/^HTTP\/1\.1 403/);
    expect(reply).toContain('connect_not_allowed');
    expect(reply).toContain('plain HTTP');
  });
});

describe('passthrough mode', () => {
  let open: TestInjector;
  beforeAll(async () => {
    open = await startInjector({
      unmatched: 'passthrough',
      credentials: { basic: credentialFor(stack.auth) },
      routes: [
        { name: 'orders', match: { host: 'orders.test' }, upstream: stack.upstream.url, credential: 'basic' },
      ],
    });
  });
  afterAll(() => open.close());

  it('forwards an unmatched absolute-form request to its own target without a token', async () => {
    const target = new URL(stack.upstream.url);
    const before = stack.auth.tokenRequests.length;
    const res = await plainRequest(open.url, `${stack.upstream.url}/free?x=1`, {
      headers: { authorization: 'Bearer app-own' },
    });
    expect(res.status).toBe(401); // the verifying upstream rejects the app's own token: nothing was injected
    const received = stack.upstream.requests.at(-1)!;
    expect(received.path).toBe('/free?x=1');
    expect(received.headers.authorization).toBe('Bearer app-own');
    expect(received.headers.host).toBe(target.host);
    expect(stack.auth.tokenRequests.length).toBe(before);
  });

  it('tunnels CONNECT to the requested host:port', async () => {
    const port = new URL(stack.upstream.url).port;
    const reply = await rawExchange(
      open.injector.proxyAddress.port,
      `CONNECT 127.0.0.1:${port} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n\r\n`,
      `GET /through-tunnel HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nConnection: close\r\n\r\n`,
    );
    expect(reply).toMatch(/^HTTP\/1\.1 200 Connection Established/);
    expect(reply).toContain('HTTP/1.1 401'); // the upstream answered through the tunnel
    expect(stack.upstream.requests.at(-1)!.path).toBe('/through-tunnel');
  });

  it('refuses to loop a request that already passed through token-injector', async () => {
    // Reverse mode with our own address in Host: passthrough would send it back to us.
    const res = await plainRequest(open.url, '/', {
      headers: { host: `127.0.0.1:${open.injector.proxyAddress.port}` },
    });
    expect(res.status).toBe(508);
    expect(res.json().error).toBe('proxy_loop');
  });
});

describe('admin listener', () => {
  it('serves /healthz, /readyz and Prometheus /metrics with outcomes by credential and route', async () => {
    expect((await viaProxy('eu.orders.test', '/v1/warm')).status).toBe(200);
    const health = await request(`${proxy.adminUrl}/healthz`);
    expect(health.statusCode).toBe(200);
    await health.body.dump();
    const ready = await request(`${proxy.adminUrl}/readyz`);
    expect(ready.statusCode).toBe(200);
    expect(await ready.body.json()).toMatchObject({ status: 'ready', credentials: { basic: 'fresh' } });
    const metrics = await (await request(`${proxy.adminUrl}/metrics`)).body.text();
    expect(metrics).toMatch(
      /token_injector_token_requests_total\{credential="basic",outcome="success"\} [1-9]\d*\n/,
    );
    expect(metrics).toMatch(/token_injector_proxied_requests_total\{route="orders",status_class="2xx"\} \d+/);
    expect(metrics).toMatch(/token_injector_proxied_requests_total\{route="none",status_class="4xx"\} \d+/);
    expect(metrics).toMatch(/token_injector_token_cache_hits_total\{credential="basic"\} \d+/);
    expect(metrics).toMatch(/token_injector_token_expires_in_seconds\{credential="basic"\} \d+/);
    expect(metrics).toMatch(/token_injector_upstream_duration_seconds_count\{route="orders"\} \d+/);
    // Node's process metrics under their standard names (metrics.ts), not the product's prefix.
    expect(metrics).toMatch(/^process_cpu_seconds_total \d/m);
  });

  it('logs one line per proxied request with route, method, status and duration', () => {
    const lines = proxy.logs.filter((l) => l['event'] === 'request');
    expect(lines.length).toBeGreaterThan(5);
    expect(lines[0]).toMatchObject({ route: expect.any(String), method: 'GET', status: expect.any(Number) });
    expect(typeof lines[0]!['duration_ms']).toBe('number');
  });
});

/** Sends raw bytes (for CONNECT), optionally more after the first reply, and collects everything. */
function rawExchange(port: number, first: string, second?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let data = '';
    let sentSecond = false;
    socket.on('data', (chunk) => {
      data += chunk.toString('latin1');
      if (second && !sentSecond && data.includes('\r\n\r\n')) {
        sentSecond = true;
        socket.write(second);
      }
    });
    socket.on('end', () => resolve(data));
    socket.on('close', () => resolve(data));
    socket.on('error', reject);
    socket.write(first);
  });
}
