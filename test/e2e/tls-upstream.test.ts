import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type AuthServer, startAuthServer } from '../support/auth-server.js';
import { startInjector, type TestInjector } from '../support/injector.js';
import { watchSecret } from '../support/leak-watch.js';
import { credentialFor } from '../support/stack.js';
import { createTestCa, type TestCa } from '../support/test-ca.js';
import { type EchoResponse, startUpstream, type Upstream } from '../support/upstream.js';

let ca: TestCa;
let auth: AuthServer;
let upstream: Upstream;
let proxy: TestInjector;

beforeAll(async () => {
  ca = await createTestCa();
  auth = await startAuthServer();
  const cert = await ca.issue(['localhost', '127.0.0.1']);
  upstream = await startUpstream({
    issuer: auth.issuer,
    jwksUri: auth.jwksUri,
    audience: auth.audience,
    tls: cert,
  });
  proxy = await startInjector({
    credentials: { orders: credentialFor(auth) },
    routes: [
      {
        name: 'trusted',
        match: { host: 'trusted.test' },
        upstream: upstream.url,
        credential: 'orders',
        tls: { ca_file: ca.caFile },
      },
      // Same https upstream, but its private CA is not trusted: verification must fail.
      { name: 'untrusted', match: { host: 'untrusted.test' }, upstream: upstream.url, credential: 'orders' },
    ],
  });
});

afterAll(async () => {
  await proxy?.close();
  await upstream?.close();
  for (const token of auth?.issuedTokens ?? []) watchSecret(token);
  await auth?.close();
  await ca?.cleanup();
});

describe('https upstream', () => {
  it('an app speaking plain HTTP to the proxy reaches an https upstream verified with the route CA', async () => {
    expect(upstream.url).toMatch(/^https:/);
    const res = await request(`${proxy.url}/v1/orders`, { headers: { host: 'trusted.test' } });
    expect(res.statusCode).toBe(200);
    const body = (await res.body.json()) as EchoResponse;
    expect(body.path).toBe('/v1/orders');
    expect(upstream.requests.at(-1)!.tokenValid).toBe(true);
  });

  it('an upstream whose certificate is not trusted gets no request and the app gets 502', async () => {
    const before = upstream.requests.length;
    const res = await request(`${proxy.url}/v1/orders`, { headers: { host: 'untrusted.test' } });
    expect(res.statusCode).toBe(502);
    const body = (await res.body.json()) as Record<string, string>;
    expect(body['error']).toBe('upstream_unreachable');
    expect(body['detail']).toMatch(/certificate/i);
    expect(upstream.requests.length).toBe(before);
  });
});
