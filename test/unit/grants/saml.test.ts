import { describe, expect, it } from 'vitest';
import { samlAssertionParam, samlNotOnOrAfter } from '../../../src/grants/saml.js';

/** Chosen so that its base64 holds "+", "/" and "=" padding, which base64url must not. */
const XML =
  '<saml:Assertion xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="_a?b>"><saml:Subject>sub~j?ct</saml:Subject>' +
  '<saml:Conditions NotBefore="2030-01-01T00:00:00Z" NotOnOrAfter="2030-01-01T00:10:00Z"/>' +
  '<saml:SubjectConfirmation><saml:SubjectConfirmationData NotOnOrAfter="2030-01-01T00:05:00Z"/>' +
  '</saml:SubjectConfirmation></saml:Assertion>!';
const BASE64 = Buffer.from(XML).toString('base64');
const BASE64URL = Buffer.from(XML).toString('base64url');

describe('samlAssertionParam (RFC 7522 §2.1: base64url without padding)', () => {
  it('has test data whose base64 differs from base64url', () => {
    expect(BASE64).toMatch(/[+/]/);
    expect(BASE64).toMatch(/=$/);
    expect(BASE64URL).toMatch(/^[A-Za-z0-9_-]+$/);
  });

  it.each([
    ['XML', XML],
    ['XML with surrounding whitespace', `\n  ${XML}\n`],
    ['base64', BASE64],
    ['base64 wrapped at 76 columns', BASE64.replace(/.{76}/g, '$&\n')],
    ['base64url', BASE64URL],
    ['base64url with padding-free trailing newline', `${BASE64URL}\n`],
  ])('turns %s into unpadded base64url of the XML', (_kind, input) => {
    const out = samlAssertionParam(input);
    expect(out).toBe(BASE64URL);
    expect(out).not.toMatch(/[+/=\s]/);
    expect(Buffer.from(out, 'base64url').toString('utf8')).toBe(XML);
  });

  it('accepts XML with a declaration and leading whitespace inside base64', () => {
    const xml = `\n<?xml version="1.0"?>${XML}`;
    expect(samlAssertionParam(Buffer.from(xml).toString('base64'))).toBe(
      Buffer.from(xml).toString('base64url'),
    );
  });

  it.each([
    'not an assertion at all',
    'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln',
    Buffer.from('{"not":"xml"}').toString('base64'),
    '',
  ])('rejects %j', (input) => {
    expect(() => samlAssertionParam(input)).toThrow(
      new TypeError('the SAML assertion is neither XML nor base64/base64url-encoded XML'),
    );
  });
});

describe('samlNotOnOrAfter', () => {
  const EARLIEST = Date.parse('2030-01-01T00:05:00Z');

  it.each([
    ['XML', XML],
    ['base64', BASE64],
    ['base64url', BASE64URL],
  ])('is the earliest NotOnOrAfter of %s', (_kind, input) => {
    expect(samlNotOnOrAfter(input)).toBe(EARLIEST);
  });

  it('reads single quotes and spaces around "="', () => {
    expect(samlNotOnOrAfter("<a><c NotOnOrAfter = '2031-02-03T04:05:06Z'/></a>")).toBe(
      Date.parse('2031-02-03T04:05:06Z'),
    );
  });

  it('ignores values that are not dates', () => {
    expect(samlNotOnOrAfter('<a><c NotOnOrAfter="soon"/><d NotOnOrAfter="2032-01-01T00:00:00Z"/></a>')).toBe(
      Date.parse('2032-01-01T00:00:00Z'),
    );
  });

  it('is undefined without NotOnOrAfter, and for anything that is not SAML', () => {
    expect(samlNotOnOrAfter('<a NotBefore="2030-01-01T00:00:00Z"/>')).toBeUndefined();
    expect(samlNotOnOrAfter('opaque-token-123')).toBeUndefined();
    expect(samlNotOnOrAfter('')).toBeUndefined();
  });
});
