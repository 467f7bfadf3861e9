import { z } from 'zod';
import { ConfigFile } from './schema.js';

/**
 * The schema's name. A URN, not a URL: the file travels with the package and each config names
 * it by path (`# yaml-language-server: $schema=./config.schema.json`); no address serves it.
 */
export const SCHEMA_ID = 'urn:token-injector:config';

/**
 * `config.schema.json`: the configuration file as written (`io: 'input'`: before defaults and
 * unit conversion, `${env:}`/`${file:}` references accepted), as JSON Schema draft 2020-12.
 */
export function configJsonSchema(): string {
  const schema = z.toJSONSchema(ConfigFile, { target: 'draft-2020-12', io: 'input' });
  eachObject(schema, splitTypeLists);
  eachObject(schema, allowNull);
  const { $schema, ...rest } = schema;
  return `${JSON.stringify({ $schema, $id: SCHEMA_ID, ...rest }, null, 2)}\n`;
}

/**
 * `type: [string, number]` is valid JSON Schema, but strict validators (ajv's default) want each
 * type in a branch of its own.
 */
function splitTypeLists(obj: Record<string, unknown>): void {
  if (Array.isArray(obj['type'])) {
    obj['anyOf'] = obj['type'].map((type) => ({ type }));
    delete obj['type'];
  }
}

/**
 * `key:` with nothing after it is null in YAML, and the validator reads it as an absent key: so
 * every optional key may be null here too. What editors show (description, default) stays on top.
 */
function allowNull(obj: Record<string, unknown>): void {
  const properties = obj['properties'] as Record<string, unknown> | undefined;
  if (obj['type'] !== 'object' || !properties) return;
  const required = (obj['required'] as string[] | undefined) ?? [];
  for (const [key, value] of Object.entries(properties)) {
    if (required.includes(key) || value === null || typeof value !== 'object') continue;
    const { title, description, default: fallback, ...rest } = value as Record<string, unknown>;
    properties[key] = {
      ...(title !== undefined ? { title } : {}),
      ...(description !== undefined ? { description } : {}),
      ...(fallback !== undefined ? { default: fallback } : {}),
      anyOf: [rest, { type: 'null' }],
    };
  }
}

/** Calls `visit` on every object in `node`, innermost first, so a visit may replace its children. */
function eachObject(node: unknown, visit: (obj: Record<string, unknown>) => void): void {
  if (Array.isArray(node)) {
    for (const item of node) eachObject(item, visit);
    return;
  }
  if (node === null || typeof node !== 'object') return;
  const obj = node as Record<string, unknown>;
  for (const value of Object.values(obj)) eachObject(value, visit);
  visit(obj);
}
