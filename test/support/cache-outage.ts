/**
 * One replica for shared-cache outage tests: a credential and route per phase, so that every
 * phase needs a token this replica has never fetched (a command to Redis, whatever came before).
 */
import { request } from 'undici';
import { expect } from 'vitest';
import { type FakeTokenEndpoint, startFakeTokenEndpoint } from './fake-token-endpoint.js';
import { type FaultEcho, type FaultUpstream, startFaultUpstream } from './fault-upstream.js';
import { CACHE_KEY_ENV, newCacheKey, sharedCacheSection } from './fleet.js';
import { startInjector, type TestInjector } from './injector.js';
import { watchSecret } from './leak-watch.js';

export interface OutageReplica {
  readonly proxy: TestInjector;
  readonly fake: FakeTokenEndpoint;
  /** An app request that needs `phase`'s token (200 expected); the Authorization the upstream got. */
  call(phase: string): Promise<string | null>;
  /** `shared_cache` of /readyz, which stays 200: replicas serve without the shared cache. */
  sharedCacheState(): Promise<unknown>;
  downLines(): Record<string, unknown>[];
  close(): Promise<void>;
}

export const isUpLine = (l: Record<string, unknown>): boolean => l['event'] === 'shared_cache_up';

export async function startOutageReplica(
  redisUrl: string,
  phases: readonly string[],
  opts: { cluster?: boolean } = {},
): Promise<OutageReplica> {
  const fake = await startFakeTokenEndpoint();
  const up: FaultUpstream = await startFaultUpstream({ kind: 'echo' });
  const credentials: Record<string, object> = {};
  for (const phase of phases) {
    credentials[phase] = {
      token_endpoint: fake.url,
      grant_type: 'client_credentials',
      client_id: `outage-${phase}`,
      client_secret: 'outage-secret-3f8b21',
    };
  }
  const proxy = await startInjector(
    {
      shared_cache: sharedCacheSection(redisUrl, opts.cluster ? { cluster: true } : {}),
      credentials,
      routes: phases.map((phase) => ({
        name: phase,
        match: { host: `${phase}.test` },
        upstream: up.url,
        credential: phase,
      })),
    },
    { [CACHE_KEY_ENV]: newCacheKey() },
  );
  return {
    proxy,
    fake,
    async call(phase) {
      const res = await request(`${proxy.url}/v1/orders`, { headers: { host: `${phase}.test` } });
      const text = await res.body.text();
      expect(res.statusCode, text).toBe(200);
      return (JSON.parse(text) as FaultEcho).authorization;
    },
    async sharedCacheState() {
      const res = await request(`${proxy.adminUrl}/readyz`);
      const body = (await res.body.json()) as Record<string, unknown>;
      expect(res.statusCode).toBe(200);
      return body['shared_cache'];
    },
    downLines: () => proxy.logs.filter((l) => l['event'] === 'shared_cache_down'),
    async close() {
      await proxy.close();
      for (const token of fake.issuedTokens) watchSecret(token);
      await up.close();
      await fake.close();
    },
  };
}
