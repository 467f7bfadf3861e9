// Hardening: no spelling of a path borrows another route's token, request smuggling never reaches an
// upstream, unmatched requests and CONNECT are refused in both proxy modes, the admin listener is
// separate, and configurations that would expose tokens are refused unless explicitly allowed.
import { readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { parseConfigText } from '../../src/config/load.js';
import { runCli, tempDir, writeConfig } from '../support/cli-process.js';
import { type FakeTokenEndpoint, startFakeTokenEndpoint } from '../support/fake-token-endpoint.js';
import { type FaultUpstream, startFaultUpstream } from '../support/fault-upstream.js';
import { plainRequest } from '../support/http-client.js';
import { startInjector, type TestInjector } from '../support/injector.js';
import { watchSecret } from '../support/leak-watch.js';

const HOST = 'api.test';
const PUBLIC_TOKEN = 'public-token-5d1c0a9e';
const ADMIN_TOKEN = 'admin-token-b7e24f13';
const SECRET = 'hardening-secret-93af1c';

/** Each route's credential has its own token endpoint, handing out one recognisable token. */
let publicIdp: FakeTokenEndpoint;
let adminIdp: FakeTokenEndpoint;
let publicUp: FaultUpstream;
let adminUp: FaultUpstream;
let proxy: TestInjector;

beforeAll(async () => {
  watchSecret(PUBLIC_TOKEN);
  watchSecret(ADMIN_TOKEN);
  publicIdp = await startFakeTokenEndpoint({ kind: 'token', accessToken: PUBLIC_TOKEN });
  adminIdp = await startFakeTokenEndpoint({ kind: 'token', accessToken: ADMIN_TOKEN });
  publicUp = await startFaultUpstream();
  adminUp = await startFaultUpstream();
  const credential = (idp: FakeTokenEndpoint, id: string) => ({
    token_endpoint: idp.url,
    grant_type: 'client_credentials',
    client_id: id,
    client_secret: SECRET,
  });
  proxy = await startInjector({
    limits: { max_header_size: '2KiB' },
    credentials: {
      public: credential(publicIdp, 'public-client'),
      admin: credential(adminIdp, 'admin-client'),
    },
    routes: [
      {
        name: 'public',
        match: { host: HOST, path_prefix: '/public/' },
        upstream: publicUp.url,
        credential: 'public',
      },
      {
        name: 'admin',
        match: { host: HOST, path_prefix: '/admin/' },
        upstream: adminUp.url,
        credential: 'admin',
      },
    ],
  });
});

afterAll(async () => {
  await proxy?.close();
  for (const s of [publicIdp, adminIdp, publicUp, adminUp]) await s?.close();
});

interface Seen {
  public: number;
  admin: number;
  tokens: number;
}

function counts(): Seen {
  return {
    public: publicUp.requests.length,
    admin: adminUp.requests.length,
    tokens: publicIdp.requests.length + adminIdp.requests.length,
  };
}

/** Sends raw bytes and collects everything until the proxy closes the connection (or 3 s pass). */
function raw(bytes: string, port = proxy.injector.proxyAddress.port): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let data = '';
    socket.setTimeout(3_000, () => socket.destroy());
    socket.on('data', (chunk) => {
      data += chunk.toString('latin1');
    });
    socket.on('close', () => resolve(data));
    socket.on('error', (err) => (data ? resolve(data) : reject(err)));
    socket.write(bytes);
  });
}

/** The proxy still answers a normal request on each route with the right token. */
async function expectHealthy(): Promise<void> {
  const health = await request(`${proxy.adminUrl}/healthz`);
  expect(health.statusCode).toBe(200);
  await health.body.dump();
  const before = counts();
  for (const [path, up, token] of [
    ['/public/ok', publicUp, PUBLIC_TOKEN],
    ['/admin/ok', adminUp, ADMIN_TOKEN],
  ] as const) {
    const res = await plainRequest(proxy.url, path, { headers: { host: HOST } });
    expect(res.status).toBe(200);
    expect(up.requests.at(-1)).toMatchObject({ path, authorization: `Bearer ${token}` });
  }
  expect(counts()).toMatchObject({ public: before.public + 1, admin: before.admin + 1 });
}

