// Issue 13: a connection the listener is handed back after a CONNECT was terminated (what
// interception does) is served as HTTP/2 when its TLS handshake chose `h2` by ALPN, and as
// HTTP/1.1 otherwise; the tunnel mark (tunnel.ts) stays visible to the request handler.
import http from 'node:http';
import http2 from 'node:http2';
import { connect } from 'node:net';
import { TLSSocket, connect as tlsConnect } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ProxyServer, startProxyServer } from '../../src/proxy/server.js';
import { markTunnel, tunnelOf } from '../../src/proxy/tunnel.js';
import { configFrom } from '../support/injector.js';
import { createTestCa, type IssuedCertificate, type TestCa } from '../support/test-ca.js';

let ca: TestCa;
let cert: IssuedCertificate;
let server: ProxyServer;

beforeAll(async () => {
  ca = await createTestCa();
  cert = await ca.issue(['orders.test']);
  const { limits } = configFrom({ credentials: {}, routes: [] });
  server = await startProxyServer(
    { host: '127.0.0.1', port: 0 },
    limits,
    (req, res) => {
      const tunnel = tunnelOf(req.socket);
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ httpVersion: req.httpVersion, tunnel }));
    },
    (_req, socket, _head, serve) => {
      socket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      const tls = new TLSSocket(socket as import('node:net').Socket, {
        isServer: true,
        cert: cert.cert,
        key: cert.key,
        ALPNProtocols: ['h2', 'http/1.1'],
      });
      markTunnel(tls, { host: 'orders.test', port: 443 });
      tls.once('secure', () => serve(tls));
      tls.on('error', () => tls.destroy());
    },
    (_req, socket) => socket.destroy(),
  );
});

afterAll(async () => {
  await server?.close(1_000);
  await ca?.cleanup();
});

/** A TLS connection to orders.test:443 through a CONNECT tunnel, offering `alpn`. */
async function tunnelled(alpn: string[]): Promise<TLSSocket> {
  const raw = connect(server.address.port, '127.0.0.1');
  raw.write('CONNECT orders.test:443 HTTP/1.1\r\nHost: orders.test:443\r\n\r\n');
  await new Promise<void>((resolve, reject) => {
    raw.once('data', (d: Buffer) =>
      d.toString().startsWith('HTTP/1.1 200') ? resolve() : reject(new Error(String(d))),
    );
  });
  const tls = tlsConnect({ socket: raw, servername: 'orders.test', ca: ca.caPem, ALPNProtocols: alpn });
  await new Promise<void>((resolve, reject) => {
    tls.once('secureConnect', resolve);
    tls.once('error', reject);
  });
  return tls;
}

describe('serving a terminated CONNECT', () => {
  it('speaks HTTP/2 when ALPN chose h2, with the tunnel known to the handler', async () => {
    const tls = await tunnelled(['h2', 'http/1.1']);
    expect(tls.alpnProtocol).toBe('h2');
    const session = http2.connect('https://orders.test', { createConnection: () => tls });
    try {
      const body = await new Promise<string>((resolve, reject) => {
        const stream = session.request({ ':path': '/v1/x' });
        let text = '';
        stream.setEncoding('utf8');
        stream.on('data', (c: string) => {
          text += c;
        });
        stream.on('end', () => resolve(text));
        stream.on('error', reject);
      });
      expect(JSON.parse(body)).toEqual({ httpVersion: '2.0', tunnel: { host: 'orders.test', port: 443 } });
    } finally {
      session.destroy();
    }
  });

  it('speaks HTTP/1.1 when ALPN chose http/1.1', async () => {
    const tls = await tunnelled(['http/1.1']);
    expect(tls.alpnProtocol).toBe('http/1.1');
    const body = await new Promise<string>((resolve, reject) => {
      const req = http.request(
        { createConnection: () => tls, path: '/v1/x', headers: { host: 'orders.test' } },
        (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => {
            text += c;
          });
          res.on('end', () => resolve(text));
        },
      );
      req.on('error', reject);
      req.end();
    });
    expect(JSON.parse(body)).toEqual({ httpVersion: '1.1', tunnel: { host: 'orders.test', port: 443 } });
    tls.destroy();
  });
});

describe('shutdown with HTTP/2 sessions open', () => {
  it('lets a stream in flight finish, refuses new ones (GOAWAY), then closes', async () => {
    const { limits } = configFrom({ credentials: {}, routes: [] });
    let answer: (() => void) | undefined;
    let arrive: (() => void) | undefined;
    const arrived = new Promise<void>((resolve) => {
      arrive = resolve;
    });
    const proxyForShutdown = await startProxyServer(
      { host: '127.0.0.1', port: 0 },
      limits,
      (_req, res) => {
        answer = () => res.writeHead(200).end('finished');
        arrive!();
      },
      (_req, socket) => socket.destroy(),
      (_req, socket) => socket.destroy(),
    );
    const session = http2.connect(`http://127.0.0.1:${proxyForShutdown.address.port}`);
    try {
      const first = session.request({ ':path': '/held' });
      first.setEncoding('utf8');
      let body = '';
      first.on('data', (c: string) => {
        body += c;
      });
      const firstEnded = new Promise((resolve) => first.once('end', resolve));
      await arrived;
      const goaway = new Promise((resolve) => session.once('goaway', resolve));
      const closed = proxyForShutdown.close(5_000);
      await goaway;
      expect(proxyForShutdown.inFlight).toBe(1);
      answer!();
      await firstEnded;
      expect(body).toBe('finished');
      await closed;
      expect(proxyForShutdown.inFlight).toBe(0);
    } finally {
      session.destroy();
    }
  });
});
