import { describe, expect, it } from 'vitest';
import { assertionExpiry } from '../../../src/grants/assertion-expiry.js';

const NOW = Date.UTC(2030, 0, 1);

/** An (unsigned) JWT with these claims: the expiry is read without verifying. */
function jwt(claims: Record<string, unknown>): string {
  const part = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
  return `${part({ alg: 'RS256', typ: 'JWT' })}.${part(claims)}.c2lnbmF0dXJl`;
}

function saml(notOnOrAfter: number): string {
  return `<saml:Assertion><saml:Conditions NotOnOrAfter="${new Date(notOnOrAfter).toISOString()}"/></saml:Assertion>`;
}

describe('assertionExpiry', () => {
  it.each([
    ['a JWT with exp', jwt({ exp: 1_900_000_000 }), 1_900_000_000_000],
    ['a JWT without exp', jwt({ sub: 'a' }), undefined],
    ['a JWT with a non-numeric exp', jwt({ exp: 'soon' }), undefined],
    ['a SAML assertion', saml(NOW), NOW],
    ['a base64 SAML assertion', Buffer.from(saml(NOW)).toString('base64'), NOW],
    ['an opaque token', 'abc123', undefined],
    ['something shaped like a JWT that is not one', 'a.b.c', undefined],
  ])('reads %s', (_what, value, expected) => {
    expect(assertionExpiry(value)).toBe(expected);
  });
});
