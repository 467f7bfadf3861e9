/**
 * SAML 2.0 bearer assertions (RFC 7522) for the test authorization server: a builder for tests and the
 * minimal reader the server's saml2-bearer grant uses.
 *
 * Deliberately not a SAML implementation: there is no XML signature (token-injector forwards an
 * assertion it was given, it never looks inside), and the reader is a few regular expressions over the
 * handful of elements RFC 7522 §3 talks about, namespace-prefix agnostic. Good enough to tell a correct
 * assertion from a wrong one in tests; never point it at untrusted input in production.
 */
import { randomBytes } from 'node:crypto';

export const SAML_ASSERTION_NS = 'urn:oasis:names:tc:SAML:2.0:assertion';
export const SAML_BEARER_METHOD = 'urn:oasis:names:tc:SAML:2.0:cm:bearer';
/** The SAML issuer the test authorization server trusts unless told otherwise. */
export const DEFAULT_SAML_ISSUER = 'https://idp.saml.test';

export interface SamlAssertionOptions {
  issuer?: string;
  /** The NameID: becomes the access token's `sub`. */
  subject: string;
  /** The AudienceRestriction value: the token endpoint URL or the issuer of the authorization server. */
  audience: string;
  /** Default: five minutes from now. Set in the past for an expired assertion. */
  notOnOrAfter?: Date;
  notBefore?: Date;
  /** The SubjectConfirmationData Recipient (RFC 7522 §3 item 4); default the audience. `null` omits it. */
  recipient?: string | null;
  /** Default 'urn:oasis:names:tc:SAML:2.0:cm:bearer'. */
  confirmationMethod?: string;
  /** The namespace prefix, default 'saml' (`''` for a default namespace). */
  prefix?: string;
}

