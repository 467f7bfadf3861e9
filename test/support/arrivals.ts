/**
 * Turns the recording arrays of the test servers (`upstream.requests`, `fake.requests`,
 * `auth.tokenRequests`) into events: {@link nextArrival} resolves when an item matching a predicate
 * is pushed, so a test can wait for "the upstream has the request" without polling or sleeping.
 */
type Waiter = { match: (item: unknown) => boolean; resolve: (item: unknown) => void };

const waiters = new WeakMap<unknown[], Waiter[]>();

function hook<T>(array: T[]): Waiter[] {
  let list = waiters.get(array as unknown[]);
  if (list) return list;
  const own: Waiter[] = [];
  list = own;
  waiters.set(array as unknown[], own);
  const push = array.push.bind(array);
  array.push = (...items: T[]): number => {
    const length = push(...items);
    for (const item of items) {
      for (const w of [...own]) {
        if (w.match(item)) {
          own.splice(own.indexOf(w), 1);
          w.resolve(item);
        }
      }
    }
    return length;
  };
  return own;
}

/**
 * Resolves with the next item pushed to `array` that matches. Items already in the array do not count:
 * call this before triggering the action whose arrival it awaits.
 */
export function nextArrival<T>(array: T[], match: (item: T) => boolean = () => true): Promise<T> {
  const list = hook(array);
  return new Promise<T>((resolve) => {
    list.push({ match: match as (item: unknown) => boolean, resolve: resolve as (item: unknown) => void });
  });
}

/**
 * Items handed from a server to a test one at a time: `next` resolves with the oldest item not yet
 * taken, or waits for the next `put`, so an item that arrived before the test asked is not lost.
 */
export function queue<T>(): { put(item: T): void; next(): Promise<T> } {
  const arrived: T[] = [];
  const waiting: ((item: T) => void)[] = [];
  return {
    put(item) {
      const waiter = waiting.shift();
      if (waiter) waiter(item);
      else arrived.push(item);
    },
    next() {
      if (arrived.length > 0) return Promise.resolve(arrived.shift()!);
      return new Promise<T>((resolve) => waiting.push(resolve));
    },
  };
}
