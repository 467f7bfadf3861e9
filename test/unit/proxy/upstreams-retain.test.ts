import { describe, expect, it } from 'vitest';
import { Upstreams } from '../../../src/proxy/upstreams.js';
import { routesTo } from '../../support/routes.js';

describe('Upstreams after a reload', () => {
  it('keeps the pools of upstreams still used (warm connections stay) and closes the others', async () => {
    const before = routesTo({ a: 'https://a.example.com', b: 'https://b.example.com' });
    const upstreams = new Upstreams(before);
    const poolA = upstreams.forRoute(before[0]!);
    const poolB = upstreams.forRoute(before[1]!);
    // A new configuration: new route objects; `a` renamed but to the same upstream, `b` gone.
    const after = routesTo({ renamed: 'https://a.example.com', c: 'https://c.example.com' });
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
    const before = routesTo({ api: 'https://old.example.com' });
    const upstreams = new Upstreams(before);
    const old = upstreams.forRoute(before[0]!);
    const after = routesTo({ api: 'https://new.example.com' });
    upstreams.retain(after);
    const fresh = upstreams.forRoute(after[0]!);
    expect(fresh).not.toBe(old);
    // A request still in flight on the old route (its retry after a 401, say).
    expect(upstreams.forRoute(before[0]!)).not.toBe(fresh);
    await upstreams.close();
  });
});
