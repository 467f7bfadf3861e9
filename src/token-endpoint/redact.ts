/**
 * Token endpoints are known to echo the request they refuse in `error_description` (the whole
 * form, or the field they did not like). Whatever the server says passes through here before it
 * can reach an error body, a log line or a metric, so that no secret of the request goes with it.
 */

/**
 * Form fields whose values are not secret (RFC 6749 §4.4, §6, RFC 7521 §4.2, RFC 8693 §2.1,
 * RFC 8707). Every other field, `params` included, is treated as a secret: a value configured
 * there may well be one (an API key), and an unknown field costs at most an over-eager redaction.
 */
const PUBLIC_FIELDS: ReadonlySet<string> = new Set([
  'grant_type',
  'client_id',
  'client_assertion_type',
  'scope',
  'audience',
  'resource',
  'username',
  'subject_token_type',
  'actor_token_type',
  'requested_token_type',
]);

/** What a secret is replaced with. */
export const REDACTED = '[redacted]';

/** A shorter tail is too likely to match by accident to be worth cutting. */
const MIN_TAIL = 6;

/**
 * Every secret one token request sends: the values of its non-public form fields and the
 * credentials of its Authorization header (for Basic, the base64 blob, the decoded `id:secret`
 * and the secret alone, both form-encoded as RFC 6749 §2.3.1 sends it and decoded).
 */
export function requestSecrets(form: URLSearchParams, headers: Readonly<Record<string, string>>): string[] {
  const secrets: string[] = [];
  for (const [name, value] of form) if (!PUBLIC_FIELDS.has(name)) secrets.push(value);
  const authorization = headers['authorization'];
  if (authorization !== undefined) {
    const space = authorization.indexOf(' ');
    const credentials = authorization.slice(space + 1).trim();
    secrets.push(credentials);
    if (/^basic$/i.test(authorization.slice(0, space))) {
      const decoded = Buffer.from(credentials, 'base64').toString('utf8');
      const colon = decoded.indexOf(':');
      secrets.push(decoded, decoded.slice(colon + 1), formDecode(decoded.slice(colon + 1)));
    }
  }
  return secrets.filter((s) => s.length > 0);
}

/**
 * `text` with every spelling of every secret replaced by {@link REDACTED}: as sent, URL-encoded,
 * form-encoded, JSON-escaped (with `\/` and `\uXXXX` as some serializers write them), base64 and
 * base64url. A text that ends in the start of one (a server that cut its echo short) loses that
 * tail too. Matching ignores letter case, so `%2f` is found as well as `%2F`.
 */
export function redactSecrets(text: string, secrets: readonly string[]): string {
  if (secrets.length === 0 || text.length === 0) return text;
  const spellings = new Set<string>();
  for (const secret of secrets) for (const s of spellingsOf(secret)) spellings.add(s);
  // Longest first, so a secret that contains another is replaced whole.
  const sorted = [...spellings].sort((a, b) => b.length - a.length);
  const out = text.replace(new RegExp(sorted.map(escapeRegExp).join('|'), 'gi'), REDACTED);
  // Letter case ignored as above, unless lower-casing changes the length (a few Unicode letters).
  const folded = out.toLowerCase();
  const fold = folded.length === out.length;
  const lower = fold ? folded : out;
  // The longest tail that starts some spelling is cut.
  let cut = lower.length;
  for (const s of sorted) {
    const spelling = fold ? s.toLowerCase() : s;
    const last = Math.min(cut - 1, lower.length - MIN_TAIL);
    for (let i = Math.max(0, lower.length - spelling.length + 1); i <= last; i++) {
      // Cheap first-character check before comparing the whole tail.
      if (lower.charCodeAt(i) === spelling.charCodeAt(0) && spelling.startsWith(lower.slice(i))) {
        cut = i;
        break;
      }
    }
  }
  return cut < lower.length ? out.slice(0, cut) + REDACTED : out;
}

function spellingsOf(secret: string): string[] {
  const json = JSON.stringify(secret).slice(1, -1);
  const asciiJson = json.replace(
    /[\u0080-\uffff]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
  const base = [
    secret,
    encodeURIComponent(secret),
    new URLSearchParams([['', secret]]).toString().slice(1),
    json,
    asciiJson,
    Buffer.from(secret).toString('base64'),
    Buffer.from(secret).toString('base64url'),
  ];
  // PHP's json_encode writes "/" as "\/".
  return [...base, ...base.map((s) => s.replaceAll('/', '\\/'))].filter((s) => s.length > 0);
}

function formDecode(value: string): string {
  try {
    return decodeURIComponent(value.replaceAll('+', ' '));
  } catch {
    return value;
  }
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
