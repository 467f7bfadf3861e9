import { Counter, type CounterConfiguration, type LabelValues } from 'prom-client';

/**
 * A counter for the request path. prom-client validates and hashes the label set on every `inc`;
 * here an increment is one addition to a number kept per label set, and the sums are added to
 * the prom-client counter whenever it is read (a scrape, or `get()`).
 */
export class BatchedCounter<T extends string> {
  readonly counter: Counter<T>;
  readonly #labelNames: ReadonlySet<string>;
  readonly #pending: { readonly labels: LabelValues<T>; n: number }[] = [];

  constructor(config: Omit<CounterConfiguration<T>, 'collect'>) {
    this.#labelNames = new Set(config.labelNames ?? []);
    const pending = this.#pending;
    this.counter = new Counter<T>({
      ...config,
      collect() {
        for (const p of pending) {
          if (p.n === 0) continue;
          this.inc(p.labels, p.n);
          p.n = 0;
        }
      },
    });
  }

  /** The increment for one label set: made once (at start-up, or on first use), called per event. */
  child(labels: LabelValues<T>): () => void {
    // A wrong label name fails here, once; prom-client would refuse it at every scrape.
    for (const name of Object.keys(labels)) {
      if (!this.#labelNames.has(name)) {
        throw new TypeError(`label "${name}" is not one of ${[...this.#labelNames].join(', ')}`);
      }
    }
    const entry = { labels, n: 0 };
    this.#pending.push(entry);
    return () => {
      entry.n++;
    };
  }
}
