// biome-ignore-all lint/suspicious/noTemplateCurlyInString: these tests are about the literal ${env:} and ${file:} syntax
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { parseConfigText } from '../../../src/config/load.js';
import type { ConfigProblem } from '../../../src/errors.js';
import { CREDENTIALS_YAML, format, problemsOf, sources, validConfig } from './helpers.js';

type Obj = Record<string, unknown>;

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');

/** Every key `shared_cache` accepts, as README.md and config.example.yaml document them. */
const SHARED_CACHE_KEYS = [
  'url',
  'username',
  'password',
  'key_prefix',
  'encryption_keys',
  'timeout',
  'tls',
  'cluster',
];

/** Distinct 32-byte keys (what `openssl rand -base64 32` gives), and their base64 text. */
const KEY_A = Buffer.alloc(32, 0xa1);
const KEY_B = Buffer.alloc(32, 0xb2);
const A = KEY_A.toString('base64');
const B = KEY_B.toString('base64');

const CA_PEM = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';
const KEY_PEM = '-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n';

/** Mounted files and variables, the way a Kubernetes pod provides them (trailing newlines included). */
const FILES = {
  '/var/run/secrets/cache/password': 'cache-password\n',
  '/var/run/secrets/cache/key': `${A}\n`,
  '/etc/token-injector/cache-ca.pem': CA_PEM,
  '/etc/token-injector/cache-client.pem': CA_PEM,
  '/etc/token-injector/cache-client-key.pem': KEY_PEM,
};
const ENV = { CACHE_KEY_OLD: B };

/** A valid configuration with this `shared_cache` section (undefined: none). */
function yaml(shared: unknown): string {
  return shared === undefined
    ? CREDENTIALS_YAML
    : `${CREDENTIALS_YAML}${stringify({ shared_cache: shared })}`;
}

/** The smallest valid section: a url and one key by reference. */
const MINIMAL = {
  url: 'redis://cache.internal:6379',
  encryption_keys: ['${file:/var/run/secrets/cache/key}'],
};

function problems(shared: unknown): string[] {
  return problemsOf(yaml(shared), sources(ENV, FILES));
}

/** Problems of `MINIMAL` with these keys changed (undefined removes a key). */
function problemsWith(changes: Obj): string[] {
  const shared: Obj = { ...MINIMAL, ...changes };
  for (const [k, v] of Object.entries(changes)) if (v === undefined) delete shared[k];
  return problems(shared);
}

function warnings(shared: unknown): string[] {
  const { config, problems } = parseConfigText(yaml(shared), sources(ENV, FILES));
  expect(problems.map(format)).toEqual([]);
  return sharedCacheWarnings(config!.warnings);
}

/** CREDENTIALS_YAML writes its client secrets inline: only this section's warnings count here. */
function sharedCacheWarnings(list: readonly ConfigProblem[]): string[] {
  return list.filter((w) => w.path.startsWith('shared_cache')).map(format);
}

