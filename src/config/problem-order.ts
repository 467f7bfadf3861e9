import { z } from 'zod';
import type { ConfigProblem } from '../errors.js';
import { isMapping } from './checker.js';

/**
 * Sorts problems into the order of the schema's keys (schema.ts lists them as the README does),
 * unknown keys first, entries of a mapping or list in the order of the file; problems of one key
 * keep the order they were found in. So a file's problems read top to bottom however the checks
 * that found them are arranged.
 */
export function inSchemaOrder(
  problems: readonly ConfigProblem[],
  schema: z.ZodType,
  root: unknown,
): ConfigProblem[] {
  const keyed = problems.map((p) => ({ p, key: position(schema, root, p.path) }));
  keyed.sort((a, b) => compare(a.key, b.key));
  return keyed.map(({ p }) => p);
}

function compare(a: readonly number[], b: readonly number[]): number {
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    if (a[i] !== b[i]) return a[i]! - b[i]!;
  }
  return a.length - b.length;
}

/** Where `path` (`routes[2].match.host`, `credentials.a.b.tls`) falls, step by step. */
function position(schema: z.ZodType | undefined, value: unknown, path: string): number[] {
  if (path === '' || path === '(root)' || /^line \d+/.test(path)) return [];
  const out: number[] = [];
  let rest = path;
  let s = schema;
  let v = value;
  while (rest !== '') {
    s = s && unwrap(s);
    const index = /^\[(\d+)\]/.exec(rest);
    if (index) {
      const i = Number(index[1]);
      out.push(i);
      rest = rest.slice(index[0].length);
      s = s instanceof z.ZodArray ? (s.element as z.ZodType) : undefined;
      v = Array.isArray(v) ? v[i] : undefined;
      continue;
    }
    if (rest.startsWith('.')) rest = rest.slice(1);
    const obj = isMapping(v) ? v : {};
    const known = s ? keysOf(s, obj) : [];
    // Keys may hold dots (credential names, params): the longest key that fits is the one meant.
    const key = [...new Set([...known, ...Object.keys(obj)])]
      .filter((k) => rest === k || rest.startsWith(`${k}.`) || rest.startsWith(`${k}[`))
      .sort((a, b) => b.length - a.length)[0];
    if (key === undefined) return [...out, Number.MAX_SAFE_INTEGER];
    rest = rest.slice(key.length);
    if (s instanceof z.ZodRecord) {
      const i = Object.keys(obj).indexOf(key);
      out.push(i === -1 ? Number.MAX_SAFE_INTEGER : i);
      s = s.valueType as z.ZodType;
    } else {
      // Unknown keys come first: they are often the cause of a "required" problem after them.
      out.push(known.indexOf(key));
      s = s ? childOf(s, obj, key) : undefined;
    }
    v = obj[key];
  }
  return out;
}

function unwrap(schema: z.ZodType): z.ZodType {
  let s = schema;
  while (s instanceof z.ZodOptional || s instanceof z.ZodPrefault || s instanceof z.ZodPipe) {
    s = (s instanceof z.ZodPipe ? s.in : s.unwrap()) as z.ZodType;
  }
  return s;
}

/** The keys of an object, or of the variant of a discriminated union `obj` is (all when unknown). */
function keysOf(schema: z.ZodType, obj: Record<string, unknown>): string[] {
  if (schema instanceof z.ZodObject) return Object.keys(schema.shape);
  if (schema instanceof z.ZodDiscriminatedUnion) {
    const options = variantsOf(schema, obj);
    return [...new Set(options.flatMap((o) => Object.keys(o.shape)))];
  }
  return [];
}

function childOf(schema: z.ZodType, obj: Record<string, unknown>, key: string): z.ZodType | undefined {
  if (schema instanceof z.ZodObject) return schema.shape[key] as z.ZodType | undefined;
  if (schema instanceof z.ZodDiscriminatedUnion) {
    return variantsOf(schema, obj).find((o) => key in o.shape)?.shape[key] as z.ZodType | undefined;
  }
  return undefined;
}

function variantsOf(schema: z.ZodDiscriminatedUnion, obj: Record<string, unknown>): z.ZodObject[] {
  const options = schema.options as unknown as z.ZodObject[];
  const key = schema._zod.def.discriminator;
  const chosen = options.filter((o) => (o.shape[key] as z.ZodLiteral<string>).value === obj[key]);
  return chosen.length > 0 ? chosen : options;
}
