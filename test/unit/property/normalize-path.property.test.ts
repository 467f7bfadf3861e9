/**
 * Properties of request-path normalisation (src/proxy/normalize-path.ts) and of route matching on
 * the normalised form: generated paths mix every spelling trick there is (dot segments, encoded
 * dots and letters, backslashes, doubled slashes, encoded slashes, stray `%`) with plain text.
 */
import type { IncomingMessage } from 'node:http';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { RouteConfig } from '../../../src/config/types.js';
import { BadRequestError } from '../../../src/errors.js';
import { normalizePath } from '../../../src/proxy/normalize-path.js';
import { parseTarget } from '../../../src/proxy/target.js';
import { createRouter } from '../../../src/router/router.js';

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
  '%c3%a9',
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

function route(name: string, pathPrefix?: string): RouteConfig {
  return {
    name,
    match: pathPrefix === undefined ? {} : { pathPrefix },
    upstream: new URL('https://upstream.example.com'),
    stripPrefix: false,
    credential: name,
    header: 'Authorization',
    prefix: 'Bearer ',
    tokenScope: {},
    tls: {},
    retryOn401: false,
    replayBufferBytes: 64 * 1024,
    connectTimeoutMs: 5_000,
    responseTimeoutMs: 30_000,
    allowInsecureHttp: false,
  };
}

function request(url: string): IncomingMessage {
  return {
    url,
    method: 'GET',
    headers: { host: 'api.example.com' },
    rawHeaders: ['Host', 'api.example.com'],
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
  const out: string[] = [];
  const segments = pathPart(forwarded).split('/').slice(1);
  segments.forEach((raw, i) => {
    let s: string;
    try {
      s = decodeURIComponent(raw);
    } catch {
      s = raw;
    }
    if (s === '.') {
      if (i === segments.length - 1) out.push('');
    } else if (s === '..') {
      out.pop();
      if (i === segments.length - 1) out.push('');
    } else out.push(s);
  });
  return `/${out.join('/')}`;
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
    fc.assert(
      fc.property(trickyPath, fc.string({ unit: 'binary', maxLength: 20 }), (p, q) => {
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

  it('a request matches the "/a/" route exactly when its normalised path is under /a/', () => {
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
        const matched = router(target)?.name;
        expect(matched).toBe(pathPart(n).startsWith('/a/') ? 'under-a' : 'everything-else');
      }),
      { numRuns: RUNS },
    );
  });

  it('what the upstream resolves the forwarded path to is under /a/ exactly when the route matched', () => {
    fc.assert(
      fc.property(wirePath, (p) => {
        let target: ReturnType<typeof parseTarget>;
        try {
          target = parseTarget(request(p));
        } catch {
          return;
        }
        const underA = router(target)?.name === 'under-a';
        // The forwarded path is the normalised one (the route has no base path and no strip_prefix).
        expect(whatwgView(target.path).startsWith('/a/')).toBe(underA);
        expect(decodingView(target.path).startsWith('/a/')).toBe(underA);
      }),
      { numRuns: RUNS },
    );
  });
});
