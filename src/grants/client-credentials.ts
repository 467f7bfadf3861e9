import type { CredentialConfig } from '../config/types.js';

/** The form of a client credentials token request (RFC 6749 §4.4.2), without client authentication. */
export function clientCredentialsForm(cred: CredentialConfig): URLSearchParams {
  const form = new URLSearchParams({ grant_type: 'client_credentials' });
  for (const [key, value] of Object.entries(cred.params)) form.set(key, value);
  if (cred.scope !== undefined) form.set('scope', cred.scope);
  if (cred.audience !== undefined) form.set('audience', cred.audience);
  if (cred.resource !== undefined) form.set('resource', cred.resource);
  return form;
}
