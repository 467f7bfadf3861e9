import type { ServerResponse } from 'node:http';
import { describe, expect, it, vi } from 'vitest';
import {
  BadRequestError,
  ConfigError,
  ConnectNotAllowedError,
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
import { errorBody, sendError, statusFor } from '../../../src/proxy/error-response.js';

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
  ])('%s has code %s and its class name', (err, code) => {
    expect(err.code).toBe(code);
    expect(err.name).toBe(err.constructor.name);
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
});
