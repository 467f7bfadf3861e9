import type { IncomingMessage, ServerResponse } from 'node:http';
import { describe, expect, it, vi } from 'vitest';
import { ExpectationFailedError } from '../../../src/errors.js';
import { continueIfAwaited, unmetExpectation } from '../../../src/proxy/expect.js';

function request(expectValue: string | undefined, version = '1.1'): IncomingMessage {
  const [major, minor] = version.split('.').map(Number);
  return {
    headers: expectValue === undefined ? {} : { expect: expectValue },
    httpVersionMajor: major,
    httpVersionMinor: minor,
  } as unknown as IncomingMessage;
}

function response(headersSent = false) {
  const res = { headersSent, writeContinue: vi.fn() };
  return res as typeof res & ServerResponse;
}

describe('unmetExpectation', () => {
  it('accepts no Expect, an empty one, and 100-continue in any letter case (as Node does)', () => {
    for (const value of [undefined, '', ' , ', '100-continue', '100-Continue', ' 100-CONTINUE ']) {
      expect(unmetExpectation(request(value)), String(value)).toBeUndefined();
    }
  });

  it('refuses anything else from an HTTP/1.1 request with 417 expectation_failed', () => {
    for (const value of ['something-else', '200-ok', '100-continued']) {
      const err = unmetExpectation(request(value));
      expect(err, value).toBeInstanceOf(ExpectationFailedError);
      expect(err?.code).toBe('expectation_failed');
      // The app's value is not echoed back.
      expect(err?.message).not.toContain(value);
    }
  });

  it('ignores what an HTTP/1.0 request expects (RFC 9110 §10.1.1)', () => {
    expect(unmetExpectation(request('something-else', '1.0'))).toBeUndefined();
  });
});

describe('continueIfAwaited', () => {
  it('sends 100 Continue to an HTTP/1.1 request that expects it, once nothing else was sent', () => {
    const res = response();
    continueIfAwaited(request('100-continue'), res);
    expect(res.writeContinue).toHaveBeenCalledTimes(1);
  });

  it('sends nothing without the expectation, to HTTP/1.0, or after the response started', () => {
    for (const [req, res] of [
      [request(undefined), response()],
      [request('100-continue', '1.0'), response()],
      [request('100-continue'), response(true)],
    ] as const) {
      continueIfAwaited(req, res);
      expect(res.writeContinue).not.toHaveBeenCalled();
    }
  });
});
