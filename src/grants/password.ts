import type { CredentialConfig } from '../config/types.js';
import { TokenEndpointRejectedError } from '../errors.js';
import type { FileSet } from '../files/live-file.js';
import { baseForm, type Grant } from './grant.js';

/**
 * RFC 6749 §4.3 resource owner password grant, renewed with the refresh token (§6) when the server
 * issued one. A rejected refresh token (`invalid_grant`: expired, revoked, rotated elsewhere)
 * falls back to the password once.
 */
export function passwordGrant(cred: CredentialConfig, files: FileSet): Grant {
  if (cred.grant.type !== 'password') throw new TypeError('not a password credential');
  const username = cred.grant.username;
  const password = files.value(cred.grant.password);
  return {
    form: async (ctx) => {
      const refreshToken = ctx.previous?.refreshToken;
      if (refreshToken !== undefined) {
        // §6: the scope may be left out, meaning "as originally granted".
        const form = new URLSearchParams(cred.params);
        form.set('grant_type', 'refresh_token');
        form.set('refresh_token', refreshToken);
        return form;
      }
      const form = baseForm('password', cred.params, ctx.tokenScope);
      form.set('username', username);
      form.set('password', password.read());
      return form;
    },
    retry: (ctx, error) =>
      ctx.previous?.refreshToken !== undefined &&
      error instanceof TokenEndpointRejectedError &&
      error.oauthError === 'invalid_grant'
        ? { ...ctx, previous: undefined }
        : undefined,
  };
}
