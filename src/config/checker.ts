import { isAbsolute, resolve } from 'node:path';
import { z } from 'zod';
import type { ConfigProblem } from '../errors.js';
import type { FileBacked } from '../files/live-file.js';
import { type ConfigSources, interpolate } from './interpolate.js';
import { describe, parsing, text, VARIANT_KEYS, VERBATIM } from './schema-kit.js';

type Obj = Record<string, unknown>;

type Unwrapped<S> = S extends z.ZodOptional<infer I> | z.ZodPrefault<infer I> ? Unwrapped<I> : S;
/** Keys whose value is a record or list of objects: read by their own code (credentials, routes). */
type Collection = z.ZodRecord<z.core.$ZodRecordKey, z.ZodObject> | z.ZodArray<z.ZodObject>;
type Nested<S> = S extends z.ZodObject
  ? Fields<S>
  : S extends z.ZodDiscriminatedUnion<infer Options>
    ? Options[number] extends infer O
      ? O extends z.ZodObject
        ? Fields<O>
        : never
      : never
    : never;
type Field<S> =
  Unwrapped<S> extends z.ZodObject | z.ZodDiscriminatedUnion
    ? S extends z.ZodOptional | z.ZodDiscriminatedUnion
      ? Nested<Unwrapped<S>> | undefined
      : Nested<Unwrapped<S>>
    : Unwrapped<S> extends Collection
      ? unknown
      : undefined extends z.input<S>
        ? z.output<S>
        : z.output<S> | undefined;

/**
 * The keys of an object schema as the semantic checks read them: typed by the schema, a key
 * that is absent or wrong holds its default (undefined when it has none), and its problem is
 * recorded.
 */
export type Fields<T extends z.ZodObject> = { readonly [K in keyof T['shape']]: Field<T['shape'][K]> };

/**
 * Every part of the schema says what it expects in its own words (schema-kit.ts); this is only a
 * net, so that zod's wording never reaches the user if one does not.
 */
const UNWORDED = {
  error: (issue: z.core.$ZodRawIssue) =>
    issue.code === 'invalid_type'
      ? `must be ${issue.expected}, got ${describe(issue.input)}`
      : `is not valid here, got ${describe(issue.input)}`,
};

/** A reference that could not be resolved; its problem is recorded. */
const UNRESOLVED = Symbol('unresolved');

/**
 * Reads parsed YAML through the schema (schema.ts) while collecting every problem with its exact
 * key path, so `validate` can report all mistakes at once instead of the first. Callers never
 * throw; a key with a problem reads as its default.
 */
export class Checker {
  readonly problems: ConfigProblem[] = [];
  /** What works but should change; reported by `validate` and logged by `run`, never fatal. */
  readonly warnings: ConfigProblem[] = [];
  /**
   * `*_file` contents by path: a file named by many keys (one CA for 10 000 routes) is read once
   * and held once, not once per key.
   */
  readonly #files = new Map<string, string>();
  /** Paths with a problem, so checks that depend on a key can tell it was wrong. */
  readonly #failed = new Set<string>();

  constructor(private readonly sources: ConfigSources) {}

  add(path: string, message: string): void {
    this.problems.push({ path, message });
    this.#failed.add(path);
  }

  warn(path: string, message: string): void {
    this.warnings.push({ path, message });
  }

  /** Whether a problem was recorded for exactly this key. */
  failed(path: string): boolean {
    return this.#failed.has(path);
  }

  /** Whether no problem was recorded for this key or any key below it. */
  clean(path: string): boolean {
    for (const p of this.#failed) {
      if (p === path || p.startsWith(`${path}.`) || p.startsWith(`${path}[`)) return false;
    }
    return true;
  }

  /**
   * Every key of `raw` read with `schema`: unknown keys are refused (with the nearest known one
   * as a hint), nested objects are read the same way, the rest is parsed by the schema after
   * `${env:}`/`${file:}` references are resolved.
   */
  fields<T extends z.ZodObject>(schema: T, raw: unknown, path: string): Fields<T> {
    const obj = this.mapping(raw, path) ?? {};
    const { keys, plans } = shapeOf(schema);
    this.onlyKeys(obj, path, keys);
    const out: Obj = {};
    for (let i = 0; i < keys.length; i++) {
      const key = keys[i]!;
      out[key] = this.#field(plans[i]!, obj[key], join(path, key));
    }
    return out as Fields<T>;
  }

  /** A mapping, or undefined (with a problem) when present but not a mapping. */
  mapping(value: unknown, path: string): Obj | undefined {
    if (value === undefined || value === null) return undefined;
    if (!isMapping(value)) {
      this.add(path, `must be a mapping, got ${describe(value)}`);
      return undefined;
    }
    return value;
  }

  /** An entry of a list or of named entries (`routes[0]`, `credentials.x`): a mapping, or undefined with a problem. */
  entry(value: unknown, path: string): Obj | undefined {
    if (isMapping(value)) return value;
    this.add(
      path,
      value === null || value === undefined
        ? 'must be a mapping'
        : `must be a mapping, got ${describe(value)}`,
    );
    return undefined;
  }

