/**
 * Properties of token response parsing (src/token-endpoint/parse-response.ts): whatever a token
 * endpoint answers, the result is a usable token or one of the two typed errors, a returned token
 * is safe to write into a header and lives a bounded time, and no error message repeats it.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { TokenEndpointRejectedError, TokenResponseInvalidError } from '../../../src/errors.js';
import {
  type ParseOptions,
  parseTokenResponse,
  type RawResponse,
  retryAfterMs,
} from '../../../src/token-endpoint/parse-response.js';
import type { Token } from '../../../src/token-endpoint/token.js';

const RUNS = 3_000;
const EXTRA_TYPES = ['mac', 'dpop', 'n_a', 'pop'] as const;

/** A token no message could contain by accident: a fixed marker, hex, then visible ASCII. */
const secretToken = fc
  .tuple(fc.stringMatching(/^[0-9a-f]{16}$/), fc.string({ unit: 'binary-ascii', maxLength: 20 }))
  .map(([hex, rest]) => `tok_${hex}${rest.replace(/[^\x21-\x7e]/g, '')}`);

const accessToken = fc.oneof(
  { weight: 4, arbitrary: secretToken },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 20 }) },
  {
    weight: 1,
    arbitrary: fc.constantFrom('', ' ', 'a b', 'abc\r\nx-injected: 1', 'tab\there', 'é', '\u007f'),
  },
  { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 1 }) },
);

const tokenType = fc.oneof(
  fc.constantFrom(
    'Bearer',
    'bearer',
    'BEARER',
    'bEaReR',
    'Bearer ',
    'mac',
    'MAC',
    'DPoP',
    'N_A',
    'pop',
    'basic',
  ),
  fc.mixedCase(fc.constantFrom('bearer', ...EXTRA_TYPES)),
  fc.string({ maxLength: 8 }),
  fc.constant(null),
  fc.jsonValue({ maxDepth: 1 }),
);

const expiresIn = fc.oneof(
  fc.double(),
  fc.integer(),
  fc.integer({ min: 1, max: 100_000 }),
  fc.double({ min: 0, max: 10, noNaN: true }),
  fc.stringMatching(/^\s?\d{1,6}(\.\d{1,3})?\s?$/),
  fc.string({ maxLength: 8 }),
  fc.constant(null),
  fc.jsonValue({ maxDepth: 1 }),
);

/** Shaped like a token response: every field optional, any type, plus unknown fields. */
const tokenObject = fc
  .record(
    {
      access_token: accessToken,
      token_type: tokenType,
      expires_in: expiresIn,
      scope: fc.oneof(fc.string({ maxLength: 10 }), fc.jsonValue({ maxDepth: 1 })),
      refresh_token: fc.oneof(fc.string({ maxLength: 10 }), fc.jsonValue({ maxDepth: 1 })),
      error: fc.oneof(
        fc.constantFrom('invalid_client', 'temporarily_unavailable'),
        fc.jsonValue({ maxDepth: 1 }),
      ),
      error_description: fc.oneof(
        fc.string({ unit: 'binary', maxLength: 400 }),
        fc.jsonValue({ maxDepth: 1 }),
      ),
    },
    { requiredKeys: [] },
  )
  .chain((shaped) =>
    fc
      .dictionary(fc.string({ maxLength: 6 }), fc.jsonValue({ maxDepth: 1 }), { maxKeys: 3 })
      .map((extra) => ({
        ...extra,
        ...shaped,
      })),
  );

/** Numbers JSON can spell but JSON.stringify never writes. */
const rawNumber = fc.constantFrom(
  '1e400',
  '-1e400',
  '1e-400',
  '5e-324',
  '1e-9',
  '-0',
  '0',
  '0.0',
  '1E3',
  '3600',
);

