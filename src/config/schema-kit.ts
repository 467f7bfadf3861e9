/**
 * The building blocks of the configuration schema: each kind of value (a duration, a size, a
 * whole number in a range, a URL…) once, with the message `validate` prints for it and the shape
 * the JSON Schema shows editors. The schema runs on values whose `${env:}`/`${file:}` references
 * are already resolved (see checker.ts); the JSON Schema describes the file as written.
 */
import { z } from 'zod';
import { parseDuration, parseSize } from './units.js';

/** A `${env:NAME}` or `${file:PATH}` reference anywhere in a string (see interpolate.ts). */
export const REFERENCE = /\$\{(?:env|file):[^}]*\}/;

const DURATION = /\s*(?:\d+(?:\.\d+)?(?:ms|s|m|h))+\s*/;
const SIZE = /\s*\d+(?:\.\d+)?\s*(?:[bB]|[kKmMgG][iI]?[bB])?\s*/;
const WHOLE = /\s*\d+\s*/;
const DECIMAL = /\s*\d+(?:\.\d+)?\s*/;
const BOOLEAN = /true|false/;

/** Names of routes and credentials: safe in metric labels, log lines and CLI arguments. */
export const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;
/** An HTTP field name (RFC 9110 §5.1 token). */
export const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/** How a value that does not fit is shown in a message: never more than the user wrote. */
export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  if (typeof value === 'string') return `"${value}"`;
  return `${typeof value} ${String(value)}`;
}

/**
 * How the README's key reference (reference.ts) reads a value: editors get the JSON Schema, people
 * reading the README get words. Kept in a registry of its own so config.schema.json is unchanged.
 */
export interface Doc {
  /** The kind of value, e.g. "duration (500ms, 30s, 5m)". */
  type?: string;
  /** What an optional key without a default stands for when absent, e.g. "the token endpoint URL". */
  absent?: string;
}
export const DOC = z.registry<Doc>();

export type Why = (input: unknown) => string;
/** One message for a schema and each of its checks: zod's own wording never reaches the user. */
export const says = (why: Why) => ({ error: (issue: { input?: unknown }) => why(issue.input) });

/**
 * Set by the checker while it parses a string written without a reference, so keys whose
 * string spelling is only for references (`prefetch: ${env:PREFETCH}`) still refuse
 * `prefetch: "yes"` written as a string. Parsing is synchronous: the flag holds for one parse.
 */
export const parsing = { literal: false };

/**
 * `inner`, or a string spelled as `spelled` (what a resolved reference gives, e.g. "8080"), read
 * by `read` and then checked by `inner`. Unless `literal`, that string must come from a
 * reference. The JSON Schema accepts the same, so `max_headers: ${env:MAX}` is valid for editors too.
 */
function interpolable<T extends z.ZodType>(
  inner: T,
  spelled: RegExp,
  read: (text: string) => unknown,
  why: Why,
  literal = false,
) {
  const pattern = `^(?:${spelled.source})$`;
  const text = z
    .string(says(why))
    .refine(() => literal || !parsing.literal, says(why))
    .regex(new RegExp(pattern), says(why))
    .transform(read)
    .pipe(inner)
    .meta({ pattern: literal ? `${pattern}|${REFERENCE.source}` : REFERENCE.source });
  return z.union([inner, text], says(why));
}

/** A string that must match `re` once resolved; the JSON Schema also accepts a reference. */
export function matching(re: RegExp, why: string | Why) {
  return z
    .string(says((v) => `must be a string, got ${describe(v)}`))
    .regex(re, says(typeof why === 'string' ? () => why : why))
    .meta({ pattern: `${re.source}|${REFERENCE.source}` })
    .register(DOC, { type: 'string' });
}

/** An HTTP field name (a request header to read, or the one a token is written to). */
export function headerName() {
  return matching(HEADER_NAME, (v) => `"${String(v)}" is not a valid header name`).register(DOC, {
    type: 'header name',
  });
}

/**
 * Only for the JSON Schema: a `${env:}`/`${file:}` reference where the file must hold something
 * else once resolved (one of some words). Validation sees the resolved value, which never is
 * this.
 */
function reference() {
  return z.string().meta({ pattern: REFERENCE.source }).pipe(z.never());
}