describe('path normalisation cannot borrow another route’s token', () => {
  type Expect = { route: 'public' | 'admin'; path: string } | { status: 400 | 403; path?: string };
  const cases: [string, Expect][] = [
    ['/public/../admin/x', { route: 'admin', path: '/admin/x' }],
    ['/public/%2e%2e/admin/x', { route: 'admin', path: '/admin/x' }],
    ['/public/%2E%2e/admin', { status: 403, path: '/admin' }],
    ['/public/%2E%2e/admin/', { route: 'admin', path: '/admin/' }],
    ['/public/.%2e/admin/x', { route: 'admin', path: '/admin/x' }],
    ['/public/%2e./admin/x?q=1', { route: 'admin', path: '/admin/x?q=1' }],
    ['/public//../admin/x', { route: 'admin', path: '/admin/x' }],
    ['/public\\..\\admin\\x', { route: 'admin', path: '/admin/x' }],
    ['/public/../../../admin/x', { route: 'admin', path: '/admin/x' }],
    ['/admin/../public/x', { route: 'public', path: '/public/x' }],
    ['/public/./a/./b/../c', { route: 'public', path: '/public/a/c' }],
    // A double-decoding upstream would see ".." here: refused (strict_path, on by default).
    ['/public/%252e%252e/admin/x', { status: 400 }],
    ['/public/%7Euser/%41%62?next=../admin/x', { route: 'public', path: '/public/~user/Ab?next=../admin/x' }],
    ['/public/a%3ab', { route: 'public', path: '/public/a%3Ab' }],
    ['/public/..%2Fadmin/x', { status: 400 }],
    ['/public/..%2fadmin/x', { status: 400 }],
    ['/public/%2e%2e%2Fadmin/x', { status: 400 }],
    ['/public/..%5Cadmin/x', { status: 400 }],
    ['/public/..%5cadmin/x', { status: 400 }],
    ['/public/%zz/x', { status: 400 }],
    ['/public/%2', { status: 400 }],
    ['/public/%', { status: 400 }],
    ['http://api.test/public/%2e%2e/admin/x', { route: 'admin', path: '/admin/x' }],
    ['http://api.test/public\\..\\admin\\x', { route: 'admin', path: '/admin/x' }],
    ['http://api.test/public/..%2Fadmin/x', { status: 400 }],
    ['http://api.test/public/%252e%252e/admin/x', { status: 400 }],
  ];

  it.each(cases)('%s', async (target, expected) => {
    const before = counts();
    const res = await plainRequest(proxy.url, target, { headers: { host: HOST } });
    const after = counts();
    if ('route' in expected) {
      expect(res.status).toBe(200);
      const [up, token, other] =
        expected.route === 'admin'
          ? ([adminUp, ADMIN_TOKEN, 'public'] as const)
          : ([publicUp, PUBLIC_TOKEN, 'admin'] as const);
      expect(after[expected.route]).toBe(before[expected.route] + 1);
      expect(after[other]).toBe(before[other]);
      // The upstream gets the normalised path the route matched, with that route's token only.
      const received = up.requests.at(-1)!;
      expect(received.path).toBe(expected.path);
      expect(received.authorization).toBe(`Bearer ${token}`);
      expect(received.rawHeaders.filter((h) => /^authorization$/i.test(h))).toHaveLength(1);
    } else {
      expect(res.status).toBe(expected.status);
      expect(res.json()['error']).toBe(expected.status === 400 ? 'bad_request' : 'route_not_found');
      if (expected.path !== undefined) expect(res.json()['path']).toBe(expected.path);
      expect(after).toEqual(before);
    }
  });

  it('a raw backslash path over a socket (no client library in between)', async () => {
    const before = counts();
    const reply = await raw(
      `GET /public\\..\\admin\\raw HTTP/1.1\r\nHost: ${HOST}\r\nConnection: close\r\n\r\n`,
    );
    expect(reply).toMatch(/^HTTP\/1\.1 200 /);
    expect(counts()).toMatchObject({ public: before.public, admin: before.admin + 1 });
    expect(adminUp.requests.at(-1)).toMatchObject({
      path: '/admin/raw',
      authorization: `Bearer ${ADMIN_TOKEN}`,
    });
  });
});

