import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { RequestTokens } from '../../../src/credentials/request-tokens.js';
import type { CacheCounters, RetryPolicy, TokenSourceEvents } from '../../../src/credentials/token-source.js';
import {
  AssertionExpiredError,
  AssertionInvalidError,
  AssertionMissingError,
  CredentialBackoffError,
  TokenEndpointRejectedError,
  TokenEndpointUnreachableError,
} from '../../../src/errors.js';
import { assertionExpiry } from '../../../src/grants/assertion-expiry.js';
import type { Token } from '../../../src/token-endpoint/token.js';

const NOW = Date.UTC(2030, 0, 1);
const HOUR = 3_600_000;

/** An (unsigned) JWT with these claims: the cache reads `exp` without verifying. */
function jwt(claims: Record<string, unknown>): string {
  const part = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
  return `${part({ alg: 'RS256', typ: 'JWT' })}.${part(claims)}.c2lnbmF0dXJl`;
}

function saml(notOnOrAfter: number): string {
  return `<saml:Assertion><saml:Conditions NotOnOrAfter="${new Date(notOnOrAfter).toISOString()}"/></saml:Assertion>`;
}

/** A fetch answering a token of `lifetime` named after the request's values, counting calls. */
function fetcher(lifetime = HOUR) {
  return vi.fn(
    async (
      request: ReadonlyMap<string, string>,
      _previous: Token | undefined,
      _deadline?: number,
    ): Promise<Token> => {
      const now = Date.now();
      return {
        accessToken: `token-for-${[...request.values()].join('+')}`,
        tokenType: 'Bearer',
        issuedAt: now,
        expiresAt: now + lifetime,
      };
    },
  );
}

/** What a lookup failed with (undefined if it gave a token), whether it answered at once or not. */
function failure(lookup: Token | Promise<Token>): Promise<unknown> {
  return Promise.resolve(lookup).then(
    () => undefined,
    (e: unknown) => e,
  );
}

const caches: RequestTokens[] = [];
function cache(opts: {
  fetch: ReturnType<typeof fetcher>;
  headers?: string[];
  maxEntries?: number;
  events?: TokenSourceEvents;
  counters?: CacheCounters;
  retry?: RetryPolicy;
}): RequestTokens {
  const c = new RequestTokens({
    name: 'obo',
    inputs: {
      headers: opts.headers ?? ['x-assertion'],
      maxEntries: opts.maxEntries ?? 100,
      expiryOf: assertionExpiry,
    },
    fetch: opts.fetch,
    ...(opts.events ? { events: opts.events } : {}),
    ...(opts.counters ? { counters: opts.counters } : {}),
    ...(opts.retry ? { retry: opts.retry } : {}),
  });
  caches.push(c);
  return c;
}

beforeEach(() => {
  vi.useFakeTimers({ now: NOW });
});

afterEach(() => {
  for (const c of caches.splice(0)) c.close();
  vi.useRealTimers();
});