/** Text. Numbers and booleans are taken as their text (`client_id: 12345`). */
export function text(opts: { empty: boolean } = { empty: true }) {
  const why: Why = (v) => `must be a string, got ${describe(v)}`;
  const string = opts.empty ? z.string() : z.string().min(1, 'must not be empty');
  return z
    .union([string, z.number(), z.boolean()], says(why))
    .transform(String)
    .register(DOC, { type: 'string' });
}

export function flag() {
  const why: Why = (v) => `must be true or false, got ${describe(v)}`;
  return interpolable(z.boolean(says(why)), BOOLEAN, (s) => s === 'true', why).register(DOC, {
    type: '`true` or `false`',
  });
}

export function whole(min: number, max: number) {
  const why: Why = (v) => `must be a whole number from ${min} to ${max}, got ${describe(v)}`;
  const n = z.number(says(why)).int(says(why)).min(min, says(why)).max(max, says(why));
  // Digits in quotes have always been read as the number.
  return interpolable(n, WHOLE, Number, why, true).register(DOC, { type: `whole number, ${min} to ${max}` });
}

/** A whole number from 1 up, e.g. a count of entries. */
export function count(why: string) {
  const n = z
    .number(says(() => why))
    .int(why)
    .min(1, why);
  return interpolable(n, WHOLE, Number, () => why).register(DOC, { type: 'whole number, 1 or more' });
}

/** A number in `min`..`max` (bounds excluded when `exclusive`), e.g. a fraction of a lifetime. */
export function fraction(min: number, max: number, exclusive: boolean, why: string) {
  const n = exclusive
    ? z
        .number(says(() => why))
        .gt(min, why)
        .lt(max, why)
    : z
        .number(says(() => why))
        .gte(min, why)
        .lte(max, why);
  const range = exclusive ? `between ${min} and ${max}, both excluded` : `from ${min} to ${max}`;
  return interpolable(n, DECIMAL, Number, () => why).register(DOC, { type: `number ${range}` });
}

/** One of `choices`, e.g. an enum of methods. */
export function choice<const T extends readonly [string, ...string[]]>(choices: T) {
  const why: Why = (v) =>
    v !== null && typeof v === 'object'
      ? `must be a string, got ${describe(v)}`
      : `must be one of ${choices.join(', ')}, got "${String(v)}"`;
  return z.union([z.enum(choices), reference()], says(why)).register(DOC, { type: anyOf(choices) });
}

/**
 * A duration: `500ms`, `30s`, `5m`, `1h`, `1m30s`, or a number of seconds; read as milliseconds
 * (units.ts).
 */
export function duration(opts: { positive: boolean } = { positive: false }) {
  const why: Why = (v) => `must be a duration such as 500ms, 30s or 5m, got ${describe(v)}`;
  const seconds = z.number(says(why)).min(0, says(why));
  const parsed = z
    .union(
      [
        opts.positive ? seconds.gt(0, 'must be greater than 0') : seconds,
        z
          .string(says(why))
          .regex(new RegExp(`^(?:${DURATION.source})$`), says(why))
          .meta({ pattern: `^(?:${DURATION.source})$|${REFERENCE.source}` }),
      ],
      says(why),
    )
    .transform((v) => parseDuration(v)!);
  return (opts.positive ? parsed.refine((ms) => ms > 0, 'must be greater than 0') : parsed).register(DOC, {
    type: opts.positive ? 'duration above 0 (500ms, 30s, 5m)' : 'duration (500ms, 30s, 5m)',
  });
}

/** A size: `512`, `64KiB`, `10MB` (KB = 1000, KiB = 1024); read as bytes (units.ts). */
export function size(least?: { bytes: number; why: string }) {
  const why: Why = (v) => `must be a size such as 512, 64KiB or 10MB, got ${describe(v)}`;
  const bytes = z.number(says(why)).int(says(why)).min(0, says(why));
  const parsed = z
    .union(
      [
        least ? bytes.min(least.bytes, least.why) : bytes,
        z
          .string(says(why))
          .regex(new RegExp(`^(?:${SIZE.source})$`), says(why))
          .meta({ pattern: `^(?:${SIZE.source})$|${REFERENCE.source}` }),
      ],
      says(why),
    )
    .transform((v) => parseSize(v)!);
  return (least ? parsed.refine((n) => n >= least.bytes, least.why) : parsed).register(DOC, {
    type: `size (512, 64KiB, 10MB)${least ? `, ${least.why.replace(/^must be /, '')}` : ''}`,
  });
}