describe('shared_cache: valid', () => {
  it('is absent by default: every replica keeps its tokens to itself', () => {
    expect(validConfig(yaml(undefined)).sharedCache).toBeUndefined();
    expect(validConfig(`${CREDENTIALS_YAML}shared_cache:\n`).sharedCache).toBeUndefined();
  });

  it('takes every key, resolving references and reading the TLS files', () => {
    const config = validConfig(
      yaml({
        url: 'rediss://cache.internal:6380/2',
        username: 'token-injector',
        password: '${file:/var/run/secrets/cache/password}',
        key_prefix: 'fleet-a:',
        encryption_keys: ['${file:/var/run/secrets/cache/key}', '${env:CACHE_KEY_OLD}'],
        timeout: '150ms',
        tls: {
          ca_file: '/etc/token-injector/cache-ca.pem',
          cert_file: '/etc/token-injector/cache-client.pem',
          key_file: '/etc/token-injector/cache-client-key.pem',
        },
        cluster: true,
      }),
      sources(ENV, FILES),
    );
    const shared = config.sharedCache!;
    expect(shared.url.href).toBe('rediss://cache.internal:6380/2');
    expect(shared.username).toBe('token-injector');
    // A whole ${file:} is remembered, like every other secret.
    expect(shared.password).toEqual({ value: 'cache-password', file: '/var/run/secrets/cache/password' });
    expect(shared.keyPrefix).toBe('fleet-a:');
    // In the order given: the first encrypts and names entries.
    expect(shared.encryptionKeys).toEqual([KEY_A, KEY_B]);
    expect(shared.timeoutMs).toBe(150);
    expect(shared.tls).toEqual({
      ca: CA_PEM,
      caFile: '/etc/token-injector/cache-ca.pem',
      cert: { value: CA_PEM, file: '/etc/token-injector/cache-client.pem' },
      key: { value: KEY_PEM, file: '/etc/token-injector/cache-client-key.pem' },
    });
    expect(shared.cluster).toBe(true);
    expect(Object.isFrozen(shared)).toBe(true);
    expect(Object.isFrozen(shared.encryptionKeys)).toBe(true);
    expect(sharedCacheWarnings(config.warnings)).toEqual([]);
  });

  it('has defaults for everything but url and encryption_keys', () => {
    const shared = validConfig(yaml(MINIMAL), sources(ENV, FILES)).sharedCache!;
    expect(shared).toEqual({
      url: new URL('redis://cache.internal:6379'),
      keyPrefix: 'token-injector:',
      encryptionKeys: [KEY_A],
      timeoutMs: 200,
      tls: {},
      cluster: false,
    });
    expect('username' in shared).toBe(false);
    expect('password' in shared).toBe(false);
  });

  it('takes a database number as path, IPv6 and bare hosts, and a trailing slash', () => {
    for (const url of [
      'redis://cache.internal:6379/0',
      'redis://cache.internal/15',
      'redis://[::1]:6379',
      'redis://10.0.0.7:6379/',
      'rediss://cache.internal',
    ]) {
      expect(validConfig(yaml({ ...MINIMAL, url }), sources(ENV, FILES)).sharedCache!.url.href, url).toBe(
        new URL(url).href,
      );
    }
  });

  it('takes keys in base64 or base64url, with or without padding, and one key without a list', () => {
    const key = Buffer.from(Array.from({ length: 32 }, (_, i) => 0xf8 + (i % 8)));
    const b64 = key.toString('base64');
    const b64url = key.toString('base64url');
    expect(b64).toMatch(/[+/]/);
    expect(b64url).toMatch(/[-_]/);
    for (const text of [b64, b64url, b64.replace(/=+$/, ''), `  ${b64}\n`]) {
      const shared = validConfig(yaml({ ...MINIMAL, encryption_keys: [text] }), sources(ENV, FILES))
        .sharedCache!;
      expect(shared.encryptionKeys, JSON.stringify(text)).toEqual([key]);
    }
    const single = validConfig(
      yaml({ ...MINIMAL, encryption_keys: '${file:/var/run/secrets/cache/key}' }),
      sources(ENV, FILES),
    ).sharedCache!;
    expect(single.encryptionKeys).toEqual([KEY_A]);
  });

  it('accepts the timeout as a duration in any unit', () => {
    const timeout = (t: unknown) =>
      validConfig(yaml({ ...MINIMAL, timeout: t }), sources(ENV, FILES)).sharedCache!.timeoutMs;
    expect(timeout('50ms')).toBe(50);
    expect(timeout('1s')).toBe(1000);
    expect(timeout(2)).toBe(2000);
  });
});

