import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { TokenSource, type TokenSourceEvents, usableUntil } from '../../../src/credentials/token-source.js';
import type { Token } from '../../../src/token-endpoint/token.js';

const LIFETIME = 100_000; // usableUntil = issuedAt + 95 s (5 % safety)
const USABLE = 95_000;

interface Deferred {
  resolve(token: Token): void;
  reject(error: unknown): void;
}

/** A fetch whose every call returns a promise the test settles by hand. */
function manualFetch() {
  const calls: Deferred[] = [];
  const fetch = vi.fn(
    () =>
      new Promise<Token>((resolve, reject) => {
        calls.push({ resolve, reject });
      }),
  );
  return { fetch, calls };
}

function token(name: string, issuedAt = Date.now(), lifetime = LIFETIME): Token {
  return { accessToken: name, tokenType: 'Bearer', issuedAt, expiresAt: issuedAt + lifetime };
}

function source(
  fetch: () => Promise<Token>,
  opts: { refreshAhead?: number; random?: number; events?: TokenSourceEvents } = {},
) {
  return new TokenSource({
    name: 'orders',
    fetch,
    refreshAhead: opts.refreshAhead ?? 0.8,
    now: () => Date.now(),
    random: () => opts.random ?? 0,
    ...(opts.events ? { events: opts.events } : {}),
  });
}

/** Whether a promise has settled after all pending microtasks ran. */
async function settled(p: Promise<unknown>): Promise<boolean> {
  let done = false;
  p.then(
    () => {
      done = true;
    },
    () => {
      done = true;
    },
  );
  await vi.advanceTimersByTimeAsync(0);
  return done;
}

const sources: TokenSource[] = [];
function track(s: TokenSource): TokenSource {
  sources.push(s);
  return s;
}

beforeEach(() => {
  vi.useFakeTimers({ now: 0 });
});

afterEach(() => {
  for (const s of sources.splice(0)) s.close();
  vi.useRealTimers();
});

describe('usableUntil', () => {
  it.each([
    [3_600_000, 3_600_000 - 30_000], // 5 % = 180 s, capped at 30 s
    [100_000, 95_000], // 5 %
    [10_000, 9_000], // 5 % = 500 ms, raised to 1 s
    [1_000, 500], // never more than half the lifetime
    [0, 0],
  ])('a token living %d ms is usable for %d ms', (lifetime, usable) => {
    expect(
      usableUntil({ accessToken: 't', tokenType: 'Bearer', issuedAt: 5_000, expiresAt: 5_000 + lifetime }),
    ).toBe(5_000 + usable);
  });
});

describe('TokenSource: single flight', () => {
  it('shares one fetch between concurrent callers', async () => {
    const { fetch, calls } = manualFetch();
    const events = { cacheHit: vi.fn(), cacheMiss: vi.fn() };
    const s = track(source(fetch, { events }));
    expect(s.state).toBe('empty');
    const waiting = Array.from({ length: 10 }, () => s.get());
    expect(fetch).toHaveBeenCalledTimes(1);
    expect(events.cacheMiss).toHaveBeenCalledTimes(10);
    const t = token('one');
    calls[0]!.resolve(t);
    const results = await Promise.all(waiting);
    for (const r of results) expect(r).toBe(t);
    expect(s.state).toBe('fresh');

    expect(await s.get()).toBe(t);
    expect(fetch).toHaveBeenCalledTimes(1);
    expect(events.cacheHit).toHaveBeenCalledTimes(1);
  });

  it('hands the same error to every waiter, and the next get() starts a new fetch', async () => {
    const { fetch, calls } = manualFetch();
    const s = track(source(fetch));
    const waiting = [s.get(), s.get(), s.get()].map((p) => p.catch((e: unknown) => e));
    const error = Object.assign(new Error('denied'), { code: 'token_endpoint_rejected' });
    calls[0]!.reject(error);
    for (const e of await Promise.all(waiting)) expect(e).toBe(error);
    expect(fetch).toHaveBeenCalledTimes(1);
    expect(s.lastError).toBe(error);
    expect(s.state).toBe('empty');

    const next = s.get();
    expect(fetch).toHaveBeenCalledTimes(2);
    const t = token('two');
    calls[1]!.resolve(t);
    expect(await next).toBe(t);
    expect(s.lastError).toBeUndefined();
  });

  it('peek() never waits or fetches', async () => {
    const { fetch, calls } = manualFetch();
    const s = track(source(fetch));
    expect(s.peek()).toBeUndefined();
    expect(fetch).not.toHaveBeenCalled();
    const p = s.get();
    expect(s.peek()).toBeUndefined();
    calls[0]!.resolve(token('t'));
    await p;
    expect(s.peek()?.accessToken).toBe('t');
    expect(s.expiresInSeconds).toBe(100);
  });
});