  /** One value read with `schema`: its output, or its default (undefined if none) after a problem. */
  value<T extends z.ZodType>(
    schema: T,
    raw: unknown,
    path: string,
    verbatim = false,
  ): z.output<T> | undefined {
    let value: unknown = raw === null ? undefined : raw;
    if (value === undefined) {
      const absent = absentOf(schema);
      // A schema may say what the missing key should hold ("is required: a list of …").
      const why = absent.error?.issues[0]?.message;
      if (!absent.success) this.add(path, why?.startsWith('is required') ? why : 'is required');
      return absent.data as z.output<T> | undefined;
    }
    if (!verbatim) value = this.#resolve(value, path);
    parsing.literal = typeof raw === 'string' && !raw.includes('${');
    let parsed: z.ZodSafeParseResult<z.output<T>> | undefined;
    try {
      parsed = value === UNRESOLVED ? undefined : schema.safeParse(value, UNWORDED);
    } finally {
      parsing.literal = false;
    }
    if (parsed?.success) return parsed.data;
    if (parsed) this.#report(parsed.error.issues, path);
    return absentOf(schema).data as z.output<T> | undefined;
  }

  #field(plan: Plan, raw: unknown, path: string): unknown {
    const value = raw === null ? undefined : raw;
    switch (plan.kind) {
      case 'object': {
        const inner = plan.inner as z.ZodObject;
        if (value === undefined && plan.optional) return undefined;
        if (value !== undefined && !isMapping(value)) {
          this.add(path, `must be a mapping, got ${describe(value)}`);
          return plan.optional ? undefined : this.fields(inner, {}, path);
        }
        return this.fields(inner, value, path);
      }
      case 'variant':
        return this.#variant(plan.inner as z.ZodDiscriminatedUnion, value, path);
      case 'collection':
        return value;
      default:
        return this.value(plan.field, value, path, plan.verbatim);
    }
  }

  /** An object whose keys depend on one of them (`source: file` has `path`, …). */
  #variant(union: z.ZodDiscriminatedUnion, value: unknown, path: string): unknown {
    if (value === undefined) return undefined;
    const obj = this.mapping(value, path);
    if (!obj) return undefined;
    const key = union._zod.def.discriminator;
    const options = union.options as unknown as z.ZodObject[];
    const named = options.map((o) => (o.shape[key] as z.ZodLiteral<string>).value);
    const chosen = this.value(DISCRIMINATOR, obj[key], join(path, key));
    const option = options[named.indexOf(chosen as string)];
    if (option) return this.fields(option, obj, path);
    if (chosen !== undefined) {
      this.add(join(path, key), `must be one of ${named.join(', ')}, got "${chosen}"`);
    }
    // Still catch typos in the other keys ("sourse"), against every variant's keys.
    this.onlyKeys(obj, path, VARIANT_KEYS.get(union) ?? options.flatMap((o) => Object.keys(o.shape)));
    return undefined;
  }

  /** Replaces references in every string of `value`; UNRESOLVED after recording why one failed. */
  #resolve(value: unknown, path: string): unknown {
    if (typeof value === 'string') {
      try {
        return interpolate(value, this.sources);
      } catch (err) {
        this.add(path, (err as Error).message);
        return UNRESOLVED;
      }
    }
    if (Array.isArray(value)) {
      const out = value.map((item, i) => this.#resolve(item, `${path}[${i}]`));
      return out.includes(UNRESOLVED) ? UNRESOLVED : out;
    }
    if (isMapping(value)) {
      const out: Obj = {};
      let ok = true;
      for (const [k, v] of Object.entries(value)) {
        const r = this.#resolve(v, join(path, k));
        if (r === UNRESOLVED) ok = false;
        else setOwn(out, k, r);
      }
      return ok ? out : UNRESOLVED;
    }
    return value;
  }

  /** zod's issues as problems: our messages come from the schema (schema-kit.ts). */
  #report(issues: readonly z.core.$ZodIssue[], path: string): void {
    for (const issue of issues) {
      const at = issue.path.reduce<string>(
        (p, seg) => (typeof seg === 'number' ? `${p}[${seg}]` : join(p, String(seg))),
        path,
      );
      if (issue.code === 'invalid_union' && issue.errors.length > 0) {
        // Of "a list, or one string", name the item of the list that is wrong, not the union.
        const fits = issue.errors.find((branch) => branch.some((i) => i.path.length > 0));
        if (fits) {
          this.#report(fits, at);
          continue;
        }
      }
      this.add(at, issue.message);
    }
  }

  /** Records every key of `obj` that is not in `allowed`: typos must not be silently ignored. */
  onlyKeys(obj: Obj, path: string, allowed: readonly string[]): void {
    for (const key of Object.keys(obj)) {
      if (!allowed.includes(key)) {
        const hint = closest(key, allowed);
        this.add(join(path, key), `unknown key${hint ? ` (did you mean "${hint}"?)` : ''}`);
      }
    }
  }

  /** Records `is required` when `obj` has no `key`; for keys only some variants need. */
  required(obj: Obj, key: string, path: string): boolean {
    if (obj[key] === undefined || obj[key] === null) {
      this.add(join(path, key), 'is required');
      return false;
    }
    return true;
  }

  /**
   * A secret value, as `value` (resolved) was written in `raw`. When it is exactly
   * `${file:PATH}`, the file is remembered so the value can be re-read when the file changes
   * (secret rotation) without a restart.
   */
  secret(raw: unknown, value: string | undefined, path: string): FileBacked | undefined {
    if (value === undefined) return undefined;
    // A secret typed into the file travels with every copy of it (repositories, ConfigMaps).
    if (typeof raw !== 'string' || !raw.includes('${')) {
      this.warn(
        path,
        // biome-ignore lint/suspicious/noTemplateCurlyInString: the message shows the literal syntax
        'is written inline; keep secrets out of the file with ${env:NAME} or ${file:/path/to/secret}',
      );
    }
    const whole = typeof raw === 'string' ? /^\$\{file:([^}]+)\}$/.exec(raw.trim()) : null;
    return whole ? { value, file: this.resolvePath(whole[1]!) } : { value };
  }

  /** A `*_file` key: the file's path, read now so mistakes surface at load time. */
  file(name: string | undefined, path: string): FileBacked | undefined {
    if (name === undefined) return undefined;
    const file = this.resolvePath(name);
    try {
      let value = this.#files.get(file);
      if (value === undefined) {
        value = this.sources.readFile(file);
        this.#files.set(file, value);
      }
      return { value, file };
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      this.add(path, `cannot read file ${file}${code ? ` (${code})` : ''}`);
      return undefined;
    }
  }

  resolvePath(name: string): string {
    return isAbsolute(name) || !this.sources.baseDir ? name : resolve(this.sources.baseDir, name);
  }
}

