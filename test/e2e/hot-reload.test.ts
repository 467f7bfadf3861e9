// Hot reload (issue 14), in-process: the real proxy started from a file, a real authorization
// server counting token requests, a real upstream that verifies every token. A reload is asked
// for directly here (reloader.reload); hot-reload-cli.test.ts drives SIGHUP and the file watch of
// a real `token-injector run`.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import { type AddressInfo, connect } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load.js';
import { nextArrival, queue } from '../support/arrivals.js';
import {
  type AuthServer,
  BASIC_CLIENT,
  POST_CLIENT,
  type RecordedTokenRequest,
  SPECIAL_CLIENT,
} from '../support/auth-server.js';
import { tempDir, writeConfig } from '../support/cli-process.js';
import { type FakeTokenEndpoint, startFakeTokenEndpoint } from '../support/fake-token-endpoint.js';
import { plainRequest } from '../support/http-client.js';
import { startLoaded, type TestInjector } from '../support/injector.js';
import { credentialFor, type Stack, startStack } from '../support/stack.js';

let stack: Stack;
let auth: AuthServer;
const cleanups: (() => Promise<void> | void)[] = [];

beforeAll(async () => {
  stack = await startStack();
  auth = stack.auth;
});

afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

afterAll(async () => {
  await stack?.close();
});

interface FileInjector extends TestInjector {
  readonly path: string;
  /** Writes the configuration file (a plain object, as YAML gives it). */
  write(config: Record<string, unknown>): void;
}

/** The real proxy, started in-process from a configuration file, as `run` starts it. */
async function startFromFile(config: Record<string, unknown>): Promise<FileInjector> {
  const { dir, remove } = tempDir('token-injector-reload-');
  const write = (c: Record<string, unknown>) =>
    writeConfig(dir, 'config.yaml', {
      listen: '127.0.0.1:0',
      admin: { listen: '127.0.0.1:0' },
      log: { level: 'debug' },
      ...c,
    });
  const path = write(config);
  const proxy = await startLoaded(loadConfig(path), { configFile: path });
  cleanups.push(async () => {
    await proxy.close();
    remove();
  });
  return { ...proxy, path, write };
}

/** The client a token request authenticated as (form for client_secret_post, Basic header otherwise). */
function clientOf(r: RecordedTokenRequest): string {
  if (r.form['client_id'] !== undefined) return r.form['client_id'];
  const basic = String(r.headers['authorization'] ?? '').replace(/^Basic /i, '');
  return decodeURIComponent(Buffer.from(basic, 'base64').toString('utf8').split(':')[0]!.replace(/\+/g, ' '));
}

function tokenRequestsOf(clientId: string): number {
  return auth.tokenRequests.filter((r) => clientOf(r) === clientId).length;
}

/** The token the upstream received with its latest request. */
function lastUpstreamToken(): string | undefined {
  return stack.upstream.requests.at(-1)?.headers.authorization;
}

async function get(proxy: FileInjector, host: string, path = '/') {
  return plainRequest(proxy.url, path, { headers: { host } });
}

async function readyz(proxy: FileInjector): Promise<Record<string, unknown>> {
  const res = await plainRequest(proxy.adminUrl, '/readyz');
  return res.json();
}

/** One sample of the admin /metrics, or undefined when it is not exported. */
async function metric(proxy: FileInjector, sample: string): Promise<number | undefined> {
  const text = (await plainRequest(proxy.adminUrl, '/metrics')).text;
  const line = text.split('\n').find((l) => l.startsWith(`${sample} `));
  return line === undefined ? undefined : Number(line.slice(sample.length + 1));
}

/**
 * A request to route `api` held at a slow upstream while the file sends that route to the
 * stack's upstream, with a changed credential (so another token), and is reloaded.
 */
async function reloadDuringRequest() {
  const slow = await startHeldUpstream();
  cleanups.push(() => slow.close());
  const proxy = await startFromFile({
    credentials: { orders: orders() },
    routes: [route('api', 'api.test', 'orders', slow.url)],
  });
  const pending = get(proxy, 'api.test', '/in-flight');
  const held = await slow.next();
  proxy.write({
    credentials: { orders: { ...orders(), scope: 'orders.read orders.write' } },
    routes: [route('api', 'api.test', 'orders')],
  });
  expect(proxy.injector.reloader!.reload('call')).toMatchObject({ result: 'success' });
  return { slow, proxy, pending, held };
}

function claims(authorization: string): Record<string, unknown> {
  const payload = authorization.replace(/^Bearer /, '').split('.')[1]!;
  return JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as Record<string, unknown>;
}

