// A 2xx answer that is JSON but not an object is named for what it is, so that whoever reads the
// error is not sent looking for a content-type or encoding problem that is not there.
import { describe, expect, it } from 'vitest';
import { TokenResponseInvalidError } from '../../../src/errors.js';
import { parseTokenResponse, type RawResponse } from '../../../src/token-endpoint/parse-response.js';

function messageFor(res: RawResponse): string {
  try {
    parseTokenResponse(res, {
      credential: 'orders',
      defaultLifetimeMs: 300_000,
      maxLifetimeMs: 86_400_000,
      now: 1_700_000_000_000,
    });
  } catch (err) {
    expect(err).toBeInstanceOf(TokenResponseInvalidError);
    expect((err as TokenResponseInvalidError).code).toBe('token_response_invalid');
    return (err as Error).message;
  }
  throw new Error('expected parseTokenResponse to throw');
}

const json = (body: string, contentType = 'application/json'): RawResponse => ({
  status: 200,
  contentType,
  body,
});

describe('parseTokenResponse: a 2xx body that is not a JSON object', () => {
  it.each([
    ['[{"access_token":"t"}]', 'a JSON array'],
    ['[]', 'a JSON array'],
    ['"t"', 'a JSON string'],
    ['3600', 'a JSON number'],
    ['true', 'a JSON boolean'],
    [' null ', 'JSON null'],
  ])('%s is reported as %s', (body, kind) => {
    expect(messageFor(json(body))).toBe(`token endpoint answered HTTP 200 with ${kind}, not a JSON object`);
  });

  it('says so whatever the content type claims', () => {
    expect(messageFor(json('[1]', 'text/plain'))).toBe(
      'token endpoint answered HTTP 200 with a JSON array, not a JSON object',
    );
  });

  it.each([
    ['', 'application/json', 'an empty body'],
    ['<html></html>', 'text/html', 'an HTML page'],
    ['{"access_token":"t"', 'application/json', 'a body of type application/json that is not JSON'],
    ['access_token=t', 'text/plain; charset=utf-8', 'a body of type text/plain that is not JSON'],
    // A Content-Type is the server's text: anything but a plain media type is not repeated.
    ['x', 'client_secret=s3cr3t echoed here', 'a body of type unknown that is not JSON'],
    ['x', `a/${'b'.repeat(300)}`, 'a body of type unknown that is not JSON'],
  ])('a body that is not JSON at all (%j) is still described as before', (body, type, kind) => {
    expect(messageFor(json(body, type))).toBe(
      `token endpoint answered HTTP 200 with ${kind}, not a JSON object`,
    );
  });
});
