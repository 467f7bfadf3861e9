/**
 * The YAML step of the configuration loader (src/config/yaml.ts, through parseConfigText): YAML 1.2
 * core schema semantics, aliases turned into independent copies within a budget, and every
 * failure a problem with a location instead of a throw.
 */
import { describe, expect, it } from 'vitest';
import { parseConfigText } from '../../../src/config/load.js';
import { parseYaml } from '../../../src/config/yaml.js';
import { CREDENTIALS_YAML, problemsOf, sources, validConfig, withRoutes } from './helpers.js';

const PEM = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';

/** The classic "billion laughs": nine levels, each a list of nine aliases of the level before. */
function billionLaughs(): string {
  const lines = [`a: &a [${Array(9).fill('"lol"').join(', ')}]`];
  for (let level = 1; level < 9; level++) {
    const previous = String.fromCharCode(96 + level);
    const name = String.fromCharCode(97 + level);
    lines.push(`${name}: &${name} [${Array(9).fill(`*${previous}`).join(', ')}]`);
  }
  return `${lines.join('\n')}\n`;
}

/** The value of a text that must parse. */
function yamlValue(text: string): Record<string, unknown> {
  const { value, problems } = parseYaml(text);
  expect(problems).toEqual([]);
  return value as Record<string, unknown>;
}

describe('aliases', () => {
  it('refuses an alias bomb with a problem, without throwing or expanding it', () => {
    const { config, problems } = parseConfigText(billionLaughs(), sources());
    expect(config).toBeUndefined();
    expect(problems).toEqual([
      {
        path: '',
        message:
          'YAML: aliases expand the document beyond 10000 nodes; refused as a resource exhaustion attack',
      },
    ]);
  });

  it('refuses an alias inside the node it names instead of building a cycle', () => {
    expect(problemsOf('listen: &l [*l]\n')).toEqual(['YAML: an alias refers to a node that contains it']);
  });

  it('refuses nesting beyond 100 levels made by aliases', () => {
    // Each anchor wraps the one before in a list: 120 levels deep, 7 260 copied nodes (within budget).
    const lines = ['l0: &l0 [x]'];
    for (let i = 1; i <= 120; i++) lines.push(`l${i}: &l${i} [*l${i - 1}]`);
    expect(problemsOf(`${lines.join('\n')}\n`)).toEqual([
      'YAML: aliases nest the document deeper than 100 levels',
    ]);
  });

  it('lets one tls block be shared by two routes, as independent copies', () => {
    const text = withRoutes(`  - name: a
    upstream: https://a.example.com
    credential: orders
    tls: &upstream-tls
      ca_file: /pki/ca.pem
  - name: b
    upstream: https://b.example.com
    credential: billing
    tls: *upstream-tls
`);
    const config = validConfig(text, sources({}, { '/pki/ca.pem': PEM }));
    expect(config.routes.map((r) => [r.name, r.tls.caFile, r.tls.ca])).toEqual([
      ['a', '/pki/ca.pem', PEM],
      ['b', '/pki/ca.pem', PEM],
    ]);

    const routes = yamlValue(text)['routes'] as { tls: { ca_file: string } }[];
    expect(routes[1]!.tls).toEqual(routes[0]!.tls);
    expect(routes[1]!.tls).not.toBe(routes[0]!.tls);
    routes[0]!.tls.ca_file = 'changed';
    expect(routes[1]!.tls.ca_file).toBe('/pki/ca.pem');
  });

  it('copies nested aliases and keys named __proto__ as own keys, never prototypes', () => {
    const value = yamlValue('a: &a {__proto__: {polluted: 1}, list: [1]}\nb: &b {inner: *a}\nc: *b\n');
    const c = value['c'] as { inner: Record<string, unknown> };
    const a = value['a'] as Record<string, unknown>;
    expect(c).toEqual(value['b']);
    expect(c).not.toBe(value['b']);
    expect(c.inner).not.toBe(a);
    expect(c.inner['list']).not.toBe(a['list']);
    expect(Object.hasOwn(c.inner, '__proto__')).toBe(true);
    expect(Object.getPrototypeOf(c.inner)).toBe(Object.prototype);
    expect(({} as Record<string, unknown>)['polluted']).toBeUndefined();
  });

  it('allows many uses of a small anchor in a large document', () => {
    const routes = Array.from(
      { length: 300 },
      (_, i) =>
        `  - name: r${i}\n    match:\n      host: h${i}.example.com\n      methods: ${i === 0 ? '&methods [GET, HEAD]' : '*methods'}\n    upstream: https://u.example.com\n    credential: orders\n`,
    ).join('');
    const config = validConfig(withRoutes(routes));
    expect(config.routes).toHaveLength(300);
    expect([...config.routes[299]!.match.methods!]).toEqual(['GET', 'HEAD']);
  });
});