function sha256(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

const orders = () => credentialFor(auth, BASIC_CLIENT, { scope: 'orders.read' });
const billing = () => credentialFor(auth, POST_CLIENT, { scope: 'orders.write' });
const special = () => credentialFor(auth, SPECIAL_CLIENT, { scope: 'orders.read' });
const route = (name: string, host: string, credential: string, upstream = stack.upstream.url) => ({
  name,
  match: { host },
  upstream,
  credential,
});

describe('reload: routes and credentials', () => {
  it('applies new routes and drops removed ones; an unchanged credential keeps its token (no token request), a new one fetches its own', async () => {
    const proxy = await startFromFile({
      credentials: { orders: orders(), billing: billing() },
      routes: [route('orders', 'orders.test', 'orders'), route('billing', 'billing.test', 'billing')],
    });
    expect((await get(proxy, 'orders.test')).status).toBe(200);
    const ordersToken = lastUpstreamToken();
    expect((await get(proxy, 'billing.test')).status).toBe(200);
    const basicBefore = tokenRequestsOf(BASIC_CLIENT.id);
    const specialBefore = tokenRequestsOf(SPECIAL_CLIENT.id);
    const hashBefore = (await readyz(proxy))['config_hash'];
    expect(hashBefore).toBe(sha256(proxy.path));
    expect(await metric(proxy, 'token_injector_config_reloads_total{result="success"}')).toBe(0);
    expect(await metric(proxy, 'token_injector_config_reloads_total{result="invalid"}')).toBe(0);
    expect(await metric(proxy, 'token_injector_config_reloads_total{result="error"}')).toBe(0);
    const startedAt = await metric(proxy, 'token_injector_config_last_reload_success_timestamp_seconds');
    expect(startedAt).toBeGreaterThan(0);

    proxy.write({
      credentials: { orders: orders(), special: special() },
      routes: [
        route('orders', 'orders.test', 'orders'),
        route('more-orders', 'more.orders.test', 'orders'),
        route('special', 'special.test', 'special'),
      ],
    });
    const outcome = proxy.injector.reloader!.reload('call');
    expect(outcome).toMatchObject({ result: 'success', restartRequired: [] });
    expect(proxy.logs.find((l) => l['event'] === 'config_reloaded')).toMatchObject({
      trigger: 'call',
      credentials_added: ['special'],
      credentials_changed: [],
      credentials_removed: ['billing'],
      config_hash: sha256(proxy.path),
    });

    // The unchanged credential: same token, on the old route and on the new one, no token request.
    expect((await get(proxy, 'orders.test')).status).toBe(200);
    expect(lastUpstreamToken()).toBe(ordersToken);
    expect((await get(proxy, 'more.orders.test')).status).toBe(200);
    expect(lastUpstreamToken()).toBe(ordersToken);
    expect(tokenRequestsOf(BASIC_CLIENT.id)).toBe(basicBefore);
    // The removed route is gone (403 route_not_found: unmatched is deny); the new credential fetches its first token.
    const gone = await get(proxy, 'billing.test');
    expect(gone.status).toBe(403);
    expect(gone.json()).toMatchObject({ error: 'route_not_found' });
    expect((await get(proxy, 'special.test')).status).toBe(200);
    expect(tokenRequestsOf(SPECIAL_CLIENT.id)).toBe(specialBefore + 1);
    expect(proxy.injector.credentials.names().sort()).toEqual(['orders', 'special']);

    const ready = await readyz(proxy);
    expect(ready['config_hash']).toBe(sha256(proxy.path));
    expect(ready['config_hash']).not.toBe(hashBefore);
    expect(Object.keys(ready['credentials'] as object).sort()).toEqual(['orders', 'special']);
    expect(await metric(proxy, 'token_injector_config_reloads_total{result="success"}')).toBe(1);
    expect(
      await metric(proxy, 'token_injector_config_last_reload_success_timestamp_seconds'),
    ).toBeGreaterThanOrEqual(startedAt!);
  });

  it('a changed credential starts fresh: its next request fetches a new token', async () => {
    const proxy = await startFromFile({
      credentials: { orders: orders() },
      routes: [route('orders', 'orders.test', 'orders')],
    });
    expect((await get(proxy, 'orders.test')).status).toBe(200);
    const before = lastUpstreamToken();
    const requests = tokenRequestsOf(BASIC_CLIENT.id);

    proxy.write({
      credentials: { orders: { ...orders(), scope: 'orders.read orders.write' } },
      routes: [route('orders', 'orders.test', 'orders')],
    });
    expect(proxy.injector.reloader!.reload('call')).toMatchObject({ result: 'success' });
    expect(proxy.logs.find((l) => l['event'] === 'config_reloaded')).toMatchObject({
      credentials_changed: ['orders'],
    });
    const res = await get(proxy, 'orders.test');
    expect(res.status).toBe(200);
    expect(tokenRequestsOf(BASIC_CLIENT.id)).toBe(requests + 1);
    expect(lastUpstreamToken()).not.toBe(before);
    expect(res.json<{ claims: { scope: string } }>().claims.scope).toBe('orders.read orders.write');
  });

  it('a request in flight when the reload happens completes on the route and token it started with', async () => {
    const { slow, proxy, pending, held } = await reloadDuringRequest();
    const oldToken = held.authorization;
    expect(oldToken).toMatch(/^Bearer /);
    const after = await get(proxy, 'api.test', '/after-reload');
    expect(after.status).toBe(200);
    expect(stack.upstream.requests.at(-1)!.path).toBe('/after-reload');
    expect(lastUpstreamToken()).not.toBe(oldToken);

    held.release();
    const res = await pending;
    expect(res.status).toBe(200);
    expect(res.text).toBe('held and released');
    expect(slow.paths).toEqual(['/in-flight']);
  });

  it('a request in flight whose token is refused after the reload is retried with a token of the credential it started with', async () => {
    const { slow, pending, held } = await reloadDuringRequest();
    held.refuse();
    // The retry goes where the request was going, with a new token for the old scope.
    const retried = await slow.next();
    expect(retried.authorization).not.toBe(held.authorization);
    expect(claims(retried.authorization!)['scope']).toBe('orders.read');
    retried.release();
    expect((await pending).status).toBe(200);
    expect(slow.paths).toEqual(['/in-flight', '/in-flight']);
  });

  it('a change of listen is reported as needing a restart while a route change in the same file is applied', async () => {
    const proxy = await startFromFile({
      credentials: { orders: orders() },
      routes: [route('orders', 'orders.test', 'orders')],
    });
    const port = proxy.injector.proxyAddress.port;
    proxy.write({
      listen: '127.0.0.1:1',
      credentials: { orders: orders() },
      routes: [route('renamed', 'renamed.test', 'orders')],
    });
    // write() puts listen first; the object above overrides it.
    expect(readFileSync(proxy.path, 'utf8')).toContain('127.0.0.1:1');
    const outcome = proxy.injector.reloader!.reload('call');
    expect(outcome).toMatchObject({ result: 'success', restartRequired: ['listen'] });
    expect(proxy.logs.find((l) => l['event'] === 'config_restart_required')).toMatchObject({ key: 'listen' });
    // Still listening where it was, with the new routes.
    expect(proxy.injector.proxyAddress.port).toBe(port);
    expect((await get(proxy, 'renamed.test')).status).toBe(200);
    expect((await get(proxy, 'orders.test')).status).toBe(403);
    expect(await metric(proxy, 'token_injector_config_reloads_total{result="success"}')).toBe(1);
  });

  it('applies limits and log.level live: a lower max_connections closes the next connection at accept', async () => {
    const proxy = await startFromFile({
      credentials: { orders: orders() },
      routes: [route('orders', 'orders.test', 'orders')],
    });
    expect(proxy.injector.logger.level).toBe('debug');
    proxy.write({
      log: { level: 'warn' },
      limits: { max_connections: 1 },
      credentials: { orders: orders() },
      routes: [route('orders', 'orders.test', 'orders')],
    });
    expect(proxy.injector.reloader!.reload('call')).toMatchObject({ result: 'success', restartRequired: [] });
    expect(proxy.injector.logger.level).toBe('warn');
    // One connection, kept alive after its answer: the limit is reached.
    const first = connect(proxy.injector.proxyAddress.port, '127.0.0.1');
    cleanups.push(() => {
      first.destroy();
    });
    const answered = new Promise<string>((resolve) => first.once('data', (d) => resolve(String(d))));
    first.write('GET / HTTP/1.1\r\nhost: orders.test\r\n\r\n');
    expect(await answered).toMatch(/^HTTP\/1\.1 200/);
    const second = connect(proxy.injector.proxyAddress.port, '127.0.0.1');
    const received: Buffer[] = [];
    second.on('data', (d: Buffer) => received.push(d));
    second.on('error', () => {});
    second.write('GET / HTTP/1.1\r\nhost: orders.test\r\n\r\n');
    await new Promise((resolve) => second.once('close', resolve));
    expect(Buffer.concat(received).length).toBe(0);
    expect(await metric(proxy, 'token_injector_connections_dropped_total')).toBe(1);
  });

  it('a file that does not validate changes nothing: each problem is logged with its key, the old routes keep working', async () => {
    const proxy = await startFromFile({
      credentials: { orders: orders() },
      routes: [route('orders', 'orders.test', 'orders')],
    });
    const hash = (await readyz(proxy))['config_hash'];
    proxy.write({
      credentials: { orders: { ...orders(), timeot: '5s' } },
      routes: [{ ...route('orders', 'other.test', 'ordrs') }],
    });
    const outcome = proxy.injector.reloader!.reload('call');
    expect(outcome.result).toBe('invalid');
    const keys = proxy.logs.filter((l) => l['event'] === 'config_reload_failed').map((l) => l['key']);
    expect(keys.sort()).toEqual(['credentials.orders.timeot', 'routes[0].credential']);
    expect((await get(proxy, 'orders.test')).status).toBe(200);
    expect((await get(proxy, 'other.test')).status).toBe(403);
    expect((await readyz(proxy))['config_hash']).toBe(hash);
    expect(await metric(proxy, 'token_injector_config_reloads_total{result="invalid"}')).toBe(1);
    expect(await metric(proxy, 'token_injector_config_reloads_total{result="success"}')).toBe(0);
  });
});

describe('reload: removed credentials', () => {
  let endpoint: FakeTokenEndpoint;
  let down: FakeTokenEndpoint;
  beforeAll(async () => {
    // 2 s tokens: refreshed ahead exactly 1 s after each fetch (the floor of the refresh delay).
    endpoint = await startFakeTokenEndpoint({ kind: 'token', expiresIn: 2 });
    // Failing: a prefetch credential's fetch retries with backoff, then its prefetch loop again.
    down = await startFakeTokenEndpoint({
      kind: 'json',
      status: 503,
      body: { error: 'temporarily_unavailable' },
    });
  });
  afterAll(async () => {
    await endpoint?.close();
    await down?.close();
  });

  const fake = (clientId: string, at = endpoint) => ({
    token_endpoint: at.url,
    grant_type: 'client_credentials',
    client_id: clientId,
    client_secret: `secret-of-${clientId}-0123456789`,
    auth_method: 'client_secret_post',
    allow_insecure_http: true,
    prefetch: true,
  });
  const requestsOf = (clientId: string) =>
    endpoint.requests.filter((r) => r.form['client_id'] === clientId).length;

  /** Resolves once the token endpoint has seen `count` requests of `clientId`. */
  async function tokenRequest(clientId: string, count: number): Promise<void> {
    while (requestsOf(clientId) < count) {
      await nextArrival(endpoint.requests, (r) => r.form['client_id'] === clientId);
    }
  }

  it('a removed credential is dropped with its timers (refresh ahead, backoff, prefetch retries): no token request for it after the reload', async () => {
    const proxy = await startFromFile({
      credentials: { gone: fake('gone'), stays: fake('stays'), failing: fake('failing', down) },
      routes: [],
    });
    await tokenRequest('gone', 1);
    await tokenRequest('stays', 1);
    // Its backoff is under way.
    while (down.requests.length < 2) await nextArrival(down.requests);
    proxy.write({ credentials: { stays: fake('stays') }, routes: [] });
    expect(proxy.injector.reloader!.reload('call')).toMatchObject({ result: 'success' });
    expect(proxy.logs.find((l) => l['event'] === 'config_reloaded')).toMatchObject({
      credentials_removed: ['gone', 'failing'],
    });
    const failingRequests = down.requests.length;
    const goneRequests = requestsOf('gone');
    const staysRequests = requestsOf('stays');
    const goneLines = proxy.logs.filter((l) => l['credential'] === 'gone').length;
    const refreshes = 'token_injector_token_refreshes_total{credential="gone"}';
    const goneRefreshes = await metric(proxy, refreshes);
    // Two refreshes of the kept credential, 1 s apart: the removed one's, due 1 s after its own
    // fetch, would have come by the first.
    await tokenRequest('stays', staysRequests + 2);
    expect(requestsOf('gone')).toBe(goneRequests);
    // Neither its backoff nor its prefetch loop tried again.
    expect(down.requests.length).toBe(failingRequests);
    // Not even attempted.
    expect(await metric(proxy, refreshes)).toBe(goneRefreshes);
    expect(proxy.logs.filter((l) => l['credential'] === 'gone').length).toBe(goneLines);
    expect(proxy.injector.credentials.names()).toEqual(['stays']);
  });
});

interface Held {
  authorization: string | undefined;
  release(): void;
  /** Answers 401 invalid_token (RFC 6750 §3.1): the proxy retries once with a new token. */
  refuse(): void;
}

/** An upstream that holds each request until the test releases it. */
async function startHeldUpstream(): Promise<{
  url: string;
  paths: string[];
  next(): Promise<Held>;
  close(): Promise<void>;
}> {
  const held = queue<Held>();
  const paths: string[] = [];
  const server = http.createServer((req, res) => {
    paths.push(req.url ?? '');
    req.resume();
    held.put({
      authorization: req.headers.authorization,
      release: () => res.end('held and released'),
      refuse: () => {
        res.writeHead(401, { 'www-authenticate': 'Bearer error="invalid_token"' });
        res.end();
      },
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    paths,
    next: held.next,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
