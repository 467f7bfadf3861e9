/**
 * Properties of request-path normalisation (src/proxy/normalize-path.ts) and of route matching on
 * the normalised form: generated paths mix every spelling trick there is (dot segments, encoded
 * dots and letters, backslashes, doubled slashes, encoded slashes, stray `%`, fragments, encoded
 * NUL, overlong UTF-8, double encodings, encoded `;`) with plain text.
 */
import type { IncomingMessage } from 'node:http';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { RouteConfig } from '../../../src/config/types.js';
import { BadRequestError } from '../../../src/errors.js';
import { looseSpelling, normalizePath } from '../../../src/proxy/normalize-path.js';
import { type ParsedTarget, parseTarget, refusedSpelling } from '../../../src/proxy/target.js';
import { createRouter } from '../../../src/router/router.js';
import { routeConfig } from '../fixtures.js';

const RUNS = 2_000;

/** Pieces that change what a path means, or look as if they might. */
const TRICKS = [
  '/',
  '\\',
  '.',
  '..',
  '/./',
  '/../',
  '//',
  'a',
  'A',
  'b',
  'a/',
  '%2e',
  '%2E',
  '%2e%2e',
  '%61',
  '%41',
  '%2f',
  '%2F',
  '%5c',
  '%5C',
  '%25',
  '%252e',
  '%252F',
  '%3a',
  '%3B',
  '%7e',
  '%7E',
  '%5f',
  '%2d',
  '%30',
  '%20',
  '%00',
  '%2500',
  '%c3%a9',
  '%c0%ae',
  '%C0%AE',
  '%e0%80%ae',
  '%252E%252E',
  '%253B',
  '%3b',
  '%3F',
  '%23',
  '%255C',
  '%09',
  '%',
  '%2',
  '%zz',
  '%g1',
  ';',
  '..;',
  '~',
  '-',
  '_',
  ' ',
  'é',
  '\u0000',
  '#',
  '?',
  '&',
  '=',
];

const piece = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom(...TRICKS) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 4 }) },
);
/** A path (and maybe a query) built from tricky pieces; starts with "/" or "\". */
const trickyPath = fc
  .tuple(
    fc.constantFrom('/', '\\', '/a/', '/a', '/A/', '//', '/./', '/../'),
    fc.array(piece, { maxLength: 24 }),
  )
  .map(([start, rest]) => start + rest.join(''));
/**
 * A tricky path Node's HTTP parser lets through as a request target: visible ASCII only (it refuses
 * controls, spaces and raw non-ASCII bytes with HPE_INVALID_URL, but accepts "#" and "\\").
 */
const wirePath = trickyPath.filter((p) => /^[\x21-\x7e]+$/.test(p));
/** Any string at all, including ones without a leading slash. */
const anyString = fc.oneof(fc.string({ unit: 'binary', maxLength: 40 }), trickyPath);

const HEX2_UPPER = /^[0-9A-F]{2}$/;
const UNRESERVED = /^[A-Za-z0-9\-._~]$/;

function pathPart(pathAndQuery: string): string {
  const q = pathAndQuery.indexOf('?');
  return q === -1 ? pathAndQuery : pathAndQuery.slice(0, q);
}

function queryPart(pathAndQuery: string): string {
  const q = pathAndQuery.indexOf('?');
  return q === -1 ? '' : pathAndQuery.slice(q);
}

/** normalizePath, or the BadRequestError it threw; any other error fails the property. */
function tryNormalize(p: string): string | BadRequestError {
  try {
    return normalizePath(p);
  } catch (err) {
    if (err instanceof BadRequestError) return err;
    throw err;
  }
}

function route(name: string, pathPrefix?: string, strictPath = true): RouteConfig {
  return routeConfig(name, pathPrefix === undefined ? {} : { pathPrefix }, { credential: name, strictPath });
}

function request(url: string): IncomingMessage {
  return {
    url,
    method: 'GET',
    headers: { host: 'api.example.com' },
    rawHeaders: ['Host', 'api.example.com'],
    httpVersionMajor: 1,
    httpVersionMinor: 1,
  } as unknown as IncomingMessage;
}

/** How a WHATWG-URL-based upstream (Node, browsers, undici) resolves the path it receives. */
function whatwgView(forwarded: string): string {
  return new URL(forwarded, 'http://upstream.example').pathname;
}

/**
 * How an upstream that percent-decodes every segment once and then resolves dot segments sees
 * the path it receives (a common framework behaviour).
 */
function decodingView(forwarded: string): string {
  return resolveDots(
    pathPart(forwarded)
      .split('/')
      .slice(1)
      .map((raw) => {
        try {
          return decodeURIComponent(raw);
        } catch {
          return raw;
        }
      }),
  );
}