describe('shared_cache: each problem names its key and says why', () => {
  it('is a mapping', () => {
    expect(problems(['redis://cache:6379'])).toEqual(['shared_cache: must be a mapping, got a list']);
    expect(problems('redis://cache:6379')).toEqual([
      'shared_cache: must be a mapping, got "redis://cache:6379"',
    ]);
  });

  it('needs a url', () => {
    expect(problemsWith({ url: undefined })).toEqual(['shared_cache.url: is required']);
  });

  it('takes only redis:// and rediss:// URLs', () => {
    expect(problemsWith({ url: 'http://cache.internal:6379' })).toEqual([
      'shared_cache.url: must be a redis:// or rediss:// URL, got http://',
    ]);
    expect(problemsWith({ url: 'valkey://cache.internal:6379' })).toEqual([
      'shared_cache.url: must be a redis:// or rediss:// URL, got valkey://',
    ]);
    expect(problemsWith({ url: 'cache internal' })).toEqual([
      'shared_cache.url: "cache internal" is not a URL',
    ]);
  });

  it('refuses user info in the url, without repeating the password', () => {
    const found = problemsWith({ url: 'redis://admin:hunter2-secret@cache.internal:6379' });
    expect(found).toEqual([
      'shared_cache.url: must not contain user info; use shared_cache.username and shared_cache.password',
    ]);
    expect(problemsWith({ url: 'redis://:hunter2-secret@cache.internal:6379' })).toEqual(found);
    expect(found.join('\n')).not.toContain('hunter2');
  });

  it('takes only a database number as path, and no query or fragment', () => {
    expect(problemsWith({ url: 'redis://cache.internal:6379/tokens' })).toEqual([
      'shared_cache.url: the path must be a database number (e.g. /0), got "/tokens"',
    ]);
    expect(problemsWith({ url: 'redis://cache.internal:6379/0/1' })).toEqual([
      'shared_cache.url: the path must be a database number (e.g. /0), got "/0/1"',
    ]);
    expect(problemsWith({ url: 'redis://cache.internal:6379/0?db=1' })).toEqual([
      'shared_cache.url: must not contain a query string or fragment',
    ]);
    expect(problemsWith({ url: 'redis://cache.internal:6379/0#x' })).toEqual([
      'shared_cache.url: must not contain a query string or fragment',
    ]);
  });

  it('needs a host', () => {
    expect(problemsWith({ url: 'redis:///0' })).toEqual([
      'shared_cache.url: must name a host, e.g. redis://cache.internal:6379/0',
    ]);
  });

  it('needs encryption_keys, with at least one key', () => {
    expect(problemsWith({ encryption_keys: undefined })).toEqual([
      'shared_cache.encryption_keys: is required: a list of 32-byte keys in base64 (openssl rand -base64 32)',
    ]);
    expect(problemsWith({ encryption_keys: [] })).toEqual([
      'shared_cache.encryption_keys: must list at least one key',
    ]);
  });

  it('refuses a key that is empty, not base64 or not 32 bytes, by its index, never echoing it', () => {
    const short = Buffer.alloc(16, 7).toString('base64');
    const long = Buffer.alloc(48, 7).toString('base64');
    const found = problemsWith({
      encryption_keys: [A, '', 'not base64!', short, long, '${env:NO_SUCH_KEY}'],
    });
    expect(found).toEqual([
      'shared_cache.encryption_keys[1]: is not base64; make one with: openssl rand -base64 32',
      'shared_cache.encryption_keys[2]: is not base64; make one with: openssl rand -base64 32',
      'shared_cache.encryption_keys[3]: must be 32 bytes once base64-decoded, got 16',
      'shared_cache.encryption_keys[4]: must be 32 bytes once base64-decoded, got 48',
      expect.stringMatching(/^shared_cache\.encryption_keys\[5\]: .*NO_SUCH_KEY/),
    ]);
    for (const text of [A, short, long]) expect(found.join('\n')).not.toContain(text);
  });

  it('refuses a key in a file that does not hold one, naming the key and not the content', () => {
    const src = sources({}, { '/keys/k': 'a passphrase, not a key\n' });
    expect(problemsOf(yaml({ ...MINIMAL, encryption_keys: ['${file:/keys/k}'] }), src)).toEqual([
      'shared_cache.encryption_keys[0]: is not base64; make one with: openssl rand -base64 32',
    ]);
    expect(problemsOf(yaml({ ...MINIMAL, encryption_keys: ['${file:/keys/missing}'] }), src)).toEqual([
      expect.stringMatching(/^shared_cache\.encryption_keys\[0\]: .*\/keys\/missing/),
    ]);
  });

  it('refuses a key that repeats an earlier one, in any spelling', () => {
    expect(problemsWith({ encryption_keys: [A, B, A] })).toEqual([
      'shared_cache.encryption_keys[2]: repeats an earlier key',
    ]);
    expect(problemsWith({ encryption_keys: [A, KEY_A.toString('base64url')] })).toEqual([
      'shared_cache.encryption_keys[1]: repeats an earlier key',
    ]);
  });

  it('refuses keys that are not strings', () => {
    expect(problemsWith({ encryption_keys: [A, { key: B }] })).toEqual([
      'shared_cache.encryption_keys[1]: must be a string, got a mapping',
    ]);
    expect(problemsWith({ encryption_keys: { key: A } })).toEqual([
      'shared_cache.encryption_keys: must be a string, got a mapping',
    ]);
  });

  it('refuses a key_prefix with braces or white space (Redis Cluster hash tags)', () => {
    const why = 'must not contain white space, "{" or "}" (Redis Cluster hash tags)';
    expect(problemsWith({ key_prefix: '{fleet}:' })).toEqual([`shared_cache.key_prefix: ${why}`]);
    expect(problemsWith({ key_prefix: 'fleet}' })).toEqual([`shared_cache.key_prefix: ${why}`]);
    expect(problemsWith({ key_prefix: 'my fleet:' })).toEqual([`shared_cache.key_prefix: ${why}`]);
  });

  it('refuses tls with a redis:// url', () => {
    expect(problemsWith({ tls: { ca_file: '/etc/token-injector/cache-ca.pem' } })).toEqual([
      'shared_cache.tls: applies to rediss:// only; use a rediss:// url for TLS',
    ]);
  });

  it('checks tls like every other tls section', () => {
    const url = 'rediss://cache.internal:6380';
    expect(problemsWith({ url, tls: { cert_file: '/etc/token-injector/cache-client.pem' } })).toEqual([
      'shared_cache.tls: cert_file and key_file go together',
    ]);
    expect(problemsWith({ url, tls: { ca_file: '/etc/token-injector/cache-client-key.pem' } })).toEqual([
      'shared_cache.tls.ca_file: /etc/token-injector/cache-client-key.pem holds no PEM certificate',
    ]);
    expect(problemsWith({ url, tls: { ca_file: '/etc/token-injector/none.pem' } })).toEqual([
      'shared_cache.tls.ca_file: cannot read file /etc/token-injector/none.pem (ENOENT)',
    ]);
    expect(problemsWith({ url, tls: { cafile: '/etc/token-injector/cache-ca.pem' } })).toEqual([
      'shared_cache.tls.cafile: unknown key (did you mean "ca_file"?)',
    ]);
  });

  it('refuses a zero or malformed timeout and a cluster that is not a boolean', () => {
    expect(problemsWith({ timeout: '0ms' })).toEqual(['shared_cache.timeout: must be greater than 0']);
    expect(problemsWith({ timeout: 'soon' })).toEqual([
      'shared_cache.timeout: must be a duration such as 500ms, 30s or 5m, got "soon"',
    ]);
    expect(problemsWith({ cluster: 'yes' })).toEqual([
      'shared_cache.cluster: must be true or false, got "yes"',
    ]);
  });

  it('refuses unknown keys with a did-you-mean hint', () => {
    expect(problemsWith({ encryption_key: A })).toEqual([
      'shared_cache.encryption_key: unknown key (did you mean "encryption_keys"?)',
    ]);
    expect(problemsWith({ keyprefix: 'x:' })).toEqual([
      'shared_cache.keyprefix: unknown key (did you mean "key_prefix"?)',
    ]);
    expect(problemsWith({ sentinel: 'redis://s:26379' })).toEqual(['shared_cache.sentinel: unknown key']);
    expect(problems({ ...MINIMAL, encryption_keys: undefined, encryption_key: A })).toEqual([
      'shared_cache.encryption_key: unknown key (did you mean "encryption_keys"?)',
      'shared_cache.encryption_keys: is required: a list of 32-byte keys in base64 (openssl rand -base64 32)',
    ]);
  });

  it('is suggested for a mistyped top-level key', () => {
    expect(problemsOf(`${CREDENTIALS_YAML}shared_cach:\n  url: redis://cache:6379\n`)).toEqual([
      'shared_cach: unknown key (did you mean "shared_cache"?)',
    ]);
  });

  it('reports every problem of the section at once, next to the rest of the file', () => {
    const text = `${yaml({ url: 'http://cache', key_prefix: '{x}', encryption_keys: ['abc'], timeout: 0 })}routes:\n  - match: {host: a.example.com}\n    upstream: https://a.example.com\n    credential: ordrs\n`;
    const found = problemsOf(text, sources(ENV, FILES));
    expect(found).toEqual(
      expect.arrayContaining([
        'shared_cache.url: must be a redis:// or rediss:// URL, got http://',
        'shared_cache.key_prefix: must not contain white space, "{" or "}" (Redis Cluster hash tags)',
        'shared_cache.encryption_keys[0]: must be 32 bytes once base64-decoded, got 2',
        'shared_cache.timeout: must be greater than 0',
        expect.stringMatching(/^routes\[0\]\.credential: unknown credential "ordrs"/),
      ]),
    );
  });
});

