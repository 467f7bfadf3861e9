import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { normaliseHost, parseHostPattern, splitAuthority } from '../../../src/router/host.js';

describe('splitAuthority (request Host and CONNECT authorities)', () => {
  it.each([
    ['a.example.com', 80, { host: 'a.example.com', port: 80 }],
    ['a.example.com', 443, { host: 'a.example.com', port: 443 }],
    ['A.Example.COM:1', 80, { host: 'a.example.com', port: 1 }],
    ['a.example.com.:8080', 80, { host: 'a.example.com', port: 8080 }],
    ['10.0.0.1:65535', 80, { host: '10.0.0.1', port: 65535 }],
    ['[::ffff:10.0.0.1]:8080', 80, { host: '[::ffff:10.0.0.1]', port: 8080 }],
    ['[2001:DB8::1]', 443, { host: '[2001:db8::1]', port: 443 }],
    [' padded:81 ', 80, { host: 'padded', port: 81 }],
  ])('%j (default %d)', (authority, port, expected) => {
    expect(splitAuthority(authority, port)).toEqual(expected);
  });

  it.each(['', 'a b', 'host:', 'host:0', 'host:65536', 'host:123456', 'user@host', 'h/p', '[::1', '::1'])(
    'refuses %j',
    (authority) => {
      expect(splitAuthority(authority, 80)).toBeUndefined();
    },
  );

  it('gives the same answer from its cache, per default port', () => {
    expect(splitAuthority('cached.example.com', 80)).toEqual({ host: 'cached.example.com', port: 80 });
    expect(splitAuthority('cached.example.com', 443)).toEqual({ host: 'cached.example.com', port: 443 });
    expect(splitAuthority('cached.example.com', 80)).toEqual({ host: 'cached.example.com', port: 80 });
  });
});

describe('parseHostPattern (configured match.host)', () => {
  it.each([
    [' API.Example.com:80 ', { host: 'api.example.com', port: 80 }],
    ['Orders.Example.COM.', { host: 'orders.example.com' }],
    ['*.Example.com', { host: '*.example.com' }],
    ['*.example.com.:443', { host: '*.example.com', port: 443 }],
    ['[::1]:8080', { host: '[::1]', port: 8080 }],
    ['[2001:DB8::1]', { host: '[2001:db8::1]' }],
    ['my_host', { host: 'my_host' }],
  ])('%j', (text, expected) => {
    expect(parseHostPattern(text)).toEqual(expected);
  });

  it.each(['a..b', 'bad host!', '*', 'a.*.com', '-a.com', 'a.com:', 'user@a.com', 'a.com..'])(
    'refuses %j as a host name',
    (text) => {
      expect(parseHostPattern(text)).toBe(
        `"${text}" is not a host name; use an exact name, or "*." and a domain for its subdomains`,
      );
    },
  );

  it.each([
    ['a.com:0', 'port 0 is out of range'],
    ['a.com:70000', 'port 70000 is out of range'],
    ['[::1]:0', 'port 0 is out of range'],
  ])('refuses the port of %j', (text, message) => {
    expect(parseHostPattern(text)).toBe(message);
  });
});

describe('config and requests normalise a host the same way', () => {
  /** Host names in any letter case, with or without a trailing dot and a port. */
  const label = fc.stringMatching(/^[A-Za-z0-9](?:[A-Za-z0-9_-]{0,6}[A-Za-z0-9])?$/);
  const authority = fc
    .tuple(
      fc.array(label, { minLength: 1, maxLength: 4 }),
      fc.boolean(),
      fc.option(fc.integer({ min: 1, max: 65535 }), { nil: undefined }),
    )
    .map(
      ([labels, dot, port]) => `${labels.join('.')}${dot ? '.' : ''}${port === undefined ? '' : `:${port}`}`,
    );

  it('a request whose Host is spelled as the pattern is has the pattern’s host and port', () => {
    fc.assert(
      fc.property(authority, (text) => {
        const pattern = parseHostPattern(text);
        const request = splitAuthority(text, 80);
        if (typeof pattern === 'string') throw new Error(`pattern refused: ${pattern}`);
        expect(request).toEqual({ host: pattern.host, port: pattern.port ?? 80 });
        expect(pattern.host).toBe(normaliseHost(text.replace(/:\d+$/, '')));
      }),
      { numRuns: 500 },
    );
  });
});
