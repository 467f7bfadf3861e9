// biome-ignore-all lint/suspicious/noTemplateCurlyInString: the configuration uses the literal ${env:} syntax
// A token request cut short by the proxy's own shutdown is not a token endpoint failure: no
// `token_failed` warning (it used to say token_endpoint_unreachable, UND_ERR_DESTROYED).
import { afterAll, beforeAll, expect, it } from 'vitest';
import { type FakeTokenEndpoint, startFakeTokenEndpoint } from '../support/fake-token-endpoint.js';
import { type FaultUpstream, startFaultUpstream } from '../support/fault-upstream.js';
import { plainRequest } from '../support/http-client.js';
import { startInjector } from '../support/injector.js';

let idp: FakeTokenEndpoint;
let up: FaultUpstream;

beforeAll(async () => {
  idp = await startFakeTokenEndpoint({ kind: 'hang' });
  up = await startFaultUpstream();
});

afterAll(async () => {
  await up?.close();
  await idp?.close();
});

it('shutting down while a token request hangs logs no token_failed and counts no failed token request', async () => {
  const proxy = await startInjector(
    {
      shutdown_timeout: '200ms',
      credentials: {
        c: {
          token_endpoint: idp.url,
          grant_type: 'client_credentials',
          client_id: 'shutdown-client',
          client_secret: '${env:SHUTDOWN_SECRET}',
          timeout: '30s',
          connect_timeout: '5s',
        },
      },
      routes: [{ name: 'r', match: { host: 'api.test' }, upstream: up.url, credential: 'c' }],
    },
    { SHUTDOWN_SECRET: 'shutdown-secret-0c1d' },
  );
  const waiting = plainRequest(proxy.url, '/x', { headers: { host: 'api.test' } }).catch((e: unknown) => e);
  while (idp.requests.length === 0) await new Promise((r) => setTimeout(r, 5));
  const metrics = proxy.injector.metrics;
  await proxy.close();
  await waiting;
  expect(proxy.logs.filter((l) => l['event'] === 'token_failed')).toEqual([]);
  const failed = (await metrics.tokenRequests.get()).values.filter((v) => v.labels['outcome'] !== 'success');
  expect(failed).toEqual([]);
  expect(proxy.logs.some((l) => l['event'] === 'stopped')).toBe(true);
});
