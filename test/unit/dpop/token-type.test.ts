import { describe, expect, it } from 'vitest';
import { TokenResponseInvalidError } from '../../../src/errors.js';
import { parseTokenResponse } from '../../../src/token-endpoint/parse-response.js';

const OPTS = { credential: 'payments', defaultLifetimeMs: 300_000, maxLifetimeMs: 86_400_000, now: 0 };
const response = (body: object) => ({
  status: 200,
  contentType: 'application/json',
  body: JSON.stringify(body),
});

describe('token_type of a DPoP credential (RFC 9449 §5)', () => {
  it('takes DPoP in any letter case', () => {
    for (const type of ['DPoP', 'dpop']) {
      const token = parseTokenResponse(response({ access_token: 'a', token_type: type }), {
        ...OPTS,
        tokenType: 'dpop',
      });
      expect(token.tokenType).toBe(type);
    }
  });

  it('refuses Bearer (or none): the token would not be bound to the key', () => {
    for (const body of [{ access_token: 'a', token_type: 'Bearer' }, { access_token: 'a' }]) {
      let err: unknown;
      try {
        parseTokenResponse(response(body), { ...OPTS, tokenType: 'dpop', extraTokenTypes: ['bearer'] });
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(TokenResponseInvalidError);
      expect((err as TokenResponseInvalidError).code).toBe('token_response_invalid');
      expect((err as Error).message).toContain('the server did not bind the token to the DPoP key');
    }
  });
});
