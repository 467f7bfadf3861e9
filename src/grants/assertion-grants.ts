import type { CredentialConfig } from '../config/types.js';
import { AssertionInvalidError, CredentialInputError } from '../errors.js';
import type { FileSet } from '../files/live-file.js';
import { baseForm, type Grant } from './grant.js';
import { samlAssertionParam } from './saml.js';
import { perRequestInputs, tokenInputReader } from './token-input.js';

/** RFC 7523 §2.1: a JWT (signed by us, read from a file, or the app's) as authorization grant. */
export function jwtBearerGrant(cred: CredentialConfig, files: FileSet): Grant {
  if (cred.grant.type !== 'jwt_bearer') throw new TypeError('not a jwt_bearer credential');
  const assertion = tokenInputReader(cred.grant.assertion, files, cred.name);
  return {
    form: async (ctx) => {
      const form = baseForm('urn:ietf:params:oauth:grant-type:jwt-bearer', cred.params, ctx.tokenScope);
      form.set('assertion', await assertion(ctx));
      return form;
    },
    perRequest: perRequestInputs([cred.grant.assertion]),
  };
}

/** RFC 7522 §2.1: a SAML 2.0 assertion as authorization grant, base64url-encoded. */
export function saml2BearerGrant(cred: CredentialConfig, files: FileSet): Grant {
  if (cred.grant.type !== 'saml2_bearer') throw new TypeError('not a saml2_bearer credential');
  const input = cred.grant.assertion;
  const assertion = tokenInputReader(input, files, cred.name);
  return {
    form: async (ctx) => {
      const form = baseForm('urn:ietf:params:oauth:grant-type:saml2-bearer', cred.params, ctx.tokenScope);
      const value = await assertion(ctx);
      try {
        form.set('assertion', samlAssertionParam(value));
      } catch (err) {
        const reason = (err as Error).message;
        throw input.source === 'request_header'
          ? new AssertionInvalidError(input.header, reason)
          : new CredentialInputError(cred.name, reason);
      }
      return form;
    },
    perRequest: perRequestInputs([input]),
  };
}

/** RFC 8693 §2.1: exchange a subject token (and optionally an actor token) for a new token. */
export function tokenExchangeGrant(cred: CredentialConfig, files: FileSet): Grant {
  const grant = cred.grant;
  if (grant.type !== 'token_exchange') throw new TypeError('not a token_exchange credential');
  const subject = tokenInputReader(grant.subjectToken, files, cred.name);
  const actor = grant.actorToken ? tokenInputReader(grant.actorToken, files, cred.name) : undefined;
  return {
    form: async (ctx) => {
      const form = baseForm('urn:ietf:params:oauth:grant-type:token-exchange', cred.params, ctx.tokenScope);
      form.set('subject_token', await subject(ctx));
      form.set('subject_token_type', grant.subjectTokenType);
      if (actor) {
        form.set('actor_token', await actor(ctx));
        form.set('actor_token_type', grant.actorTokenType!);
      }
      if (grant.requestedTokenType !== undefined) form.set('requested_token_type', grant.requestedTokenType);
      return form;
    },
    // §2.2.1: "N_A" when the issued token is not an access token (it is still injected as-is).
    extraTokenTypes: ['n_a'],
    perRequest: perRequestInputs([grant.subjectToken, grant.actorToken]),
  };
}