/** Segments (already decoded) joined into a path with `.` and `..` resolved. */
function resolveDots(segments: readonly string[]): string {
  const out: string[] = [];
  segments.forEach((s, i) => {
    if (s === '.') {
      if (i === segments.length - 1) out.push('');
    } else if (s === '..') {
      out.pop();
      if (i === segments.length - 1) out.push('');
    } else out.push(s);
  });
  return `/${out.join('/')}`;
}

/** One percent-decoding pass, a byte to a char, leaving what is not a valid encoding. */
function decodeBytes(text: string): string {
  return text.replace(/%([0-9A-Fa-f]{2})/g, (_m, hex: string) =>
    String.fromCharCode(Number.parseInt(hex, 16)),
  );
}

/**
 * How an upstream that decodes the path once more before parsing it as a URL sees it: the
 * double decoding `%252e%252e` and `..%3F` aim at, resolved the WHATWG way (`%2e` is a dot there).
 */
function redecodedView(forwarded: string): string {
  return new URL(decodeBytes(pathPart(forwarded)), 'http://upstream.example').pathname;
}

/**
 * How a servlet container sees it: each segment decoded once, path parameters (`;…`) cut off, then
 * dot segments resolved: `..%3B` is `..` there.
 */
function servletView(forwarded: string): string {
  return resolveDots(
    pathPart(forwarded)
      .split('/')
      .slice(1)
      .map((segment) => decodeBytes(segment).replace(/;.*$/s, '')),
  );
}

/** What the proxy does with a parsed target: the route it forwards to, or 'refused' (400). */
function decide(target: ParsedTarget, router: (t: ParsedTarget) => RouteConfig | undefined): string {
  const matched = router(target);
  if (refusedSpelling(target, matched) !== undefined) return 'refused';
  return matched?.name ?? 'unmatched';
}

function parsedOrRefused(p: string): ParsedTarget | BadRequestError {
  try {
    return parseTarget(request(p));
  } catch (err) {
    if (err instanceof BadRequestError) return err;
    throw err;
  }
}

describe('normalizePath: properties', () => {
  it('throws nothing but BadRequestError, for any string', () => {
    fc.assert(
      fc.property(anyString, (p) => {
        const result = tryNormalize(p);
        if (typeof result === 'string') expect(typeof result).toBe('string');
        else expect(result.code).toBe('bad_request');
      }),
      { numRuns: RUNS },
    );
  });

  it('refuses every path that does not start with "/" or "\\"', () => {
    fc.assert(
      fc.property(
        fc.string({ unit: 'binary', maxLength: 30 }).filter((s) => !s.startsWith('/') && !s.startsWith('\\')),
        (p) => {
          expect(tryNormalize(p)).toBeInstanceOf(BadRequestError);
        },
      ),
      { numRuns: RUNS },
    );
  });

  it('is idempotent: normalize(normalize(p)) === normalize(p)', () => {
    fc.assert(
      fc.property(trickyPath, (p) => {
        const once = tryNormalize(p);
        if (typeof once !== 'string') return;
        expect(normalizePath(once)).toBe(once);
      }),
      { numRuns: RUNS },
    );
  });

  it('gives a canonical path: leading "/", no dot or empty segments, no backslash', () => {
    fc.assert(
      fc.property(trickyPath, (p) => {
        const n = tryNormalize(p);
        if (typeof n !== 'string') return;
        const path = pathPart(n);
        expect(path.startsWith('/')).toBe(true);
        expect(path).not.toContain('\\');
        expect(path).not.toContain('//');
        const segments = path.split('/').slice(1);
        for (const s of segments) {
          expect(s).not.toBe('.');
          expect(s).not.toBe('..');
        }
      }),
      { numRuns: RUNS },
    );
  });

  it('keeps the query exactly as sent', () => {
    const query = fc.string({ unit: 'binary', maxLength: 20 }).filter((q) => !q.includes('#'));
    fc.assert(
      fc.property(trickyPath, query, (p, q) => {
        const withQuery = `${pathPart(p)}?${q}`;
        const n = tryNormalize(withQuery);
        if (typeof n !== 'string') return;
        expect(queryPart(n)).toBe(`?${q}`);
        // Without a query, none appears.
        const bare = tryNormalize(pathPart(p));
        if (typeof bare === 'string') expect(bare).not.toContain('?');
      }),
      { numRuns: RUNS },
    );
  });

  it('leaves only well-formed upper-case encodings, none of an unreserved character', () => {
    fc.assert(
      fc.property(trickyPath, (p) => {
        const n = tryNormalize(p);
        if (typeof n !== 'string') return;
        const path = pathPart(n);
        for (let i = path.indexOf('%'); i !== -1; i = path.indexOf('%', i + 1)) {
          const hex = path.slice(i + 1, i + 3);
          expect(hex).toMatch(HEX2_UPPER);
          expect(String.fromCharCode(Number.parseInt(hex, 16))).not.toMatch(UNRESERVED);
        }
      }),
      { numRuns: RUNS },
    );
  });

  it('refuses an encoded slash or backslash anywhere in the path, in any letter case', () => {
    const encodedSlash = fc.constantFrom('%2f', '%2F', '%5c', '%5C');
    fc.assert(
      fc.property(trickyPath, encodedSlash, fc.array(piece, { maxLength: 8 }), (before, slash, after) => {
        const p = `${pathPart(before)}${slash}${after.join('')}`;
        expect(tryNormalize(p)).toBeInstanceOf(BadRequestError);
      }),
      { numRuns: RUNS },
    );
  });

  it('refuses a "#" anywhere in the target: a request-target has no fragment (RFC 9112 §3.2)', () => {
    fc.assert(
      fc.property(
        trickyPath,
        fc.string({ unit: 'binary', maxLength: 10 }),
        fc.boolean(),
        (p, rest, inQuery) => {
          const target = inQuery ? `${pathPart(p)}?${rest}#${rest}` : `${p}#${rest}`;
          expect(tryNormalize(target)).toBeInstanceOf(BadRequestError);
        },
      ),
      { numRuns: RUNS },
    );
  });

  it('reports a loose spelling only for a path with a "%" left in it, never for the query', () => {
    fc.assert(
      fc.property(trickyPath, fc.string({ unit: 'binary', maxLength: 20 }), (p, q) => {
        const n = tryNormalize(pathPart(p));
        if (typeof n !== 'string') return;
        const why = looseSpelling(n);
        if (!n.includes('%')) expect(why).toBeUndefined();
        expect(looseSpelling(`${n}?${q}`)).toBe(why);
      }),
      { numRuns: RUNS },
    );
  });

  it('accepts an encoded slash in the query', () => {
    fc.assert(
      fc.property(trickyPath, fc.constantFrom('%2f', '%2F', '%5c', '%5C'), (p, slash) => {
        const bare = tryNormalize(pathPart(p));
        if (typeof bare !== 'string') return;
        expect(tryNormalize(`${pathPart(p)}?x=${slash}`)).toBe(`${bare}?x=${slash}`);
      }),
      { numRuns: RUNS },
    );
  });
});

