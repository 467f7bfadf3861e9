// biome-ignore-all lint/suspicious/noTemplateCurlyInString: the configuration uses the literal ${env:} syntax
import { describe, expect, it } from 'vitest';
import { Upstreams } from '../../../src/proxy/upstreams.js';
import { configFrom } from '../../support/injector.js';

function routes(upstreams: Record<string, string>) {
  return configFrom(
    {
      credentials: {
        orders: {
          token_endpoint: 'https://idp.example.com/oauth2/token',
          grant_type: 'client_credentials',
          client_id: 'id',
          client_secret: '${env:RETAIN_TEST_SECRET}',
        },
      },
      routes: Object.entries(upstreams).map(([name, upstream]) => ({
        name,
        match: { host: `${name}.example.com` },
        upstream,
        credential: 'orders',
      })),
    },
    { RETAIN_TEST_SECRET: 'secret' },
  ).routes;
}

describe('Upstreams after a reload', () => {
  it('keeps the pools of upstreams still used (warm connections stay) and closes the others', async () => {
    const before = routes({ a: 'https://a.example.com', b: 'https://b.example.com' });
    const upstreams = new Upstreams(before);
    const poolA = upstreams.forRoute(before[0]!);
    const poolB = upstreams.forRoute(before[1]!);
    // A new configuration: new route objects; `a` renamed but to the same upstream, `b` gone.
    const after = routes({ renamed: 'https://a.example.com', c: 'https://c.example.com' });
    upstreams.prepare(after);
    upstreams.retain(after);
    expect(upstreams.forRoute(after[0]!)).toBe(poolA);
    expect((poolB as unknown as { closed: boolean }).closed).toBe(true);
    expect((poolA as unknown as { closed: boolean }).closed).toBe(false);
    expect(upstreams.forRoute(after[1]!)).not.toBe(poolB);
    expect(upstreams.poolCount).toBe(2);
    await upstreams.close();
  });

  it('a route of the old configuration never gets the pool of a new route of the same name', async () => {
    const before = routes({ api: 'https://old.example.com' });
    const upstreams = new Upstreams(before);
    const old = upstreams.forRoute(before[0]!);
    const after = routes({ api: 'https://new.example.com' });
    upstreams.retain(after);
    const fresh = upstreams.forRoute(after[0]!);
    expect(fresh).not.toBe(old);
    // A request still in flight on the old route (its retry after a 401, say).
    expect(upstreams.forRoute(before[0]!)).not.toBe(fresh);
    await upstreams.close();
  });
});
