// config.example.yaml shows the optional sections (shared_cache, tls_intercept, tracing) commented
// out, so a plain load of it never reads them. Here they are uncommented and the whole file, active
// keys and commented ones alike, is checked against config.schema.json: a key the schema does not
// know (a typo, a key renamed in the schema but not in the example) fails.
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { ConfigFile } from '../../../src/config/schema.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const EXAMPLE = readFileSync(join(ROOT, 'config.example.yaml'), 'utf8');

/**
 * Top-level sections written as comments: a line `# key:` naming a top-level key, then its body,
 * every line `#` and at least two spaces. Returned uncommented, by key.
 */
function commentedSections(text: string): Record<string, string> {
  const lines = text.split('\n');
  const sections: Record<string, string> = {};
  lines.forEach((line, i) => {
    const key = /^# ([a-z_]+):\s*$/.exec(line)?.[1];
    if (!key || !(key in ConfigFile.shape)) return;
    const body: string[] = [];
    for (let j = i + 1; j < lines.length && /^# {2}/.test(lines[j]!); j++) body.push(lines[j]!.slice(2));
    sections[key] = `${key}:\n${body.join('\n')}\n`;
  });
  return sections;
}

function validator() {
  const schema = JSON.parse(readFileSync(join(ROOT, 'config.schema.json'), 'utf8')) as object;
  return new Ajv2020({ strict: true, strictTypes: false, allErrors: true }).compile(schema);
}

describe('config.example.yaml, commented-out sections included', () => {
  it('finds each optional section the example shows as a comment', () => {
    expect(Object.keys(commentedSections(EXAMPLE)).sort()).toEqual([
      'shared_cache',
      'tls_intercept',
      'tracing',
    ]);
  });

  it('names only keys the schema knows, in the active part and in every commented section', () => {
    const sections = commentedSections(EXAMPLE);
    const doc = parse(EXAMPLE) as Record<string, unknown>;
    for (const section of Object.values(sections)) Object.assign(doc, parse(section));
    // Each section holds its keys, not only its name.
    expect(Object.keys(doc['shared_cache'] as object)).toContain('encryption_keys');
    expect(Object.keys(doc['tracing'] as object)).toContain('sample_ratio');
    const validate = validator();
    expect(validate(doc), JSON.stringify(validate.errors, null, 2)).toBe(true);
  });

  it('would catch an unknown key in a commented section', () => {
    const typo = EXAMPLE.replace('#   sample_ratio: 1', '#   sample_rate: 1');
    expect(typo).not.toBe(EXAMPLE);
    const doc = parse(EXAMPLE) as Record<string, unknown>;
    Object.assign(doc, parse(commentedSections(typo)['tracing']!));
    const validate = validator();
    expect(validate(doc)).toBe(false);
    expect(validate.errors?.map((e) => e.params)).toContainEqual({ additionalProperty: 'sample_rate' });
  });
});