describe('shared_cache: warnings', () => {
  it('warns about a password or key written inline, naming the key but not the value', () => {
    const found = warnings({
      ...MINIMAL,
      password: 'inline-cache-password',
      encryption_keys: [A, '${env:CACHE_KEY_OLD}'],
    });
    expect(found).toEqual([
      'shared_cache.password: is written inline; keep secrets out of the file with ${env:NAME} or ${file:/path/to/secret}',
      'shared_cache.encryption_keys[0]: is written inline; keep keys out of the file with ${env:NAME} or ${file:/path/to/key}',
    ]);
    expect(found.join('\n')).not.toContain('inline-cache-password');
    expect(found.join('\n')).not.toContain(A);
  });

  it('is quiet when every secret is a reference', () => {
    expect(
      warnings({
        ...MINIMAL,
        password: '${file:/var/run/secrets/cache/password}',
        encryption_keys: ['${file:/var/run/secrets/cache/key}', '${env:CACHE_KEY_OLD}'],
      }),
    ).toEqual([]);
  });
});

describe('shared_cache in the documentation', () => {
  const example = readFileSync(join(ROOT, 'config.example.yaml'), 'utf8');
  /** The commented-out block of config.example.yaml, uncommented. */
  function exampleBlock(): string {
    const lines = example.split('\n');
    const start = lines.indexOf('# shared_cache:');
    expect(start, 'a "# shared_cache:" line in config.example.yaml').toBeGreaterThanOrEqual(0);
    const block: string[] = [];
    for (const line of lines.slice(start)) {
      if (line !== '# shared_cache:' && !line.startsWith('#   ')) break;
      block.push(line.slice(2));
    }
    return `${block.join('\n')}\n`;
  }

  it('config.example.yaml shows every key in a block that is valid once uncommented', () => {
    const block = exampleBlock();
    expect(Object.keys((parse(block) as { shared_cache: Obj }).shared_cache).sort()).toEqual(
      [...SHARED_CACHE_KEYS].sort(),
    );
    const { config, problems } = parseConfigText(`${CREDENTIALS_YAML}${block}`, sources(ENV, FILES));
    expect(problems.map(format)).toEqual([]);
    expect(sharedCacheWarnings(config!.warnings)).toEqual([]);
    // Shown with their defaults.
    expect(config!.sharedCache).toMatchObject({
      keyPrefix: 'token-injector:',
      timeoutMs: 200,
      cluster: false,
    });
  });

  it('README.md documents every key in its shared_cache table', () => {
    const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
    const section = readme.slice(readme.indexOf('### `shared_cache`'));
    expect(readme).toContain('### `shared_cache`');
    for (const key of SHARED_CACHE_KEYS) expect(section, key).toMatch(new RegExp(`^\\| \`${key}[\`.]`, 'm'));
  });

  it('lists keys the validator knows: a typo of each is pointed back to it', () => {
    for (const key of SHARED_CACHE_KEYS) {
      expect(problemsWith({ [`${key}x`]: 1 }), key).toContain(
        `shared_cache.${key}x: unknown key (did you mean "${key}"?)`,
      );
    }
  });
});
