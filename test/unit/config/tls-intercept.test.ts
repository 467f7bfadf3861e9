// `tls_intercept` as `validate` and `run` check it: real CA files on disk (made as `ca init` or
// `openssl` make them), real file modes, and every problem named by its exact key.
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import type { ConfigSources } from '../../../src/config/interpolate.js';
import { parseConfigText } from '../../../src/config/load.js';
import {
  CA_EXTENSIONS,
  type CaFiles,
  opensslCertificate,
  type TempDir,
  tempDir,
  writeCaFiles,
  writeNewCa,
} from '../../support/interception.js';
import { format } from './helpers.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const HOUR = 3_600_000;
const DAY = 24 * HOUR;

/** Every key `tls_intercept` accepts: a public contract, documented in README.md and the example. */
const TLS_INTERCEPT_KEYS = ['ca_cert_file', 'ca_key_file', 'leaf_lifetime'];

let dir: TempDir;
let ca: CaFiles;
let other: CaFiles;

beforeAll(async () => {
  dir = tempDir();
  ca = await writeNewCa(dir.path, 'ca');
  other = await writeNewCa(dir.path, 'other');
});

afterAll(() => dir.remove());

function realSources(): ConfigSources {
  return { env: {}, readFile: (p) => readFileSync(p, 'utf8'), baseDir: dir.path };
}

function yaml(section: Record<string, unknown>): string {
  return `tls_intercept: ${JSON.stringify(section)}\n`;
}

function check(section: Record<string, unknown>) {
  const { config, problems } = parseConfigText(yaml(section), realSources());
  return { config, problems: problems.map(format), warnings: (config?.warnings ?? []).map(format) };
}

function files(c: CaFiles, extra: Record<string, unknown> = {}) {
  return { ca_cert_file: c.certFile, ca_key_file: c.keyFile, ...extra };
}

