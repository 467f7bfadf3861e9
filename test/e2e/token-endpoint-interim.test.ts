// Interim (1xx) responses from a token endpoint (RFC 9110 §15.2: a client must parse any number
// of them before the final response, asked for or not). undici fails a request on any `100`, so
// the token endpoint's connections go through the same filter as the upstream pools
// (src/interim-responses.ts). The fake token endpoint sends them: a real authorization server
// does not on demand.
import { request } from 'undici';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type FakeTokenEndpoint, startFakeTokenEndpoint } from '../support/fake-token-endpoint.js';
import { type FaultEcho, type FaultUpstream, startFaultUpstream } from '../support/fault-upstream.js';
import { startInjector, type TestInjector } from '../support/injector.js';
import { watchSecret } from '../support/leak-watch.js';

const HOST = 'orders.test';

let fake: FakeTokenEndpoint;
let up: FaultUpstream;
let proxy: TestInjector | undefined;

beforeEach(async () => {
  fake = await startFakeTokenEndpoint();
  up = await startFaultUpstream({ kind: 'echo' });
});
afterEach(async () => {
  await proxy?.close();
  proxy = undefined;
  for (const token of fake.issuedTokens) watchSecret(token);
  await fake.close();
  await up.close();
});

/** One app request through a fresh proxy whose credential asks the fake; what the upstream saw. */
async function callThroughProxy(): Promise<{ status: number; echo: FaultEcho | undefined; body: string }> {
  proxy = await startInjector({
    credentials: {
      orders: {
        token_endpoint: fake.url,
        grant_type: 'client_credentials',
        client_id: 'interim-client',
        client_secret: 'interim-secret-5d2a8e',
        timeout: '5s',
      },
    },
    routes: [{ name: 'orders', match: { host: HOST }, upstream: up.url, credential: 'orders' }],
  });
  const res = await request(`${proxy.url}/v1/orders`, { headers: { host: HOST } });
  const body = await res.body.text();
  return {
    status: res.statusCode,
    echo: res.statusCode === 200 ? (JSON.parse(body) as FaultEcho) : undefined,
    body,
  };
}

describe('interim responses before the token response', () => {
  it('an unsolicited 100 Continue: the token is used, not a failed token request', async () => {
    fake.setBehavior({ kind: 'token', interim: [100] });
    const { status, echo, body } = await callThroughProxy();
    expect(status, body).toBe(200);
    expect(echo?.authorization).toBe(`Bearer ${fake.issuedTokens[0]}`);
    expect(fake.requests).toHaveLength(1);
  });

  it('103 Early Hints: tolerated', async () => {
    fake.setBehavior({ kind: 'token', interim: [103] });
    const { status, echo, body } = await callThroughProxy();
    expect(status, body).toBe(200);
    expect(echo?.authorization).toBe(`Bearer ${fake.issuedTokens[0]}`);
    expect(fake.requests).toHaveLength(1);
  });

  it('a run of 100, 103 and 100 again: the token is used', async () => {
    fake.setBehavior({ kind: 'token', interim: [100, 103, 100] });
    const { status, echo, body } = await callThroughProxy();
    expect(status, body).toBe(200);
    expect(echo?.authorization).toBe(`Bearer ${fake.issuedTokens[0]}`);
    expect(fake.requests).toHaveLength(1);
  });
});
