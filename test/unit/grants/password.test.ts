import { renameSync, writeFileSync } from 'node:fs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { CredentialConfig, GrantConfig } from '../../../src/config/types.js';
import {
  TokenEndpointRejectedError,
  TokenEndpointUnreachableError,
  TokenResponseInvalidError,
} from '../../../src/errors.js';
import { FileSet } from '../../../src/files/live-file.js';
import { passwordGrant } from '../../../src/grants/password.js';
import { credentialConfig, grantContext, TempDir, token } from '../fixtures.js';

function cred(
  grant: Partial<Extract<GrantConfig, { type: 'password' }>> = {},
  extra: Partial<CredentialConfig> = {},
) {
  return credentialConfig({
    grant: { type: 'password', username: 'alice', password: { value: 'p@ss word' }, ...grant },
    ...extra,
  });
}

const rejected = (oauthError: string | undefined, status = 400) =>
  new TokenEndpointRejectedError('orders', status, oauthError, undefined);

describe('passwordGrant (RFC 6749 §4.3)', () => {
  it('asks with username and password first', async () => {
    const form = await passwordGrant(cred(), new FileSet()).form(grantContext());
    expect(form.toString()).toBe('grant_type=password&username=alice&password=p%40ss+word');
  });

  it('adds the scope, audience and resource in force, and the extra params', async () => {
    const form = await passwordGrant(cred({}, { params: { tenant: 'acme' } }), new FileSet()).form(
      grantContext({
        tokenScope: { scope: 'a offline_access', audience: 'https://aud', resource: 'https://res' },
      }),
    );
    expect(Object.fromEntries(form)).toEqual({
      tenant: 'acme',
      grant_type: 'password',
      scope: 'a offline_access',
      audience: 'https://aud',
      resource: 'https://res',
      username: 'alice',
      password: 'p@ss word',
    });
  });

  it('asks with the password again when the previous token has no refresh token', async () => {
    const form = await passwordGrant(cred(), new FileSet()).form(grantContext({ previous: token('old') }));
    expect(form.get('grant_type')).toBe('password');
    expect(form.has('refresh_token')).toBe(false);
  });

  it('renews with the refresh token of the previous token (§6), without the password', async () => {
    const form = await passwordGrant(cred({}, { params: { tenant: 'acme' } }), new FileSet()).form(
      grantContext({ previous: token('old', { refreshToken: 'rt-1' }), tokenScope: { scope: 'a' } }),
    );
    expect(Object.fromEntries(form)).toEqual({
      tenant: 'acme',
      grant_type: 'refresh_token',
      refresh_token: 'rt-1',
    });
  });

  describe('the password file', () => {
    let dir: TempDir;
    beforeEach(() => {
      dir = new TempDir();
    });
    afterEach(() => dir.remove());

    it('is read at every request without its trailing newline, so a rotated password is used', async () => {
      const path = dir.file('password', 'first\n');
      const grant = passwordGrant(cred({ password: { value: 'first', file: path } }), new FileSet());
      expect((await grant.form(grantContext())).get('password')).toBe('first');
      writeFileSync(`${path}.new`, 'second-longer\n');
      renameSync(`${path}.new`, path);
      expect((await grant.form(grantContext())).get('password')).toBe('second-longer');
    });
  });

  describe('retry', () => {
    const grant = passwordGrant(cred(), new FileSet());
    const refreshing = grantContext({
      previous: token('old', { refreshToken: 'rt-1' }),
      tokenScope: { scope: 's' },
    });

    it('falls back to the password once a refresh token is rejected with invalid_grant', async () => {
      const next = grant.retry!(refreshing, rejected('invalid_grant'));
      expect(next).toBeDefined();
      expect(next!.previous).toBeUndefined();
      expect(next!.tokenScope).toEqual({ scope: 's' });
      expect(next!.endpoint).toBe(refreshing.endpoint);
      const form = await grant.form(next!);
      expect(form.get('grant_type')).toBe('password');
      expect(form.get('username')).toBe('alice');
      expect(form.get('scope')).toBe('s');
      // The fallback itself is not retried again.
      expect(grant.retry!(next!, rejected('invalid_grant'))).toBeUndefined();
    });

    it.each([
      ['invalid_client', rejected('invalid_client', 401)],
      ['a rejection without an OAuth error', rejected(undefined, 500)],
      ['an unreachable endpoint', new TokenEndpointUnreachableError('orders', 'down')],
      ['an invalid response', new TokenResponseInvalidError('orders', 'bad')],
      ['a plain Error', new Error('invalid_grant')],
    ])('does not retry a refresh after %s', (_what, error) => {
      expect(grant.retry!(refreshing, error)).toBeUndefined();
    });

    it('does not retry a password request rejected with invalid_grant (wrong password)', () => {
      expect(grant.retry!(grantContext(), rejected('invalid_grant'))).toBeUndefined();
      expect(
        grant.retry!(grantContext({ previous: token('old') }), rejected('invalid_grant')),
      ).toBeUndefined();
    });
  });

  it('refuses a credential of another grant', () => {
    expect(() => passwordGrant(credentialConfig(), new FileSet())).toThrow(TypeError);
  });
});
