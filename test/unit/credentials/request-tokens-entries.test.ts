import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { RequestTokens } from '../../../src/credentials/request-tokens.js';
import { TokenEndpointRejectedError } from '../../../src/errors.js';
import { assertionExpiry } from '../../../src/grants/assertion-expiry.js';
import type { Token } from '../../../src/token-endpoint/token.js';

// How a cache entry lives between requests: what it keeps (its token, not the app's values) and
// that an entry at rest still renews, fails, is refused and is evicted as before.

const NOW = Date.UTC(2030, 0, 1);
const LIFETIME = 100_000;

type Values = ReadonlyMap<string, string>;

function token(name: string): Token {
  const now = Date.now();
  return { accessToken: name, tokenType: 'Bearer', issuedAt: now, expiresAt: now + LIFETIME };
}

/** A fetch the test answers by hand, remembering the values each call was given. */
function manualFetch() {
  const calls: { values: Values; resolve: (t: Token) => void; reject: (e: unknown) => void }[] = [];
  const fetch = vi.fn(
    (values: Values, _previous: Token | undefined, _deadline: number) =>
      new Promise<Token>((resolve, reject) => calls.push({ values, resolve, reject })),
  );
  return { fetch, calls };
}

const caches: RequestTokens[] = [];
function cache(
  opts: Partial<ConstructorParameters<typeof RequestTokens>[0]> &
    Pick<ConstructorParameters<typeof RequestTokens>[0], 'fetch'> & { maxEntries?: number },
) {
  const { maxEntries = 100, ...rest } = opts;
  const inputs = { headers: ['x-assertion'], maxEntries, expiryOf: assertionExpiry };
  const c = new RequestTokens({ name: 'obo', inputs, ...rest });
  caches.push(c);
  return c;
}

afterEach(() => {
  for (const c of caches.splice(0)) c.close();
  vi.useRealTimers();
});

/** Lets pending promise callbacks (a fetch landing in the cache) run. */
const settle = () => new Promise<void>((resolve) => setImmediate(resolve));

