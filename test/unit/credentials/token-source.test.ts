import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import {
  isTransient,
  type RetryPolicy,
  TokenSource,
  type TokenSourceEvents,
  usableUntil,
} from '../../../src/credentials/token-source.js';
import {
  AssertionInvalidError,
  CredentialBackoffError,
  CredentialInputError,
  TokenEndpointRejectedError,
  TokenEndpointTimeoutError,
  TokenEndpointUnreachableError,
  TokenError,
  TokenResponseInvalidError,
} from '../../../src/errors.js';
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
  fetch: (previous: Token | undefined, deadline: number) => Promise<Token>,
  opts: {
    refreshAhead?: number | null;
    random?: number;
    events?: TokenSourceEvents;
    retry?: RetryPolicy;
    keepFresh?: boolean;
  } = {},
) {
  return new TokenSource({
    name: 'orders',
    fetch,
    // null: no background refresh (tokens renewed on demand only).
    refreshAhead: opts.refreshAhead === null ? undefined : (opts.refreshAhead ?? 0.8),
    // Most tests are about when refreshes happen: refreshed whether used or not, unless they say.
    keepFresh: opts.keepFresh ?? true,
    now: () => Date.now(),
    random: () => opts.random ?? 0,
    ...(opts.events ? { events: opts.events } : {}),
    ...(opts.retry ? { retry: opts.retry } : {}),
  });
}

/** The rejection of a promise; fails the test if it resolves. */
async function rejection(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    (value) => {
      throw new Error(`expected a rejection, got ${JSON.stringify(value)}`);
    },
    (error: unknown) => error,
  );
}

/**
 * The error a failed fetch hands its waiters: a CredentialBackoffError with the failure as cause,
 * its code, and when the next attempt is due.
 */
async function backoffFrom(p: Promise<unknown>, cause: unknown): Promise<CredentialBackoffError> {
  const e = await rejection(p);
  expect(e).toBeInstanceOf(CredentialBackoffError);
  const backoff = e as CredentialBackoffError;
  expect(backoff.cause).toBe(cause);
  expect(backoff.code).toBe((cause as { code: string }).code);
  expect(backoff.credential).toBe('orders');
  return backoff;
}