/** A list of strings, or one string split on spaces (OAuth's scope syntax, RFC 6749 §3.3). */
export function words(spelled?: { item: string; minItems: number }) {
  const why: Why = (v) => `must be a string, got ${describe(v)}`;
  // `spelled` is for the JSON Schema only: the checks that name the wrong word are the caller's.
  const item = spelled
    ? z.string(says(why)).meta({ pattern: `${spelled.item}|${REFERENCE.source}` })
    : text();
  const list = spelled ? z.array(item).meta({ minItems: spelled.minItems }) : z.array(item);
  return z
    .union([list, item], says(why))
    .transform((v) => (Array.isArray(v) ? v : [v]).flatMap((s) => s.split(' ').filter(Boolean)))
    .register(DOC, { type: 'list, or one space-separated string' });
}

/** A mapping of text values (numbers and booleans are taken as their text). */
export function textMap() {
  return z
    .record(
      z.string(),
      text(),
      says((v) => `must be a mapping, got ${describe(v)}`),
    )
    .register(DOC, { type: 'mapping of strings' });
}

/** An http(s) URL without user info or fragment; `query: false` also refuses a query string. */
export function httpUrl(opts: { query: boolean }) {
  return z
    .string(says((v) => `must be a string, got ${describe(v)}`))
    .transform((value, ctx) => {
      const refuse = (message: string) => {
        ctx.issues.push({ code: 'custom', message, input: value });
        return z.NEVER;
      };
      let url: URL;
      try {
        url = new URL(value);
      } catch {
        return refuse(`"${value}" is not a URL`);
      }
      if (url.protocol !== 'http:' && url.protocol !== 'https:') {
        return refuse(`must be an http:// or https:// URL, got ${url.protocol}//`);
      }
      if (url.username || url.password)
        return refuse('must not contain user info; put credentials in their own keys');
      if (url.hash) return refuse('must not contain a fragment (#…)');
      if (!opts.query && url.search) return refuse('must not contain a query string');
      return url;
    })
    .meta({ pattern: `^[hH][tT][tT][pP][sS]?://|${REFERENCE.source}` })
    .register(DOC, {
      type: opts.query ? 'URL, `http://` or `https://`' : 'URL, `http://` or `https://`, no query',
    });
}

/** An absolute URI (RFC 3986 §4.3), e.g. an RFC 8707 resource indicator. */
export function absoluteUri(why: string) {
  return text()
    .refine((s) => URL.canParse(s), why)
    .register(DOC, { type: 'absolute URI' });
}

/** A file path, read at load time by the semantic pass (checker.ts `file`). */
export function filePath() {
  return text().register(DOC, { type: 'file path' });
}

/**
 * Objects whose keys depend on one of them (`source: file` has `path`). `others` are keys of
 * related variants (those another grant accepts): when `key` names no variant, only keys that
 * belong to none are called unknown, so a wrong `source` is reported once.
 */
export function variants<const O extends readonly [z.ZodObject, ...z.ZodObject[]]>(
  key: string,
  options: O,
  others: readonly z.ZodObject[] = [],
) {
  const union = z.discriminatedUnion(
    key,
    options as unknown as [z.ZodObject, ...z.ZodObject[]],
  ) as unknown as z.ZodDiscriminatedUnion<O>;
  VARIANT_KEYS.set(union, [...new Set([...options, ...others].flatMap((o) => Object.keys(o.shape)))]);
  DOC.add(union, { type: `mapping, by \`${key}\`` });
  return union;
}
export const VARIANT_KEYS = new WeakMap<z.ZodType, readonly string[]>();

/** "`a`, `b` or `c`": allowed values as the README lists them. */
export function anyOf(values: readonly string[]): string {
  const quoted = values.map((v) => `\`${v}\``);
  return quoted.length < 2 ? quoted.join('') : `${quoted.slice(0, -1).join(', ')} or ${quoted.at(-1)}`;
}

/** Free-form content passed on as written, `${…}` included (JWT claims). */
export const VERBATIM = new WeakSet<z.ZodType>();
export function verbatim<T extends z.ZodType>(schema: T): T {
  VERBATIM.add(schema);
  return schema;
}