describe('request smuggling and malformed requests never reach an upstream', () => {
  const post = (headers: string, body: string) =>
    `POST /public/x HTTP/1.1\r\nHost: ${HOST}\r\n${headers}\r\n${body}`;
  const smuggled = `GET /admin/smuggled HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`;
  it.each<[string, number, string]>([
    [
      'Content-Length with Transfer-Encoding',
      400,
      post('Content-Length: 5\r\nTransfer-Encoding: chunked\r\n', `0\r\n\r\n${smuggled}`),
    ],
    [
      'Transfer-Encoding with Content-Length',
      400,
      post('Transfer-Encoding: chunked\r\nContent-Length: 40\r\n', `0\r\n\r\n${smuggled}`),
    ],
    [
      'duplicate Content-Length, different values',
      400,
      post('Content-Length: 5\r\nContent-Length: 6\r\n', 'hello!'),
    ],
    [
      'duplicate Content-Length, equal values',
      400,
      post('Content-Length: 5\r\nContent-Length: 5\r\n', 'hello'),
    ],
    ['a Content-Length list', 400, post('Content-Length: 5, 5\r\n', 'hello')],
    [
      'Transfer-Encoding: chunked, identity',
      400,
      post('Transfer-Encoding: chunked, identity\r\n', `0\r\n\r\n${smuggled}`),
    ],
    ['whitespace before the colon', 400, post('Transfer-Encoding : chunked\r\n', `0\r\n\r\n${smuggled}`)],
    [
      'Transfer-Encoding not ending in chunked',
      400,
      post('Transfer-Encoding: gzip\r\n', `0\r\n\r\n${smuggled}`),
    ],
    ['obs-fold header continuation', 400, `GET /public/x HTTP/1.1\r\nHost: ${HOST}\r\nX-A: a\r\n b\r\n\r\n`],
    ['a bare CR in a header value', 400, `GET /public/x HTTP/1.1\r\nHost: ${HOST}\r\nX-A: a\rb\r\n\r\n`],
    ['bare LF line endings', 400, `GET /public/x HTTP/1.1\nHost: ${HOST}\n\n`],
    [
      'headers over limits.max_header_size',
      431,
      `GET /public/x HTTP/1.1\r\nHost: ${HOST}\r\nX-Big: ${'a'.repeat(4096)}\r\n\r\n`,
    ],
  ])('%s → %i', async (_name, status, bytes) => {
    const before = counts();
    const reply = await raw(bytes);
    expect(reply).toMatch(new RegExp(`^HTTP/1\\.1 ${status} `));
    // One answer, and the connection closed: nothing after the refused request was parsed.
    expect(reply.match(/HTTP\/1\.1 \d{3}/g)).toHaveLength(1);
    expect(counts()).toEqual(before);
    await expectHealthy();
  });

  it('a request without Host is refused', async () => {
    const before = counts();
    expect(await raw('GET /public/x HTTP/1.1\r\nConnection: close\r\n\r\n')).toMatch(/^HTTP\/1\.1 400 /);
    expect(counts()).toEqual(before);
  });

  it('a request with two Host headers is refused (RFC 9112 §3.2)', async () => {
    // Two Host lines make the target ambiguous: a front proxy may route by one, we by the other.
    const before = counts();
    const reply = await raw(
      `GET /public/x HTTP/1.1\r\nHost: ${HOST}\r\nHost: evil.test\r\nConnection: close\r\n\r\n`,
    );
    expect(reply).toMatch(/^HTTP\/1\.1 400 /);
    expect(counts()).toEqual(before);
  });
});

