import type { IncomingMessage } from 'node:http';
import { describe, expect, it } from 'vitest';
import type { RouteConfig } from '../../../src/config/types.js';
import { ReplayBudget, refusesToken, replayableLength, saysInvalidToken } from '../../../src/proxy/replay.js';

const route = (retryOn401: boolean) => ({ retryOn401 }) as RouteConfig;
const withLength = (value: string | undefined) =>
  ({ headers: value === undefined ? {} : { 'content-length': value } }) as IncomingMessage;

describe('saysInvalidToken (RFC 6750 §3.1)', () => {
  it.each([
    ['Bearer error="invalid_token"', true],
    ['bearer realm="api", ERROR=invalid_token', true],
    ['Basic realm="x", Bearer error = "invalid_token"', true],
    ['Bearer error="insufficient_scope"', false],
    ['Basic error="invalid_token"', false],
    ['Bearer realm="api"', false],
  ])('%s -> %s', (header, expected) => {
    expect(saysInvalidToken(header)).toBe(expected);
  });

  it('reads every WWW-Authenticate field, and none at all', () => {
    expect(saysInvalidToken(['Basic realm="x"', 'Bearer error="invalid_token"'])).toBe(true);
    expect(saysInvalidToken(undefined)).toBe(false);
  });
});

describe('refusesToken', () => {
  const invalid = { 'www-authenticate': 'Bearer error="invalid_token"' };
  it('takes a 401 that says invalid_token, or any 401 with retry_on_401', () => {
    expect(refusesToken(route(false), 401, invalid)).toBe(true);
    expect(refusesToken(route(false), 401, {})).toBe(false);
    expect(refusesToken(route(true), 401, {})).toBe(true);
  });

  it('never takes another status', () => {
    expect(refusesToken(route(true), 403, invalid)).toBe(false);
    expect(refusesToken(route(true), 200, {})).toBe(false);
  });
});

describe('replayableLength', () => {
  it('is the Content-Length when within the limit, including an empty body', () => {
    expect(replayableLength(withLength('10'), 10)).toBe(10);
    expect(replayableLength(withLength('0'), 10)).toBe(0);
  });

  it('is undefined for a larger or unknown length (a chunked body streams)', () => {
    expect(replayableLength(withLength('11'), 10)).toBeUndefined();
    expect(replayableLength(withLength(undefined), 10)).toBeUndefined();
    expect(replayableLength(withLength('ten'), 10)).toBeUndefined();
  });
});

describe('ReplayBudget', () => {
  it('lends memory up to its limit and takes it back', () => {
    const budget = new ReplayBudget(100);
    expect(budget.take(60)).toBe(true);
    expect(budget.take(50)).toBe(false);
    expect(budget.take(40)).toBe(true);
    budget.give(60);
    expect(budget.take(60)).toBe(true);
    expect(budget.take(1)).toBe(false);
  });
});