describe('YAML 1.2 core schema', () => {
  it('keeps timestamps, yes/no and on/off as strings', () => {
    expect(yamlValue('a: 2001-12-14\nb: 2001-12-14t21:59:43.10-05:00\nc: yes\nd: off\ne: 0b101\n')).toEqual({
      a: '2001-12-14',
      b: '2001-12-14t21:59:43.10-05:00',
      c: 'yes',
      d: 'off',
      e: '0b101',
    });
    const config = validConfig(
      CREDENTIALS_YAML.replace('orders-client', '2024-01-01').replace('orders-secret', 'yes'),
    );
    const orders = config.credentials.get('orders')!;
    expect(orders.clientId).toBe('2024-01-01');
    expect('secret' in orders.clientAuth && orders.clientAuth.secret.value).toBe('yes');
  });

  it('resolves the core schema scalars', () => {
    expect(
      yamlValue('a: 0o17\nb: 0x1F\nc: 1e3\nd: ~\ne: TRUE\nf: .inf\ng: "1"\nh: !!str 2\ni: -0x1F\nj: +12\n'),
    ).toEqual({
      a: 15,
      b: 31,
      c: 1000,
      d: null,
      e: true,
      f: Number.POSITIVE_INFINITY,
      g: '1',
      h: '2',
      i: '-0x1F',
      j: 12,
    });
  });

  it('does not apply << merge keys: "<<" is an ordinary (here unknown) key', () => {
    const text = CREDENTIALS_YAML.replace('  orders:', '  orders: &orders').replace(
      / {2}billing:\n(?: {4}.*\n)+/,
      '  billing:\n    <<: *orders\n    client_id: billing-client\n',
    );
    expect(problemsOf(text)).toEqual([
      'credentials.billing.<<: unknown key',
      "credentials.billing.token_endpoint: is required, or issuer: the authorization server's issuer, whose metadata (RFC 8414) names it",
      'credentials.billing.grant_type: is required',
      'credentials.billing.client_secret: is required',
    ]);
  });

  it('reads an empty or comment-only text as an empty configuration', () => {
    expect(parseYaml('')).toEqual({ value: null, problems: [] });
    expect(problemsOf('# nothing yet\n\n')).toEqual(['the configuration is empty']);
  });
});

describe('refused documents', () => {
  it('refuses more than one document', () => {
    expect(problemsOf(`${CREDENTIALS_YAML}---\nlisten: 127.0.0.1:1\n`)).toEqual([
      'YAML syntax: a configuration is one document; this text holds 2',
    ]);
  });

  // js-yaml 4 marks the end of a tagged scalar, on its line.
  it.each([
    [
      'an unknown local tag',
      'listen: !vault orders\n',
      'line 1, column 22: YAML syntax: unknown tag !<!vault>',
    ],
    [
      'a YAML 1.1 type outside the core schema',
      'log:\n  level: !!binary aGVsbG8=\n',
      'line 2, column 27: YAML syntax: unknown tag !<tag:yaml.org,2002:binary>',
    ],
  ])('refuses %s, on its line', (_what, text, problem) => {
    expect(problemsOf(text)).toEqual([problem]);
  });

  it('names the 1-based line and column of a syntax error', () => {
    expect(problemsOf('listen: [oops\n')).toEqual([
      'line 2, column 1: YAML syntax: unexpected end of the stream within a flow collection',
    ]);
    expect(problemsOf('log:\n\tlevel: warn\n')).toEqual([
      'line 2, column 1: YAML syntax: tab characters must not be used in indentation',
    ]);
    expect(problemsOf('log:\n  level: warn\n  level: info\n')).toEqual([
      'line 3, column 3: YAML syntax: duplicated mapping key',
    ]);
  });
});
