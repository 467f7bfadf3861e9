import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, expect, it, vi } from 'vitest';
import {
  BadRequestError,
  ConfigError,
  ConnectNotAllowedError,
  CredentialBackoffError,
  type ErrorCode,
  InternalError,
  ProxyLoopError,
  RouteNotFoundError,
  TokenEndpointRejectedError,
  TokenEndpointTimeoutError,
  TokenEndpointUnreachableError,
  TokenResponseInvalidError,
  UnknownCredentialError,
  UpstreamTimeoutError,
  UpstreamUnreachableError,
} from '../../../src/errors.js';
import { errorBody, sendError, statusFor, statusOf } from '../../../src/proxy/error-response.js';

function fakeResponse(headersSent = false) {
  const res = {
    headersSent,
    writeHead: vi.fn(),
    end: vi.fn(),
    destroy: vi.fn(),
  };
  return res as typeof res & ServerResponse;
}

describe('statusFor', () => {
  it.each<[ErrorCode, number]>([
    ['bad_request', 400],
    ['route_not_found', 403],
    ['connect_not_allowed', 403],
    ['token_endpoint_rejected', 502],
    ['token_response_invalid', 502],
    ['upstream_unreachable', 502],
    ['token_endpoint_unreachable', 503],
    ['token_endpoint_timeout', 504],
    ['upstream_timeout', 504],
    ['proxy_loop', 508],
    ['config_invalid', 500],
    ['unknown_credential', 500],
    ['internal_error', 500],
  ])('%s → %d', (code, status) => {
    expect(statusFor(code)).toBe(status);
  });
});

describe('statusOf', () => {
  const rejected = (status: number, oauthError?: string, retryAfterMs?: number) =>
    new TokenEndpointRejectedError('orders', status, oauthError, undefined, retryAfterMs);
  it.each([
    ['a 500 from the token endpoint', rejected(500), 503],
    ['a 503 from the token endpoint', rejected(503, 'temporarily_unavailable'), 503],
    ['a 429 from the token endpoint', rejected(429), 503],
    ['a 400 invalid_grant', rejected(400, 'invalid_grant'), 502],
    ['a 401 invalid_client', rejected(401, 'invalid_client'), 502],
    ['a 500 invalid_client (the server said no)', rejected(500, 'invalid_client'), 502],
    ['a backoff after a 503', new CredentialBackoffError('orders', rejected(503), 3), 503],
    ['a backoff after a 429', new CredentialBackoffError('orders', rejected(429), 3), 503],
    [
      'a backoff after invalid_client',
      new CredentialBackoffError('orders', rejected(401, 'invalid_client'), 3),
      502,
    ],
    [
      'a backoff after a timeout',
      new CredentialBackoffError('orders', new TokenEndpointTimeoutError('orders', 'x'), 3),
      504,
    ],
    ['an unusable token response', new TokenResponseInvalidError('orders', 'x'), 502],
    ['an upstream timeout', new UpstreamTimeoutError('x'), 504],
  ])('%s → %d', (_what, err, status) => {
    expect(statusOf(err)).toBe(status);
  });
});

describe('error classes', () => {
  it.each([
    [new BadRequestError('x'), 'bad_request'],
    [new RouteNotFoundError('h', '/p'), 'route_not_found'],
    [new ConnectNotAllowedError('x'), 'connect_not_allowed'],
    [new ProxyLoopError('x'), 'proxy_loop'],
    [new UpstreamUnreachableError('x'), 'upstream_unreachable'],
    [new UpstreamTimeoutError('x'), 'upstream_timeout'],
    [new UnknownCredentialError('x'), 'unknown_credential'],
    [new InternalError('x'), 'internal_error'],
    [new ConfigError([{ path: 'a', message: 'b' }]), 'config_invalid'],
    [new TokenEndpointUnreachableError('c', 'x'), 'token_endpoint_unreachable'],
    [new TokenEndpointTimeoutError('c', 'x'), 'token_endpoint_timeout'],
    [new TokenResponseInvalidError('c', 'x'), 'token_response_invalid'],
    [new TokenEndpointRejectedError('c', 400, 'invalid_client', undefined), 'token_endpoint_rejected'],
    [new CredentialBackoffError('c', new TokenEndpointTimeoutError('c', 'x'), 3), 'token_endpoint_timeout'],
  ])('%s has code %s and its class name', (err, code) => {
    expect(err.code).toBe(code);
    expect(err.name).toBe(err.constructor.name);
  });

  it('CredentialBackoffError takes the code and message of the last failure, and keeps it as cause', () => {
    const last = new TokenEndpointRejectedError('orders', 401, 'invalid_client', undefined);
    const err = new CredentialBackoffError('orders', last, 7);
    expect(err.code).toBe('token_endpoint_rejected');
    expect(err.credential).toBe('orders');
    expect(err.retryAfterSeconds).toBe(7);
    expect(err.cause).toBe(last);
    expect(err.message).toBe(`${last.message}; next attempt in 7s`);
  });

  it('formats every config problem on its own line', () => {
    const err = new ConfigError([
      { path: 'routes[0].credential', message: 'unknown credential "x" (known: none)' },
      { path: '', message: 'the configuration is empty' },
    ]);
    expect(err.message).toBe(
      'routes[0].credential: unknown credential "x" (known: none)\nthe configuration is empty',
    );
  });
});

