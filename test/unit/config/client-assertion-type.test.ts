/**
 * `client_assertion_type`: only beside `auth_method: private_key_jwt` and `client_assertion_file`
 * (a ready assertion of some profile), an absolute URI, refused with a signing key because what
 * token-injector signs is always an RFC 7523 jwt-bearer assertion.
 */

import { describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { problemsOf, sources, validConfig } from './helpers.js';

const JWT_SPIFFE = 'urn:ietf:params:oauth:client-assertion-type:jwt-spiffe';
const SVID = 'eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJzcGlmZmU6Ly9leGFtcGxlLm9yZy9hIn0.c2ln';
const FILES = {
  '/run/spiffe/jwt_svid.token': SVID,
  '/etc/token-injector/key.pem': '',
};
const BASE = {
  token_endpoint: 'https://sso.example.com/realms/acme/protocol/openid-connect/token',
  grant_type: 'client_credentials',
  client_id: 'spiffe://example.org/ns/orders/sa/orders',
};
const READY = {
  ...BASE,
  auth_method: 'private_key_jwt',
  client_assertion_file: '/run/spiffe/jwt_svid.token',
};

const yaml = (cred: Record<string, unknown>) => stringify({ credentials: { w: cred } });
const problems = (cred: Record<string, unknown>) => problemsOf(yaml(cred), sources({}, FILES));
const clientAuth = (cred: Record<string, unknown>) =>
  validConfig(yaml(cred), sources({}, FILES)).credentials.get('w')!.clientAuth;

describe('client_assertion_type', () => {
  it('holds the type beside the assertion file', () => {
    expect(clientAuth({ ...READY, client_assertion_type: JWT_SPIFFE })).toEqual({
      method: 'private_key_jwt',
      assertionFile: '/run/spiffe/jwt_svid.token',
      assertionType: JWT_SPIFFE,
    });
  });

  it('is absent when not configured: jwt-bearer is the default', () => {
    expect(clientAuth(READY)).toEqual({
      method: 'private_key_jwt',
      assertionFile: '/run/spiffe/jwt_svid.token',
    });
  });

  it.each([
    'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
    'urn:example:client-assertion-type:workload',
    'https://assertions.example.com/type/v1',
  ])('accepts any absolute URI: %s', (type) => {
    expect(clientAuth({ ...READY, client_assertion_type: type })).toMatchObject({ assertionType: type });
  });

  it.each(['jwt-spiffe', '', '/types/jwt-spiffe'])('refuses %j, not an absolute URI', (type) => {
    expect(problems({ ...READY, client_assertion_type: type })).toEqual([
      'credentials.w.client_assertion_type: must be an absolute URI (RFC 7521 §4.2)',
    ]);
  });

  it('is refused with private_key_file: token-injector signs jwt-bearer assertions only', () => {
    expect(
      problems({
        ...BASE,
        auth_method: 'private_key_jwt',
        private_key_file: '/etc/token-injector/key.pem',
        client_assertion_type: JWT_SPIFFE,
      }),
    ).toContain(
      'credentials.w.client_assertion_type: is only used with client_assertion_file: the assertions token-injector signs are always jwt-bearer (RFC 7523)',
    );
  });

  it.each([
    ['client_secret_jwt', { client_secret: 's' }],
    ['client_secret_basic', { client_secret: 's' }],
    ['client_secret_post', { client_secret: 's' }],
    ['tls_client_auth', { tls: { cert_file: '/etc/c.pem', key_file: '/etc/k.pem' } }],
    ['none', { grant_type: 'password', username: 'u', password: 'p' }],
  ])('is refused with auth_method %s', (method, extra) => {
    expect(problems({ ...BASE, auth_method: method, client_assertion_type: JWT_SPIFFE, ...extra })).toContain(
      `credentials.w.client_assertion_type: is only used with auth_method private_key_jwt, not ${method}`,
    );
  });
});