describe('tls_intercept', () => {
  it('holds the PEM text of both files, read once at load, and a 24h leaf lifetime by default', () => {
    const { config, problems } = check({ ca_cert_file: 'ca.crt', ca_key_file: 'ca.key' });
    expect(problems).toEqual([]);
    expect(config!.tlsIntercept).toEqual({
      caCert: { value: ca.certPem, file: ca.certFile },
      caKey: { value: ca.keyPem, file: ca.keyFile },
      leafLifetimeMs: DAY,
    });
    expect(Object.isFrozen(config!.tlsIntercept)).toBe(true);
  });

  it('is absent unless configured', () => {
    const { config } = parseConfigText('routes: []\n', realSources());
    expect(config!.tlsIntercept).toBeUndefined();
  });

  it('takes leaf_lifetime from 1h to 9528h (397 days)', () => {
    expect(check(files(ca, { leaf_lifetime: '1h' })).config!.tlsIntercept!.leafLifetimeMs).toBe(HOUR);
    expect(check(files(ca, { leaf_lifetime: '9528h' })).config!.tlsIntercept!.leafLifetimeMs).toBe(397 * DAY);
    expect(check(files(ca, { leaf_lifetime: '59m' })).problems).toEqual([
      expect.stringMatching(/^tls_intercept\.leaf_lifetime: must be at least 1h: .*clocks/),
    ]);
    expect(check(files(ca, { leaf_lifetime: '9529h' })).problems).toEqual([
      expect.stringMatching(/^tls_intercept\.leaf_lifetime: must be at most 9528h \(397 days\).*revoked/),
    ]);
  });

  it('requires both files', () => {
    expect(check({}).problems).toEqual([
      'tls_intercept.ca_cert_file: is required',
      'tls_intercept.ca_key_file: is required',
    ]);
  });

  it('refuses unknown keys with a hint', () => {
    expect(check(files(ca, { leaf_lifetme: '2h' })).problems).toEqual([
      'tls_intercept.leaf_lifetme: unknown key (did you mean "leaf_lifetime"?)',
    ]);
  });

  it('names each file that cannot be read', () => {
    expect(check({ ca_cert_file: 'missing.crt', ca_key_file: 'missing.key' }).problems).toEqual([
      `tls_intercept.ca_cert_file: cannot read file ${join(dir.path, 'missing.crt')} (ENOENT)`,
      `tls_intercept.ca_key_file: cannot read file ${join(dir.path, 'missing.key')} (ENOENT)`,
    ]);
  });

  it.each([0o644, 0o640, 0o604, 0o660])(
    'refuses a key file of mode %o, naming the mode and chmod 600',
    (mode) => {
      const loose = writeCaFiles(dir.path, `loose-${mode.toString(8)}`, ca.certPem, ca.keyPem);
      chmodSync(loose.keyFile, mode);
      const octal = `0${mode.toString(8)}`;
      expect(check(files(loose)).problems).toEqual([
        `tls_intercept.ca_key_file: ${loose.keyFile} is readable or writable by group or others (mode ${octal}); the CA key must be its owner's alone: chmod 600 ${loose.keyFile}`,
      ]);
    },
  );

  it('accepts a key file of mode 0400', () => {
    const readOnly = writeCaFiles(dir.path, 'read-only', ca.certPem, ca.keyPem);
    chmodSync(readOnly.keyFile, 0o400);
    expect(check(files(readOnly)).problems).toEqual([]);
  });

  it('refuses a certificate that is not a CA', async () => {
    const leaf = await opensslCertificate(dir.path, 'not-a-ca', {
      extensions: ['basicConstraints=critical,CA:FALSE'],
    });
    expect(check(files(leaf)).problems).toEqual([
      expect.stringMatching(
        new RegExp(
          `^tls_intercept\\.ca_cert_file: ${leaf.certFile} is not a CA certificate \\(its basicConstraints do not say cA\\)`,
        ),
      ),
    ]);
  });

  it('refuses a key that does not belong to the certificate', () => {
    expect(check({ ca_cert_file: ca.certFile, ca_key_file: other.keyFile }).problems).toEqual([
      `tls_intercept.ca_key_file: ${other.keyFile} is not the key of the CA certificate in ${ca.certFile}`,
    ]);
  });

  it.each([
    ['ed25519', /holds a key of type ed25519; use EC P-256 or P-384, or RSA of at least 2048 bits$/],
    ['p521', /holds an EC key on curve secp521r1; use EC P-256 or P-384/],
    ['rsa1024', /holds an RSA key of 1024 bits; RSA keys need at least 2048 bits$/],
  ] as const)('refuses a CA key of type %s', async (key, message) => {
    const made = await opensslCertificate(dir.path, `type-${key}`, { key });
    const { problems } = check(files(made));
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(/^tls_intercept\.ca_key_file: /);
    expect(problems[0]).toMatch(message);
  });

  it('accepts EC P-384 and RSA 2048 CA keys', async () => {
    for (const key of ['p384', 'rsa2048'] as const) {
      const made = await opensslCertificate(dir.path, `ok-${key}`, { key });
      expect(check(files(made)).problems, key).toEqual([]);
    }
  });

  it('refuses a key file that holds no usable key', () => {
    const garbled = writeCaFiles(dir.path, 'garbled', ca.certPem, 'not a key\n');
    expect(check(files(garbled)).problems).toEqual([
      `tls_intercept.ca_key_file: ${garbled.keyFile}: not a PEM or JWK key`,
    ]);
  });

  it('refuses a CA that has expired, or is not valid yet', async () => {
    const expired = await writeNewCa(dir.path, 'expired', { now: Date.now() - 3 * 365 * DAY });
    expect(check(files(expired)).problems).toEqual([
      expect.stringMatching(
        new RegExp(
          `^tls_intercept\\.ca_cert_file: the CA certificate in ${expired.certFile} expired on \\d{4}-`,
        ),
      ),
    ]);
    const future = await writeNewCa(dir.path, 'future', { now: Date.now() + 2 * DAY });
    expect(check(files(future)).problems).toEqual([
      expect.stringMatching(
        new RegExp(
          `^tls_intercept\\.ca_cert_file: the CA certificate in ${future.certFile} is not valid until \\d{4}-`,
        ),
      ),
    ]);
  });

  it('warns, without refusing, about a CA that expires within 30 days', async () => {
    const ending = await writeNewCa(dir.path, 'ending', { validityMs: 10 * DAY });
    const { problems, warnings } = check(files(ending));
    expect(problems).toEqual([]);
    expect(warnings).toEqual([
      expect.stringMatching(/^tls_intercept\.ca_cert_file: the CA certificate in .* expires on/),
    ]);
    expect(check(files(ca)).warnings).toEqual([]);
  });

  it('takes an intermediate CA followed by its issuer, and refuses a chain out of order', async () => {
    const root = await opensslCertificate(dir.path, 'chain-root');
    const intermediate = await opensslCertificate(dir.path, 'chain-intermediate', {
      issuer: root,
      extensions: CA_EXTENSIONS,
    });
    const good = join(dir.path, 'chain-good.crt');
    writeFileSync(good, intermediate.certPem + root.certPem);
    expect(check({ ca_cert_file: good, ca_key_file: intermediate.keyFile }).problems).toEqual([]);
    const bad = join(dir.path, 'chain-bad.crt');
    writeFileSync(bad, intermediate.certPem + other.certPem);
    expect(check({ ca_cert_file: bad, ca_key_file: intermediate.keyFile }).problems).toEqual([
      `tls_intercept.ca_cert_file: ${bad}: certificate 2 did not issue certificate 1; list the issuing CA first, then each issuer in turn`,
    ]);
  });
});

