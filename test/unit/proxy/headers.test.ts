import { describe, expect, it } from 'vitest';
import {
  downstreamResponseHeaders,
  hasOurVia,
  upstreamRequestHeaders,
  VIA,
} from '../../../src/proxy/headers.js';

const TOKEN = { name: 'Authorization', value: 'Bearer tok' };

/** The flat list as [name, value] pairs, for readable assertions. */
function pairs(flat: string[]): [string, string][] {
  const out: [string, string][] = [];
  for (let i = 0; i < flat.length; i += 2) out.push([flat[i]!, flat[i + 1]!]);
  return out;
}

function names(flat: string[]): string[] {
  return pairs(flat).map(([n]) => n.toLowerCase());
}

describe('upstreamRequestHeaders', () => {
  it('puts the token first, then end-to-end headers in order with their original case, then Via', () => {
    const out = upstreamRequestHeaders(
      ['Host', 'api.example.com', 'Accept', 'application/json', 'X-Request-Id', '7', 'accept', 'text/plain'],
      TOKEN,
    );
    expect(pairs(out)).toEqual([
      ['Authorization', 'Bearer tok'],
      ['Accept', 'application/json'],
      ['X-Request-Id', '7'],
      ['accept', 'text/plain'],
      ['via', VIA],
    ]);
  });

  it.each([
    'Connection',
    'Keep-Alive',
    'Proxy-Authenticate',
    'Proxy-Authorization',
    'Proxy-Connection',
    'TE',
    'Trailer',
    'Transfer-Encoding',
    'Upgrade',
    'Host',
    'Expect',
  ])('removes the hop-by-hop header %s in any case', (name) => {
    for (const variant of [name, name.toLowerCase(), name.toUpperCase()]) {
      const out = upstreamRequestHeaders([variant, 'x', 'Accept', '*/*'], undefined);
      expect(names(out)).toEqual(['accept', 'via']);
    }
  });

  it('never forwards Proxy-Authorization, even with no token to inject', () => {
    const out = upstreamRequestHeaders(
      ['Proxy-Authorization', 'Basic cHJveHk6c2VjcmV0', 'proxy-authorization', 'Basic eA=='],
      undefined,
    );
    expect(out.join('\n')).not.toMatch(/proxy-authorization|cHJveHk6c2VjcmV0/i);
  });

  it('removes the headers the Connection header names, across several Connection headers', () => {
    const out = upstreamRequestHeaders(
      [
        'Connection',
        'keep-alive, X-Secret-Hop ,  x-other',
        'connection',
        'X-Third',
        'X-Secret-Hop',
        '1',
        'x-other',
        '2',
        'X-THIRD',
        '3',
        'X-Kept',
        '4',
      ],
      TOKEN,
    );
    expect(pairs(out)).toEqual([
      ['Authorization', 'Bearer tok'],
      ['X-Kept', '4'],
      ['via', VIA],
    ]);
  });

  it('replaces every case variant of the injected header the client sent', () => {
    const out = upstreamRequestHeaders(
      [
        'authorization',
        'Bearer client',
        'AUTHORIZATION',
        'Basic x',
        'Authorization',
        'Bearer again',
        'Accept',
        '*/*',
      ],
      TOKEN,
    );
    expect(pairs(out).filter(([n]) => n.toLowerCase() === 'authorization')).toEqual([
      ['Authorization', 'Bearer tok'],
    ]);
    expect(out).not.toContain('Bearer client');
  });

  it('injects a custom header name, replacing the client variant and keeping Authorization', () => {
    const out = upstreamRequestHeaders(['x-api-token', 'forged', 'Authorization', 'Basic app'], {
      name: 'X-Api-Token',
      value: 'tok',
    });
    expect(pairs(out)).toEqual([
      ['X-Api-Token', 'tok'],
      ['Authorization', 'Basic app'],
      ['via', VIA],
    ]);
  });

  it('still injects when the client lists the injected header in Connection', () => {
    const out = upstreamRequestHeaders(
      ['Connection', 'authorization', 'Authorization', 'Bearer client'],
      TOKEN,
    );
    expect(pairs(out)).toEqual([
      ['Authorization', 'Bearer tok'],
      ['via', VIA],
    ]);
  });

  it('forwards the client headers without injection when there is no token', () => {
    const out = upstreamRequestHeaders(['Authorization', 'Bearer app', 'Accept', '*/*'], undefined);
    expect(pairs(out)).toEqual([
      ['Authorization', 'Bearer app'],
      ['Accept', '*/*'],
      ['via', VIA],
    ]);
  });

  it('appends itself to the Via the client sent, merging several Via headers in order', () => {
    const out = upstreamRequestHeaders(
      ['Via', '1.0 fred', 'Accept', '*/*', 'via', '1.1 p.example'],
      undefined,
    );
    expect(pairs(out)).toEqual([
      ['Accept', '*/*'],
      ['via', `1.0 fred, 1.1 p.example, ${VIA}`],
    ]);
  });

  it('does not mutate its input', () => {
    const raw = ['Connection', 'close', 'Authorization', 'x'];
    const copy = [...raw];
    upstreamRequestHeaders(raw, TOKEN);
    expect(raw).toEqual(copy);
  });
});

describe('downstreamResponseHeaders', () => {
  it('removes hop-by-hop response headers and keeps the rest, arrays included', () => {
    const out = downstreamResponseHeaders({
      'content-type': 'application/json',
      'set-cookie': ['a=1', 'b=2'],
      connection: 'keep-alive',
      'keep-alive': 'timeout=5',
      'transfer-encoding': 'chunked',
      'proxy-authenticate': 'Basic',
      trailer: 'x-checksum',
      upgrade: 'h2c',
      te: 'trailers',
      'content-length': '12',
      via: '1.1 upstream',
    });
    expect(out).toEqual({
      'content-type': 'application/json',
      'set-cookie': ['a=1', 'b=2'],
      'content-length': '12',
      via: '1.1 upstream',
    });
  });

  it('removes the headers the response Connection header names', () => {
    expect(
      downstreamResponseHeaders({ connection: 'X-Hop, close', 'x-hop': '1', 'x-keep': '2', etag: '"e"' }),
    ).toEqual({ 'x-keep': '2', etag: '"e"' });
    expect(
      downstreamResponseHeaders({ connection: ['x-a', 'X-B'], 'x-a': '1', 'x-b': '2', 'x-c': '3' }),
    ).toEqual({
      'x-c': '3',
    });
  });

  it('drops undefined values', () => {
    expect(downstreamResponseHeaders({ 'x-a': undefined, 'x-b': 'v' })).toEqual({ 'x-b': 'v' });
  });
});

describe('hasOurVia', () => {
  it('finds a token-injector in any Via header, in any case of the name', () => {
    expect(hasOurVia(['VIA', `1.0 fred, ${VIA}`])).toBe(true);
    expect(hasOurVia(['Accept', '*/*', 'via', '1.1 token-injector'])).toBe(true);
    expect(hasOurVia(upstreamRequestHeaders([], undefined))).toBe(true);
  });

  it('is false without one', () => {
    expect(hasOurVia([])).toBe(false);
    expect(hasOurVia(['Via', '1.1 squid'])).toBe(false);
    expect(hasOurVia(['X-Note', 'token-injector'])).toBe(false);
  });
});
