import { describe, expect, it } from 'vitest';
import { TokenEndpointRejectedError, TokenError, TokenResponseInvalidError } from '../../../src/errors.js';
import {
  type ParseOptions,
  parseTokenResponse,
  type RawResponse,
  retryAfterMs,
} from '../../../src/token-endpoint/parse-response.js';

const NOW = 1_700_000_000_000;
const OPTS: ParseOptions = {
  credential: 'orders',
  defaultLifetimeMs: 300_000,
  maxLifetimeMs: 86_400_000,
  now: NOW,
};

function json(body: unknown, status = 200): RawResponse {
  return { status, contentType: 'application/json', body: JSON.stringify(body) };
}

function parse(res: RawResponse, opts: Partial<ParseOptions> = {}) {
  return parseTokenResponse(res, { ...OPTS, ...opts });
}

/** The error parseTokenResponse throws; fails the test if it returns. */
function failure(res: RawResponse): TokenError {
  try {
    parse(res);
  } catch (err) {
    expect(err).toBeInstanceOf(TokenError);
    return err as TokenError;
  }
  throw new Error('expected parseTokenResponse to throw');
}

describe('parseTokenResponse: success (RFC 6749 §5.1)', () => {
  it('returns the token, its type, times and granted scope', () => {
    expect(
      parse(json({ access_token: 'abc.def-ghi', token_type: 'Bearer', expires_in: 3600, scope: 'a b' })),
    ).toEqual({
      accessToken: 'abc.def-ghi',
      tokenType: 'Bearer',
      issuedAt: NOW,
      expiresAt: NOW + 3_600_000,
      scope: 'a b',
    });
  });

  it('leaves scope out when the server does not send it', () => {
    expect(parse(json({ access_token: 't', token_type: 'Bearer', expires_in: 60 }))).not.toHaveProperty(
      'scope',
    );
  });

  it.each(['bearer', 'BEARER', 'BeArEr'])(
    'accepts token_type %j case-insensitively and keeps its spelling',
    (type) => {
      expect(parse(json({ access_token: 't', token_type: type, expires_in: 60 })).tokenType).toBe(type);
    },
  );

  it('assumes Bearer when token_type is missing or null', () => {
    expect(parse(json({ access_token: 't', expires_in: 60 })).tokenType).toBe('Bearer');
    expect(parse(json({ access_token: 't', token_type: null })).tokenType).toBe('Bearer');
  });

  it.each([['mac'], ['N_A'], [42], ['']])('rejects token_type %j', (type) => {
    const err = failure(json({ access_token: 't', token_type: type, expires_in: 60 }));
    expect(err.code).toBe('token_response_invalid');
  });

  it('accepts expires_in as a numeric string', () => {
    expect(parse(json({ access_token: 't', token_type: 'bearer', expires_in: '3600' })).expiresAt).toBe(
      NOW + 3_600_000,
    );
    expect(parse(json({ access_token: 't', token_type: 'bearer', expires_in: ' 90 ' })).expiresAt).toBe(
      NOW + 90_000,
    );
  });

  it('accepts a fractional expires_in', () => {
    expect(parse(json({ access_token: 't', token_type: 'bearer', expires_in: 1.5 })).expiresAt).toBe(
      NOW + 1_500,
    );
  });

  it('uses the default lifetime when expires_in is missing or null', () => {
    expect(parse(json({ access_token: 't', token_type: 'bearer' })).expiresAt).toBe(NOW + 300_000);
    expect(parse(json({ access_token: 't', token_type: 'bearer', expires_in: null })).expiresAt).toBe(
      NOW + 300_000,
    );
    expect(parse(json({ access_token: 't' }), { defaultLifetimeMs: 1234 }).expiresAt).toBe(NOW + 1234);
  });

  it('caps a huge expires_in at maxLifetimeMs', () => {
    expect(parse(json({ access_token: 't', token_type: 'bearer', expires_in: 10 ** 12 })).expiresAt).toBe(
      NOW + 86_400_000,
    );
    expect(
      parse(json({ access_token: 't', expires_in: '315360000' }), { maxLifetimeMs: 5000 }).expiresAt,
    ).toBe(NOW + 5000);
  });

  it.each([[0], [-5], ['0'], ['-5'], ['1e3'], ['soon'], [''], [true], [{}], [[60]]])(
    'rejects expires_in %j',
    (value) => {
      const err = failure(json({ access_token: 't', token_type: 'bearer', expires_in: value }));
      expect(err.code).toBe('token_response_invalid');
      expect(err.message).toContain('expires_in');
    },
  );

  it('accepts 201 and other 2xx statuses', () => {
    expect(parse(json({ access_token: 't' }, 201)).accessToken).toBe('t');
  });
});

