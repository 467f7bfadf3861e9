import { decodeJwt } from 'jose';
import { samlNotOnOrAfter } from './saml.js';

/** When an assertion stops being valid, if it says: a JWT's `exp`, a SAML `NotOnOrAfter`. */
export function assertionExpiry(value: string): number | undefined {
  if (/^[\w-]+\.[\w-]+\.[\w-]*$/.test(value)) {
    try {
      const exp = decodeJwt(value).exp;
      return typeof exp === 'number' ? exp * 1000 : undefined;
    } catch {
      return undefined;
    }
  }
  return samlNotOnOrAfter(value);
}