const body = fc.oneof(
  { weight: 5, arbitrary: tokenObject.map((o) => JSON.stringify(o)) },
  {
    weight: 1,
    arbitrary: fc
      .tuple(secretToken, rawNumber)
      .map(([t, n]) => `{"access_token":${JSON.stringify(t)},"expires_in":${n}}`),
  },
  { weight: 1, arbitrary: fc.jsonValue().map((v) => JSON.stringify(v)) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 60 }) },
  {
    weight: 1,
    arbitrary: fc.constantFrom('', '<html>login</html>', '{', 'null', '[]', '"x"', '{"__proto__":{}}'),
  },
);

const status = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom(200, 201, 204, 299) },
  { weight: 2, arbitrary: fc.integer({ min: 100, max: 599 }) },
  { weight: 1, arbitrary: fc.integer() },
);

const contentType = fc.option(
  fc.oneof(
    fc.constantFrom('application/json', 'application/json; charset=utf-8', 'text/html', 'text/plain'),
    fc.string({ maxLength: 20 }),
  ),
  { nil: undefined },
);

const retryAfter = fc.option(
  fc.oneof(
    fc.stringMatching(/^\s?\d{1,12}\s?$/),
    fc.date({ noInvalidDate: true }).map((d) => d.toUTCString()),
    fc.string({ maxLength: 30 }),
    fc.constantFrom('-1', '1.5', '', ' ', 'Thu, 01 Jan 1970 00:00:00 GMT', '9'.repeat(400)),
  ),
  { nil: undefined },
);

const response: fc.Arbitrary<RawResponse> = fc.record({ status, contentType, body, retryAfter });

const options: fc.Arbitrary<ParseOptions> = fc
  .record({
    now: fc.integer({ min: 0, max: 4_000_000_000_000 }),
    defaultLifetimeMs: fc.integer({ min: 1, max: 86_400_000 }),
    extraMs: fc.integer({ min: 0, max: 86_400_000 }),
    extraTokenTypes: fc.option(fc.subarray([...EXTRA_TYPES]), { nil: undefined }),
  })
  .map(({ now, defaultLifetimeMs, extraMs, extraTokenTypes }) => ({
    credential: 'orders',
    now,
    defaultLifetimeMs,
    maxLifetimeMs: defaultLifetimeMs + extraMs,
    ...(extraTokenTypes !== undefined ? { extraTokenTypes } : {}),
  }));

type Outcome = { token: Token } | { error: TokenEndpointRejectedError | TokenResponseInvalidError };

/** The result of parsing; any error other than the two typed ones fails the property. */
function outcome(res: RawResponse, opts: ParseOptions): Outcome {
  try {
    return { token: parseTokenResponse(res, opts) };
  } catch (err) {
    if (err instanceof TokenEndpointRejectedError || err instanceof TokenResponseInvalidError) {
      return { error: err };
    }
    throw err;
  }
}