describe('parseTokenResponse: access_token', () => {
  it.each([
    ['missing', {}],
    ['empty', { access_token: '' }],
    ['a number', { access_token: 12345 }],
    ['null', { access_token: null }],
  ])('rejects an access_token that is %s', (_what, body) => {
    const err = failure(json({ token_type: 'Bearer', expires_in: 60, ...body }));
    expect(err).toBeInstanceOf(TokenResponseInvalidError);
    expect(err.code).toBe('token_response_invalid');
    expect(err.credential).toBe('orders');
  });

  it.each([
    ['CR LF', 'abc\r\nX-Injected: 1'],
    ['LF', 'abc\ndef'],
    ['CR', 'abc\rdef'],
    ['a space', 'abc def'],
    ['a tab', 'abc\tdef'],
    ['NUL', 'abc\u0000def'],
    ['DEL', 'abc\u007fdef'],
    ['non-ASCII', 'abc\u00e9def'],
  ])('rejects an access_token holding %s, without echoing it', (_what, token) => {
    const err = failure(json({ access_token: token, token_type: 'Bearer', expires_in: 60 }));
    expect(err.code).toBe('token_response_invalid');
    expect(err.message).not.toContain('abc');
  });

  it('accepts every visible ASCII character', () => {
    const visible = Array.from({ length: 0x7e - 0x21 + 1 }, (_, i) => String.fromCharCode(0x21 + i)).join('');
    expect(parse(json({ access_token: visible })).accessToken).toBe(visible);
  });
});

describe('parseTokenResponse: bodies that are not a token response', () => {
  it.each([
    ['an empty body', { status: 200, contentType: 'application/json', body: '' }, /an empty body/],
    [
      'an HTML page',
      { status: 200, contentType: 'text/html; charset=utf-8', body: '<html><body>Login</body></html>' },
      /an HTML page/,
    ],
    [
      'HTML without a content type',
      { status: 200, contentType: undefined, body: '  <!doctype html>' },
      /an HTML page/,
    ],
    ['plain text', { status: 200, contentType: 'text/plain', body: 'access_token=abc' }, /text\/plain/],
    [
      'a JSON array',
      { status: 200, contentType: 'application/json', body: '[{"access_token":"t"}]' },
      /JSON object/,
    ],
    ['a JSON string', { status: 200, contentType: 'application/json', body: '"t"' }, /JSON object/],
    ['JSON null', { status: 200, contentType: 'application/json', body: 'null' }, /JSON object/],
    [
      'truncated JSON',
      { status: 200, contentType: 'application/json', body: '{"access_token":"t"' },
      /JSON object/,
    ],
  ])('rejects %s with token_response_invalid', (_what, res, message) => {
    const err = failure(res);
    expect(err).toBeInstanceOf(TokenResponseInvalidError);
    expect(err.code).toBe('token_response_invalid');
    expect(err.credential).toBe('orders');
    expect(err.message).toMatch(message);
  });

  it.each([301, 302, 303, 307, 308])('rejects a redirect (HTTP %d) with token_response_invalid', (status) => {
    const err = failure({
      status,
      contentType: 'application/json',
      body: JSON.stringify({ access_token: 't' }),
    });
    expect(err.code).toBe('token_response_invalid');
    expect(err.message).toContain(`HTTP ${status}`);
  });
});