describe('RequestTokens entries', () => {
  it('keeps no value of the app after its fetch: only the token is cached', async () => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    let given: WeakRef<Values> | undefined;
    // Not a vi.fn(): a mock would keep its arguments.
    const tokens = cache({
      fetch: async (values) => {
        given = new WeakRef(values);
        return token(`token-for-${values.get('x-assertion')}`);
      },
    });
    const assertion = `opaque-${'x'.repeat(1_000)}`;
    expect((await tokens.get({ 'x-assertion': assertion })).accessToken).toBe(`token-for-${assertion}`);
    // A WeakRef holds its target until the job that made it ends.
    await settle();
    gc();
    expect(given?.deref()).toBeUndefined();
    // The cached token still serves the same value, without a fetch.
    const hit = tokens.get({ 'x-assertion': assertion });
    expect(hit).not.toBeInstanceOf(Promise);
    expect((hit as Token).accessToken).toBe(`token-for-${assertion}`);
  });

  it('a refusal hands the values of the request that saw it to `revoked`, and the refetch gets those of its own request', async () => {
    const { fetch, calls } = manualFetch();
    const revoked = vi.fn();
    const tokens = cache({ fetch, revoked });
    const first = tokens.get({ 'x-assertion': 'alice' });
    calls[0]!.resolve(token('one'));
    expect((await first).accessToken).toBe('one');
    await settle();

    expect(tokens.invalidate({ 'x-assertion': [' alice '] }, 'one')).toBe(true);
    expect(revoked).toHaveBeenCalledTimes(1);
    const [refused, accessToken] = revoked.mock.calls[0]!;
    expect(accessToken).toBe('one');
    expect([...refused]).toEqual([['x-assertion', 'alice']]);
    // Not kept from the first fetch: made from the refused request's headers.
    expect(refused).not.toBe(calls[0]!.values);

    const second = tokens.get({ 'x-assertion': 'alice' });
    expect(fetch).toHaveBeenCalledTimes(2);
    expect([...calls[1]!.values]).toEqual([['x-assertion', 'alice']]);
    expect(calls[1]!.values).not.toBe(calls[0]!.values);
    calls[1]!.resolve(token('two'));
    expect((await second).accessToken).toBe('two');
  });

  it('renews a token past its safety margin in the background, once, with the values of the request that found it so', async () => {
    vi.useFakeTimers({ now: NOW });
    const { fetch, calls } = manualFetch();
    const tokens = cache({ fetch });
    const first = tokens.get({ 'x-assertion': 'alice' });
    calls[0]!.resolve(token('one'));
    expect((await first).accessToken).toBe('one');

    // Usable until 95 s (a 5 % margin), still valid until 99 s.
    vi.setSystemTime(NOW + 96_000);
    const served = tokens.get({ 'x-assertion': 'alice' });
    expect(served).not.toBeInstanceOf(Promise);
    expect((served as Token).accessToken).toBe('one');
    expect(tokens.get({ 'x-assertion': 'alice' })).toBe(served);
    expect(fetch).toHaveBeenCalledTimes(2);
    expect(fetch.mock.calls[1]![1]).toBe(served);
    expect([...calls[1]!.values]).toEqual([['x-assertion', 'alice']]);
    expect(calls[1]!.values).not.toBe(calls[0]!.values);

    calls[1]!.resolve(token('two'));
    await vi.advanceTimersByTimeAsync(0);
    expect((tokens.get({ 'x-assertion': 'alice' }) as Token).accessToken).toBe('two');
    expect(fetch).toHaveBeenCalledTimes(2);
  });

  it('serves a token whose renewal failed until its expiry (stale-while-error), then fetches', async () => {
    vi.useFakeTimers({ now: NOW });
    const { fetch, calls } = manualFetch();
    const tokens = cache({ fetch });
    const first = tokens.get({ 'x-assertion': 'alice' });
    calls[0]!.resolve(token('one'));
    await first;

    vi.setSystemTime(NOW + 96_000);
    tokens.get({ 'x-assertion': 'alice' });
    calls[1]!.reject(new TokenEndpointRejectedError('obo', 400, 'invalid_grant', undefined));
    await vi.advanceTimersByTimeAsync(0);

    // The failure is remembered: the stale token is served without another attempt.
    vi.setSystemTime(NOW + 98_000);
    const stale = tokens.get({ 'x-assertion': 'alice' });
    expect((stale as Token).accessToken).toBe('one');
    expect(fetch).toHaveBeenCalledTimes(2);

    // One second before its expiry it is no longer served: the request waits for a new one.
    vi.setSystemTime(NOW + 99_000);
    const renewed = tokens.get({ 'x-assertion': 'alice' });
    expect(renewed).toBeInstanceOf(Promise);
    expect(fetch).toHaveBeenCalledTimes(3);
    calls[2]!.resolve(token('two'));
    expect((await renewed).accessToken).toBe('two');
  });

  it('once a replacement is accepted, a later refusal replaces it at once again', async () => {
    const { fetch, calls } = manualFetch();
    const tokens = cache({ fetch });
    const alice = { 'x-assertion': 'alice' };
    const first = tokens.get(alice);
    calls[0]!.resolve(token('one'));
    await first;
    expect(tokens.invalidate(alice, 'one')).toBe(true);
    const second = tokens.get(alice);
    calls[1]!.resolve(token('two'));
    await second;
    await settle();

    tokens.accepted(alice, 'two');
    // Not held as a refused replacement: the retry is sent with a new token.
    expect(tokens.invalidate(alice, 'two')).toBe(true);
    const third = tokens.get(alice);
    expect(third).toBeInstanceOf(Promise);
    calls[2]!.resolve(token('three'));
    expect((await third).accessToken).toBe('three');
    expect(fetch).toHaveBeenCalledTimes(3);
  });

  it('does not put back an entry evicted while its fetch ran', async () => {
    const { fetch, calls } = manualFetch();
    const tokens = cache({ fetch, maxEntries: 1 });
    const a = tokens.get({ 'x-assertion': 'a' });
    const b = tokens.get({ 'x-assertion': 'b' }); // evicts a, still fetching
    calls[1]!.resolve(token('for-b'));
    calls[0]!.resolve(token('for-a'));
    expect((await a).accessToken).toBe('for-a');
    expect((await b).accessToken).toBe('for-b');
    await settle();
    expect(tokens.size).toBe(1);
    expect((tokens.get({ 'x-assertion': 'b' }) as Token).accessToken).toBe('for-b');
    expect(tokens.get({ 'x-assertion': 'a' })).toBeInstanceOf(Promise);
    expect(fetch).toHaveBeenCalledTimes(3);
  });
});