describe('tls_intercept in the documentation', () => {
  const example = readFileSync(join(ROOT, 'config.example.yaml'), 'utf8');

  /** The commented-out block of config.example.yaml, uncommented. */
  function exampleBlock(): string {
    const lines = example.split('\n');
    const start = lines.indexOf('# tls_intercept:');
    expect(start, 'a "# tls_intercept:" line in config.example.yaml').toBeGreaterThanOrEqual(0);
    const block: string[] = [];
    for (const line of lines.slice(start)) {
      if (line !== '# tls_intercept:' && !line.startsWith('#   ')) break;
      block.push(line.slice(2));
    }
    return `${block.join('\n')}\n`;
  }

  it('config.example.yaml shows every key in a block that is valid once uncommented', () => {
    const block = exampleBlock();
    const section = (parse(block) as { tls_intercept: Record<string, string> }).tls_intercept;
    expect(Object.keys(section).sort()).toEqual([...TLS_INTERCEPT_KEYS].sort());
    // The example's paths, pointed at real files of the same names.
    const real = writeCaFiles(dir.path, 'example', ca.certPem, ca.keyPem);
    const text = block
      .replace(section['ca_cert_file']!, real.certFile)
      .replace(section['ca_key_file']!, real.keyFile);
    const { config, problems } = parseConfigText(text, realSources());
    expect(problems.map(format)).toEqual([]);
    expect(config!.tlsIntercept!.leafLifetimeMs).toBe(DAY);
  });

  it('README.md documents every key in its tls_intercept table', () => {
    const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
    expect(readme).toContain('### `tls_intercept`');
    const section = readme.slice(readme.indexOf('### `tls_intercept`'));
    for (const key of TLS_INTERCEPT_KEYS) expect(section, key).toMatch(new RegExp(`^\\| \`${key}\``, 'm'));
  });

  it('lists keys the validator knows: a typo of each is pointed back to it', () => {
    for (const key of TLS_INTERCEPT_KEYS) {
      expect(check(files(ca, { [`${key}x`]: 1 })).problems, key).toContain(
        `tls_intercept.${key}x: unknown key (did you mean "${key}"?)`,
      );
    }
  });
});