describe('parseTokenResponse: errors (RFC 6749 §5.2)', () => {
  it('turns a 400 error body into token_endpoint_rejected with the OAuth fields', () => {
    const err = failure(
      json({ error: 'invalid_client', error_description: 'Client authentication failed' }, 400),
    );
    expect(err).toBeInstanceOf(TokenEndpointRejectedError);
    const rejected = err as TokenEndpointRejectedError;
    expect(rejected.code).toBe('token_endpoint_rejected');
    expect(rejected.status).toBe(400);
    expect(rejected.oauthError).toBe('invalid_client');
    expect(rejected.oauthErrorDescription).toBe('Client authentication failed');
    expect(rejected.credential).toBe('orders');
    expect(rejected.message).toBe(
      'token endpoint answered HTTP 400: invalid_client (Client authentication failed)',
    );
  });

  it('leaves the description undefined when the server sends none', () => {
    const err = failure(json({ error: 'invalid_scope' }, 400)) as TokenEndpointRejectedError;
    expect(err.oauthError).toBe('invalid_scope');
    expect(err.oauthErrorDescription).toBeUndefined();
    expect(err.message).toBe('token endpoint answered HTTP 400: invalid_scope');
  });

  it('treats an error body with a 200 status as a rejection', () => {
    const err = failure(
      json({ error: 'unauthorized_client', access_token: 't' }, 200),
    ) as TokenEndpointRejectedError;
    expect(err.code).toBe('token_endpoint_rejected');
    expect(err.status).toBe(200);
    expect(err.oauthError).toBe('unauthorized_client');
  });

  it.each([
    [401, 'text/html', '<html>Unauthorized</html>'],
    [500, 'application/json', ''],
    [503, 'text/plain', 'Service Unavailable'],
    [404, 'application/json', '{"message":"not found"}'],
  ])(
    'turns HTTP %d without an OAuth error into token_endpoint_rejected without OAuth fields',
    (status, type, body) => {
      const err = failure({ status, contentType: type, body }) as TokenEndpointRejectedError;
      expect(err).toBeInstanceOf(TokenEndpointRejectedError);
      expect(err.code).toBe('token_endpoint_rejected');
      expect(err.status).toBe(status);
      expect(err.oauthError).toBeUndefined();
      expect(err.oauthErrorDescription).toBeUndefined();
      expect(err.message).toBe(`token endpoint answered HTTP ${status}: no OAuth error body`);
    },
  );

  it('rejects a 4xx even when it carries an access_token', () => {
    const err = failure(json({ access_token: 't' }, 401)) as TokenEndpointRejectedError;
    expect(err.code).toBe('token_endpoint_rejected');
    expect(err.status).toBe(401);
  });

  it('sanitises control characters and truncates long server text', () => {
    const err = failure(
      json({ error: 'invalid_request\r\nX-Evil: 1', error_description: 'd'.repeat(1000) }, 400),
    ) as TokenEndpointRejectedError;
    expect(err.oauthError).toBe('invalid_request??X-Evil: 1');
    expect(err.oauthErrorDescription).toHaveLength(300);
    expect(err.message).not.toMatch(/[\r\n]/);
  });
});