describe('no route, no token: in reverse and forward mode', () => {
  const adminPort = () => proxy.injector.adminAddress.port;
  it.each<[string, string, Record<string, string>]>([
    ['reverse: unknown host', '/public/x', { host: 'unknown.test' }],
    ['reverse: routed host, unrouted path', '/other/x', { host: HOST }],
    ['reverse: prefix without its slash', '/publicity', { host: HOST }],
    ['forward: unknown host', 'http://unknown.test/public/x', {}],
    ['forward: routed host, unrouted path', 'http://api.test/other/x', {}],
    ['forward: the upstream’s own address', 'UPSTREAM/public/x', {}],
  ])('%s → 403', async (_name, target, headers) => {
    const before = counts();
    const res = await plainRequest(proxy.url, target.replace('UPSTREAM', publicUp.url), { headers });
    expect(res.status).toBe(403);
    expect(res.json()['error']).toBe('route_not_found');
    expect(counts()).toEqual(before);
  });

  it.each([
    ['a routed host', `${HOST}:443`],
    ['the upstream’s own address', 'UPSTREAM'],
  ])('CONNECT to %s is refused, and no connection is opened', async (_name, authority) => {
    const target = authority.replace('UPSTREAM', `127.0.0.1:${publicUp.port}`);
    const connections = publicUp.totalConnections;
    const reply = await raw(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n\r\n`);
    expect(reply).toMatch(/^HTTP\/1\.1 403 /);
    expect(reply).toContain('connect_not_allowed');
    expect(publicUp.totalConnections).toBe(connections);
  });

  it.each(['/metrics', '/healthz', '/readyz'])(
    'the proxy port has no %s: it is just an unmatched request',
    async (path) => {
      const before = counts();
      for (const [target, headers] of [
        [path, { host: `127.0.0.1:${proxy.injector.proxyAddress.port}` }],
        [path, { host: HOST }],
        [`http://127.0.0.1:${adminPort()}${path}`, {}],
      ] as const) {
        const res = await plainRequest(proxy.url, target, { headers });
        expect(res.status).toBe(403);
        expect(res.json()['error']).toBe('route_not_found');
        expect(res.text).not.toContain('token_injector_');
      }
      expect(counts()).toEqual(before);
      // The admin listener does serve it.
      const admin = await request(`http://127.0.0.1:${adminPort()}${path}`);
      expect(admin.statusCode).toBe(200);
      await admin.body.dump();
    },
  );
});

