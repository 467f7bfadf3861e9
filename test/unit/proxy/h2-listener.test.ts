import { once } from 'node:events';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { percentEncode } from '../../../src/proxy/grpc-error.js';
import { sniffPreface } from '../../../src/proxy/h2-listener.js';

const PREFACE = 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n';

let server: Server;
let accepted: Promise<Socket>;
let client: Socket;

beforeEach(async () => {
  server = createServer();
  accepted = once(server, 'connection').then(([s]) => s as Socket);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  client = connect((server.address() as { port: number }).port, '127.0.0.1');
  await once(client, 'connect');
});

afterEach(async () => {
  client.destroy();
  await new Promise((resolve) => server.close(resolve));
});

/** Sniffs the accepted connection; resolves with the decision and the bytes left in the socket. */
async function sniffed(timeoutMs = 5_000): Promise<{ socket: Socket; decision: Promise<boolean> }> {
  const socket = await accepted;
  const decision = new Promise<boolean>((resolve) => sniffPreface(socket, timeoutMs, resolve));
  return { socket, decision };
}

describe('sniffPreface', () => {
  it('tells the HTTP/2 preface, even split across reads, and leaves every byte in the socket', async () => {
    const { socket, decision } = await sniffed();
    // The first piece is read (the sniffer's listener runs first) before the rest is sent.
    const firstRead = once(socket, 'readable');
    client.write(PREFACE.slice(0, 7));
    await firstRead;
    client.write(`${PREFACE.slice(7)}rest`);
    expect(await decision).toBe(true);
    expect(String(socket.read())).toBe(`${PREFACE}rest`);
  });

  it.each([
    ['a POST', 'POST / HTTP/1.1\r\n'],
    ['a GET', 'GET / HTTP/1.1\r\n'],
    ['PRI with another version', 'PRI * HTTP/1.1\r\n\r\n'],
  ])('passes %s to HTTP/1.1 on its first read, bytes intact', async (_what, text) => {
    const { socket, decision } = await sniffed();
    client.write(text);
    expect(await decision).toBe(false);
    expect(String(socket.read())).toBe(text);
  });

  it('cuts a connection that sends nothing within the time allowed', async () => {
    const { socket } = await sniffed(50);
    await once(socket, 'close');
    expect(socket.destroyed).toBe(true);
  });
});

describe('percentEncode (grpc-message)', () => {
  it('keeps printable ASCII and encodes "%", controls and UTF-8 bytes', () => {
    expect(percentEncode('credential "orders": 100% naïve\n')).toBe(
      'credential "orders": 100%25 na%C3%AFve%0A',
    );
  });
});
