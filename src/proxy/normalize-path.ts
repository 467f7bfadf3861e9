import { BadRequestError } from '../errors.js';

/** Characters that RFC 3986 §2.3 calls unreserved: their percent-encodings mean the same thing. */
const UNRESERVED = /[A-Za-z0-9\-._~]/;

/**
 * The canonical form of a request path, so that route matching and the upstream see the same
 * path and no spelling can reach another route's prefix (RFC 3986 §6.2.2):
 * - a backslash is a slash (as WHATWG URL parsing and several servers treat it);
 * - percent-encoded unreserved characters are decoded (`%2e` is `.`, `%41` is `A`), other
 *   encodings get upper-case hex; a `%` that starts no valid encoding is an error;
 * - encoded slashes and backslashes (`%2F`, `%5C`) are refused: upstreams disagree on whether
 *   they separate segments, so a route prefix could not be trusted;
 * - `.` and `..` segments are resolved (never above the root) and empty segments (`//`) merged.
 * The query string is kept as sent. Throws {@link BadRequestError} for refused paths.
 */
export function normalizePath(pathAndQuery: string): string {
  const q = pathAndQuery.indexOf('?');
  const rawPath = q === -1 ? pathAndQuery : pathAndQuery.slice(0, q);
  const query = q === -1 ? '' : pathAndQuery.slice(q);
  if (!rawPath.startsWith('/') && !rawPath.startsWith('\\')) {
    throw new BadRequestError('request path must start with "/"');
  }
  // Fast path: most paths need nothing done.
  if (!/[%\\]|\/\.|\/\//.test(rawPath)) return pathAndQuery;

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
