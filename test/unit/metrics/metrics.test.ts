import { type LabelValues, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { BatchedCounter } from '../../../src/metrics/batched-counter.js';
import { Metrics } from '../../../src/metrics/metrics.js';
import { samples } from '../../support/exposition.js';

const NAME = 'test_cache_hits_total';

function counter(): { registry: Registry; hits: BatchedCounter<'credential'> } {
  const registry = new Registry();
  const hits = new BatchedCounter({
    name: NAME,
    help: 'Requests served with a cached token.',
    labelNames: ['credential'] as const,
    registers: [registry],
  });
  return { registry, hits };
}

function times(n: number, f: () => void): void {
  for (let i = 0; i < n; i++) f();
}

describe('BatchedCounter', () => {
  it("exposes a child's increments as a counter under the child's labels", async () => {
    const { registry, hits } = counter();
    const orders = hits.child({ credential: 'orders' });
    times(3, orders);

    const text = await registry.metrics();
    expect(text).toContain(`# TYPE ${NAME} counter`);
    expect(text).toContain(`# HELP ${NAME} Requests served with a cached token.`);
    expect(samples(text, NAME)).toEqual({ '{credential="orders"}': 3 });
  });

  it('counts children with different labels separately', async () => {
    const { registry, hits } = counter();
    const orders = hits.child({ credential: 'orders' });
    const billing = hits.child({ credential: 'billing' });
    times(2, orders);
    times(5, billing);
    orders();

    expect(samples(await registry.metrics(), NAME)).toEqual({
      '{credential="orders"}': 3,
      '{credential="billing"}': 5,
    });
  });

  it('adds up children made for the same labels into one series', async () => {
    const { registry, hits } = counter();
    const first = hits.child({ credential: 'orders' });
    const second = hits.child({ credential: 'orders' });
    times(2, first);
    times(3, second);

    expect(samples(await registry.metrics(), NAME)).toEqual({ '{credential="orders"}': 5 });
  });

  it('accumulates across scrapes without counting an increment twice', async () => {
    const { registry, hits } = counter();
    const orders = hits.child({ credential: 'orders' });
    times(2, orders);
    expect(samples(await registry.metrics(), NAME)).toEqual({ '{credential="orders"}': 2 });

    times(3, orders);
    expect(samples(await registry.metrics(), NAME)).toEqual({ '{credential="orders"}': 5 });
    expect(samples(await registry.metrics(), NAME)).toEqual({ '{credential="orders"}': 5 });

    orders();
    expect(samples(await registry.metrics(), NAME)).toEqual({ '{credential="orders"}': 6 });
  });

  it('folds pending increments into counter.get(), and a later scrape does not add them again', async () => {
    const { registry, hits } = counter();
    const orders = hits.child({ credential: 'orders' });
    times(2, orders);

    expect((await hits.counter.get()).values).toEqual([{ labels: { credential: 'orders' }, value: 2 }]);
    expect(samples(await registry.metrics(), NAME)).toEqual({ '{credential="orders"}': 2 });

    orders();
    expect((await hits.counter.get()).values).toEqual([{ labels: { credential: 'orders' }, value: 3 }]);
  });

  it('writes no series for a child that was never incremented', async () => {
    const { registry, hits } = counter();
    hits.child({ credential: 'idle' });
    expect(samples(await registry.metrics(), NAME)).toEqual({});

    const orders = hits.child({ credential: 'orders' });
    orders();
    const text = await registry.metrics();
    expect(samples(text, NAME)).toEqual({ '{credential="orders"}': 1 });
    expect(text).not.toContain('idle');
  });

  it('throws at child() for a label name the counter does not have, and scrapes still work', async () => {
    const { registry, hits } = counter();
    const orders = hits.child({ credential: 'orders' });
    orders();

    expect(() => hits.child({ route: 'orders-api' } as unknown as LabelValues<'credential'>)).toThrow(
      /route/,
    );
    expect(() =>
      hits.child({ credential: 'billing', route: 'x' } as unknown as LabelValues<'credential'>),
    ).toThrow(/route/);
    orders();
    const text = await registry.metrics();
    expect(samples(text, NAME)).toEqual({ '{credential="orders"}': 2 });
    expect(text).not.toContain('route');
    expect(text).not.toContain('billing');
  });

  it('counts a counter without labels under the empty label set', async () => {
    const registry = new Registry();
    const plain = new BatchedCounter({ name: 'test_plain_total', help: 'h', registers: [registry] });
    const inc = plain.child({});
    expect(samples(await registry.metrics(), 'test_plain_total')).toEqual({ '': 0 });

    times(4, inc);
    expect(samples(await registry.metrics(), 'test_plain_total')).toEqual({ '': 4 });
  });
});

describe('Metrics', () => {
  it('exports the batched proxy and cache counters under their names and labels', async () => {
    const metrics = new Metrics({ processMetrics: false });
    times(2, metrics.proxiedRequests.child({ route: 'orders-api', status_class: '2xx' }));
    metrics.proxiedRequests.child({ route: 'none', status_class: '4xx' })();
    times(3, metrics.cacheHits.child({ credential: 'orders' }));

    const text = await metrics.registry.metrics();
    expect(samples(text, 'token_injector_proxied_requests_total')).toEqual({
      '{route="orders-api",status_class="2xx"}': 2,
      '{route="none",status_class="4xx"}': 1,
    });
    expect(samples(text, 'token_injector_token_cache_hits_total')).toEqual({ '{credential="orders"}': 3 });
    expect(text).not.toContain('process_cpu');
  });
});
