// HTTPS interception (issue 13): an app calling https:// through HTTPS_PROXY sends CONNECT; for a
// routed host the proxy terminates the tunnel with a certificate minted from its CA, routes the
// requests inside like plain ones and injects the token. Real clients (curl, Node's https) talk to
// the real proxy, which calls a real https upstream that verifies the token.
import { execFile } from 'node:child_process';
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { connect as http2Connect } from 'node:http2';
import { Agent, request as httpsRequest } from 'node:https';
import { connect as netConnect, type Socket } from 'node:net';
import { Duplex } from 'node:stream';
import { type PeerCertificate, type TLSSocket, connect as tlsConnect } from 'node:tls';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type AuthServer, startAuthServer } from '../support/auth-server.js';
import { startInjector, type TestInjector } from '../support/injector.js';
import { type CaFiles, type TempDir, tempDir, writeNewCa } from '../support/interception.js';
import { watchSecret } from '../support/leak-watch.js';
import { credentialFor } from '../support/stack.js';
import { createTestCa, type TestCa } from '../support/test-ca.js';
import { type EchoResponse, startUpstream, type Upstream } from '../support/upstream.js';

const run = promisify(execFile);

let dir: TempDir;
let interceptCa: CaFiles;
let otherCa: CaFiles;
let upstreamCa: TestCa;
let auth: AuthServer;
let upstream: Upstream;
let proxy: TestInjector;
let passthrough: TestInjector;

beforeAll(async () => {
  dir = tempDir();
  interceptCa = await writeNewCa(dir.path, 'intercept');
  otherCa = await writeNewCa(dir.path, 'other');
  upstreamCa = await createTestCa();
  auth = await startAuthServer();
  upstream = await startUpstream({
    issuer: auth.issuer,
    jwksUri: auth.jwksUri,
    audience: auth.audience,
    tls: await upstreamCa.issue(['localhost', '127.0.0.1']),
    requireToken: false,
  });
  // Every route goes to the same https upstream, verified with its test CA.
  const route = (name: string, match: object, credential = 'orders') => ({
    name,
    match,
    upstream: upstream.url,
    credential,
    tls: { ca_file: upstreamCa.caFile },
  });
  const routes = [
    route('partner', { host: 'api.partner.test', path_prefix: '/v1/' }),
    route('wild', { host: '*.fleet.test' }),
    route('odd-port', { host: 'ports.test:8443' }),
    route('ip-literal', { host: '127.0.0.5' }),
    route('down', { host: 'down.test' }, 'unreachable'),
  ];
  const credentials = {
    orders: credentialFor(auth),
    unreachable: { ...credentialFor(auth), token_endpoint: 'http://127.0.0.1:9/token', timeout: '2s' },
  };
  const tlsIntercept = { ca_cert_file: interceptCa.certFile, ca_key_file: interceptCa.keyFile };
  proxy = await startInjector({ tls_intercept: tlsIntercept, credentials, routes });
  passthrough = await startInjector({
    tls_intercept: tlsIntercept,
    unmatched: 'passthrough',
    credentials,
    routes,
  });
});

afterAll(async () => {
  await proxy?.close();
  await passthrough?.close();
  await upstream?.close();
  for (const token of auth?.issuedTokens ?? []) watchSecret(token);
  await auth?.close();
  await upstreamCa?.cleanup();
  dir?.remove();
});

interface Tunnel {
  readonly status: number;
  readonly body: string;
  readonly socket: Socket | undefined;
}

/** Sends `CONNECT authority` to the proxy; the socket is the tunnel when the answer is 200. */
function connectTunnel(port: number, authority: string): Promise<Tunnel> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, method: 'CONNECT', path: authority });
    req.once('connect', (res, socket, head) => {
      if (res.statusCode === 200) {
        resolve({ status: 200, body: '', socket });
        return;
      }
      let body = head.toString();
      socket.on('data', (d: Buffer) => {
        body += d.toString();
      });
      socket.once('close', () => resolve({ status: res.statusCode ?? 0, body, socket: undefined }));
    });
    req.once('error', reject);
    req.end();
  });
}

/** A TLS client over an established tunnel that trusts only `ca`. */
function handshake(
  socket: Socket,
  servername: string,
  ca: string,
  alpn: string[] = ['http/1.1'],
): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const tls = tlsConnect({ socket, servername, ca, ALPNProtocols: alpn });
    tls.once('secureConnect', () => resolve(tls));
    tls.once('error', reject);
  });
}

interface Answer {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly body: string;
}

/** Agents that keep one intercepted TLS connection open for request after request. */
const agents = new WeakMap<TLSSocket, Agent>();

function agentFor(tls: TLSSocket): Agent {
  let agent = agents.get(tls);
  if (agent === undefined) {
    agent = new Agent({ keepAlive: true, maxSockets: 1 });
    agent.createConnection = () => tls;
    agents.set(tls, agent);
  }
  return agent;
}

