import type { CredentialConfig } from '../config/types.js';
import type { FileSet } from '../files/live-file.js';
import { jwtBearerGrant, saml2BearerGrant, tokenExchangeGrant } from './assertion-grants.js';
import { clientCredentialsGrant } from './client-credentials.js';
import type { Grant } from './grant.js';
import { passwordGrant } from './password.js';

export function grantFor(cred: CredentialConfig, files: FileSet): Grant {
  switch (cred.grant.type) {
    case 'client_credentials':
      return clientCredentialsGrant(cred);
    case 'password':
      return passwordGrant(cred, files);
    case 'jwt_bearer':
      return jwtBearerGrant(cred, files);
    case 'saml2_bearer':
      return saml2BearerGrant(cred, files);
    case 'token_exchange':
      return tokenExchangeGrant(cred, files);
  }
}
