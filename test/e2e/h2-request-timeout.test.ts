// limits.request_timeout holds for HTTP/2 streams as for HTTP/1.1 requests: a stream whose body
// does not arrive in time is cancelled, so a client trickling bodies cannot hold streams (and the
// upstream connections they use) for ever. A body that arrives in time is not cut afterwards.
// A stream cancelled before its body ended never reaches the upstream as a whole body.
import http2 from 'node:http2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type FakeTokenEndpoint, startFakeTokenEndpoint } from '../support/fake-token-endpoint.js';
import { type FaultUpstream, startFaultUpstream } from '../support/fault-upstream.js';
import { startInjector, type TestInjector } from '../support/injector.js';

const HOST = 'api.test';
const TIMEOUT_MS = 400;
let idp: FakeTokenEndpoint;
let up: FaultUpstream;
let proxy: TestInjector;
let session: http2.ClientHttp2Session;

beforeAll(async () => {
  idp = await startFakeTokenEndpoint({ kind: 'token' });
  up = await startFaultUpstream({ kind: 'echo' });
  proxy = await startInjector(
    {
      limits: { request_timeout: `${TIMEOUT_MS}ms`, headers_timeout: `${TIMEOUT_MS}ms` },
      credentials: {
        api: {
          token_endpoint: idp.url,
          grant_type: 'client_credentials',
          client_id: 'h2-client',
          client_secret: '${env:H2_TIMEOUT_SECRET}',
        },
      },
      routes: [{ name: 'api', match: { host: HOST }, upstream: up.url, credential: 'api' }],
    },
    { H2_TIMEOUT_SECRET: 'h2-timeout-secret-5c1e' },
  );
  session = http2.connect(`http://127.0.0.1:${proxy.injector.proxyAddress.port}`);
  session.on('error', () => {});
});

afterAll(async () => {
  session?.destroy();
  await proxy?.close();
  await up?.close();
  await idp?.close();
});

function post(): http2.ClientHttp2Stream {
  return session.request({ ':method': 'POST', ':path': '/upload', ':authority': HOST });
}

describe('limits.request_timeout on HTTP/2 streams', () => {
  it('a stream whose body never ends is cancelled, and the upstream never answers it', async () => {
    const stream = post();
    let status: number | undefined;
    stream.on('response', (headers) => {
      status = Number(headers[':status']);
    });
    stream.on('error', () => {});
    stream.write('the first part of a body that never ends');
    const rstCode = await new Promise<number>((resolve) =>
      stream.once('close', () => resolve(stream.rstCode)),
    );
    expect(rstCode).toBe(http2.constants.NGHTTP2_CANCEL);
    expect(status).toBeUndefined();
    // The proxy is done with it (logged as a client that went away)...
    await expect
      .poll(() => proxy.logs.filter((l) => l['path'] === '/upload').map((l) => l['status']))
      .toEqual([499]);
    // ...and the cut body never reached the upstream as a whole one.
    expect(up.requests).toHaveLength(0);
    // The session itself is fine: the next request on it is served.
    const next = post();
    const answered = new Promise<number>((resolve) =>
      next.once('response', (headers) => resolve(Number(headers[':status']))),
    );
    next.end('done');
    expect(await answered).toBe(200);
  });

  it('a body that arrives in time is answered, and the stream is not cut once the deadline passes', async () => {
    const stream = post();
    const status = new Promise<number>((resolve) =>
      stream.once('response', (headers) => resolve(Number(headers[':status']))),
    );
    stream.setEncoding('utf8');
    let body = '';
    stream.on('data', (d: string) => {
      body += d;
    });
    stream.end('a whole body');
    expect(await status).toBe(200);
    await new Promise((resolve) => stream.once('close', resolve));
    expect(stream.rstCode).toBe(http2.constants.NGHTTP2_NO_ERROR);
    expect(JSON.parse(body)).toMatchObject({ method: 'POST', path: '/upload', bodyBytes: 12 });
  });

  it('a stream the client resets once the upstream has it is finished and logged 499', async () => {
    const before = up.requests.length;
    const logged = proxy.logs.filter((l) => l['path'] === '/upload').length;
    const sent = 'the first part of a body the client gives up on';
    const stream = post();
    stream.on('error', () => {});
    stream.write(sent);
    await expect.poll(() => up.openConnections).toBeGreaterThan(0);
    // Node's close() ends the stream's writable side (an empty DATA frame with END_STREAM) before
    // its RST_STREAM: the body is whole by the protocol (RFC 9113 §8.1), so the upstream may
    // get it; the client is gone all the same, and the proxy must not wait to answer it.
    stream.close(http2.constants.NGHTTP2_CANCEL);
    await expect
      .poll(() =>
        proxy.logs
          .filter((l) => l['path'] === '/upload')
          .slice(logged)
          .map((l) => l['status']),
      )
      .toEqual([499]);
    // Whatever reached the upstream is the body as sent, never more or less.
    for (const r of up.requests.slice(before)) expect(r.body.toString()).toBe(sent);
  });
});
