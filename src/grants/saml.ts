/**
 * RFC 7522 §2.1: the SAML assertion goes in the form base64url-encoded, without padding. Apps
 * and files hold it as XML, as base64 or as base64url; all three are accepted.
 */
export function samlAssertionParam(value: string): string {
  const text = value.trim();
  if (text.startsWith('<')) return Buffer.from(text, 'utf8').toString('base64url');
  const xml = Buffer.from(text.replace(/\s+/g, ''), /[+/=]/.test(text) ? 'base64' : 'base64url');
  if (!xml.toString('utf8').trimStart().startsWith('<')) {
    throw new TypeError('the SAML assertion is neither XML nor base64/base64url-encoded XML');
  }
  return xml.toString('base64url');
}

/** The earliest `NotOnOrAfter` in a SAML assertion (Conditions, SubjectConfirmationData), epoch ms. */
export function samlNotOnOrAfter(value: string): number | undefined {
  let xml: string;
  try {
    xml = Buffer.from(samlAssertionParam(value), 'base64url').toString('utf8');
  } catch {
    return undefined;
  }
  let earliest: number | undefined;
  for (const m of xml.matchAll(/NotOnOrAfter\s*=\s*["']([^"']+)["']/g)) {
    const t = Date.parse(m[1]!);
    if (!Number.isNaN(t) && (earliest === undefined || t < earliest)) earliest = t;
  }
  return earliest;
}
