import type { IncomingMessage } from 'node:http';
import { describe, expect, it } from 'vitest';
import { BadRequestError } from '../../../src/errors.js';
import { parseTarget } from '../../../src/proxy/target.js';

/** A request stand-in; `rawHeaders` as Node gives them (name, value, …), by default one per header. */
function req(
  url: string,
  headers: Record<string, string> = {},
  method = 'GET',
  rawHeaders: string[] = Object.entries(headers).flat(),
  version: [number, number] = [1, 1],
): IncomingMessage {
  const [httpVersionMajor, httpVersionMinor] = version;
  return {
    url,
    method,
    headers,
    rawHeaders,
    httpVersionMajor,
    httpVersionMinor,
  } as unknown as IncomingMessage;
}

function badRequest(r: IncomingMessage): BadRequestError {
  try {
    parseTarget(r);
  } catch (err) {
    expect(err).toBeInstanceOf(BadRequestError);
    expect((err as BadRequestError).code).toBe('bad_request');
    return err as BadRequestError;
  }
  throw new Error('expected parseTarget to throw');
}

describe('parseTarget: origin-form (reverse mode)', () => {
  it('takes host and port from Host and the path as sent', () => {
    expect(parseTarget(req('/v1/orders?x=1&y=%2F', { host: 'Orders.Example.com:8443' }, 'POST'))).toEqual({
      host: 'orders.example.com',
      port: 8443,
      path: '/v1/orders?x=1&y=%2F',
      method: 'POST',
      forward: false,
      scheme: 'http',
    });
  });

  it('defaults the port to 80 and drops a trailing dot', () => {
    const t = parseTarget(req('/', { host: 'api.example.com.' }));
    expect(t.host).toBe('api.example.com');
    expect(t.port).toBe(80);
  });

  it('keeps the brackets of an IPv6 host', () => {
    expect(parseTarget(req('/x', { host: '[::1]:8080' }))).toMatchObject({ host: '[::1]', port: 8080 });
    expect(parseTarget(req('/x', { host: '[2001:DB8::1]' }))).toMatchObject({
      host: '[2001:db8::1]',
      port: 80,
    });
  });

  it('normalises the path it matches and forwards (dot segments, empty segments)', () => {
    expect(parseTarget(req('/a/../b//c', { host: 'h' })).path).toBe('/b/c');
  });

  it('rejects a request without Host', () => {
    expect(badRequest(req('/x')).message).toBe('request has no Host header');
    expect(badRequest(req('/x', { host: '' })).message).toBe('request has no Host header');
  });

  it.each([
    'a b',
    'host:',
    'host:0',
    'host:65536',
    'host:123456',
    'host:port',
    'user@host',
    'host/path',
    '[::1',
    '::1',
    '[::1]x',
    '[zz::1]',
  ])('rejects the Host %j', (host) => {
    expect(badRequest(req('/x', { host })).message).toBe('Host header is not a valid host[:port]');
  });
});

describe('parseTarget: more than one Host (RFC 9112 §3.2)', () => {
  it.each([
    ['two Host headers', ['Host', 'a.example.com', 'Host', 'b.example.com']],
    ['the same Host twice', ['Host', 'a.example.com', 'X-Other', '1', 'host', 'a.example.com']],
    ['Host in any case', ['HOST', 'a.example.com', 'hOsT', 'b.example.com']],
  ])('rejects %s', (_what, raw) => {
    // Node joins duplicate Host values into one (or keeps the first): only rawHeaders shows them.
    const err = badRequest(req('/x', { host: 'a.example.com' }, 'GET', raw));
    expect(err.message).toBe('request has more than one Host header');
  });

  it('rejects them in absolute-form too', () => {
    badRequest(req('http://a.example.com/x', { host: 'a.example.com' }, 'GET', ['Host', 'a', 'Host', 'b']));
  });

  it('accepts one Host among headers whose names merely contain "host"', () => {
    const raw = ['X-Forwarded-Host', 'evil.example.com', 'Host', 'a.example.com', 'Hosts', 'x'];
    expect(parseTarget(req('/x', { host: 'a.example.com' }, 'GET', raw)).host).toBe('a.example.com');
  });
});