function parsedObject(text: string): Record<string, unknown> | undefined {
  try {
    const v: unknown = JSON.parse(text);
    return typeof v === 'object' && v !== null && !Array.isArray(v)
      ? (v as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}

describe('parseTokenResponse: properties', () => {
  it('returns a token or throws TokenEndpointRejectedError / TokenResponseInvalidError, nothing else', () => {
    fc.assert(
      fc.property(response, options, (res, opts) => {
        const result = outcome(res, opts);
        if ('error' in result) {
          expect(result.error.credential).toBe('orders');
          expect(result.error.message.length).toBeGreaterThan(0);
        }
      }),
      { numRuns: RUNS },
    );
  });

  it('a returned token is visible ASCII, from a 2xx answer, and lives (0, maxLifetimeMs]', () => {
    fc.assert(
      fc.property(response, options, (res, opts) => {
        const result = outcome(res, opts);
        if (!('token' in result)) return;
        const { token } = result;
        expect(res.status).toBeGreaterThanOrEqual(200);
        expect(res.status).toBeLessThan(300);
        expect(token.accessToken).toMatch(/^[\x21-\x7e]+$/);
        expect(token.accessToken).toBe(parsedObject(res.body)?.['access_token']);
        expect(token.issuedAt).toBe(opts.now);
        const lifetime = token.expiresAt - token.issuedAt;
        expect(lifetime).toBeGreaterThan(0);
        expect(lifetime).toBeLessThanOrEqual(opts.maxLifetimeMs);
      }),
      { numRuns: RUNS },
    );
  });

  it('never returns a token for a non-2xx status, whatever the body', () => {
    fc.assert(
      fc.property(
        response,
        options,
        fc.oneof(
          fc.integer({ min: 300, max: 599 }),
          fc.integer({ min: -1000, max: 199 }),
          fc.integer({ min: 600 }),
        ),
        (res, opts, badStatus) => {
          const result = outcome({ ...res, status: badStatus }, opts);
          expect('error' in result).toBe(true);
        },
      ),
      { numRuns: RUNS },
    );
  });

  it('accepts a token_type only when it is Bearer in any case, listed, or absent', () => {
    fc.assert(
      fc.property(
        secretToken,
        tokenType,
        options,
        fc.integer({ min: 1, max: 86_400 }),
        (at, type, opts, exp) => {
          const res: RawResponse = {
            status: 200,
            contentType: 'application/json',
            body: JSON.stringify({ access_token: at, token_type: type, expires_in: exp }),
          };
          const result = outcome(res, opts);
          const acceptable =
            type === null ||
            (typeof type === 'string' &&
              (type.toLowerCase() === 'bearer' || (opts.extraTokenTypes ?? []).includes(type.toLowerCase())));
          expect('token' in result).toBe(acceptable);
          if ('token' in result) expect(result.token.tokenType).toBe(type ?? 'Bearer');
          else expect(result.error).toBeInstanceOf(TokenResponseInvalidError);
        },
      ),
      { numRuns: RUNS },
    );
  });

  it('no error message or field repeats the access_token', () => {
    fc.assert(
      fc.property(
        secretToken,
        tokenObject,
        status,
        contentType,
        retryAfter,
        options,
        (at, o, st, ct, ra, opts) => {
          const res: RawResponse = {
            status: st,
            contentType: ct,
            body: JSON.stringify({ ...o, access_token: at }),
            retryAfter: ra,
          };
          const result = outcome(res, opts);
          if (!('error' in result)) return;
          const { error } = result;
          expect(error.message).not.toContain(at);
          expect(JSON.stringify({ ...error })).not.toContain(at);
        },
      ),
      { numRuns: RUNS },
    );
  });

  it('a rejection carries a Retry-After that is never negative or NaN', () => {
    fc.assert(
      fc.property(response, options, (res, opts) => {
        const result = outcome(res, opts);
        if (!('error' in result) || !(result.error instanceof TokenEndpointRejectedError)) return;
        const wait = result.error.retryAfterMs;
        if (wait !== undefined) {
          expect(Number.isNaN(wait)).toBe(false);
          expect(wait).toBeGreaterThanOrEqual(0);
        }
      }),
      { numRuns: RUNS },
    );
  });
});

describe('retryAfterMs: properties', () => {
  it('is undefined or a number >= 0, never NaN, for any header text and any clock', () => {
    fc.assert(
      fc.property(
        fc.oneof(retryAfter, fc.string({ unit: 'binary', maxLength: 40 })),
        fc.integer({ min: 0, max: 8_000_000_000_000 }),
        (value, now) => {
          const ms = retryAfterMs(value, now);
          if (ms === undefined) return;
          expect(Number.isNaN(ms)).toBe(false);
          expect(ms).toBeGreaterThanOrEqual(0);
        },
      ),
      { numRuns: RUNS },
    );
  });

  it('reads delay-seconds as seconds, and an HTTP date as the time left until it (0 once past)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 10_000_000 }),
        fc.date({ min: new Date(0), max: new Date(8_000_000_000_000), noInvalidDate: true }),
        fc.integer({ min: 0, max: 8_000_000_000_000 }),
        (seconds, date, now) => {
          expect(retryAfterMs(` ${seconds} `, now)).toBe(seconds * 1000);
          const at = Math.floor(date.getTime() / 1000) * 1000;
          expect(retryAfterMs(date.toUTCString(), now)).toBe(Math.max(0, at - now));
        },
      ),
      { numRuns: RUNS },
    );
  });
});
