// A CONNECT request line with another HTTP version than 1.0 or 1.1 (RFC 9112 §2.3) is refused as
// any other request with it is: 400, the same `bad_request` body, the connection closed after the
// answer, and no tunnel opened even where `unmatched: passthrough` would open one.
import { once } from 'node:events';
import { type AddressInfo, connect, createServer, type Server, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startInjector, type TestInjector } from '../support/injector.js';

/** A TCP server a tunnel could reach; it counts the connections it accepts. */
let target: Server;
let accepted = 0;
const sockets = new Set<Socket>();
let deny: TestInjector;
let passthrough: TestInjector;

beforeAll(async () => {
  target = createServer((socket) => {
    accepted++;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => target.listen(0, '127.0.0.1', resolve));
  deny = await startInjector({ routes: [] });
  passthrough = await startInjector({ unmatched: 'passthrough', routes: [] });
});

afterAll(async () => {
  await deny?.close();
  await passthrough?.close();
  for (const socket of sockets) socket.destroy();
  await new Promise<void>((resolve) => target.close(() => resolve()));
});

interface Reply {
  text: string;
  /** Whether the proxy closed the connection (it is never closed from this side). */
  closed: boolean;
}

/**
 * Sends raw bytes and collects the answer until the proxy closes the connection; a head other
 * than a 400 (a tunnel opening, say) is returned at once, with the connection still open.
 */
function raw(proxy: TestInjector, bytes: string): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const socket = connect(proxy.injector.proxyAddress.port, '127.0.0.1');
    const chunks: Buffer[] = [];
    const text = () => Buffer.concat(chunks).toString('latin1');
    socket.on('data', (chunk: Buffer) => {
      chunks.push(chunk);
      const sofar = text();
      if (sofar.includes('\r\n\r\n') && !sofar.startsWith('HTTP/1.1 400 ')) {
        resolve({ text: sofar, closed: false });
        socket.destroy();
      }
    });
    socket.on('close', () => resolve({ text: text(), closed: true }));
    socket.on('error', (err) => (chunks.length > 0 ? undefined : reject(err)));
    socket.write(bytes);
  });
}

function split(reply: Reply): { status: string; headers: string; body: Record<string, unknown> } {
  const end = reply.text.indexOf('\r\n\r\n');
  const head = reply.text.slice(0, end);
  return {
    status: head.split('\r\n')[0] ?? '',
    headers: head.toLowerCase(),
    body: (end === -1 || end + 4 === reply.text.length
      ? {}
      : JSON.parse(reply.text.slice(end + 4))) as Record<string, unknown>,
  };
}

describe('CONNECT with an HTTP version this listener does not speak', () => {
  const authority = () => `127.0.0.1:${(target.address() as AddressInfo).port}`;

  it.each([
    ['unmatched: deny', '2.0', () => deny],
    ['unmatched: passthrough', '2.0', () => passthrough],
    ['unmatched: passthrough', '0.9', () => passthrough],
  ])('%s: HTTP/%s gets 400 bad_request, the connection closes, no tunnel', async (_name, version, proxy) => {
    const before = accepted;
    const reply = await raw(
      proxy(),
      `CONNECT ${authority()} HTTP/${version}\r\nHost: ${authority()}\r\n\r\n`,
    );
    const { status, headers, body } = split(reply);
    expect(status).toMatch(/^HTTP\/1\.1 400 /);
    expect(headers).toContain('connection: close');
    expect(body).toEqual({
      error: 'bad_request',
      detail: `HTTP/${version} is not spoken on this listener; use HTTP/1.1`,
    });
    expect(reply.closed).toBe(true);
    expect(accepted).toBe(before);
  });

  it('the body is the one a GET with that version gets', async () => {
    const get = split(
      await raw(
        passthrough,
        `GET http://${authority()}/ HTTP/2.0\r\nHost: ${authority()}\r\nConnection: close\r\n\r\n`,
      ),
    );
    const tunnel = split(
      await raw(passthrough, `CONNECT ${authority()} HTTP/2.0\r\nHost: ${authority()}\r\n\r\n`),
    );
    expect(get.status).toMatch(/^HTTP\/1\.1 400 /);
    // Only the GET's names its request ID: a CONNECT is no request forwarded or logged.
    const { request_id, ...same } = get.body;
    expect(request_id).toEqual(expect.any(String));
    expect(tunnel.body).toEqual(same);
  });

  it('HTTP/1.1 and HTTP/1.0 CONNECT still tunnel under passthrough', async () => {
    for (const version of ['HTTP/1.1', 'HTTP/1.0']) {
      const arrived = once(target, 'connection');
      const reply = await new Promise<string>((resolve, reject) => {
        const socket = connect(passthrough.injector.proxyAddress.port, '127.0.0.1');
        let data = '';
        socket.on('data', (chunk: Buffer) => {
          data += chunk.toString('latin1');
          if (data.includes('\r\n\r\n')) {
            socket.destroy();
            resolve(data);
          }
        });
        socket.on('error', reject);
        socket.write(`CONNECT ${authority()} ${version}\r\nHost: ${authority()}\r\n\r\n`);
      });
      expect(reply).toMatch(/^HTTP\/1\.1 200 /);
      await arrived;
    }
  });
});
