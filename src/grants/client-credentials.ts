import type { CredentialConfig } from '../config/types.js';
import { baseForm, type Grant } from './grant.js';

/** RFC 6749 §4.4: the client acts on its own behalf. */
export function clientCredentialsGrant(cred: CredentialConfig): Grant {
  return { form: async (ctx) => baseForm('client_credentials', cred.params, ctx.tokenScope) };
}
