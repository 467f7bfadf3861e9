// The README's key reference is written from the schema (src/config/reference.ts, `npm run schema`):
// these tests fail while README.md differs from what the schema gives, and keep the generated
// tables complete and readable.
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { REFERENCE_TABLES, writeReference } from '../../../src/config/reference.js';
import { ConfigFile, Route, SharedCache, TlsIntercept, Tracing } from '../../../src/config/schema.js';
import { Credential } from '../../../src/config/schema-credential.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const README = readFileSync(join(ROOT, 'README.md'), 'utf8');

/** The table README.md holds between the markers of `name`. */
function committed(name: string): string | undefined {
  const start = `<!-- config-reference:${name}:start -->\n`;
  const from = README.indexOf(start);
  const to = README.indexOf(`\n<!-- config-reference:${name}:end -->`);
  return from < 0 || to < 0 ? undefined : README.slice(from + start.length, to);
}

/** The rows of a generated table, as cells (key without its backticks). */
function rowsOf(name: string): string[][] {
  return REFERENCE_TABLES[name]!()
    .split('\n')
    .slice(2)
    .map((line) =>
      line
        .slice(2, -2)
        .split(/(?<!\\)\|/)
        .map((cell) => cell.trim()),
    )
    .map(([key, ...rest]) => [key!.replace(/^`|`$/g, ''), ...rest]);
}

const keysOf = (...names: string[]) => names.flatMap((n) => rowsOf(n).map(([key]) => key!));

describe('README.md key reference', () => {
  it.each(Object.keys(REFERENCE_TABLES))('%s: is what `npm run schema` writes from the schema', (name) => {
    expect(committed(name), `README.md has no markers for ${name}`).toBeDefined();
    expect(committed(name), 'README.md is stale: run npm run schema').toBe(REFERENCE_TABLES[name]!());
  });

  it('leaves everything outside the markers as written', () => {
    expect(writeReference(README)).toBe(README);
    const prose =
      'Prose before.\n<!-- config-reference:tracing:start -->\nold\n<!-- config-reference:tracing:end -->\nAfter.';
    const others = Object.keys(REFERENCE_TABLES)
      .filter((n) => n !== 'tracing')
      .map((n) => `<!-- config-reference:${n}:start -->\n<!-- config-reference:${n}:end -->`)
      .join('\n');
    const written = writeReference(`${prose}\n${others}`);
    expect(written.startsWith('Prose before.\n<!-- config-reference:tracing:start -->\n| key |')).toBe(true);
    expect(written).toContain('\n<!-- config-reference:tracing:end -->\nAfter.');
    expect(written).not.toContain('\nold\n');
  });

  it('refuses a README without the markers of a table, or with markers naming no table', () => {
    expect(() => writeReference('no markers')).toThrow(/no markers for the config reference table\(s\) top/);
    const all = Object.keys(REFERENCE_TABLES)
      .map((n) => `<!-- config-reference:${n}:start -->\n<!-- config-reference:${n}:end -->`)
      .join('\n');
    expect(() =>
      writeReference(`${all}\n<!-- config-reference:nope:start -->\n<!-- config-reference:nope:end -->`),
    ).toThrow(/"nope"/);
  });

  it('has a row for every key of the schema', () => {
    const shape = (o: { shape: object }) => Object.keys(o.shape);
    expect(keysOf('top').filter((k) => !k.includes('.'))).toEqual(shape(ConfigFile));
    expect(keysOf('top')).toEqual(
      expect.arrayContaining(['limits.max_headers', 'admin.listen', 'log.level']),
    );
    expect(
      keysOf('credentials', 'credentials-auth', 'credentials-grant')
        .filter((k) => !k.includes('.'))
        .sort(),
    ).toEqual(shape(Credential).sort());
    expect(keysOf('routes').filter((k) => !k.includes('.'))).toEqual(shape(Route));
    expect(keysOf('routes')).toEqual(expect.arrayContaining(['match.host', 'tls.cert_file']));
    expect(keysOf('shared_cache').filter((k) => !k.includes('.'))).toEqual(shape(SharedCache));
    expect(keysOf('tls_intercept')).toEqual(shape(TlsIntercept));
    expect(keysOf('tracing')).toEqual(shape(Tracing));
    // Every source's keys, each once.
    expect(keysOf('token-inputs').sort()).toEqual(
      [
        'source',
        'type',
        'path',
        'header',
        'max_entries',
        'credential',
        'private_key_file',
        'signing_alg',
        'key_id',
        'certificate_file',
        'issuer',
        'subject',
        'audience',
        'lifetime',
        'claims',
      ].sort(),
    );
  });

  it('gives every key a kind of value, a default and a description', () => {
    for (const name of Object.keys(REFERENCE_TABLES)) {
      for (const [key, type, fallback, ...rest] of rowsOf(name)) {
        const description = rest.at(-1);
        expect(type, `${name}: ${key}`).not.toBe('');
        expect(description, `${name}: ${key}`).toMatch(/^[`A-Z0-9"].*[.)]$/);
        // A mapping whose keys have rows of their own leaves its default to them.
        if (type !== 'mapping') expect(fallback, `${name}: ${key}`).not.toBe('');
      }
    }
  });

  it('reads values as people write them: durations, sizes, choices, defaults in YAML', () => {
    const row = (name: string, key: string) => rowsOf(name).find(([k]) => k === key)!;
    expect(row('top', 'shutdown_timeout').slice(1, 3)).toEqual(['duration (500ms, 30s, 5m)', '`20s`']);
    expect(row('top', 'limits.max_header_size').slice(1, 3)).toEqual([
      'size (512, 64KiB, 10MB), at least 1KiB',
      '`16KiB`',
    ]);
    expect(row('top', 'log.level').slice(1, 3)).toEqual([
      '`trace`, `debug`, `info`, `warn` or `error`',
      '`info`',
    ]);
    expect(row('routes', 'prefix')[2]).toBe('`"Bearer "`');
    expect(row('routes', 'match.host')[2]).toBe('any host');
    expect(row('routes', 'upstream')[2]).toBe('required');
    expect(row('credentials-auth', 'assertion_audience').slice(2, 4)).toEqual([
      'the token endpoint URL',
      '`private_key_jwt` or `client_secret_jwt`',
    ]);
    expect(row('token-inputs', 'max_entries').slice(1, 4)).toEqual([
      'whole number, 1 or more',
      '`10000`',
      '`request_header`',
    ]);
    // `source` says what each of its values means, from each variant's own description.
    expect(row('token-inputs', 'source')[4]).toMatch(
      /^`sign`: .+ `file`: .+ `request_header`: .+ `credential`: .+/,
    );
  });
});