/** One HTTP/1.1 request over an intercepted TLS connection (kept open for the next one). */
function requestOver(
  tls: TLSSocket,
  path: string,
  headers: Record<string, string> = { host: tls.servername as string },
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest({ agent: agentFor(tls), path, headers });
    req.once('response', (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => {
        body += d;
      });
      res.once('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.once('error', reject);
    req.end();
  });
}

async function intercepted(host: string, port = 443, ca = interceptCa.certPem): Promise<TLSSocket> {
  const tunnel = await connectTunnel(proxyPort(proxy), `${host}:${port}`);
  expect(tunnel.status).toBe(200);
  return handshake(tunnel.socket!, host, ca);
}

function proxyPort(p: TestInjector): number {
  return p.injector.proxyAddress.port;
}

async function metric(p: TestInjector, line: string): Promise<number> {
  const text = await (await fetch(`${p.adminUrl}/metrics`)).text();
  const found = text.split('\n').find((l) => l.startsWith(`${line} `));
  return found === undefined ? 0 : Number(found.slice(line.length + 1));
}

describe('HTTPS interception', () => {
  it('curl through HTTPS_PROXY with the CA trusted reaches the upstream with a valid token', async () => {
    const before = upstream.requests.length;
    const { stdout } = await run(
      'curl',
      [
        '--silent',
        '--show-error',
        '--max-time',
        '20',
        '--proxy',
        `http://127.0.0.1:${proxyPort(proxy)}`,
        '--cacert',
        interceptCa.certFile,
        'https://api.partner.test/v1/orders?page=2',
      ],
      { env: { ...process.env, NO_PROXY: '', no_proxy: '' } },
    );
    const echo = JSON.parse(stdout) as EchoResponse;
    expect(echo.path).toBe('/v1/orders?page=2');
    expect(upstream.requests.length).toBe(before + 1);
    expect(upstream.requests.at(-1)!.tokenValid).toBe(true);
  });

  it("Node's https client: the leaf names the host, is issued by the CA, and one connection carries several requests", async () => {
    const tls = await intercepted('api.partner.test');
    const peer = tls.getPeerCertificate() as PeerCertificate;
    expect(peer.subjectaltname).toBe('DNS:api.partner.test');
    expect(tls.alpnProtocol).toBe('http/1.1');
    const before = upstream.requests.length;
    for (const path of ['/v1/a', '/v1/b', '/v1/c']) {
      const res = await requestOver(tls, path);
      expect(res.status).toBe(200);
      expect((JSON.parse(res.body) as EchoResponse).path).toBe(path);
      expect(upstream.requests.at(-1)!.tokenValid).toBe(true);
    }
    expect(upstream.requests.length).toBe(before + 3);
    tls.destroy();
  });

  it('an app that offers h2 gets HTTP/2 inside the tunnel, its streams routed and given the token', async () => {
    const tunnel = await connectTunnel(proxyPort(proxy), 'api.partner.test:443');
    const tls = await handshake(tunnel.socket!, 'api.partner.test', interceptCa.certPem, ['h2', 'http/1.1']);
    expect(tls.alpnProtocol).toBe('h2');
    const session = http2Connect('https://api.partner.test', { createConnection: () => tls });
    const before = upstream.requests.length;
    const answers = await Promise.all(
      ['/v1/h2-a', '/v1/h2-b'].map(
        (path) =>
          new Promise<{ status: number; body: string }>((resolve, reject) => {
            const stream = session.request({ ':path': path });
            let status = 0;
            let body = '';
            stream.once('response', (headers) => {
              status = Number(headers[':status']);
            });
            stream.setEncoding('utf8');
            stream.on('data', (d: string) => {
              body += d;
            });
            stream.once('end', () => resolve({ status, body }));
            stream.once('error', reject);
          }),
      ),
    );
    expect(answers.map((a) => a.status)).toEqual([200, 200]);
    expect(answers.map((a) => (JSON.parse(a.body) as EchoResponse).path)).toEqual(['/v1/h2-a', '/v1/h2-b']);
    expect(upstream.requests.length).toBe(before + 2);
    expect(upstream.requests.slice(-2).every((r) => r.tokenValid)).toBe(true);
    session.close();
  });

  it('an app that offers only http/1.1 is served HTTP/1.1', async () => {
    const tunnel = await connectTunnel(proxyPort(proxy), 'api.partner.test:443');
    const tls = await handshake(tunnel.socket!, 'api.partner.test', interceptCa.certPem, ['http/1.1']);
    expect(tls.alpnProtocol).toBe('http/1.1');
    expect((await requestOver(tls, '/v1/alpn')).status).toBe(200);
    tls.destroy();
  });

  it('a wildcard route intercepts each subdomain with a leaf for that name; an IPv4 literal gets an IP SAN', async () => {
    const tls = await intercepted('eu.fleet.test');
    expect((tls.getPeerCertificate() as PeerCertificate).subjectaltname).toBe('DNS:eu.fleet.test');
    expect((await requestOver(tls, '/x')).status).toBe(200);
    tls.destroy();
    const ip = await intercepted('127.0.0.5');
    expect((ip.getPeerCertificate() as PeerCertificate).subjectaltname).toBe('IP Address:127.0.0.5');
    expect((await requestOver(ip, '/ip')).status).toBe(200);
    expect(upstream.requests.at(-1)!.tokenValid).toBe(true);
    ip.destroy();
  });

  it('an app that does not trust the CA refuses the handshake; the upstream is never called', async () => {
    const before = upstream.requests.length;
    // Node's client verifies after the TLS handshake, then closes.
    const tunnel = await connectTunnel(proxyPort(proxy), 'api.partner.test:443');
    await expect(handshake(tunnel.socket!, 'api.partner.test', otherCa.certPem)).rejects.toThrow(
      /certificate|verify/i,
    );
    // curl (OpenSSL) refuses inside the handshake with an alert: counted and logged by the proxy.
    const failed = 'token_injector_intercepted_connections_total{outcome="handshake_failed"}';
    const failedBefore = await metric(proxy, failed);
    const curl = run('curl', [
      '--silent',
      '--max-time',
      '20',
      '--proxy',
      `http://127.0.0.1:${proxyPort(proxy)}`,
      '--cacert',
      otherCa.certFile,
      'https://api.partner.test/v1/orders',
    ]);
    await expect(curl).rejects.toMatchObject({ code: 60 }); // peer certificate cannot be authenticated
    await expect.poll(() => metric(proxy, failed)).toBe(failedBefore + 1);
    expect(proxy.logs.some((l) => l['event'] === 'intercept_handshake_failed')).toBe(true);
    expect(upstream.requests.length).toBe(before);
  });

  it('an app that leaves before its handshake is counted as abandoned, one that speaks no TLS as a failed handshake', async () => {
    const abandoned = 'token_injector_intercepted_connections_total{outcome="abandoned"}';
    const failed = 'token_injector_intercepted_connections_total{outcome="handshake_failed"}';
    const [abandonedBefore, failedBefore] = [await metric(proxy, abandoned), await metric(proxy, failed)];
    const gone = await connectTunnel(proxyPort(proxy), 'api.partner.test:443');
    gone.socket!.destroy();
    await expect.poll(() => metric(proxy, abandoned)).toBe(abandonedBefore + 1);
    const plain = await connectTunnel(proxyPort(proxy), 'api.partner.test:443');
    const closed = new Promise((resolve) => plain.socket!.once('close', resolve));
    plain.socket!.on('error', () => {});
    plain.socket!.write('GET /v1/orders HTTP/1.1\r\nHost: api.partner.test\r\n\r\n');
    await closed;
    await expect.poll(() => metric(proxy, failed)).toBe(failedBefore + 1);
    expect(await metric(proxy, abandoned)).toBe(abandonedBefore + 1);
  });

  it('a request for another host on an intercepted connection gets 421', async () => {
    const tls = await intercepted('api.partner.test');
    const before = upstream.requests.length;
    const res = await requestOver(tls, '/v1/orders', { host: 'eu.fleet.test' });
    expect(res.status).toBe(421);
    expect(JSON.parse(res.body)).toMatchObject({ error: 'misdirected_request' });
    expect(upstream.requests.length).toBe(before);
    tls.destroy();
  });

  it('an absolute-form target inside the tunnel must name the same https origin', async () => {
    const tls = await intercepted('api.partner.test');
    const same = await requestOver(tls, 'https://api.partner.test/v1/absolute');
    expect(same.status).toBe(200);
    expect((JSON.parse(same.body) as EchoResponse).path).toBe('/v1/absolute');
    for (const other of [
      'http://api.partner.test/v1/x',
      'https://api.partner.test:8443/v1/x',
      'https://eu.fleet.test/x',
    ]) {
      const res = await requestOver(tls, other);
      expect(res.status, other).toBe(421);
    }
    tls.destroy();
  });

  it('a path no route takes inside an intercepted connection follows unmatched (deny: 403 JSON)', async () => {
    const tls = await intercepted('api.partner.test');
    const res = await requestOver(tls, '/admin');
    expect(res.status).toBe(403);
    expect(JSON.parse(res.body)).toMatchObject({ error: 'route_not_found' });
    tls.destroy();
  });

  it('a token that cannot be had gives the JSON 5xx inside the tunnel, and the upstream is not called', async () => {
    const before = upstream.requests.length;
    const tls = await intercepted('down.test');
    const res = await requestOver(tls, '/orders');
    expect(res.status).toBeGreaterThanOrEqual(500);
    expect(JSON.parse(res.body)).toMatchObject({ error: 'token_endpoint_unreachable' });
    expect(upstream.requests.length).toBe(before);
    tls.destroy();
  });

  it("a route's match.port decides which CONNECT ports are intercepted", async () => {
    const refused = await connectTunnel(proxyPort(proxy), 'ports.test:443');
    expect(refused.status).toBe(403);
    expect(JSON.parse(refused.body)).toMatchObject({ error: 'connect_not_allowed', host: 'ports.test' });
    const tls = await intercepted('ports.test', 8443);
    expect((await requestOver(tls, '/p', { host: 'ports.test:8443' })).status).toBe(200);
    tls.destroy();
  });

  it('CONNECT to an unrouted host is refused with deny and mints nothing', async () => {
    const minted = await metric(proxy, 'token_injector_intercept_certificates_minted_total');
    const res = await connectTunnel(proxyPort(proxy), 'elsewhere.test:443');
    expect(res.status).toBe(403);
    expect(JSON.parse(res.body)).toMatchObject({ error: 'connect_not_allowed', host: 'elsewhere.test' });
    expect(await metric(proxy, 'token_injector_intercept_certificates_minted_total')).toBe(minted);
  });

  it('with passthrough, CONNECT to an unrouted host is a blind tunnel: the app sees the real certificate and no token is added', async () => {
    const before = upstream.requests.length;
    const tunnel = await connectTunnel(proxyPort(passthrough), `localhost:${upstream.port}`);
    expect(tunnel.status).toBe(200);
    const tls = await handshake(tunnel.socket!, 'localhost', upstreamCa.caPem);
    const res = await requestOver(tls, '/direct', { host: `localhost:${upstream.port}` });
    expect(res.status).toBe(200);
    expect(upstream.requests.length).toBe(before + 1);
    expect(upstream.requests.at(-1)!.headers.authorization).toBeUndefined();
    tls.destroy();
  });

  it('a routed host no certificate can name gets 500 certificate_unavailable for its CONNECT', async () => {
    const longName = `${Array.from({ length: 5 }, () => 'a'.repeat(60)).join('.')}.fleet.test`;
    const res = await connectTunnel(proxyPort(proxy), `${longName}:443`);
    expect(res.status).toBe(500);
    expect(JSON.parse(res.body)).toMatchObject({ error: 'certificate_unavailable', host: longName });
    expect(await metric(proxy, 'token_injector_intercepted_connections_total{outcome="mint_failed"}')).toBe(
      1,
    );
  });

  it('concurrent CONNECTs to a new host mint one certificate', async () => {
    const minted = await metric(proxy, 'token_injector_intercept_certificates_minted_total');
    const sockets = await Promise.all(Array.from({ length: 8 }, () => intercepted('burst.fleet.test')));
    expect(await metric(proxy, 'token_injector_intercept_certificates_minted_total')).toBe(minted + 1);
    const serials = new Set(sockets.map((s) => (s.getPeerCertificate() as PeerCertificate).serialNumber));
    expect(serials.size).toBe(1);
    for (const s of sockets) s.destroy();
  });

  it('a ClientHello sent together with the CONNECT (before the 200) is part of the handshake', async () => {
    const raw = netConnect(proxyPort(proxy), '127.0.0.1');
    await new Promise((resolve) => raw.once('connect', resolve));
    // The TLS client's first write goes out in one segment with the CONNECT; the proxy's 200 is
    // taken off the incoming bytes before the TLS client sees them.
    let connectSent = false;
    const wire = new Duplex({
      write(chunk: Buffer, _encoding, done) {
        raw.write(
          connectSent
            ? chunk
            : Buffer.concat([Buffer.from('CONNECT eager.fleet.test:443 HTTP/1.1\r\n\r\n'), chunk]),
        );
        connectSent = true;
        done();
      },
      read() {},
    });
    let head: Buffer | undefined = Buffer.alloc(0);
    raw.on('data', (data: Buffer) => {
      if (head !== undefined) {
        head = Buffer.concat([head, data]);
        const end = head.indexOf('\r\n\r\n');
        if (end === -1) return;
        expect(head.subarray(0, end).toString()).toMatch(/^HTTP\/1\.1 200 /);
        data = head.subarray(end + 4);
        head = undefined;
      }
      if (data.length > 0) wire.push(data);
    });
    raw.once('close', () => wire.push(null));
    const tls = tlsConnect({
      socket: wire as Socket,
      servername: 'eager.fleet.test',
      ca: interceptCa.certPem,
    });
    await new Promise((resolve, reject) => {
      tls.once('secureConnect', resolve);
      tls.once('error', reject);
    });
    expect((await requestOver(tls, '/eager')).status).toBe(200);
    tls.destroy();
    raw.destroy();
  });
});
