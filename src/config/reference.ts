/**
 * The README's key reference, written from the schema (schema.ts, schema-credential.ts): one
 * table per section, between `<!-- config-reference:NAME:start -->` and `…:end -->`, each row a
 * key with the kind of value it takes, its default and its description. `npm run schema` writes
 * them; a test fails while README.md differs from what this gives.
 */
import { z } from 'zod';
import { ConfigFile, Route, SharedCache, TlsIntercept, Tracing } from './schema.js';
import { AUTH_KEYS, Credential, GRANT_KEYS } from './schema-credential.js';
import { anyOf, DOC } from './schema-kit.js';

/** What the reference shows of one key. */
interface Row {
  key: string;
  type: string;
  fallback: string;
  description: string;
  /** The values of the key that decides which keys apply (`auth_method`, `grant_type`, `source`). */
  applies?: string;
}

/** Sections with a table of their own, named where other tables point to them. */
const SECTIONS: Readonly<Record<string, string>> = {
  credentials: 'mapping of credentials by name: [`credentials.NAME`](#credentialsname)',
  routes: 'list of routes: [`routes[i]`](#routesi)',
  shared_cache: 'mapping: [`shared_cache`](#shared_cache)',
  tls_intercept: 'mapping: [`tls_intercept`](#tls_intercept)',
  tracing: 'mapping: [`tracing`](#tracing)',
  assertion: 'mapping, by `source` (table below)',
  subject_token: 'mapping, by `source` (table below)',
  actor_token: 'mapping, by `source` (table below)',
};

/** A key's schema with `.optional()`, `.prefault()` and transforms taken off, and what they said. */
function read(schema: z.ZodType) {
  let inner = schema;
  let optional = false;
  let fallback: { value: unknown } | undefined;
  let type: string | undefined;
  let absent: string | undefined;
  let description: string | undefined;
  for (;;) {
    const doc = DOC.get(inner);
    type ??= doc?.type;
    absent ??= doc?.absent;
    description ??= z.globalRegistry.get(inner)?.description;
    if (inner instanceof z.ZodOptional) {
      optional = true;
      inner = inner.unwrap() as z.ZodType;
    } else if (inner instanceof z.ZodPrefault) {
      fallback ??= { value: inner.def.defaultValue };
      inner = inner.unwrap() as z.ZodType;
    } else if (inner instanceof z.ZodPipe && !type) {
      inner = inner.in as z.ZodType;
    } else {
      break;
    }
  }
  return { inner, optional, fallback, type, absent, description };
}

/** The default column: the value as it is written in YAML, or what an absent key means. */
function fallbackOf(key: ReturnType<typeof read>): string {
  if (key.fallback) return `\`${yamlOf(key.fallback.value)}\``;
  if (key.absent) return key.absent;
  return key.optional ? 'none' : 'required';
}

/** A default as it is written in the file: quoted only where YAML needs it (`"Bearer "`). */
function yamlOf(value: unknown): string {
  if (typeof value !== 'string') return JSON.stringify(value);
  return /^\s|\s$|:$|: | #|^[-?:,[\]{}#&*!|>'"%@`]/.test(value) ? JSON.stringify(value) : value;
}

function typeOf(name: string, key: ReturnType<typeof read>): string {
  const section = SECTIONS[name];
  if (section) return section;
  if (key.type) return key.type;
  const { inner } = key;
  if (inner instanceof z.ZodLiteral) return anyOf(inner.def.values.map(String));
  if (inner instanceof z.ZodEnum) return anyOf(inner.options.map(String));
  if (inner instanceof z.ZodRecord || inner instanceof z.ZodObject) return 'mapping';
  if (inner instanceof z.ZodArray) return 'list';
  return 'string';
}

/** Rows of an object's keys; a nested object gives a row and then one per key, `parent.key`. */
function rows(shape: Readonly<Record<string, z.ZodType>>, prefix = ''): Row[] {
  return Object.entries(shape).flatMap(([name, schema]) => {
    const key = read(schema);
    const row: Row = {
      key: `${prefix}${name}`,
      type: typeOf(name, key),
      fallback: fallbackOf(key),
      description: key.description ?? '',
    };
    if (key.inner instanceof z.ZodObject && !SECTIONS[name]) {
      // Its keys carry the defaults.
      return [{ ...row, fallback: '' }, ...rows(key.inner.shape, `${row.key}.`)];
    }
    return [row];
  });
}