describe('retryAfterMs (RFC 9110 §10.2.3)', () => {
  const httpDate = (ms: number) => new Date(ms).toUTCString();

  it.each([
    ['120', 120_000],
    ['0', 0],
    [' 7 ', 7_000],
    ['007', 7_000],
  ])('reads delay-seconds %j as %d ms', (value, ms) => {
    expect(retryAfterMs(value, NOW)).toBe(ms);
  });

  it('reads an HTTP date as the time left until it', () => {
    expect(httpDate(NOW + 30_000)).toMatch(/^\w{3}, \d{2} \w{3} \d{4} \d{2}:\d{2}:\d{2} GMT$/);
    expect(retryAfterMs(httpDate(NOW + 30_000), NOW)).toBe(30_000);
    expect(retryAfterMs(httpDate(NOW + 3_600_000), NOW)).toBe(3_600_000);
  });

  it('reads an HTTP date in the past as no wait, never a negative one', () => {
    expect(retryAfterMs(httpDate(NOW - 60_000), NOW)).toBe(0);
    expect(retryAfterMs('Sunday, 06-Nov-94 08:49:37 GMT', NOW)).toBe(0); // obsolete RFC 850 form
  });

  it('reads the obsolete asctime form, and an RFC 850 two-digit year in the right century', () => {
    const at = new Date(NOW + 90_000);
    const asctime = at
      .toUTCString()
      .replace(
        /^(\w{3}), (\d{2}) (\w{3}) (\d{4}) (\S+) GMT$/,
        (_m, wd, d, mon, y, t) => `${wd} ${mon} ${String(Number(d)).padStart(2, ' ')} ${t} ${y}`,
      );
    expect(asctime).toMatch(/^\w{3} \w{3} [ \d]\d \d{2}:\d{2}:\d{2} \d{4}$/);
    expect(retryAfterMs(asctime, NOW)).toBe(90_000);
    const longDay = at.toLocaleDateString('en-US', { weekday: 'long', timeZone: 'UTC' });
    const rfc850 = at
      .toUTCString()
      .replace(/^\w{3}, (\d{2}) (\w{3}) \d{2}(\d{2}) (\S+) GMT$/, `${longDay}, $1-$2-$3 $4 GMT`);
    expect(rfc850).toMatch(/^\w+day, \d{2}-\w{3}-\d{2} \d{2}:\d{2}:\d{2} GMT$/);
    expect(retryAfterMs(rfc850, NOW)).toBe(90_000);
  });

  it.each([
    undefined,
    '',
    '   ',
    'soon',
    '10 seconds',
    '1e3',
    '0x10',
    // Spellings Date.parse accepts but RFC 9110 does not: each could mean an arbitrary wait.
    '2099-01-01T00:00:00Z',
    'Jan 1 2099',
    'Thu, 1 Jan 2099 00:00:00 GMT',
    'Thu, 01 Jan 2099 00:00:00 UTC',
    'thu, 01 jan 2099 00:00:00 GMT',
    'Thu, 01 Jan 2099 00:00 GMT',
    'Thu, 31 Feb 2099 00:00:00 GMT',
    'Thu, 01 Jan 2099 24:00:00 GMT',
  ])('ignores %j', (value) => {
    expect(retryAfterMs(value, NOW)).toBeUndefined();
  });
});

describe('parseTokenResponse: Retry-After', () => {
  it.each([
    [503, '5', 5_000],
    [429, new Date(NOW + 12_000).toUTCString(), 12_000],
  ])('puts the Retry-After of a %d on the error, in ms', (status, retryAfter, ms) => {
    const err = failure({
      status,
      contentType: 'application/json',
      body: '{"error":"temporarily_unavailable"}',
      retryAfter,
    }) as TokenEndpointRejectedError;
    expect(err).toBeInstanceOf(TokenEndpointRejectedError);
    expect(err.status).toBe(status);
    expect(err.retryAfterMs).toBe(ms);
  });

  it('counts an HTTP date from when the request started', () => {
    const retryAfter = new Date(NOW + 10_000).toUTCString();
    const rejected = (now: number) => {
      try {
        parse({ status: 503, contentType: 'text/plain', body: 'busy', retryAfter }, { now });
      } catch (err) {
        return err as TokenEndpointRejectedError;
      }
      throw new Error('expected parseTokenResponse to throw');
    };
    expect(rejected(NOW).retryAfterMs).toBe(10_000);
    expect(rejected(NOW + 4_000).retryAfterMs).toBe(6_000);
  });

  it('leaves retryAfterMs undefined without the header or with garbage in it', () => {
    expect(
      (failure({ status: 503, contentType: 'text/plain', body: 'busy' }) as TokenEndpointRejectedError)
        .retryAfterMs,
    ).toBeUndefined();
    expect(
      (
        failure({
          status: 503,
          contentType: 'text/plain',
          body: 'busy',
          retryAfter: 'later',
        }) as TokenEndpointRejectedError
      ).retryAfterMs,
    ).toBeUndefined();
  });
});
