import { BadRequestError } from '../errors.js';

/** Characters that RFC 3986 §2.3 calls unreserved: their percent-encodings mean the same thing. */
const UNRESERVED = /[A-Za-z0-9\-._~]/;

/**
 * Whether a path needs any work: `%`, `\`, `#`, `/.` or `//` before the query, or `#` anywhere.
 * Nearly every request has none, and pays for this one test only.
 */
const NEEDS_WORK = /^[^?]*?(?:[%\\#]|\/[./])|#/;

/**
 * The canonical form of a request path, so that route matching and the upstream see the same
 * path and no spelling can reach another route's prefix (RFC 3986 §6.2.2):
 * - a `#` is refused: a request-target never carries a fragment (RFC 9112 §3.2.1), and an
 *   upstream parsing the path as a URL would drop it and what follows, e.g. resolving `/a/..#`
 *   to `/`, outside the `/a/` the route matched;
 * - a backslash is a slash (as WHATWG URL parsing and several servers treat it);
 * - percent-encoded unreserved characters are decoded (`%2e` is `.`, `%41` is `A`), other
 *   encodings get upper-case hex; a `%` that starts no valid encoding is an error;
 * - encoded slashes and backslashes (`%2F`, `%5C`) are refused: upstreams disagree on whether
 *   they separate segments, so a route prefix could not be trusted;
 * - `.` and `..` segments are resolved (never above the root) and empty segments (`//`) merged.
 * The query string is kept as sent. Throws {@link BadRequestError} for refused paths. Spellings
 * that only some upstreams decode into something dangerous are left to {@link looseSpelling}.
 */
export function normalizePath(pathAndQuery: string): string {
  const first = pathAndQuery.charCodeAt(0);
  if (first !== 0x2f && first !== 0x5c) throw new BadRequestError('request path must start with "/"');
  if (!NEEDS_WORK.test(pathAndQuery)) return pathAndQuery;
  if (pathAndQuery.includes('#')) throw new BadRequestError(FRAGMENT);

  const q = pathAndQuery.indexOf('?');
  const rawPath = q === -1 ? pathAndQuery : pathAndQuery.slice(0, q);
  const query = q === -1 ? '' : pathAndQuery.slice(q);
  const decoded = decodeUnreserved(rawPath.replaceAll('\\', '/'));
  const out: string[] = [];
  const segments = decoded.split('/');
  for (let i = 1; i < segments.length; i++) {
    const segment = segments[i]!;
    if (segment === '.' || (segment === '' && i < segments.length - 1)) continue;
    // "..;x" is ".." to servlet containers (path parameters): refused rather than guessed.
    if (/^\.\.?;/.test(segment))
      throw new BadRequestError('request path holds a dot segment with parameters (..;)');
    if (segment === '..') {
      out.pop();
      continue;
    }
    out.push(segment);
  }
  // A trailing "." or ".." leaves a directory path: keep its trailing slash.
  const last = segments[segments.length - 1];
  if ((last === '.' || last === '..') && out[out.length - 1] !== '') out.push('');
  return `/${out.join('/')}${query}`;
}

/** The refusal of a target with a fragment, in origin-form and absolute-form alike. */
export const FRAGMENT = 'request target holds a "#": a fragment is never sent (RFC 9112 §3.2)';

/**
 * Why a route with `strict_path` (the default) refuses a normalised path, or undefined when it
 * need not. These spellings reach the upstream verbatim, and an upstream that decodes the path
 * once more, or decodes `%3B` before splitting off path parameters, would find in them what
 * normalisation refuses or resolves, outside the prefix the route matched (RFC 3986 §7.3). A
 * segment is refused when, decoded once or twice, it holds
 * - a NUL (`%00`, `%2500`), which ends the path for C-string code;
 * - overlong UTF-8 (`%C0%AE` is `.` to lax decoders; RFC 3629 §3 forbids such sequences);
 * - a `.` or `..` segment, alone or with what a decoder may cut off: `..%3B`, `..%3F`, `..%20`,
 *   `.%09.`, `%252e%252e`, `..%252F`.
 * Only paths with a `%` left after normalisation are looked at; the others cost one scan.
 */
export function looseSpelling(normalizedPathAndQuery: string): string | undefined {
  const pct = normalizedPathAndQuery.indexOf('%');
  if (pct === -1) return undefined;
  const q = normalizedPathAndQuery.indexOf('?');
  if (q !== -1 && q < pct) return undefined;
  const path = q === -1 ? normalizedPathAndQuery : normalizedPathAndQuery.slice(0, q);
  for (const segment of path.split('/')) {
    if (!segment.includes('%')) continue;
    const once = decodeAll(segment);
    const problem =
      problemIn(segment, once) ?? (once.includes('%') ? problemIn(once, decodeAll(once)) : undefined);
    if (problem !== undefined) return problem;
  }
  return undefined;
}

/** Lead bytes C0 and C1 only ever start overlong forms; E0 and F0 do so before 80-9F and 80-8F. */
const OVERLONG = /%C[01]|%E0%[89]|%F0%8/i;
/**
 * `.` or `..` between slashes or backslashes, alone or before what a decoder may cut off a path
 * segment: path parameters (`;`), a query (`?`), a fragment (`#`), trailing spaces and controls
 * (WHATWG URL parsing trims them at the end, Windows at the end of every name).
 */
// biome-ignore lint/suspicious/noControlCharactersInRegex: the controls are what is trimmed
const DOT_SEGMENT = /(?:^|[/\\])\.\.?[\x00-\x20]*(?:[;/\\?#]|$)/;
/** Tabs and newlines, which WHATWG URL parsing removes wherever they are (`.%09.` is `..`). */
const TAB_OR_NEWLINE = /[\t\n\r]/g;

/** What a decoder finds in `encoded`, whose one percent-decoding is `decoded`. */
function problemIn(encoded: string, decoded: string): string | undefined {
  if (encoded.includes('%00')) return 'request path holds an encoded NUL (such as %00 or %2500)';
  if (OVERLONG.test(encoded)) {
    return 'request path holds an overlong UTF-8 encoding (such as %C0%AE for ".")';
  }
  if (DOT_SEGMENT.test(decoded.replace(TAB_OR_NEWLINE, ''))) {
    return 'request path holds an encoded dot segment (such as ..%3B or %252e%252e)';
  }
  return undefined;
}

/** One percent-decoding pass, a byte to a char; what is not a valid encoding stays as it is. */
function decodeAll(text: string): string {
  return text.replace(/%([0-9A-Fa-f]{2})/g, (_match, hex: string) =>
    String.fromCharCode(Number.parseInt(hex, 16)),
  );
}

function decodeUnreserved(path: string): string {
  if (!path.includes('%')) return path;
  return path.replace(/%(..)?/g, (_match, hex: string | undefined) => {
    if (hex === undefined || !/^[0-9A-Fa-f]{2}$/.test(hex)) {
      throw new BadRequestError('request path holds a "%" that is not a valid percent-encoding');
    }
    const code = Number.parseInt(hex, 16);
    if (code === 0x2f || code === 0x5c) {
      throw new BadRequestError(
        'request path holds an encoded slash or backslash (%2F, %5C), which is refused',
      );
    }
    const char = String.fromCharCode(code);
    return UNRESERVED.test(char) ? char : `%${hex.toUpperCase()}`;
  });
}