export function isAbsoluteUrl(text: string): boolean {
  return URL.canParse(text);
}

export function join(path: string, key: string): string {
  return path ? `${path}.${key}` : key;
}

export function isMapping(value: unknown): value is Obj {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

const DISCRIMINATOR = text();

/**
 * How a key is read: a nested object key by key, a variant by its discriminator, a list or
 * mapping of objects by its own code (credentials, routes), anything else by the schema.
 */
interface Plan {
  readonly kind: 'object' | 'variant' | 'collection' | 'leaf';
  readonly field: z.ZodType;
  /** The schema inside `.optional()` and `.prefault()`. */
  readonly inner: z.ZodType;
  readonly optional: boolean;
  /** Passed on as written: `${…}` is not resolved (JWT claims). */
  readonly verbatim: boolean;
}

/** Worked out once per object schema: a configuration of 10 000 routes reads the same keys 10 000 times. */
const SHAPES = new WeakMap<z.ZodObject, { keys: string[]; plans: Plan[] }>();

function shapeOf(schema: z.ZodObject): { keys: string[]; plans: Plan[] } {
  let found = SHAPES.get(schema);
  if (!found) {
    const entries = Object.entries(schema.shape as Record<string, z.ZodType>);
    found = { keys: entries.map(([k]) => k), plans: entries.map(([, field]) => planOf(field)) };
    SHAPES.set(schema, found);
  }
  return found;
}

function planOf(field: z.ZodType): Plan {
  let inner = field;
  while (inner instanceof z.ZodOptional || inner instanceof z.ZodPrefault)
    inner = inner.unwrap() as z.ZodType;
  const element =
    inner instanceof z.ZodRecord ? inner.valueType : inner instanceof z.ZodArray ? inner.element : undefined;
  const kind =
    inner instanceof z.ZodObject
      ? 'object'
      : inner instanceof z.ZodDiscriminatedUnion
        ? 'variant'
        : element instanceof z.ZodObject
          ? 'collection'
          : 'leaf';
  return { kind, field, inner, optional: field instanceof z.ZodOptional, verbatim: VERBATIM.has(inner) };
}

/** What an absent key reads as. Kept per schema when it is a primitive (never a shared object). */
const ABSENT = new WeakMap<z.ZodType, z.ZodSafeParseResult<unknown>>();

function absentOf(schema: z.ZodType): z.ZodSafeParseResult<unknown> {
  const known = ABSENT.get(schema);
  if (known) return known;
  const result = schema.safeParse(undefined);
  if (result.data === null || typeof result.data !== 'object') ABSENT.set(schema, result);
  return result;
}

/** `obj[key] = value`, but a key `__proto__` stays an own property instead of setting the prototype. */
function setOwn(obj: Obj, key: string, value: unknown): void {
  if (key === '__proto__') {
    Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true });
  } else {
    obj[key] = value;
  }
}

/** The allowed key nearest to a typo, when it is close enough to be a useful hint. */
function closest(key: string, allowed: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Math.max(2, Math.floor(key.length / 3)) + 1;
  for (const candidate of allowed) {
    const d = editDistance(key, candidate);
    if (d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  return best;
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = row;
  }
  return prev[b.length]!;
}