describe('parseTarget: absolute-form (forward mode)', () => {
  it('takes host, port and path from the request line, over Host', () => {
    expect(
      parseTarget(req('http://API.example.com:8080/v1/x?q=1', { host: 'other.example.com' }, 'DELETE')),
    ).toEqual({
      host: 'api.example.com',
      port: 8080,
      path: '/v1/x?q=1',
      method: 'DELETE',
      forward: true,
      scheme: 'http',
    });
  });

  it('uses the scheme default port', () => {
    expect(parseTarget(req('http://a.example.com/'))).toMatchObject({ port: 80, scheme: 'http' });
    expect(parseTarget(req('https://a.example.com/'))).toMatchObject({ port: 443, scheme: 'https' });
    expect(parseTarget(req('http://a.example.com:80/'))).toMatchObject({ port: 80 });
    expect(parseTarget(req('HTTPS://A.example.com:8443'))).toMatchObject({
      host: 'a.example.com',
      port: 8443,
      scheme: 'https',
      path: '/',
    });
  });

  it('keeps the brackets of an IPv6 host', () => {
    expect(parseTarget(req('http://[::1]:9000/p'))).toMatchObject({ host: '[::1]', port: 9000, path: '/p' });
  });

  it('drops a trailing dot', () => {
    expect(parseTarget(req('http://a.example.com./p?x'))).toMatchObject({
      host: 'a.example.com',
      path: '/p?x',
    });
  });

  // URL parsing would drop a fragment silently: "/a/..#" would become "/" after matching "/a/".
  it.each(['http://a.example.com/p?x#frag', 'http://a.example.com/a/..#', 'http://a.example.com/#'])(
    'rejects the fragment in %j (RFC 9112 §3.2.2)',
    (url) => {
      expect(badRequest(req(url)).message).toBe(
        'request target holds a "#": a fragment is never sent (RFC 9112 §3.2)',
      );
    },
  );

  it.each(['http://a.example.com:0/', 'http://a.example.com:00/x', 'https://a.example.com:0'])(
    'rejects port 0 in %j',
    (url) => {
      expect(badRequest(req(url)).message).toBe('request target names port 0');
    },
  );

  it('rejects user info', () => {
    expect(badRequest(req('http://user:pw@a.example.com/')).message).toBe(
      'request target must not contain user info',
    );
  });

  it('rejects an unparseable URL', () => {
    expect(badRequest(req('http://exa mple.com/')).message).toBe(
      'request target is not a valid absolute URL',
    );
  });

  it.each(['ftp://a.example.com/', 'a.example.com:443', '*', ''])('rejects the target %j', (url) => {
    expect(badRequest(req(url, { host: 'a.example.com' })).message).toBe(
      'request target must be a path or an absolute http:// URL',
    );
  });
});

describe('parseTarget: HTTP version', () => {
  it.each<[number, number]>([
    [1, 0],
    [1, 1],
  ])('accepts HTTP/%i.%i', (major, minor) => {
    expect(parseTarget(req('/x', { host: 'h' }, 'GET', ['Host', 'h'], [major, minor])).path).toBe('/x');
  });

  // Node's parser lets these through on an HTTP/1 connection.
  it.each<[number, number]>([
    [2, 0],
    [0, 9],
    [1, 2],
  ])('rejects HTTP/%i.%i, in origin-form and absolute-form', (major, minor) => {
    const message = `HTTP/${major}.${minor} is not spoken on this listener; use HTTP/1.1`;
    expect(badRequest(req('/x', { host: 'h' }, 'GET', ['Host', 'h'], [major, minor])).message).toBe(message);
    expect(badRequest(req('http://h/x', {}, 'GET', [], [major, minor])).message).toBe(message);
  });
});

describe('parseTarget: fragments and loose spellings', () => {
  it.each(['/a/..#', '/a/%2e%2e#', '/a#b', '/a?x#y', '/#'])(
    'rejects the fragment in %j (RFC 9112 §3.2.1)',
    (url) => {
      expect(badRequest(req(url, { host: 'h' })).message).toBe(
        'request target holds a "#": a fragment is never sent (RFC 9112 §3.2)',
      );
    },
  );

  it.each([
    ['/a/..%00', 'request path holds an encoded NUL (such as %00 or %2500)'],
    ['/a/%c0%ae%c0%ae/x', 'request path holds an overlong UTF-8 encoding (such as %C0%AE for ".")'],
    ['/a/..%3B/x', 'request path holds an encoded dot segment (such as ..%3B or %252e%252e)'],
    ['/a/%252e%252e/x', 'request path holds an encoded dot segment (such as ..%3B or %252e%252e)'],
    ['http://h/a/%252e%252e/x', 'request path holds an encoded dot segment (such as ..%3B or %252e%252e)'],
  ])('reports %j as a loose spelling, for the router to refuse or let through', (url, why) => {
    const target = parseTarget(req(url, { host: 'h' }));
    expect(target.looseSpelling).toBe(why);
    // The path itself is the normalised one either way: what a lenient route forwards.
    expect(target.path).toBe(url.replace('http://h', '').replace('%c0%ae%c0%ae', '%C0%AE%C0%AE'));
  });

  it('reports nothing for a plain path, or for "%" only in the query', () => {
    expect(parseTarget(req('/a/b', { host: 'h' })).looseSpelling).toBeUndefined();
    expect(parseTarget(req('/a/b?x=..%3B%00', { host: 'h' })).looseSpelling).toBeUndefined();
    expect(parseTarget(req('/a/%7Eb%20c', { host: 'h' })).looseSpelling).toBeUndefined();
  });
});