describe('RequestTokens', () => {
  it('fetches once per distinct assertion and serves repeats from the cache', async () => {
    const fetch = fetcher();
    const tokens = cache({ fetch });
    const a = jwt({ sub: 'alice', exp: NOW / 1000 + 600 });
    const b = jwt({ sub: 'bob', exp: NOW / 1000 + 600 });
    expect((await tokens.get({ 'x-assertion': a })).accessToken).toBe(`token-for-${a}`);
    expect((await tokens.get({ 'x-assertion': a })).accessToken).toBe(`token-for-${a}`);
    expect(fetch).toHaveBeenCalledTimes(1);
    expect((await tokens.get({ 'x-assertion': b })).accessToken).toBe(`token-for-${b}`);
    expect(fetch).toHaveBeenCalledTimes(2);
    expect(tokens.size).toBe(2);
  });

  it('shares one fetch among concurrent requests with the same assertion', async () => {
    const fetch = fetcher();
    const tokens = cache({ fetch });
    const [x, y, z] = await Promise.all([
      tokens.get({ 'x-assertion': 'opaque-1' }),
      tokens.get({ 'x-assertion': 'opaque-1' }),
      tokens.get({ 'x-assertion': ' opaque-1 ' }),
    ]);
    expect(fetch).toHaveBeenCalledTimes(1);
    expect(y).toBe(x);
    expect(z).toBe(x);
  });

  it('passes the trimmed values by lower-case header name, as plain or distinct headers', async () => {
    const fetch = fetcher();
    const tokens = cache({ fetch, headers: ['x-subject', 'x-actor'] });
    await tokens.get({ 'x-subject': ['  subj  '], 'x-actor': 'act' });
    expect(fetch).toHaveBeenCalledTimes(1);
    expect([...fetch.mock.calls[0]![0]]).toEqual([
      ['x-subject', 'subj'],
      ['x-actor', 'act'],
    ]);
    expect(fetch.mock.calls[0]![1]).toBeUndefined();
  });

  it.each([
    ['twice', { 'x-subject': ['A', 'B'], 'x-actor': ['act'] }, 'x-subject'],
    ['with an empty repeat', { 'x-subject': ['A'], 'x-actor': ['act', ''] }, 'x-actor'],
  ])(
    'refuses a header sent %s (Node would join the values into one) with AssertionInvalidError, without a fetch',
    async (_what, headers, header) => {
      const fetch = fetcher();
      const tokens = cache({ fetch, headers: ['x-subject', 'x-actor'] });
      const err = await failure(tokens.get(headers));
      expect(err).toBeInstanceOf(AssertionInvalidError);
      expect((err as AssertionInvalidError).code).toBe('assertion_invalid');
      expect((err as AssertionInvalidError).header).toBe(header);
      expect(fetch).not.toHaveBeenCalled();
    },
  );

  it('keys the cache on every header: another actor is another token', async () => {
    const fetch = fetcher();
    const tokens = cache({ fetch, headers: ['x-subject', 'x-actor'] });
    await tokens.get({ 'x-subject': 's', 'x-actor': 'a1' });
    await tokens.get({ 'x-subject': 's', 'x-actor': 'a2' });
    await tokens.get({ 'x-subject': 's', 'x-actor': 'a1' });
    expect(fetch).toHaveBeenCalledTimes(2);
  });

  it.each([
    ['absent', {}],
    ['empty', { 'x-assertion': '' }],
    ['blank', { 'x-assertion': '   ' }],
    ['an empty list', { 'x-assertion': [] as string[] }],
  ])(
    'rejects a request whose header is %s with AssertionMissingError, without a fetch',
    async (_what, headers) => {
      const fetch = fetcher();
      const err = await failure(cache({ fetch }).get(headers));
      expect(err).toBeInstanceOf(AssertionMissingError);
      expect((err as AssertionMissingError).header).toBe('x-assertion');
      expect(fetch).not.toHaveBeenCalled();
    },
  );

  it('needs every header', async () => {
    const fetch = fetcher();
    const err = await failure(cache({ fetch, headers: ['x-subject', 'x-actor'] }).get({ 'x-subject': 's' }));
    expect((err as AssertionMissingError).header).toBe('x-actor');
    expect(fetch).not.toHaveBeenCalled();
  });

  it.each([
    ['a JWT whose exp has passed', jwt({ exp: NOW / 1000 - 1 })],
    ['a JWT expiring right now', jwt({ exp: NOW / 1000 })],
    ['a SAML assertion past NotOnOrAfter', saml(NOW - 1000)],
  ])('rejects %s with AssertionExpiredError, without a fetch', async (_what, assertion) => {
    const fetch = fetcher();
    const tokens = cache({ fetch });
    const err = await failure(tokens.get({ 'x-assertion': assertion }));
    expect(err).toBeInstanceOf(AssertionExpiredError);
    expect((err as AssertionExpiredError).code).toBe('assertion_expired');
    expect(fetch).not.toHaveBeenCalled();
    expect(tokens.size).toBe(0);
  });

  it('uses the time it is given to judge expiry', async () => {
    const fetch = fetcher();
    const assertion = jwt({ exp: NOW / 1000 + 60 });
    await expect(cache({ fetch }).get({ 'x-assertion': assertion }, NOW + 61_000)).rejects.toBeInstanceOf(
      AssertionExpiredError,
    );
    expect(fetch).not.toHaveBeenCalled();
  });

  it('rejects an assertion that expired while its token was cached', async () => {
    const fetch = fetcher();
    const tokens = cache({ fetch });
    const assertion = jwt({ exp: NOW / 1000 + 600 });
    await tokens.get({ 'x-assertion': assertion });
    vi.setSystemTime(NOW + 601_000);
    await expect(tokens.get({ 'x-assertion': assertion })).rejects.toBeInstanceOf(AssertionExpiredError);
    expect(fetch).toHaveBeenCalledTimes(1);
  });

  it('never lets a token outlive the JWT assertion it was exchanged for', async () => {
    const exp = NOW / 1000 + 600;
    const token = await cache({ fetch: fetcher(HOUR) }).get({ 'x-assertion': jwt({ exp }) });
    expect(token.expiresAt).toBe(exp * 1000);
    expect(token.issuedAt).toBe(NOW);
  });

  it('never lets a token outlive a SAML assertion either', async () => {
    const token = await cache({ fetch: fetcher(HOUR) }).get({ 'x-assertion': saml(NOW + 300_000) });
    expect(token.expiresAt).toBe(NOW + 300_000);
  });

  it('keeps a token that expires before the assertion as it is', async () => {
    const token = await cache({ fetch: fetcher(60_000) }).get({
      'x-assertion': jwt({ exp: NOW / 1000 + 600 }),
    });
    expect(token.expiresAt).toBe(NOW + 60_000);
  });

  it('bounds by the earliest of several assertions', async () => {
    const token = await cache({ fetch: fetcher(HOUR), headers: ['x-subject', 'x-actor'] }).get({
      'x-subject': jwt({ exp: NOW / 1000 + 900 }),
      'x-actor': jwt({ exp: NOW / 1000 + 300 }),
    });
    expect(token.expiresAt).toBe(NOW + 300_000);
  });

  it('keeps the server lifetime for opaque values without an expiry', async () => {
    const token = await cache({ fetch: fetcher(HOUR) }).get({ 'x-assertion': 'opaque' });
    expect(token.expiresAt).toBe(NOW + HOUR);
  });

  it('fetches again, with the previous token, once the cached token is no longer usable', async () => {
    const fetch = fetcher(100_000);
    const tokens = cache({ fetch });
    const first = await tokens.get({ 'x-assertion': 'opaque' });
    vi.setSystemTime(NOW + 99_000);
    const second = await tokens.get({ 'x-assertion': 'opaque' });
    expect(fetch).toHaveBeenCalledTimes(2);
    expect(fetch.mock.calls[1]![1]).toBe(first);
    expect(second).not.toBe(first);
  });

  it('fails fast after a permanent failure until the backoff step has passed, then tries once more', async () => {
    const fetch = fetcher();
    const denied = new TokenEndpointRejectedError('obo', 400, 'invalid_grant', undefined);
    fetch.mockRejectedValueOnce(denied);
    // Math.random() is not injected here: the step of 1 000 ms is jittered into [500, 1 000] ms.
    const tokens = cache({
      fetch,
      retry: { deadlineMs: 10_000, initialBackoffMs: 1_000, maxBackoffMs: 1_000 },
    });
    const get = () => tokens.get({ 'x-assertion': 'opaque' });
    // The request that failed learns the failure and when to try again.
    const failed = await failure(get());
    expect(failed).toBeInstanceOf(CredentialBackoffError);
    expect((failed as CredentialBackoffError).cause).toBe(denied);
    expect((failed as CredentialBackoffError).retryAfterSeconds).toBe(1);
    expect(fetch).toHaveBeenCalledTimes(1); // a permanent failure is not retried

    const fast = await failure(get());
    expect(fast).toBeInstanceOf(CredentialBackoffError);
    expect((fast as CredentialBackoffError).code).toBe('token_endpoint_rejected');
    expect((fast as CredentialBackoffError).credential).toBe('obo');
    expect((fast as CredentialBackoffError).retryAfterSeconds).toBe(1);
    expect((fast as CredentialBackoffError).cause).toBe(denied);
    await vi.advanceTimersByTimeAsync(499);
    await expect(get()).rejects.toBeInstanceOf(CredentialBackoffError);
    expect(fetch).toHaveBeenCalledTimes(1);

    await vi.advanceTimersByTimeAsync(501);
    expect((await get()).accessToken).toBe('token-for-opaque');
    expect(fetch).toHaveBeenCalledTimes(2);
  });

  it('backs off per value: a failure for one assertion does not block another', async () => {
    const fetch = fetcher();
    fetch.mockRejectedValueOnce(new TokenEndpointRejectedError('obo', 400, 'invalid_grant', undefined));
    const tokens = cache({ fetch });
    await expect(tokens.get({ 'x-assertion': 'alice' })).rejects.toBeInstanceOf(CredentialBackoffError);
    await expect(tokens.get({ 'x-assertion': 'alice' })).rejects.toBeInstanceOf(CredentialBackoffError); // fast
    expect((await tokens.get({ 'x-assertion': 'bob' })).accessToken).toBe('token-for-bob');
    expect(fetch).toHaveBeenCalledTimes(2);
  });

  it('passes its retry policy on: transient failures are retried within the deadline', async () => {
    const fetch = fetcher();
    const down = new TokenEndpointUnreachableError('obo', 'connection refused');
    fetch.mockRejectedValueOnce(down).mockRejectedValueOnce(down);
    const tokens = cache({
      fetch,
      retry: { deadlineMs: 5_000, initialBackoffMs: 1_000, maxBackoffMs: 1_000 },
    });
    const p = tokens.get({ 'x-assertion': 'opaque' });
    await vi.advanceTimersByTimeAsync(0);
    expect(fetch).toHaveBeenCalledTimes(1);
    // Each wait lasts 500..1 000 ms (a 1 000 ms step, jittered by Math.random()).
    await vi.advanceTimersByTimeAsync(2_000);
    expect(fetch).toHaveBeenCalledTimes(3);
    expect((await p).accessToken).toBe('token-for-opaque');
    // Every attempt of one fetch shares one deadline: the policy's deadlineMs from its start.
    for (const call of fetch.mock.calls) expect(call[2]).toBe(NOW + 5_000);
  });

  it('gives up on transient failures once the next attempt would miss the deadline', async () => {
    const fetch = fetcher();
    const down = new TokenEndpointUnreachableError('obo', 'connection refused');
    fetch.mockRejectedValue(down);
    const tokens = cache({
      fetch,
      retry: { deadlineMs: 1_000, initialBackoffMs: 1_000, maxBackoffMs: 1_000 },
    });
    const p = failure(tokens.get({ 'x-assertion': 'opaque' }));
    await vi.advanceTimersByTimeAsync(1_000);
    // Each wait lasts 500..<1 000 ms: the first ends before the 1 000 ms deadline, a second would not.
    expect(await p).toBeInstanceOf(CredentialBackoffError);
    expect(((await p) as CredentialBackoffError).cause).toBe(down);
    expect(((await p) as CredentialBackoffError).code).toBe('token_endpoint_unreachable');
    expect(fetch).toHaveBeenCalledTimes(2);
  });

  it('reports an invalid assertion as such on the next request too, never as a failing endpoint', async () => {
    // A malformed assertion is the app's mistake (400), not the identity provider's.
    const fetch = fetcher();
    fetch.mockRejectedValue(new AssertionInvalidError('x-assertion', 'not base64'));
    const tokens = cache({ fetch });
    const first = await failure(tokens.get({ 'x-assertion': 'bad' }));
    expect((first as AssertionInvalidError).code).toBe('assertion_invalid');
    const second = await failure(tokens.get({ 'x-assertion': 'bad' }));
    expect((second as { code: string }).code).toBe('assertion_invalid');
  });

  it('invalidate() drops the refused token of these values only, so their next request fetches anew', async () => {
    const fetch = fetcher();
    const tokens = cache({ fetch });
    const alice = { 'x-assertion': 'alice' };
    const bob = { 'x-assertion': 'bob' };
    const refused = await tokens.get(alice);
    await tokens.get(bob);
    expect(fetch).toHaveBeenCalledTimes(2);

    tokens.invalidate(alice, refused.accessToken);
    expect((await tokens.get(bob)).accessToken).toBe('token-for-bob');
    expect(fetch).toHaveBeenCalledTimes(2);
    fetch.mockResolvedValueOnce({
      accessToken: 'renewed',
      tokenType: 'Bearer',
      issuedAt: NOW,
      expiresAt: NOW + HOUR,
    });
    expect((await tokens.get({ 'x-assertion': ' alice ' })).accessToken).toBe('renewed');
    expect(fetch).toHaveBeenCalledTimes(3);
    expect(fetch.mock.calls[2]![1]).toBe(refused); // the refused token is passed on as previous
  });

  it('invalidate() ignores a token already replaced, unknown values and missing headers', async () => {
    const fetch = fetcher();
    const tokens = cache({ fetch });
    const alice = { 'x-assertion': 'alice' };
    await tokens.get(alice);
    tokens.invalidate(alice, 'some-older-token');
    tokens.invalidate({ 'x-assertion': 'carol' }, 'token-for-alice');
    tokens.invalidate({}, 'token-for-alice');
    expect((await tokens.get(alice)).accessToken).toBe('token-for-alice');
    expect(fetch).toHaveBeenCalledTimes(1);
    expect(tokens.size).toBe(1);
  });

  it('invalidate() says whether a retry would be sent with another token', async () => {
    const fetch = fetcher();
    fetch.mockResolvedValueOnce({
      accessToken: 'one',
      tokenType: 'Bearer',
      issuedAt: NOW,
      expiresAt: NOW + HOUR,
    });
    fetch.mockResolvedValueOnce({
      accessToken: 'two',
      tokenType: 'Bearer',
      issuedAt: NOW,
      expiresAt: NOW + HOUR,
    });
    const tokens = cache({ fetch });
    const alice = { 'x-assertion': ['alice'] };
    await tokens.get(alice);
    expect(tokens.invalidate(alice, 'one')).toBe(true);
    expect((await tokens.get(alice)).accessToken).toBe('two');
    // The replacement is refused too: held for a backoff step, so no retry and no new fetch.
    expect(tokens.invalidate(alice, 'two')).toBe(false);
    expect((await tokens.get(alice)).accessToken).toBe('two');
    expect(fetch).toHaveBeenCalledTimes(2);
    expect(tokens.invalidate({}, 'two')).toBe(false);
    expect(tokens.invalidate({ 'x-assertion': 'carol' }, 'x')).toBe(true); // not cached: a retry fetches
  });

  it('evicts the least recently used entry beyond maxEntries', async () => {
    const fetch = fetcher();
    const tokens = cache({ fetch, maxEntries: 2 });
    const get = (v: string) => tokens.get({ 'x-assertion': v });
    await get('a');
    await get('b');
    await get('a'); // a is now the most recently used
    await get('c'); // evicts b
    expect(tokens.size).toBe(2);
    expect(fetch).toHaveBeenCalledTimes(3);
    await get('a');
    await get('c');
    expect(fetch).toHaveBeenCalledTimes(3);
    await get('b'); // fetched again; evicts a
    expect(fetch).toHaveBeenCalledTimes(4);
    expect(tokens.size).toBe(2);
    await get('a');
    expect(fetch).toHaveBeenCalledTimes(5);
  });

  it('counts hits and misses, and answers a hit synchronously', async () => {
    const counters = { hit: vi.fn(), miss: vi.fn() };
    const tokens = cache({ fetch: fetcher(), counters });
    await tokens.get({ 'x-assertion': 'a' });
    const hit = tokens.get({ 'x-assertion': 'a' });
    expect(hit).not.toBeInstanceOf(Promise);
    await tokens.get({ 'x-assertion': 'b' });
    // Refused before the cache is looked up: neither.
    await failure(tokens.get({}));
    expect(counters.miss).toHaveBeenCalledTimes(2);
    expect(counters.hit).toHaveBeenCalledTimes(1);
  });

  it('forgets every token on close()', async () => {
    const fetch = fetcher();
    const tokens = cache({ fetch });
    await tokens.get({ 'x-assertion': 'a' });
    tokens.close();
    expect(tokens.size).toBe(0);
    await tokens.get({ 'x-assertion': 'a' });
    expect(fetch).toHaveBeenCalledTimes(2);
  });
});
