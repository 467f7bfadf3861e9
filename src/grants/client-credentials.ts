import type { CredentialConfig } from '../config/types.js';

/** The form of a client credentials token request (RFC 6749 §4.4.2), without client authentication. */
export function clientCredentialsForm(cred: CredentialConfig): URLSearchParams {
  const form = new URLSearchParams(cred.params);
  // Set after the extra params so that nothing in them can change the grant.
  form.set('grant_type', 'client_credentials');
  if (cred.scope !== undefined) form.set('scope', cred.scope);
  if (cred.audience !== undefined) form.set('audience', cred.audience);
  if (cred.resource !== undefined) form.set('resource', cred.resource);
  return form;
}
