import { describe, expect, it } from 'vitest';
import { certificateName, describePermit, parsePermit } from '../../../src/tls-intercept/names.js';

describe('certificateName', () => {
  it.each([
    ['api.example.com', { type: 'dns', value: 'api.example.com' }],
    ['localhost', { type: 'dns', value: 'localhost' }],
    ['under_score.example.com', { type: 'dns', value: 'under_score.example.com' }],
    ['10.1.2.3', { type: 'ip', value: '10.1.2.3' }],
    ['[::1]', { type: 'ip', value: '::1' }],
    ['::ffff:1.2.3.4', { type: 'ip', value: '::ffff:102:304' }],
    ['2001:DB8:0:0:0:0:0:7', { type: 'ip', value: '2001:db8::7' }],
  ])('%s → %o', (host, name) => {
    expect(certificateName(host)).toEqual(name);
  });

  it.each([
    '',
    '*.example.com',
    'Example.com',
    'exämple.com',
    'a..b',
    '-a.example.com',
    'fe80::1%eth0',
    `${'a'.repeat(64)}.example.com`,
    `${'a.'.repeat(127)}ab`,
  ])('refuses %j with a reason', (host) => {
    expect(typeof certificateName(host)).toBe('string');
  });
});

describe('parsePermit', () => {
  it('gives the subtree of a domain for both the domain and its wildcard, case and final dot aside', () => {
    for (const text of ['example.com', '*.example.com', '*.Example.COM.']) {
      expect(parsePermit(text)).toEqual({ type: 'dns', value: 'example.com' });
    }
  });

  it('gives one address for an IP literal', () => {
    expect(parsePermit('10.0.0.1')).toEqual({ type: 'ip', value: '10.0.0.1' });
    expect(parsePermit('[::1]')).toEqual({ type: 'ip', value: '::1' });
  });

  it.each(['*', '*.*.example.com', 'a b', '10.0.0.0/8', 'https://example.com'])('refuses %j', (text) => {
    expect(parsePermit(text)).toEqual(expect.stringContaining(`--permit "${text}"`));
  });

  it('says what each permit allows', () => {
    expect(describePermit({ type: 'dns', value: 'example.com' })).toMatch(
      /^example\.com and every name under it/,
    );
    expect(describePermit({ type: 'ip', value: '10.0.0.1' })).toBe('10.0.0.1 (this address only)');
  });
});
