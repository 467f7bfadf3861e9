// A CONNECT tunnel passed through with `unmatched: passthrough` is joined to its target until
// either side closes, and closed on both sides once silent for `limits.tunnel_idle_timeout`, so a
// peer that vanished without a FIN cannot hold two sockets (and their descriptors) for ever.
import { request } from 'node:http';
import { createServer, type Server, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startInjector, type TestInjector } from '../support/injector.js';

let target: Server;
let targetPort: number;
const accepted: Socket[] = [];
let proxy: TestInjector;

beforeAll(async () => {
  // A TCP service that echoes what it reads and never closes by itself.
  target = createServer((socket) => {
    accepted.push(socket);
    socket.on('error', () => socket.destroy());
    socket.pipe(socket);
  });
  await new Promise<void>((resolve) => target.listen(0, '127.0.0.1', resolve));
  targetPort = (target.address() as { port: number }).port;
  proxy = await startInjector({
    unmatched: 'passthrough',
    limits: { tunnel_idle_timeout: '300ms' },
    credentials: {},
    routes: [],
  });
});

afterAll(async () => {
  await proxy?.close();
  for (const s of accepted) s.destroy();
  await new Promise((resolve) => target?.close(resolve));
});

function tunnel(): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const req = request({
      host: '127.0.0.1',
      port: proxy.injector.proxyAddress.port,
      method: 'CONNECT',
      path: `127.0.0.1:${targetPort}`,
    });
    req.once('connect', (res, socket) => {
      if (res.statusCode === 200) resolve(socket);
      else reject(new Error(`CONNECT answered ${res.statusCode}`));
    });
    req.once('error', reject);
    req.end();
  });
}

function closed(socket: Socket): Promise<void> {
  return new Promise((resolve) => {
    if (socket.destroyed) resolve();
    else socket.once('close', () => resolve());
  });
}

describe('CONNECT passthrough tunnels', () => {
  it('carry bytes both ways', async () => {
    const socket = await tunnel();
    const echoed = new Promise<string>((resolve) =>
      socket.once('data', (d: Buffer) => resolve(d.toString())),
    );
    socket.write('ping through the tunnel');
    expect(await echoed).toBe('ping through the tunnel');
    socket.destroy();
  });

  it('a tunnel silent for limits.tunnel_idle_timeout is closed on both sides', async () => {
    const before = accepted.length;
    const socket = await tunnel();
    socket.on('error', () => {});
    await expect.poll(() => accepted.length).toBe(before + 1);
    const far = accepted[before]!;
    // Nobody sends anything: the proxy must close both ends by itself.
    await Promise.all([closed(socket), closed(far)]);
    expect(socket.destroyed && far.destroyed).toBe(true);
  });

  it('the client closing closes the far side', async () => {
    const before = accepted.length;
    const socket = await tunnel();
    await expect.poll(() => accepted.length).toBe(before + 1);
    const far = accepted[before]!;
    socket.end();
    await closed(far);
    expect(far.destroyed).toBe(true);
  });
});