describe('route matching uses the normalised path: no spelling reaches or escapes a prefix', () => {
  // A specific route first, a catch-all after it: a spelling that dodged the prefix would fall
  // through to the catch-all (another credential) instead of failing.
  const router = createRouter([route('under-a', '/a/'), route('everything-else')]);

  it('a request reaches the "/a/" route exactly when its normalised path is under /a/', () => {
    fc.assert(
      fc.property(trickyPath, (p) => {
        let target: ReturnType<typeof parseTarget>;
        try {
          target = parseTarget(request(p));
        } catch (err) {
          expect(err).toBeInstanceOf(BadRequestError);
          // Origin-form starts with "/" (RFC 9112 §3.2.1); anything else must be a refused path.
          if (p.startsWith('/')) expect(tryNormalize(p)).toBeInstanceOf(BadRequestError);
          return;
        }
        const n = normalizePath(p);
        expect(target.path).toBe(n);
        expect(target.looseSpelling).toBe(looseSpelling(n));
        const expected = pathPart(n).startsWith('/a/') ? 'under-a' : 'everything-else';
        expect(decide(target, router)).toBe(target.looseSpelling === undefined ? expected : 'refused');
      }),
      { numRuns: RUNS },
    );
  });

  it('what the upstream resolves the forwarded path to is under /a/ exactly when the route matched', () => {
    fc.assert(
      fc.property(wirePath, (p) => {
        const target = parsedOrRefused(p);
        if (target instanceof BadRequestError) return;
        const decision = decide(target, router);
        if (decision === 'refused') return;
        const underA = decision === 'under-a';
        // The forwarded path is the normalised one (the route has no base path and no strip_prefix).
        expect(whatwgView(target.path).startsWith('/a/')).toBe(underA);
        expect(decodingView(target.path).startsWith('/a/')).toBe(underA);
        // Upstreams that decode once more, or cut path parameters, never leave /a/ with its token.
        if (underA) {
          expect(redecodedView(target.path).startsWith('/a/')).toBe(true);
          expect(servletView(target.path).startsWith('/a/')).toBe(true);
        }
      }),
      { numRuns: RUNS },
    );
  });
});