describe('TokenSource: refresh ahead', () => {
  async function firstToken(opts: Parameters<typeof source>[1] = {}) {
    const { fetch, calls } = manualFetch();
    const s = track(source(fetch, opts));
    const p = s.get();
    calls[0]!.resolve(token('first'));
    await p;
    return { s, fetch, calls };
  }

  it.each([
    [0.8, 0, 0.8 * USABLE],
    [0.8, 1, 0.75 * USABLE],
    [0.8, 0.5, 0.775 * USABLE],
    [0.5, 0, 0.5 * USABLE],
    [0.5, 1, 0.45 * USABLE],
  ])('with refresh_ahead %d and random() = %d refreshes at %d ms', async (refreshAhead, random, at) => {
    const refreshStarted = vi.fn();
    const { fetch } = await firstToken({ refreshAhead, random, events: { refreshStarted } });
    await vi.advanceTimersByTimeAsync(at - 1);
    expect(fetch).toHaveBeenCalledTimes(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(fetch).toHaveBeenCalledTimes(2);
    expect(refreshStarted).toHaveBeenCalledTimes(1);
  });

  it.each([0, 0.1, 0.37, 0.5, 0.9, 0.999])(
    'keeps the jittered refresh within [0.75, 0.8] of the usable life (random %d)',
    async (random) => {
      const { fetch } = await firstToken({ random });
      await vi.advanceTimersByTimeAsync(0.75 * USABLE - 1);
      expect(fetch).toHaveBeenCalledTimes(1);
      await vi.advanceTimersByTimeAsync(0.05 * USABLE + 1);
      expect(fetch).toHaveBeenCalledTimes(2);
    },
  );

  it('counts from when the token was issued, not when it arrived', async () => {
    const { fetch, calls } = manualFetch();
    const s = track(source(fetch));
    const p = s.get();
    const issuedAt = Date.now();
    await vi.advanceTimersByTimeAsync(2_000); // the request took 2 s
    calls[0]!.resolve(token('first', issuedAt));
    await p;
    await vi.advanceTimersByTimeAsync(0.8 * USABLE - 2_000 - 1);
    expect(fetch).toHaveBeenCalledTimes(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(fetch).toHaveBeenCalledTimes(2);
  });

  it('serves the current token without waiting while a refresh is in flight, then the new one', async () => {
    const { s, fetch, calls } = await firstToken();
    await vi.advanceTimersByTimeAsync(0.8 * USABLE);
    expect(fetch).toHaveBeenCalledTimes(2);
    expect(s.state).toBe('refreshing');
    const during = s.get();
    expect(await settled(during)).toBe(true);
    expect((await during).accessToken).toBe('first');
    expect(fetch).toHaveBeenCalledTimes(2);

    calls[1]!.resolve(token('second'));
    await vi.advanceTimersByTimeAsync(0);
    expect((await s.get()).accessToken).toBe('second');
    expect(s.state).toBe('fresh');
  });

  it('schedules the next refresh from the refreshed token', async () => {
    const { fetch, calls } = await firstToken();
    await vi.advanceTimersByTimeAsync(0.8 * USABLE);
    calls[1]!.resolve(token('second'));
    await vi.advanceTimersByTimeAsync(0.8 * USABLE - 1);
    expect(fetch).toHaveBeenCalledTimes(2);
    await vi.advanceTimersByTimeAsync(1);
    expect(fetch).toHaveBeenCalledTimes(3);
  });
});

describe('TokenSource: refresh failure', () => {
  it('keeps serving the current token and retries before it runs out', async () => {
    const { fetch, calls } = manualFetch();
    const refreshFailed = vi.fn();
    const s = track(source(fetch, { events: { refreshFailed } }));
    const p = s.get();
    calls[0]!.resolve(token('first'));
    await p;

    await vi.advanceTimersByTimeAsync(76_000);
    expect(fetch).toHaveBeenCalledTimes(2);
    const error = new Error('idp down');
    calls[1]!.reject(error);
    await vi.advanceTimersByTimeAsync(0);

    // Left: 95 000 − 76 000 = 19 000 ms; retried after a quarter of it.
    expect(refreshFailed).toHaveBeenCalledTimes(1);
    expect(refreshFailed).toHaveBeenCalledWith(error, 4_750);
    expect(s.lastError).toBe(error);
    expect((await s.get()).accessToken).toBe('first');
    expect(fetch).toHaveBeenCalledTimes(2);
    expect(s.state).toBe('fresh');

    await vi.advanceTimersByTimeAsync(4_749);
    expect(fetch).toHaveBeenCalledTimes(2);
    await vi.advanceTimersByTimeAsync(1);
    expect(fetch).toHaveBeenCalledTimes(3);
    calls[2]!.resolve(token('second'));
    await vi.advanceTimersByTimeAsync(0);
    expect((await s.get()).accessToken).toBe('second');
    expect(s.lastError).toBeUndefined();
  });

  it('never returns a token past its usable time, even while a refresh hangs', async () => {
    const { fetch, calls } = manualFetch();
    const s = track(source(fetch));
    const p = s.get();
    calls[0]!.resolve(token('first'));
    await p;

    await vi.advanceTimersByTimeAsync(USABLE - 1); // the refresh started at 76 s and never answers
    expect(fetch).toHaveBeenCalledTimes(2);
    expect((await s.get()).accessToken).toBe('first');

    await vi.advanceTimersByTimeAsync(1);
    expect(s.peek()).toBeUndefined();
    expect(s.state).toBe('expired');
    const late = s.get();
    expect(await settled(late)).toBe(false);
    expect(fetch).toHaveBeenCalledTimes(2); // joins the refresh in flight

    calls[1]!.resolve(token('second'));
    expect((await late).accessToken).toBe('second');
  });

  it('fetches anew once the token is past its usable time after failed refreshes', async () => {
    const { fetch, calls } = manualFetch();
    const s = track(source(fetch));
    const p = s.get();
    calls[0]!.resolve(token('first'));
    await p;
    // Fail every background attempt as soon as it starts.
    for (let t = 0; t < USABLE; t += 250) {
      await vi.advanceTimersByTimeAsync(250);
      for (const c of calls.slice(1)) c.reject(new Error('down'));
    }
    await vi.advanceTimersByTimeAsync(0);
    expect(Date.now()).toBeGreaterThanOrEqual(USABLE);
    const before = fetch.mock.calls.length;
    expect(before).toBeGreaterThan(2);
    const late = s.get();
    expect(await settled(late)).toBe(false);
    expect(fetch).toHaveBeenCalledTimes(before + 1);
    calls.at(-1)!.resolve(token('fresh'));
    expect((await late).accessToken).toBe('fresh');
  });
});

describe('TokenSource: close', () => {
  it('stops the refresh timer', async () => {
    const { fetch, calls } = manualFetch();
    const s = source(fetch);
    const p = s.get();
    calls[0]!.resolve(token('first'));
    await p;
    expect(vi.getTimerCount()).toBe(1);
    s.close();
    expect(vi.getTimerCount()).toBe(0);
    await vi.advanceTimersByTimeAsync(10 * LIFETIME);
    expect(fetch).toHaveBeenCalledTimes(1);
  });

  it('does not arm a timer when a fetch finishes after close()', async () => {
    const { fetch, calls } = manualFetch();
    const s = source(fetch);
    const p = s.get();
    s.close();
    calls[0]!.resolve(token('first'));
    expect((await p).accessToken).toBe('first');
    expect(vi.getTimerCount()).toBe(0);
    await vi.advanceTimersByTimeAsync(10 * LIFETIME);
    expect(fetch).toHaveBeenCalledTimes(1);
  });

  it('does not retry a refresh that fails after close()', async () => {
    const { fetch, calls } = manualFetch();
    const refreshFailed = vi.fn();
    const s = source(fetch, { events: { refreshFailed } });
    const p = s.get();
    calls[0]!.resolve(token('first'));
    await p;
    await vi.advanceTimersByTimeAsync(76_000);
    expect(fetch).toHaveBeenCalledTimes(2);
    s.close();
    calls[1]!.reject(new Error('down'));
    await vi.advanceTimersByTimeAsync(0);
    expect(refreshFailed).not.toHaveBeenCalled();
    expect(vi.getTimerCount()).toBe(0);
  });
});