describe('errorBody', () => {
  it('carries the code, the detail and the credential of a token error', () => {
    const err = new TokenEndpointRejectedError('orders', 401, 'invalid_client', 'bad secret');
    expect(errorBody(err, { route: 'r' })).toEqual({
      error: 'token_endpoint_rejected',
      credential: 'orders',
      route: 'r',
      detail: 'token endpoint answered HTTP 401: invalid_client (bad secret)',
    });
  });

  it('carries host and path of a route miss and no credential', () => {
    const err = new RouteNotFoundError('a.example.com', '/x');
    const body = errorBody(err, { host: err.host, path: err.path });
    expect(body).toEqual({
      error: 'route_not_found',
      host: 'a.example.com',
      path: '/x',
      detail: 'no route matches host "a.example.com" and path "/x"',
    });
  });

  it('takes the detail from the error, never from the extra fields', () => {
    const body = errorBody(new BadRequestError('real'), { detail: 'fake' });
    expect(body.detail).toBe('real');
    expect(body.error).toBe('bad_request');
  });
});

describe('sendError', () => {
  it('writes a JSON answer with the mapped status, length and no-store', () => {
    const res = fakeResponse();
    const status = sendError(res, new RouteNotFoundError('a.example.com', '/x'), { host: 'a.example.com' });
    expect(status).toBe(403);
    const body = res.end.mock.calls[0]![0] as string;
    expect(JSON.parse(body)).toEqual({
      error: 'route_not_found',
      host: 'a.example.com',
      detail: 'no route matches host "a.example.com" and path "/x"',
    });
    expect(res.writeHead).toHaveBeenCalledWith(403, {
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(body),
      'cache-control': 'no-store',
    });
    expect(res.destroy).not.toHaveBeenCalled();
  });

  it('asks the client to retry when the token endpoint is unreachable', () => {
    const res = fakeResponse();
    expect(sendError(res, new TokenEndpointUnreachableError('orders', 'down'))).toBe(503);
    expect(res.writeHead.mock.calls[0]![1]).toMatchObject({ 'retry-after': 5 });
    expect(JSON.parse(res.end.mock.calls[0]![0] as string)).toMatchObject({
      error: 'token_endpoint_unreachable',
      credential: 'orders',
    });
  });

  it('sends no Retry-After for other errors', () => {
    const res = fakeResponse();
    sendError(res, new TokenEndpointTimeoutError('orders', 'slow'));
    expect(res.writeHead.mock.calls[0]![0]).toBe(504);
    expect(res.writeHead.mock.calls[0]![1]).not.toHaveProperty('retry-after');
  });

  it('cuts the connection when the response already started', () => {
    const res = fakeResponse(true);
    expect(sendError(res, new UpstreamTimeoutError('late'))).toBe(504);
    expect(res.destroy).toHaveBeenCalledTimes(1);
    expect(res.writeHead).not.toHaveBeenCalled();
    expect(res.end).not.toHaveBeenCalled();
  });

  it.each([
    ['an unreachable endpoint', new TokenEndpointUnreachableError('orders', 'down'), 503],
    ['a timeout', new TokenEndpointTimeoutError('orders', 'slow'), 504],
    ['a rejection', new TokenEndpointRejectedError('orders', 401, 'invalid_client', undefined), 502],
  ])('answers a backoff after %s with its status and the time left as Retry-After', (_what, last, status) => {
    const res = fakeResponse();
    expect(sendError(res, new CredentialBackoffError('orders', last, 12))).toBe(status);
    expect(res.writeHead.mock.calls[0]![0]).toBe(status);
    expect(res.writeHead.mock.calls[0]![1]).toMatchObject({ 'retry-after': 12 });
    expect(JSON.parse(res.end.mock.calls[0]![0] as string)).toEqual({
      error: last.code,
      credential: 'orders',
      detail: `${last.message}; next attempt in 12s`,
    });
  });

  it('never asks for less than one second', () => {
    const res = fakeResponse();
    sendError(res, new CredentialBackoffError('orders', new TokenEndpointUnreachableError('orders', 'x'), 0));
    expect(res.writeHead.mock.calls[0]![1]).toMatchObject({ 'retry-after': 1 });
  });

  it('sends the Retry-After of a backoff on the wire', async () => {
    const err = new CredentialBackoffError('orders', new TokenEndpointUnreachableError('orders', 'down'), 42);
    const server = createServer((_req, res) => sendError(res, err));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const { port } = server.address() as AddressInfo;
      const res = await fetch(`http://127.0.0.1:${port}/`);
      expect(res.status).toBe(503);
      expect(res.headers.get('retry-after')).toBe('42');
      expect(res.headers.get('content-type')).toBe('application/json');
      expect(await res.json()).toMatchObject({ error: 'token_endpoint_unreachable', credential: 'orders' });
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it('answers a 5xx or 429 of the token endpoint with 503 and Retry-After, keeping its code', () => {
    const res = fakeResponse();
    expect(sendError(res, new TokenEndpointRejectedError('orders', 502, undefined, undefined))).toBe(503);
    expect(res.writeHead).toHaveBeenCalledWith(503, expect.objectContaining({ 'retry-after': 5 }));
    expect(JSON.parse(res.end.mock.calls[0]![0] as string)).toMatchObject({
      error: 'token_endpoint_rejected',
    });
  });

  it('answers a backoff after a 429 with 503 and the time left, not the default', () => {
    const res = fakeResponse();
    const last = new TokenEndpointRejectedError('orders', 429, undefined, undefined, 30_000);
    expect(sendError(res, new CredentialBackoffError('orders', last, 30))).toBe(503);
    expect(res.writeHead).toHaveBeenCalledWith(503, expect.objectContaining({ 'retry-after': 30 }));
  });

  it('sends no Retry-After for a permanent rejection', () => {
    const res = fakeResponse();
    expect(sendError(res, new TokenEndpointRejectedError('orders', 400, 'invalid_grant', undefined))).toBe(
      502,
    );
    expect(res.writeHead.mock.calls[0]![1]).not.toHaveProperty('retry-after');
  });
});