/** Spellings an upstream may decode into a dot segment, a NUL or a "." (overlong UTF-8). */
const LOOSE = [
  '%00',
  '..%00',
  '%2500',
  '%c0%ae%c0%ae',
  '%C0%AE',
  '%e0%80%ae%e0%80%ae',
  '%f0%80%80%ae',
  '%252e%252e',
  '%252E',
  '..%252F..',
  '..%255C..',
  '..%3B',
  '..%3b',
  '.%3Bx',
  '..%3Bjsessionid=1',
  '..%253B',
  '..%3F',
  '..%23',
  '..%20',
  '.%09.',
  '..%0A',
];
/** A path under /a/ (or elsewhere) with one loose segment and plain text after it. */
const loosePath = fc
  .tuple(
    fc.constantFrom('/a', '/a/b', '/b', '', '/a/%41'),
    fc.constantFrom(...LOOSE),
    fc.constantFrom('', '/', '/x', '/x/y', '?q=1', '/%7E?next=..'),
  )
  .map(([before, loose, after]) => ({ path: `${before}/${loose}${after}`, loose }));

describe('strict_path: loose spellings are refused unless the route opts out', () => {
  const strict = createRouter([route('under-a', '/a/'), route('everything-else')]);
  const lenient = createRouter([route('under-a', '/a/', false), route('everything-else', undefined, false)]);
  const unmatched = createRouter([route('under-a', '/a/', false)]);

  it('a strict route refuses every such path with 400', () => {
    fc.assert(
      fc.property(loosePath, ({ path: p }) => {
        const target = parsedOrRefused(p);
        expect(target).not.toBeInstanceOf(BadRequestError);
        expect((target as ParsedTarget).looseSpelling).toMatch(/^request path holds an /);
        expect(decide(target as ParsedTarget, strict)).toBe('refused');
      }),
      { numRuns: RUNS },
    );
  });

  it('strict_path: false forwards it verbatim (normalised), and WHATWG or decoding upstreams stay under the prefix', () => {
    fc.assert(
      fc.property(loosePath, ({ path: p, loose }) => {
        const target = parsedOrRefused(p) as ParsedTarget;
        const decision = decide(target, lenient);
        expect(decision).toBe(pathPart(target.path).startsWith('/a/') ? 'under-a' : 'everything-else');
        // Only the letter case of the hex may change: the spelling itself reaches the upstream.
        expect(target.path.toLowerCase()).toContain(`/${loose.toLowerCase()}`);
        const underA = decision === 'under-a';
        expect(whatwgView(target.path).startsWith('/a/')).toBe(underA);
        expect(decodingView(target.path).startsWith('/a/')).toBe(underA);
      }),
      { numRuns: RUNS },
    );
  });

  it('an unmatched request with such a path is refused, whatever the routes say', () => {
    fc.assert(
      fc.property(loosePath, ({ path: p }) => {
        const target = parsedOrRefused(p) as ParsedTarget;
        const decision = decide(target, unmatched);
        expect(decision).toBe(pathPart(target.path).startsWith('/a/') ? 'under-a' : 'refused');
      }),
      { numRuns: RUNS },
    );
  });

  it.each([
    ['/a/..%00', 'request path holds an encoded NUL (such as %00 or %2500)'],
    ['/a/%2500', 'request path holds an encoded NUL (such as %00 or %2500)'],
    ['/a/%c0%ae%c0%ae/x', 'request path holds an overlong UTF-8 encoding (such as %C0%AE for ".")'],
    ['/a/%25C0%25AE/x', 'request path holds an overlong UTF-8 encoding (such as %C0%AE for ".")'],
    ['/a/%252e%252e/x', 'request path holds an encoded dot segment (such as ..%3B or %252e%252e)'],
    ['/a/..%3B/x', 'request path holds an encoded dot segment (such as ..%3B or %252e%252e)'],
    ['/a/x%252F..%252F../y', 'request path holds an encoded dot segment (such as ..%3B or %252e%252e)'],
    ['/a/%2e%2e%20', 'request path holds an encoded dot segment (such as ..%3B or %252e%252e)'],
    ['/a/.%09./x', 'request path holds an encoded dot segment (such as ..%3B or %252e%252e)'],
  ])('%s: %s', (p, why) => {
    expect(looseSpelling(normalizePath(p))).toBe(why);
  });

  it.each([
    '/a/b',
    '/a/%C3%A9t%C3%A9',
    '/a/%F0%9F%98%80',
    '/a/%E0%A4%B9',
    '/a/..x%3B',
    '/a/x%3B..',
    '/a/report%20v1.0',
    '/a/%252Fx',
    '/a/%25',
    '/a/b?x=..%3B%00%c0%ae',
  ])('%s is no loose spelling', (p) => {
    expect(looseSpelling(normalizePath(p))).toBeUndefined();
  });
});