describe('configuration safety checks', () => {
  const base = (extra: Record<string, unknown> = {}, cred: object = {}, route: object = {}) => ({
    listen: '127.0.0.1:8080',
    credentials: {
      orders: {
        token_endpoint: 'https://idp.example.com/oauth2/token',
        grant_type: 'client_credentials',
        client_id: 'orders-client',
        client_secret: SECRET,
        ...cred,
      },
    },
    routes: [
      {
        name: 'orders',
        match: { host: 'orders.test' },
        upstream: 'https://api.example.com',
        credential: 'orders',
        ...route,
      },
    ],
    ...extra,
  });
  const check = (raw: object) =>
    parseConfigText(stringify(raw), { env: {}, readFile: (p) => readFileSync(p, 'utf8') });

  it.each(['0.0.0.0:8080', '[::]:8080', '10.1.2.3:8080', 'proxy.internal:8080'])(
    'listen %s is refused without allow_remote_clients, and accepted with it',
    (listen) => {
      const refused = check(base({ listen }));
      expect(refused.config).toBeUndefined();
      expect(refused.problems).toHaveLength(1);
      expect(refused.problems[0]!.path).toBe('listen');
      expect(refused.problems[0]!.message).toContain('allow_remote_clients');
      const allowed = check(base({ listen, allow_remote_clients: true }));
      expect(allowed.problems).toEqual([]);
      expect(allowed.config?.allowRemoteClients).toBe(true);
    },
  );

  it.each(['127.0.0.1:8080', '127.0.0.2:8080', '[::1]:8080', 'localhost:8080', '8080'])(
    'listen %s (loopback) needs nothing',
    (listen) => {
      expect(check(base({ listen })).problems).toEqual([]);
    },
  );

  it('admin.listen beyond loopback is allowed (probes reach the pod IP)', () => {
    expect(check(base({ admin: { listen: '0.0.0.0:9090' } })).problems).toEqual([]);
  });

  it.each([
    'http://idp.example.com/token',
    'http://10.0.0.7/token',
    'http://127.0.0.1.nip.io/token',
    'http://0.0.0.0/t',
  ])('token_endpoint %s is refused without allow_insecure_http, and accepted with it', (url) => {
    const refused = check(base({}, { token_endpoint: url }));
    expect(refused.problems).toHaveLength(1);
    expect(refused.problems[0]!.path).toBe('credentials.orders.token_endpoint');
    expect(refused.problems[0]!.message).toContain('allow_insecure_http');
    expect(check(base({}, { token_endpoint: url, allow_insecure_http: true })).problems).toEqual([]);
  });

  it.each(['http://api.example.com', 'http://192.168.1.20:8080/base', 'http://localhost.example.com'])(
    'upstream %s is refused without allow_insecure_http, and accepted with it on the route',
    (url) => {
      const refused = check(base({}, {}, { upstream: url }));
      expect(refused.problems).toHaveLength(1);
      expect(refused.problems[0]!.path).toBe('routes[0].upstream');
      expect(refused.problems[0]!.message).toContain('allow_insecure_http');
      // The credential's switch does not cover the route's upstream.
      expect(check(base({}, { allow_insecure_http: true }, { upstream: url })).problems).toHaveLength(1);
      expect(check(base({}, {}, { upstream: url, allow_insecure_http: true })).problems).toEqual([]);
    },
  );

  it.each(['http://127.0.0.1:9000', 'http://localhost:9000', 'http://[::1]:9000', 'http://127.9.9.9'])(
    'plain HTTP on loopback (%s) is fine for token endpoints and upstreams',
    (origin) => {
      expect(check(base({}, { token_endpoint: `${origin}/token` }, { upstream: origin })).problems).toEqual(
        [],
      );
    },
  );

  it('`validate` (the CLI) refuses a listen beyond loopback and accepts it with allow_remote_clients', async () => {
    const { dir, remove } = tempDir();
    try {
      const refusedPath = writeConfig(dir, 'remote.yaml', base({ listen: '0.0.0.0:18080' }));
      const allowedPath = writeConfig(
        dir,
        'allowed.yaml',
        base({ listen: '0.0.0.0:18080', allow_remote_clients: true }),
      );
      const [refused, allowed] = await Promise.all([
        runCli(['validate', '--config', refusedPath]),
        runCli(['validate', '--config', allowedPath]),
      ]);
      expect(refused.code).toBe(1);
      expect(refused.stdout).toBe('');
      expect(refused.stderr).toContain(`${refusedPath}: invalid configuration`);
      expect(refused.stderr).toMatch(/ {2}listen: 0\.0\.0\.0 is beyond loopback.*allow_remote_clients: true/);
      expect(refused.stderr).not.toContain(SECRET);
      expect(allowed.code).toBe(0);
      // The secret is written inline in this config: a warning (never the secret), not a problem.
      expect(allowed.stderr).toMatch(
        /^\S+: warning: credentials\.\S+\.client_secret: is written inline[^\n]*\n$/,
      );
      expect(allowed.stderr).not.toContain(SECRET);
      expect(allowed.stdout).toBe(`${allowedPath}: valid (1 credential, 1 route)\n`);
    } finally {
      remove();
    }
  });

  it('with allow_remote_clients the proxy really binds 0.0.0.0 and serves', async () => {
    const open = await startInjector({
      listen: '0.0.0.0:0',
      allow_remote_clients: true,
      credentials: {
        public: {
          token_endpoint: publicIdp.url,
          grant_type: 'client_credentials',
          client_id: 'p',
          client_secret: SECRET,
        },
      },
      routes: [{ name: 'public', match: { host: HOST }, upstream: publicUp.url, credential: 'public' }],
    });
    try {
      expect(open.injector.proxyAddress.address).toBe('0.0.0.0');
      const res = await plainRequest(open.url, '/public/remote', { headers: { host: HOST } });
      expect(res.status).toBe(200);
      expect(publicUp.requests.at(-1)).toMatchObject({
        path: '/public/remote',
        authorization: `Bearer ${PUBLIC_TOKEN}`,
      });
    } finally {
      await open.close();
    }
  });
});