const unreachable = () => new TokenEndpointUnreachableError('orders', 'connection refused');
const invalidClient = () => new TokenEndpointRejectedError('orders', 401, 'invalid_client', undefined);

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
    const s = track(source(fetch));
    expect(s.state).toBe('empty');
    const waiting = Array.from({ length: 10 }, () => s.token());
    for (const w of waiting) expect(w).toBe(waiting[0]); // one promise: a miss for each caller
    expect(waiting[0]).toBeInstanceOf(Promise);
    expect(fetch).toHaveBeenCalledTimes(1);
    const t = token('one');
    calls[0]!.resolve(t);
    const results = await Promise.all(waiting);
    for (const r of results) expect(r).toBe(t);
    expect(s.state).toBe('fresh');

    expect(s.token()).toBe(t); // the token itself, synchronously: a hit
    expect(await s.get()).toBe(t);
    expect(fetch).toHaveBeenCalledTimes(1);
  });

  it('hands every waiter the same failure, with its Retry-After; the next get() fails fast until the backoff step has passed, then fetches', async () => {
    const { fetch, calls } = manualFetch();
    const s = track(source(fetch));
    const waiting = [s.get(), s.get(), s.get()];
    const error = new TokenEndpointRejectedError('orders', 400, 'invalid_grant', undefined);
    calls[0]!.reject(error);
    const handed = await Promise.all(waiting.map((p) => backoffFrom(p, error)));
    for (const e of handed) expect(e).toBe(handed[0]);
    expect(handed[0]!.retryAfterSeconds).toBe(1); // 125 ms, rounded up
    expect(fetch).toHaveBeenCalledTimes(1);
    expect(s.lastError).toBe(error);
    expect(s.state).toBe('failing');

    // Default policy: 250 ms step; random() = 0 halves it.
    const fast = await rejection(s.get());
    expect(fast).toBeInstanceOf(CredentialBackoffError);
    expect(fetch).toHaveBeenCalledTimes(1);
    await vi.advanceTimersByTimeAsync(124);
    await expect(s.get()).rejects.toBeInstanceOf(CredentialBackoffError);
    expect(fetch).toHaveBeenCalledTimes(1);

    await vi.advanceTimersByTimeAsync(1);
    const next = s.get();
    expect(fetch).toHaveBeenCalledTimes(2);
    const t = token('two');
    calls[1]!.resolve(t);
    expect(await next).toBe(t);
    expect(s.lastError).toBeUndefined();
    expect(s.state).toBe('fresh');
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
  it('keeps serving the current token (stale) and retries after the backoff step', async () => {
    const { fetch, calls } = manualFetch();
    const refreshFailed = vi.fn();
    const s = track(source(fetch, { events: { refreshFailed } }));
    const p = s.get();
    calls[0]!.resolve(token('first'));
    await p;

    await vi.advanceTimersByTimeAsync(76_000);
    expect(fetch).toHaveBeenCalledTimes(2);
    const error = invalidClient(); // permanent: no retry within this fetch
    calls[1]!.reject(error);
    await vi.advanceTimersByTimeAsync(0);

    // First failure: a 250 ms step, halved by random() = 0.
    expect(refreshFailed).toHaveBeenCalledTimes(1);
    expect(refreshFailed).toHaveBeenCalledWith(expect.any(CredentialBackoffError), 125);
    expect((refreshFailed.mock.calls[0]![0] as CredentialBackoffError).cause).toBe(error);
    expect(s.lastError).toBe(error);
    expect((await s.get()).accessToken).toBe('first');
    expect(fetch).toHaveBeenCalledTimes(2);
    expect(s.state).toBe('stale');

    await vi.advanceTimersByTimeAsync(124);
    expect(fetch).toHaveBeenCalledTimes(2);
    await vi.advanceTimersByTimeAsync(1);
    expect(fetch).toHaveBeenCalledTimes(3);
    calls[2]!.resolve(token('second'));
    await vi.advanceTimersByTimeAsync(0);
    expect((await s.get()).accessToken).toBe('second');
    expect(s.lastError).toBeUndefined();
    expect(s.state).toBe('fresh');
  });

  it('doubles the wait between failing background refreshes and stops once the token would run out first', async () => {
    const fetch = vi.fn<(previous: Token | undefined, deadline: number) => Promise<Token>>();
    fetch.mockResolvedValueOnce(token('first')).mockRejectedValue(invalidClient());
    const refreshFailed = vi.fn();
    const s = track(source(fetch, { events: { refreshFailed } }));
    await s.get();
    await vi.advanceTimersByTimeAsync(LIFETIME);
    // Half of 250, 500, … (random() = 0), the last step capped by maxBackoffMs (30 000).
    expect(refreshFailed.mock.calls.map((c) => c[1])).toEqual([
      125, 250, 500, 1_000, 2_000, 4_000, 8_000, 15_000,
    ]);
    // Refreshes at 76 000, then +125, +250, … +8 000 = 91 875; the next (+15 000) would come after 99 000.
    expect(fetch).toHaveBeenCalledTimes(1 + 8);
    for (const call of fetch.mock.calls.slice(1)) expect(call[0]?.accessToken).toBe('first');
    // No background attempt after that: the next fetch is up to the next caller.
    await vi.advanceTimersByTimeAsync(10 * LIFETIME);
    expect(fetch).toHaveBeenCalledTimes(1 + 8);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('serves the token while a refresh hangs until 1 s before its real expiry, never after', async () => {
    const { fetch, calls } = manualFetch();
    const s = track(source(fetch));
    const p = s.get();
    calls[0]!.resolve(token('first'));
    await p;

    await vi.advanceTimersByTimeAsync(USABLE); // the refresh started at 76 s and never answers
    expect(fetch).toHaveBeenCalledTimes(2);
    expect(s.state).toBe('refreshing');
    expect((await s.get()).accessToken).toBe('first');
    await vi.advanceTimersByTimeAsync(LIFETIME - 1_000 - USABLE - 1); // 98 999
    expect((await s.get()).accessToken).toBe('first');

    await vi.advanceTimersByTimeAsync(1); // 99 000: 1 s before the real expiry
    expect(s.peek()).toBeUndefined();
    expect(s.state).toBe('expired');
    const late = s.get();
    expect(await settled(late)).toBe(false);
    expect(fetch).toHaveBeenCalledTimes(2); // joins the refresh in flight

    calls[1]!.resolve(token('second'));
    expect((await late).accessToken).toBe('second');
  });

  it('serves a stale token after failed refreshes until 1 s before its expiry, then fails fast, then fetches anew', async () => {
    const fetch = vi.fn<(previous: Token | undefined, deadline: number) => Promise<Token>>();
    const error = invalidClient();
    fetch.mockResolvedValueOnce(token('first')).mockRejectedValue(error);
    const s = track(source(fetch));
    await s.get();
    await vi.advanceTimersByTimeAsync(USABLE + 1); // past the safety margin
    expect(fetch.mock.calls.length).toBeGreaterThan(2);
    expect(s.state).toBe('stale');
    expect((await s.get()).accessToken).toBe('first');
    vi.setSystemTime(LIFETIME - 1_000 - 1);
    expect((await s.get()).accessToken).toBe('first');

    vi.setSystemTime(LIFETIME - 1_000);
    expect(s.peek()).toBeUndefined();
    expect(s.state).toBe('failing');
    const before = fetch.mock.calls.length;
    // The last refresh failed at 91 875 with a 15 000 ms wait: no attempt before 106 875.
    const fast = await rejection(s.get());
    expect(fast).toBeInstanceOf(CredentialBackoffError);
    expect((fast as CredentialBackoffError).code).toBe('token_endpoint_rejected');
    expect((fast as CredentialBackoffError).retryAfterSeconds).toBe(8); // ceil(7 875 ms)
    expect(fetch).toHaveBeenCalledTimes(before);

    vi.setSystemTime(106_875 - 1);
    await expect(s.get()).rejects.toBeInstanceOf(CredentialBackoffError);
    vi.setSystemTime(106_875);
    fetch.mockResolvedValueOnce(token('fresh'));
    expect((await s.get()).accessToken).toBe('fresh');
    expect(fetch).toHaveBeenCalledTimes(before + 1);
    expect(s.state).toBe('fresh');
  });

  it('serves the token to the caller whose get() starts an on-demand renewal past the safety margin', async () => {
    // No background refresh (tokens of per-request assertions): the first get() past usableUntil
    // starts the renewal. Stale-while-error serves the token while that renewal is in flight or
    // failed; the caller who started it must not be the one request that waits and then fails.
    const { fetch, calls } = manualFetch();
    const s = track(source(fetch, { refreshAhead: null }));
    const p = s.get();
    calls[0]!.resolve(token('first'));
    await p;
    vi.setSystemTime(USABLE + 1_000);
    const starter = s.get();
    expect(fetch).toHaveBeenCalledTimes(2);
    expect((await s.get()).accessToken).toBe('first'); // a second caller gets the token at once
    expect(await settled(starter)).toBe(true);
    calls[1]!.reject(invalidClient());
    expect((await starter).accessToken).toBe('first');
  });

  it('serves the token (stale) while a background refresh retries a transient failure', async () => {
    const { fetch, calls } = manualFetch();
    const s = track(source(fetch, { random: 1 }));
    const p = s.get();
    calls[0]!.resolve(token('first'));
    await p;
    await vi.advanceTimersByTimeAsync(0.75 * USABLE); // random() = 1: the earliest refresh
    expect(fetch).toHaveBeenCalledTimes(2);
    calls[1]!.reject(unreachable());
    await vi.advanceTimersByTimeAsync(0);
    expect(s.state).toBe('stale');
    expect((await s.get()).accessToken).toBe('first');
    await vi.advanceTimersByTimeAsync(250); // random() = 1: the full 250 ms step
    expect(fetch).toHaveBeenCalledTimes(3);
    calls[2]!.resolve(token('second'));
    await vi.advanceTimersByTimeAsync(0);
    expect((await s.get()).accessToken).toBe('second');
    expect(s.state).toBe('fresh');
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

describe('isTransient', () => {
  const rejected = (status: number, oauthError?: string) =>
    new TokenEndpointRejectedError('orders', status, oauthError, undefined);
  it.each([
    ['an unreachable endpoint', true, unreachable()],
    ['a timeout', true, new TokenEndpointTimeoutError('orders', 'slow')],
    ['a missing local input (a file not yet written)', true, new CredentialInputError('orders', 'ENOENT')],
    ['500 without an OAuth error', true, rejected(500)],
    ['502 without an OAuth error', true, rejected(502)],
    ['503 without an OAuth error', true, rejected(503)],
    ['504 without an OAuth error', true, rejected(504)],
    ['429 without an OAuth error', true, rejected(429)],
    ['429 rate_limit_exceeded', true, rejected(429, 'rate_limit_exceeded')],
    ['429 slow_down', true, rejected(429, 'slow_down')],
    ['429 with any other OAuth error', true, rejected(429, 'invalid_request')],
    [
      'a backoff after a 429 slow_down',
      true,
      new CredentialBackoffError('orders', rejected(429, 'slow_down'), 1),
    ],
    ['503 temporarily_unavailable', true, rejected(503, 'temporarily_unavailable')],
    ['500 server_error', true, rejected(500, 'server_error')],
    ['400 invalid_grant', false, rejected(400, 'invalid_grant')],
    ['401 invalid_client', false, rejected(401, 'invalid_client')],
    ['400 invalid_request', false, rejected(400, 'invalid_request')],
    ['400 without an OAuth error', false, rejected(400)],
    ['403 without an OAuth error', false, rejected(403)],
    ['500 invalid_client (the server said no)', false, rejected(500, 'invalid_client')],
    ['an unusable token response', false, new TokenResponseInvalidError('orders', 'no access_token')],
    ['an invalid assertion from the app', false, new AssertionInvalidError('x-assertion', 'not base64')],
    ['a plain Error', false, new Error('boom')],
    ['a string', false, 'boom'],
    ['undefined', false, undefined],
    ['a backoff after an unreachable endpoint', true, new CredentialBackoffError('orders', unreachable(), 1)],
    ['a backoff after a 503', true, new CredentialBackoffError('orders', rejected(503), 1)],
    [
      'a backoff after invalid_client',
      false,
      new CredentialBackoffError('orders', rejected(401, 'invalid_client'), 1),
    ],
  ])('%s → transient: %s', (_what, transient, error) => {
    expect(isTransient(error)).toBe(transient);
  });
});

describe('TokenSource: retries within the deadline', () => {
  const RETRY: RetryPolicy = { deadlineMs: 10_000, initialBackoffMs: 250, maxBackoffMs: 30_000 };

  it('retries transient failures with doubling waits until one succeeds, all under one deadline', async () => {
    const { fetch, calls } = manualFetch();
    const s = track(source(fetch, { retry: RETRY, random: 1 })); // random() = 1: the full step
    const p = s.get();
    expect(fetch).toHaveBeenCalledTimes(1);
    calls[0]!.reject(unreachable());
    const next = [
      new TokenEndpointTimeoutError('orders', 'slow'),
      new TokenEndpointRejectedError('orders', 503, undefined, undefined),
      new TokenEndpointRejectedError('orders', 429, undefined, undefined),
    ];
    for (const [i, wait] of [250, 500, 1_000, 2_000].entries()) {
      await vi.advanceTimersByTimeAsync(wait - 1);
      expect(fetch).toHaveBeenCalledTimes(i + 1);
      expect(s.state).toBe('failing');
      // A caller arriving during the wait joins the fetch: neither a second fetch nor a fast failure.
      const joined = s.get();
      expect(await settled(joined)).toBe(false);
      await vi.advanceTimersByTimeAsync(1);
      expect(fetch).toHaveBeenCalledTimes(i + 2);
      if (i < next.length) calls[i + 1]!.reject(next[i]);
    }
    expect(Date.now()).toBe(3_750);
    const t = token('finally');
    calls[4]!.resolve(t);
    expect(await p).toBe(t);
    expect(fetch.mock.calls.map((c) => (c as unknown[])[1])).toEqual([
      10_000, 10_000, 10_000, 10_000, 10_000,
    ]);
    expect(s.lastError).toBeUndefined();
    expect(s.state).toBe('fresh');
  });

  it.each([
    // deadline, attempts, Retry-After: tries at 0, 250, 750, 1 750, 3 750 (random() = 1); the
    // waiters learn the wait that ended the fetch (250, 500, 1 000, 2 000 ms), rounded up.
    [250, 1, 1],
    [251, 2, 1],
    [750, 2, 1],
    [1_750, 3, 1],
    [1_751, 4, 2],
    [3_750, 4, 2],
  ])(
    'with a deadline of %d ms gives up after %d attempts, before the next one would pass it (Retry-After %d s)',
    async (deadlineMs, attempts, retryAfterSeconds) => {
      const error = unreachable();
      const fetch = vi.fn(() => Promise.reject(error));
      const s = track(source(fetch, { retry: { ...RETRY, deadlineMs }, random: 1 }));
      const p = s.get();
      p.catch(() => {});
      await vi.advanceTimersByTimeAsync(20_000);
      expect((await backoffFrom(p, error)).retryAfterSeconds).toBe(retryAfterSeconds);
      expect(fetch).toHaveBeenCalledTimes(attempts);
    },
  );

  it('rejects at the last attempt, not at the deadline', async () => {
    const error = unreachable();
    const fetch = vi.fn(() => Promise.reject(error));
    const s = track(source(fetch, { retry: { ...RETRY, deadlineMs: 2_000 }, random: 1 }));
    const p = s.get();
    await vi.advanceTimersByTimeAsync(1_749);
    expect(await settled(p)).toBe(false);
    await vi.advanceTimersByTimeAsync(1);
    expect(await settled(p)).toBe(true);
    await backoffFrom(p, error);
  });

  it('caps each wait at maxBackoffMs', async () => {
    const at: number[] = [];
    const fetch = vi.fn(() => {
      at.push(Date.now());
      return Promise.reject(unreachable());
    });
    const s = track(
      source(fetch, {
        retry: { deadlineMs: 60_000, initialBackoffMs: 1_000, maxBackoffMs: 3_000 },
        random: 1,
      }),
    );
    s.get().catch(() => {});
    await vi.advanceTimersByTimeAsync(13_000);
    expect(at).toEqual([0, 1_000, 3_000, 6_000, 9_000, 12_000]);
  });

  it.each([
    [0, 500],
    [0.5, 750],
    [1, 1_000],
  ])('with random() = %d waits %d ms of a 1 000 ms step', async (random, wait) => {
    const fetch = vi.fn(() => Promise.reject(unreachable()));
    const s = track(source(fetch, { retry: { ...RETRY, initialBackoffMs: 1_000 }, random }));
    s.get().catch(() => {});
    await vi.advanceTimersByTimeAsync(wait - 1);
    expect(fetch).toHaveBeenCalledTimes(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(fetch).toHaveBeenCalledTimes(2);
  });

  it.each([
    ['400 invalid_grant', new TokenEndpointRejectedError('orders', 400, 'invalid_grant', undefined)],
    ['401 invalid_client', new TokenEndpointRejectedError('orders', 401, 'invalid_client', undefined)],
    ['503 invalid_client', new TokenEndpointRejectedError('orders', 503, 'invalid_client', undefined)],
    ['an unusable response', new TokenResponseInvalidError('orders', 'no access_token')],
    ['a plain Error', new Error('bug')],
  ])('does not retry a permanent failure: %s', async (_what, error) => {
    const fetch = vi.fn(() => Promise.reject(error));
    const s = track(source(fetch, { retry: RETRY, random: 1 }));
    if (error instanceof TokenError) await backoffFrom(s.get(), error);
    else await expect(s.get()).rejects.toBe(error); // not the endpoint's failure: handed on as it is
    await vi.advanceTimersByTimeAsync(RETRY.deadlineMs * 2);
    expect(fetch).toHaveBeenCalledTimes(1);
  });

  it('waits as long as the Retry-After asks when that is longer than the step', async () => {
    const fetch = vi.fn<() => Promise<Token>>();
    fetch
      .mockRejectedValueOnce(new TokenEndpointRejectedError('orders', 503, undefined, undefined, 3_000))
      .mockResolvedValueOnce(token('later', 3_000));
    const s = track(source(fetch, { retry: RETRY, random: 1 }));
    const p = s.get();
    await vi.advanceTimersByTimeAsync(2_999);
    expect(fetch).toHaveBeenCalledTimes(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(fetch).toHaveBeenCalledTimes(2);
    expect((await p).accessToken).toBe('later');
  });

  it('never waits less than the step for a shorter Retry-After', async () => {
    const fetch = vi.fn(() =>
      Promise.reject(new TokenEndpointRejectedError('orders', 429, undefined, undefined, 10)),
    );
    const s = track(source(fetch, { retry: RETRY, random: 1 }));
    s.get().catch(() => {});
    await vi.advanceTimersByTimeAsync(249);
    expect(fetch).toHaveBeenCalledTimes(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(fetch).toHaveBeenCalledTimes(2);
  });

  it('ends the fetch at once when the Retry-After passes the deadline, and fails fast that long', async () => {
    const error = new TokenEndpointRejectedError('orders', 503, undefined, undefined, 60_000);
    const fetch = vi.fn<() => Promise<Token>>().mockRejectedValueOnce(error);
    const s = track(source(fetch, { retry: RETRY, random: 1 }));
    expect((await backoffFrom(s.get(), error)).retryAfterSeconds).toBe(60);
    expect(fetch).toHaveBeenCalledTimes(1);
    const fast = await rejection(s.get());
    expect((fast as CredentialBackoffError).retryAfterSeconds).toBe(60);
    await vi.advanceTimersByTimeAsync(59_999);
    await expect(s.get()).rejects.toBeInstanceOf(CredentialBackoffError);
    expect(fetch).toHaveBeenCalledTimes(1);
    await vi.advanceTimersByTimeAsync(1);
    fetch.mockResolvedValueOnce(token('back'));
    expect((await s.get()).accessToken).toBe('back');
  });

  it('honours a Retry-After only up to four maximum steps', async () => {
    const error = new TokenEndpointRejectedError('orders', 503, undefined, undefined, 3_600_000);
    const s = track(source(() => Promise.reject(error), { retry: RETRY, random: 1 }));
    expect((await backoffFrom(s.get(), error)).retryAfterSeconds).toBe(120);
    const fast = await rejection(s.get());
    expect((fast as CredentialBackoffError).retryAfterSeconds).toBe((4 * RETRY.maxBackoffMs) / 1000);
  });
});

describe('TokenSource: fail fast while backing off', () => {
  // A deadline shorter than the first step: a transient failure ends the fetch at once too.
  const RETRY: RetryPolicy = { deadlineMs: 100, initialBackoffMs: 1_000, maxBackoffMs: 30_000 };

  it.each([
    ['token_endpoint_unreachable', unreachable()],
    ['token_endpoint_timeout', new TokenEndpointTimeoutError('orders', 'slow')],
    ['token_endpoint_rejected', invalidClient()],
    ['token_response_invalid', new TokenResponseInvalidError('orders', 'no access_token')],
    ['credential_input_unavailable', new CredentialInputError('orders', 'ENOENT')],
  ])('fails fast with %s and a Retry-After, without calling fetch', async (code, error) => {
    const fetch = vi.fn(() => Promise.reject(error));
    const s = track(source(fetch, { retry: RETRY, random: 1 }));
    const handed = await backoffFrom(s.get(), error);
    expect(s.state).toBe('failing');
    const backoff = await backoffFrom(s.get(), error);
    expect(backoff).not.toBe(handed); // a new one, counting down
    expect(backoff.code).toBe(code);
    expect(backoff.credential).toBe('orders');
    expect(backoff.retryAfterSeconds).toBe(1);
    expect(backoff.cause).toBe(error);
    expect(backoff.message).toContain(error.message);
    expect(backoff.message).toContain('next attempt in 1s');
    expect(fetch).toHaveBeenCalledTimes(1);
    const miss = s.token();
    expect(miss).toBeInstanceOf(Promise); // failing fast is a miss too
    await rejection(miss as Promise<Token>);
  });

  it("does not back off from a failure that is not the endpoint's (the app's own input)", async () => {
    const invalid = new AssertionInvalidError('x-assertion', 'not base64');
    const fetch = vi.fn<() => Promise<Token>>().mockRejectedValueOnce(invalid);
    const s = track(source(fetch, { retry: RETRY, random: 1 }));
    await expect(s.get()).rejects.toBe(invalid);
    expect(s.lastError).toBeUndefined();
    expect(s.state).toBe('empty');
    fetch.mockResolvedValueOnce(token('ok'));
    expect((await s.get()).accessToken).toBe('ok');
    expect(fetch).toHaveBeenCalledTimes(2);
  });

  it('rounds the Retry-After up to whole seconds and counts it down', async () => {
    const fetch = vi.fn(() => Promise.reject(invalidClient()));
    const s = track(source(fetch, { retry: { ...RETRY, initialBackoffMs: 5_000 }, random: 1 }));
    await expect(s.get()).rejects.toBeInstanceOf(CredentialBackoffError);
    const retryAfter = async () => ((await rejection(s.get())) as CredentialBackoffError).retryAfterSeconds;
    expect(await retryAfter()).toBe(5);
    await vi.advanceTimersByTimeAsync(1);
    expect(await retryAfter()).toBe(5);
    await vi.advanceTimersByTimeAsync(3_999);
    expect(await retryAfter()).toBe(1);
    await vi.advanceTimersByTimeAsync(999);
    expect(await retryAfter()).toBe(1);
    expect(fetch).toHaveBeenCalledTimes(1);
  });

  it('probes with exactly one fetch once the step has passed, however many callers arrive', async () => {
    const { fetch, calls } = manualFetch();
    const s = track(source(fetch, { retry: RETRY, random: 1 }));
    const first = s.get();
    calls[0]!.reject(invalidClient());
    await expect(first).rejects.toBeInstanceOf(CredentialBackoffError);

    await vi.advanceTimersByTimeAsync(999);
    const early = await Promise.all(Array.from({ length: 100 }, () => rejection(s.get())));
    for (const e of early) expect(e).toBeInstanceOf(CredentialBackoffError);
    expect(fetch).toHaveBeenCalledTimes(1);

    await vi.advanceTimersByTimeAsync(1);
    const probing = Array.from({ length: 100 }, () => s.get());
    expect(fetch).toHaveBeenCalledTimes(2);
    const t = token('back');
    calls[1]!.resolve(t);
    for (const r of await Promise.all(probing)) expect(r).toBe(t);
    expect(fetch).toHaveBeenCalledTimes(2);
  });

  it('hands a failed probe to all its callers and doubles the next step', async () => {
    const { fetch, calls } = manualFetch();
    const s = track(source(fetch, { retry: RETRY, random: 1 }));
    const first = s.get();
    calls[0]!.reject(invalidClient());
    await expect(first).rejects.toBeInstanceOf(CredentialBackoffError);
    await vi.advanceTimersByTimeAsync(1_000);

    const probing = Array.from({ length: 100 }, () => rejection(s.get()));
    expect(fetch).toHaveBeenCalledTimes(2);
    const again = invalidClient();
    calls[1]!.reject(again);
    const handed = await Promise.all(probing);
    for (const e of handed) expect(e).toBe(handed[0]);
    expect((handed[0] as CredentialBackoffError).cause).toBe(again);
    expect((handed[0] as CredentialBackoffError).retryAfterSeconds).toBe(2);

    // Second failure: a 2 000 ms step.
    await vi.advanceTimersByTimeAsync(1_999);
    expect(((await rejection(s.get())) as CredentialBackoffError).cause).toBe(again);
    expect(fetch).toHaveBeenCalledTimes(2);
    await vi.advanceTimersByTimeAsync(1);
    s.get().catch(() => {});
    expect(fetch).toHaveBeenCalledTimes(3);
  });

  it('starts over from the first step after a success', async () => {
    const fetch = vi.fn<() => Promise<Token>>();
    fetch.mockRejectedValueOnce(invalidClient()).mockRejectedValueOnce(invalidClient());
    const s = track(source(fetch, { retry: RETRY, random: 1, refreshAhead: null }));
    const retryAfter = async () => ((await rejection(s.get())) as CredentialBackoffError).retryAfterSeconds;
    expect(await retryAfter()).toBe(1); // step 1 000
    await vi.advanceTimersByTimeAsync(1_000);
    expect(await retryAfter()).toBe(2); // step 2 000
    await vi.advanceTimersByTimeAsync(2_000);
    fetch.mockResolvedValueOnce(token('ok', 3_000));
    expect((await s.get()).accessToken).toBe('ok');
    expect(fetch).toHaveBeenCalledTimes(3);

    // The token runs out; the next failure waits the first step again, not 4 000 ms.
    await vi.advanceTimersByTimeAsync(LIFETIME);
    fetch.mockRejectedValueOnce(invalidClient());
    expect(await retryAfter()).toBe(1);
    expect(fetch).toHaveBeenCalledTimes(4);
    await vi.advanceTimersByTimeAsync(999);
    await expect(s.get()).rejects.toBeInstanceOf(CredentialBackoffError);
    expect(fetch).toHaveBeenCalledTimes(4);
    await vi.advanceTimersByTimeAsync(1);
    fetch.mockResolvedValueOnce(token('again'));
    expect((await s.get()).accessToken).toBe('again');
    expect(fetch).toHaveBeenCalledTimes(5);
  });
});

describe('TokenSource: invalidate', () => {
  async function withToken(opts: Parameters<typeof source>[1] = {}) {
    const { fetch, calls } = manualFetch();
    const s = track(source(fetch, opts));
    const p = s.get();
    calls[0]!.resolve(token('first'));
    const first = await p;
    return { s, fetch, calls, first };
  }

  it('makes the next get() fetch, passing the refused token on (for its refresh token)', async () => {
    const { s, fetch, calls, first } = await withToken();
    s.invalidate('first');
    expect(s.peek()).toBeUndefined();
    const p = s.get();
    expect(fetch).toHaveBeenCalledTimes(2);
    // (A credential's own source has no request to pass on: the third argument.)
    expect(fetch.mock.calls[1]).toEqual([first, expect.any(Number), undefined]);
    calls[1]!.resolve(token('second'));
    expect((await p).accessToken).toBe('second');
    expect((await s.get()).accessToken).toBe('second');
    expect(fetch).toHaveBeenCalledTimes(2);
  });

  it('fetches at once even during a failure backoff', async () => {
    const { s, fetch, calls } = await withToken({
      retry: { deadlineMs: 10_000, initialBackoffMs: 10_000, maxBackoffMs: 30_000 },
      random: 1,
    });
    await vi.advanceTimersByTimeAsync(0.75 * USABLE); // random() = 1: the earliest refresh
    expect(fetch).toHaveBeenCalledTimes(2);
    calls[1]!.reject(invalidClient()); // the next refresh is 10 s away
    await vi.advanceTimersByTimeAsync(0);
    expect(s.state).toBe('stale');

    s.invalidate('first');
    const p = s.get();
    expect(fetch).toHaveBeenCalledTimes(3);
    calls[2]!.resolve(token('second'));
    expect((await p).accessToken).toBe('second');
  });

  it('does nothing for a token already replaced, nor without a token', async () => {
    const fetch = vi.fn<() => Promise<Token>>();
    fetch.mockResolvedValueOnce(token('first')).mockResolvedValueOnce(token('second'));
    const s = track(source(fetch, { refreshAhead: null }));
    await s.get();
    s.invalidate('first');
    expect((await s.get()).accessToken).toBe('second');
    s.invalidate('first'); // a late 401 for the old token
    s.invalidate('unknown');
    expect((await s.get()).accessToken).toBe('second');
    expect(fetch).toHaveBeenCalledTimes(2);

    // 'second' runs out and its renewal fails: a late 401 for 'first' must not cut the backoff short.
    await vi.advanceTimersByTimeAsync(LIFETIME);
    fetch.mockRejectedValueOnce(invalidClient());
    await expect(s.get()).rejects.toBeInstanceOf(CredentialBackoffError);
    s.invalidate('first');
    await expect(s.get()).rejects.toBeInstanceOf(CredentialBackoffError);
    expect(fetch).toHaveBeenCalledTimes(3);
    // …whereas one for the current token does.
    s.invalidate('second');
    fetch.mockResolvedValueOnce(token('third'));
    expect((await s.get()).accessToken).toBe('third');
    expect(fetch).toHaveBeenCalledTimes(4);

    const failing = track(
      source(() => Promise.reject(invalidClient()), {
        retry: { deadlineMs: 100, initialBackoffMs: 1_000, maxBackoffMs: 1_000 },
        random: 1,
      }),
    );
    await expect(failing.get()).rejects.toBeInstanceOf(CredentialBackoffError);
    failing.invalidate('anything');
    await expect(failing.get()).rejects.toBeInstanceOf(CredentialBackoffError);
  });

  it('serves a token the server issues again after invalidate, without a fetch per request', async () => {
    // Some servers answer a client_credentials request with the token they issued before.
    const fetch = vi.fn(async () => token('same', Date.now()));
    const s = track(source(fetch));
    await s.get();
    s.invalidate('same');
    expect((await s.get()).accessToken).toBe('same');
    expect(fetch).toHaveBeenCalledTimes(2);
    await s.get();
    await s.get();
    expect(fetch).toHaveBeenCalledTimes(2);
  });
});

describe('TokenSource: close during a backoff', () => {
  it('ends the wait: callers get the last error at once and no attempt follows', async () => {
    const { fetch, calls } = manualFetch();
    const s = source(fetch, {
      retry: { deadlineMs: 60_000, initialBackoffMs: 10_000, maxBackoffMs: 30_000 },
    });
    const p = s.get();
    const error = unreachable();
    calls[0]!.reject(error);
    await vi.advanceTimersByTimeAsync(1);
    expect(await settled(p)).toBe(false); // waiting 5 s before the next attempt
    s.close();
    expect(await settled(p)).toBe(true);
    await expect(p).rejects.toBe(error);
    expect(vi.getTimerCount()).toBe(0);
    await vi.advanceTimersByTimeAsync(60_000);
    expect(fetch).toHaveBeenCalledTimes(1);
  });
});

describe('TokenSource: an upstream that keeps refusing tokens', () => {
  // Holds last initial_backoff, doubling up to max_backoff.
  const RETRY: RetryPolicy = { deadlineMs: 10_000, initialBackoffMs: 1_000, maxBackoffMs: 4_000 };

  /** A source whose every fetch answers at once with a new token: t1, t2, … */
  async function counting() {
    let n = 0;
    const fetch = vi.fn(async () => token(`t${++n}`, Date.now()));
    const s = track(source(fetch, { retry: RETRY }));
    await s.get();
    return { s, fetch };
  }

  it('lets concurrent refusals of one token share one refetch, and each request retry', async () => {
    const { s, fetch } = await counting();
    expect([s.invalidate('t1'), s.invalidate('t1'), s.invalidate('t1')]).toEqual([true, true, true]);
    const retries = [s.get(), s.get(), s.get()];
    for (const t of await Promise.all(retries)) expect(t.accessToken).toBe('t2');
    expect(fetch).toHaveBeenCalledTimes(2);
    // A late refusal of t1 leaves t2 alone, and its request may retry (with t2).
    expect(s.invalidate('t1')).toBe(true);
    expect(s.token()).toMatchObject({ accessToken: 't2' });
    expect(fetch).toHaveBeenCalledTimes(2);
  });

  it('holds a refused replacement for a backoff step: still served, no refetch, no retry; then one refetch', async () => {
    const { s, fetch } = await counting();
    expect(s.invalidate('t1')).toBe(true);
    await s.get(); // t2, fetched because t1 was refused
    expect(s.invalidate('t2')).toBe(false);
    for (let i = 0; i < 50; i++) {
      expect(s.token()).toMatchObject({ accessToken: 't2' }); // synchronously: the app gets the upstream's 401
      expect(s.invalidate('t2')).toBe(false);
    }
    expect(s.invalidate('t1')).toBe(false); // nor would a late refusal of t1 retry (with t2)
    await vi.advanceTimersByTimeAsync(999);
    expect(s.token()).toMatchObject({ accessToken: 't2' });
    expect(fetch).toHaveBeenCalledTimes(2);

    await vi.advanceTimersByTimeAsync(1); // the step has passed: one refetch
    expect(s.peek()).toBeUndefined();
    expect(s.invalidate('t2')).toBe(true); // a request that was still out with t2 may retry now
    const next = [s.get(), s.get()];
    for (const t of await Promise.all(next)) expect(t.accessToken).toBe('t3');
    expect(fetch).toHaveBeenCalledTimes(3);
  });

  it('doubles the hold while replacements keep being refused, up to max_backoff', async () => {
    const { s, fetch } = await counting();
    s.invalidate('t1');
    await s.get();
    const holds: number[] = [];
    for (let n = 2; n <= 5; n++) {
      const since = Date.now();
      expect(s.invalidate(`t${n}`)).toBe(false);
      // Step through the hold in 250 ms slices until the next token is fetched.
      while (!(s.token() instanceof Promise)) await vi.advanceTimersByTimeAsync(250);
      holds.push(Date.now() - since);
      expect((await s.get()).accessToken).toBe(`t${n + 1}`);
    }
    expect(holds).toEqual([1_000, 2_000, 4_000, 4_000]);
    expect(fetch).toHaveBeenCalledTimes(6);
  });

  it('refetches at once again once a token has lived its life (a background refresh ends the series)', async () => {
    const { s, fetch } = await counting();
    s.invalidate('t1');
    await s.get();
    expect(s.invalidate('t2')).toBe(false); // held
    await vi.advanceTimersByTimeAsync(1_000);
    await s.get(); // t3, accepted this time
    await vi.advanceTimersByTimeAsync(0.8 * USABLE); // refreshed ahead: t4
    expect(fetch).toHaveBeenCalledTimes(4);
    expect(s.invalidate('t4')).toBe(true);
    expect((await s.get()).accessToken).toBe('t5');
    expect(s.invalidate('t5')).toBe(false); // and the series starts over from the first step
    await vi.advanceTimersByTimeAsync(999);
    expect(s.token()).toMatchObject({ accessToken: 't5' });
    await vi.advanceTimersByTimeAsync(1);
    expect(s.token()).toBeInstanceOf(Promise);
  });
});

describe('TokenSource: refresh ahead only while in use', () => {
  async function firstToken(keepFresh: boolean) {
    const { fetch, calls } = manualFetch();
    const s = track(source(fetch, { keepFresh }));
    const p = s.get(); // a caller waiting for a fetch does not count as a use of the cache
    calls[0]!.resolve(token('first'));
    await p;
    return { s, fetch, calls };
  }

  it('does not refresh an idle token; the next request renews it on demand', async () => {
    const { s, fetch, calls } = await firstToken(false);
    await vi.advanceTimersByTimeAsync(10 * LIFETIME);
    expect(fetch).toHaveBeenCalledTimes(1);
    expect(s.state).toBe('expired');
    const next = s.token();
    expect(next).toBeInstanceOf(Promise);
    expect(fetch).toHaveBeenCalledTimes(2);
    calls[1]!.resolve(token('second'));
    expect((await next).accessToken).toBe('second');
  });

  it('refreshes a token used since it came, and stops once nobody uses it', async () => {
    const { s, fetch, calls } = await firstToken(false);
    expect(s.token()).toMatchObject({ accessToken: 'first' }); // one request uses it
    await vi.advanceTimersByTimeAsync(0.8 * USABLE);
    expect(fetch).toHaveBeenCalledTimes(2);
    calls[1]!.resolve(token('second'));
    await vi.advanceTimersByTimeAsync(10 * LIFETIME); // 'second' is never used
    expect(fetch).toHaveBeenCalledTimes(2);
  });

  it('starts the skipped refresh at the first use after the refresh point, serving the token meanwhile', async () => {
    const { s, fetch, calls } = await firstToken(false);
    await vi.advanceTimersByTimeAsync(0.9 * USABLE); // past the refresh point, before usableUntil
    expect(fetch).toHaveBeenCalledTimes(1);
    expect(s.token()).toMatchObject({ accessToken: 'first' });
    expect(fetch).toHaveBeenCalledTimes(2);
    expect(s.state).toBe('refreshing');
    calls[1]!.resolve(token('second'));
    await vi.advanceTimersByTimeAsync(0);
    expect(s.token()).toMatchObject({ accessToken: 'second' });
  });

  it('keeps a keepFresh (prefetch) token fresh with nobody using it', async () => {
    const fetch = vi.fn(async () => token(`t${fetch.mock.calls.length}`, Date.now()));
    const s = track(source(fetch, { keepFresh: true }));
    await s.get();
    await vi.advanceTimersByTimeAsync(3 * 0.8 * USABLE);
    expect(fetch).toHaveBeenCalledTimes(4);
    expect(s.state).toBe('fresh');
  });
});