function pick(shape: Readonly<Record<string, z.ZodType>>, keep: (key: string) => boolean) {
  return Object.fromEntries(Object.entries(shape).filter(([k]) => keep(k)));
}

/**
 * `assertion`, `subject_token` and `actor_token`: the keys of every `source`, each once, with the
 * sources it belongs to; `source` itself lists what each of its values means.
 */
function inputRows(): Row[] {
  const variants = (['assertion', 'subject_token'] as const).flatMap((key) => {
    const union = read(Credential.shape[key]).inner as z.ZodDiscriminatedUnion<z.ZodObject[]>;
    return union.options as z.ZodObject[];
  });
  const sourceOf = (o: z.ZodObject) =>
    String((read(o.shape['source'] as z.ZodType).inner as z.ZodLiteral).value);
  const sources = [...new Set(variants.map(sourceOf))];
  const found = new Map<string, { row: Row; sources: Set<string> }>();
  for (const variant of variants) {
    for (const row of rows(variant.shape as Record<string, z.ZodType>)) {
      const entry = found.get(row.key) ?? { row, sources: new Set<string>() };
      entry.sources.add(sourceOf(variant));
      found.set(row.key, entry);
    }
  }
  const meaning = sources.map((source) => {
    const variant = variants.find((v) => sourceOf(v) === source)!;
    return `\`${source}\`: ${lowerFirst(read(variant.shape['source'] as z.ZodType).description ?? '')}`;
  });
  return [...found.values()].map(({ row, sources: own }) =>
    row.key === 'source'
      ? { ...row, type: anyOf(sources), description: meaning.join(' '), applies: '' }
      : { ...row, applies: own.size === sources.length ? 'any' : anyOf([...own]) },
  );
}

function lowerFirst(text: string): string {
  return text.charAt(0).toLowerCase() + text.slice(1);
}

/** The tables, by the name their markers carry. */
export const REFERENCE_TABLES: Readonly<Record<string, () => string>> = {
  top: () => table(rows(ConfigFile.shape)),
  credentials: () => table(rows(pick(Credential.shape, (k) => !(k in AUTH_KEYS) && !(k in GRANT_KEYS)))),
  'credentials-auth': () =>
    table(
      rows(pick(Credential.shape, (k) => k in AUTH_KEYS)).map((r) => ({
        ...r,
        applies: anyOf(AUTH_KEYS[r.key]!),
      })),
      '`auth_method`',
    ),
  'credentials-grant': () =>
    table(
      rows(pick(Credential.shape, (k) => k in GRANT_KEYS)).map((r) => ({
        ...r,
        applies: anyOf(GRANT_KEYS[r.key]!),
      })),
      '`grant_type`',
    ),
  'token-inputs': () => table(inputRows(), '`source`'),
  routes: () => table(rows(Route.shape)),
  shared_cache: () => table(rows(SharedCache.shape)),
  tls_intercept: () => table(rows(TlsIntercept.shape)),
  tracing: () => table(rows(Tracing.shape)),
};

function table(list: Row[], applies?: string): string {
  const cell = (text: string) => text.replace(/\s*\n\s*/g, ' ').replace(/\|/g, '\\|');
  const head = applies
    ? `| key | type | default | ${applies} | description |\n| --- | --- | --- | --- | --- |`
    : '| key | type | default | description |\n| --- | --- | --- | --- |';
  const body = list.map((r) =>
    [`\`${r.key}\``, r.type, r.fallback, ...(applies ? [r.applies ?? ''] : []), r.description]
      .map(cell)
      .join(' | '),
  );
  return [head, ...body.map((line) => `| ${line} |`)].join('\n');
}

const MARKER = /(<!-- config-reference:([\w-]+):start -->)[\s\S]*?(<!-- config-reference:\2:end -->)/g;

/**
 * `readme` with every table between its markers rewritten from the schema; prose outside them
 * is kept as written. A marker naming no table, or a table without markers, is an error.
 */
export function writeReference(readme: string): string {
  const seen = new Set<string>();
  const out = readme.replace(MARKER, (_all, start: string, name: string, end: string) => {
    const make = REFERENCE_TABLES[name];
    if (!make) throw new Error(`README.md: no config reference table is called "${name}"`);
    seen.add(name);
    return `${start}\n${make()}\n${end}`;
  });
  const missing = Object.keys(REFERENCE_TABLES).filter((name) => !seen.has(name));
  if (missing.length > 0) {
    throw new Error(`README.md: no markers for the config reference table(s) ${missing.join(', ')}`);
  }
  return out;
}