function escapeXml(value: string): string {
  return value.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function isoSeconds(date: Date): string {
  return date.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** The XML of an unsigned SAML 2.0 Assertion with the elements RFC 7522 §3 requires. */
export function buildSamlAssertionXml(opts: SamlAssertionOptions): string {
  const p = opts.prefix === undefined ? 'saml:' : opts.prefix ? `${opts.prefix}:` : '';
  const xmlns = p ? `xmlns:${p.slice(0, -1)}` : 'xmlns';
  const now = new Date();
  const notOnOrAfter = isoSeconds(opts.notOnOrAfter ?? new Date(now.getTime() + 5 * 60_000));
  const notBefore = opts.notBefore ? ` NotBefore="${isoSeconds(opts.notBefore)}"` : '';
  const recipient =
    opts.recipient === null ? '' : ` Recipient="${escapeXml(opts.recipient ?? opts.audience)}"`;
  const method = escapeXml(opts.confirmationMethod ?? SAML_BEARER_METHOD);
  return [
    `<${p}Assertion ${xmlns}="${SAML_ASSERTION_NS}" ID="_${randomBytes(16).toString('hex')}"`,
    ` Version="2.0" IssueInstant="${isoSeconds(now)}">`,
    `<${p}Issuer>${escapeXml(opts.issuer ?? DEFAULT_SAML_ISSUER)}</${p}Issuer>`,
    `<${p}Subject>`,
    `<${p}NameID Format="urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified">`,
    `${escapeXml(opts.subject)}</${p}NameID>`,
    `<${p}SubjectConfirmation Method="${method}">`,
    `<${p}SubjectConfirmationData NotOnOrAfter="${notOnOrAfter}"${recipient}/>`,
    `</${p}SubjectConfirmation>`,
    `</${p}Subject>`,
    `<${p}Conditions${notBefore} NotOnOrAfter="${notOnOrAfter}">`,
    `<${p}AudienceRestriction><${p}Audience>${escapeXml(opts.audience)}</${p}Audience></${p}AudienceRestriction>`,
    `</${p}Conditions>`,
    `<${p}AuthnStatement AuthnInstant="${isoSeconds(now)}">`,
    `<${p}AuthnContext><${p}AuthnContextClassRef>urn:oasis:names:tc:SAML:2.0:ac:classes:unspecified`,
    `</${p}AuthnContextClassRef></${p}AuthnContext>`,
    `</${p}AuthnStatement>`,
    `</${p}Assertion>`,
  ].join('');
}

/** The `assertion` form value RFC 7522 §2.1 wants: base64url without padding. */
export function encodeSamlAssertion(xml: string): string {
  return Buffer.from(xml, 'utf8').toString('base64url');
}

/** {@link buildSamlAssertionXml}, base64url-encoded: ready for the `assertion` parameter. */
export function samlBearerAssertion(opts: SamlAssertionOptions): string {
  return encodeSamlAssertion(buildSamlAssertionXml(opts));
}

export interface ParsedSamlAssertion {
  issuer: string;
  nameId: string;
  audiences: string[];
  /** The Conditions NotOnOrAfter, else the bearer SubjectConfirmationData's (RFC 7522 §3 item 5). */
  notOnOrAfter?: Date;
  notBefore?: Date;
  confirmationMethods: string[];
  recipients: string[];
}

function unescapeXml(value: string): string {
  return value.replace(/&(#x[0-9a-f]+|#\d+|amp|lt|gt|quot|apos);/gi, (_, entity: string) => {
    const named: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };
    if (entity[0] !== '#') return named[entity.toLowerCase()] ?? '';
    const code =
      entity[1] === 'x' || entity[1] === 'X' ? Number.parseInt(entity.slice(2), 16) : Number(entity.slice(1));
    return String.fromCodePoint(code);
  });
}

const PREFIX = '(?:[A-Za-z_][\\w.-]*:)?';

function elements(xml: string, name: string): { attrs: string; text: string }[] {
  const re = new RegExp(`<${PREFIX}${name}\\b([^>]*?)(?:/>|>([\\s\\S]*?)</${PREFIX}${name}\\s*>)`, 'g');
  return [...xml.matchAll(re)].map((m) => ({ attrs: m[1] ?? '', text: m[2] ?? '' }));
}

function attribute(attrs: string, name: string): string | undefined {
  const match = new RegExp(`(?:^|\\s)${name}\\s*=\\s*("([^"]*)"|'([^']*)')`).exec(attrs);
  const raw = match?.[2] ?? match?.[3];
  return raw === undefined ? undefined : unescapeXml(raw);
}

function date(value: string | undefined, what: string): Date | undefined {
  if (value === undefined) return undefined;
  const parsed = new Date(value);
  if (Number.isNaN(parsed.getTime())) throw new Error(`${what} is not a dateTime`);
  return parsed;
}

/**
 * Pulls the RFC 7522 §3 fields out of an Assertion's XML; throws (with a message fit for an
 * error_description) when the document is not a SAML 2.0 Assertion or lacks Issuer or NameID.
 */
export function parseSamlAssertion(xml: string): ParsedSamlAssertion {
  const root = new RegExp(`^\\s*(?:<\\?xml[^>]*\\?>\\s*)?<(${PREFIX})Assertion\\b([^>]*)>`).exec(xml);
  if (!root) throw new Error('assertion is not a SAML 2.0 Assertion element');
  const prefix = (root[1] ?? '').replace(/:$/, '');
  const ns = attribute(root[2] ?? '', prefix ? `xmlns:${prefix}` : 'xmlns');
  if (ns !== SAML_ASSERTION_NS) throw new Error(`assertion namespace must be ${SAML_ASSERTION_NS}`);

  // The Assertion's own Issuer is its first; a Subject may not contain one, so first-match is right.
  const issuer = elements(xml, 'Issuer')[0]?.text.trim();
  if (!issuer) throw new Error('assertion has no Issuer');
  const nameId = elements(xml, 'NameID')[0]?.text.trim();
  if (!nameId) throw new Error('assertion has no Subject NameID');

  const conditions = elements(xml, 'Conditions')[0];
  const confirmations = elements(xml, 'SubjectConfirmation');
  const data = elements(xml, 'SubjectConfirmationData');
  const notOnOrAfter =
    date(attribute(conditions?.attrs ?? '', 'NotOnOrAfter'), 'Conditions NotOnOrAfter') ??
    date(attribute(data[0]?.attrs ?? '', 'NotOnOrAfter'), 'SubjectConfirmationData NotOnOrAfter');
  const notBefore = date(attribute(conditions?.attrs ?? '', 'NotBefore'), 'Conditions NotBefore');

  return {
    issuer: unescapeXml(issuer),
    nameId: unescapeXml(nameId),
    audiences: elements(xml, 'Audience').map((a) => unescapeXml(a.text.trim())),
    ...(notOnOrAfter ? { notOnOrAfter } : {}),
    ...(notBefore ? { notBefore } : {}),
    confirmationMethods: confirmations.flatMap((c) => attribute(c.attrs, 'Method') ?? []),
    recipients: data.flatMap((d) => attribute(d.attrs, 'Recipient') ?? []),
  };
}
