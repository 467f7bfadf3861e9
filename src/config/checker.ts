import { isAbsolute, resolve } from 'node:path';
import type { ConfigProblem } from '../errors.js';
import { type ConfigSources, interpolate } from './interpolate.js';
import type { FileBacked, TlsClient } from './types.js';
import { parseDuration, parseSize } from './units.js';

type Obj = Record<string, unknown>;

/**
 * Reads values out of parsed YAML while collecting every problem with its exact key path, so
 * `validate` can report all mistakes at once instead of the first. Each getter returns
 * `undefined` after recording a problem; callers never throw.
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

  constructor(private readonly sources: ConfigSources) {}

  add(path: string, message: string): void {
    this.problems.push({ path, message });
  }

  warn(path: string, message: string): void {
    this.warnings.push({ path, message });
  }

  /** A whole number within `min`..`max`; YAML gives numbers, `${env:}` gives digit strings. */
  integer(
    obj: Obj,
    key: string,
    path: string,
    fallback: number,
    range: { min: number; max: number },
  ): number {
    const value = this.#resolved(obj, key, path);
    if (value === undefined || value === null) return fallback;
    const n = typeof value === 'string' && /^\d+$/.test(value.trim()) ? Number(value) : value;
    if (typeof n !== 'number' || !Number.isInteger(n) || n < range.min || n > range.max) {
      this.add(
        join(path, key),
        `must be a whole number from ${range.min} to ${range.max}, got ${describe(value)}`,
      );
      return fallback;
    }
    return n;
  }

  /** A mapping, or undefined (with a problem) when present but not a mapping. */
  object(value: unknown, path: string): Obj | undefined {
    if (value === undefined || value === null) return undefined;
    if (typeof value !== 'object' || Array.isArray(value)) {
      this.add(path, `must be a mapping, got ${describe(value)}`);
      return undefined;
    }
    return value as Obj;
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

  required(obj: Obj, key: string, path: string): boolean {
    if (obj[key] === undefined || obj[key] === null) {
      this.add(join(path, key), 'is required');
      return false;
    }
    return true;
  }

  /** A string with `${env:}`/`${file:}` resolved. Numbers are accepted and stringified. */
  string(obj: Obj, key: string, path: string): string | undefined {
    const value = obj[key];
    if (value === undefined || value === null) return undefined;
    return this.stringValue(value, join(path, key));
  }

  stringValue(value: unknown, path: string): string | undefined {
    if (typeof value === 'number' || typeof value === 'boolean') return String(value);
    if (typeof value !== 'string') {
      this.add(path, `must be a string, got ${describe(value)}`);
      return undefined;
    }
    try {
      return interpolate(value, this.sources);
    } catch (err) {
      this.add(path, (err as Error).message);
      return undefined;
    }
  }

  boolean(obj: Obj, key: string, path: string, fallback: boolean): boolean {
    const value = obj[key];
    if (value === undefined || value === null) return fallback;
    if (typeof value !== 'boolean') {
      this.add(join(path, key), `must be true or false, got ${describe(value)}`);
      return fallback;
    }
    return value;
  }

  oneOf<T extends string>(obj: Obj, key: string, path: string, choices: readonly T[], fallback: T): T {
    const value = this.string(obj, key, path);
    if (value === undefined) return fallback;
    if (!(choices as readonly string[]).includes(value)) {
      this.add(join(path, key), `must be one of ${choices.join(', ')}, got "${value}"`);
      return fallback;
    }
    return value as T;
  }

  /**
   * One of `choices`; `fallback` when absent; undefined (with a problem) when present but not
   * one of them, so callers skip checks that depend on it instead of guessing.
   */
  choice<T extends string>(
    obj: Obj,
    key: string,
    path: string,
    choices: readonly T[],
    fallback?: T,
  ): T | undefined {
    const value = this.string(obj, key, path);
    if (value === undefined) return fallback;
    if (!(choices as readonly string[]).includes(value)) {
      this.add(join(path, key), `must be one of ${choices.join(', ')}, got "${value}"`);
      return undefined;
    }
    return value as T;
  }

  /** A string value with references resolved (they may appear anywhere), anything else as is. */
  #resolved(obj: Obj, key: string, path: string): unknown {
    const value = obj[key];
    return typeof value === 'string' ? this.string(obj, key, path) : value;
  }

  duration(obj: Obj, key: string, path: string, fallbackMs: number): number {
    const value = this.#resolved(obj, key, path);
    if (value === undefined || value === null) return fallbackMs;
    const ms = parseDuration(value);
    if (ms === undefined) {
      this.add(join(path, key), `must be a duration such as 500ms, 30s or 5m, got ${describe(value)}`);
      return fallbackMs;
    }
    return ms;
  }

  size(obj: Obj, key: string, path: string, fallback: number): number {
    const value = this.#resolved(obj, key, path);
    if (value === undefined || value === null) return fallback;
    const bytes = parseSize(value);
    if (bytes === undefined) {
      this.add(join(path, key), `must be a size such as 512, 64KiB or 10MB, got ${describe(value)}`);
      return fallback;
    }
    return bytes;
  }

  /** A list of strings, or one string split on spaces (OAuth's scope syntax, RFC 6749 §3.3). */
  stringList(obj: Obj, key: string, path: string): string[] | undefined {
    const value = obj[key];
    if (value === undefined || value === null) return undefined;
    const here = join(path, key);
    if (Array.isArray(value)) {
      const out: string[] = [];
      value.forEach((item, i) => {
        const s = this.stringValue(item, `${here}[${i}]`);
        if (s !== undefined) out.push(...s.split(' ').filter(Boolean));
      });
      return out;
    }
    const s = this.stringValue(value, here);
    return s === undefined ? undefined : s.split(' ').filter(Boolean);
  }
  /** An http(s) URL without user info or fragment. */
  url(obj: Obj, key: string, path: string, opts: { allowQuery: boolean }): URL | undefined {
    const text = this.string(obj, key, path);
    if (text === undefined) return undefined;
    const here = join(path, key);
    let parsed: URL;
    try {
      parsed = new URL(text);
    } catch {
      this.add(here, `"${text}" is not a URL`);
      return undefined;
    }
    if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
      this.add(here, `must be an http:// or https:// URL, got ${parsed.protocol}//`);
      return undefined;
    }
    if (parsed.username || parsed.password) {
      this.add(here, 'must not contain user info; put credentials in their own keys');
      return undefined;
    }
    if (parsed.hash) {
      this.add(here, 'must not contain a fragment (#…)');
      return undefined;
    }
    if (!opts.allowQuery && parsed.search) {
      this.add(here, 'must not contain a query string');
      return undefined;
    }
    return parsed;
  }

  /** A mapping of strings (numbers and booleans are stringified). */
  stringMap(obj: Obj, key: string, path: string): Record<string, string> {
    const here = join(path, key);
    const map = this.object(obj[key], here);
    const out: Record<string, string> = {};
    if (!map) return out;
    for (const [k, v] of Object.entries(map)) {
      const s = this.stringValue(v, join(here, k));
      if (s !== undefined) out[k] = s;
    }
    return out;
  }

  /**
   * A secret value. When it is exactly `${file:PATH}`, the file is remembered so the value can be
   * re-read when the file changes (secret rotation) without a restart.
   */
  secret(obj: Obj, key: string, path: string): FileBacked | undefined {
    const raw = obj[key];
    const value = this.string(obj, key, path);
    if (value === undefined) return undefined;
    // A secret typed into the file travels with every copy of it (repositories, ConfigMaps).
    if (typeof raw !== 'string' || !raw.includes('${')) {
      this.warn(
        join(path, key),
        // biome-ignore lint/suspicious/noTemplateCurlyInString: the message shows the literal syntax
        'is written inline; keep secrets out of the file with ${env:NAME} or ${file:/path/to/secret}',
      );
    }
    const whole = typeof raw === 'string' ? /^\$\{file:([^}]+)\}$/.exec(raw.trim()) : null;
    return whole ? { value, file: this.resolvePath(whole[1]!) } : { value };
  }

  /** A `*_file` key: the file's path, read now so mistakes surface at load time. */
  file(obj: Obj, key: string, path: string): FileBacked | undefined {
    const name = this.string(obj, key, path);
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
      this.add(join(path, key), `cannot read file ${file}${code ? ` (${code})` : ''}`);
      return undefined;
    }
  }

  resolvePath(name: string): string {
    return isAbsolute(name) || !this.sources.baseDir ? name : resolve(this.sources.baseDir, name);
  }

  /** `tls: {ca_file, cert_file, key_file}`: extra trust and an optional client certificate. */
  tls(obj: Obj, path: string): TlsClient {
    const here = join(path, 'tls');
    const tls = this.object(obj['tls'], here);
    if (!tls) return Object.freeze({});
    this.onlyKeys(tls, here, ['ca_file', 'cert_file', 'key_file']);
    const out: { ca?: string; caFile?: string; cert?: FileBacked; key?: FileBacked } = {};
    const ca = this.file(tls, 'ca_file', here);
    if (ca) {
      // An empty or wrong file must not silently fall back to the public roots alone.
      if (!ca.value.includes('-----BEGIN CERTIFICATE-----')) {
        this.add(join(here, 'ca_file'), `${ca.file} holds no PEM certificate`);
      }
      out.ca = ca.value;
      out.caFile = ca.file!;
    }
    const cert = this.file(tls, 'cert_file', here);
    const key = this.file(tls, 'key_file', here);
    if (cert && !cert.value.includes('-----BEGIN CERTIFICATE-----')) {
      this.add(join(here, 'cert_file'), `${cert.file} holds no PEM certificate`);
    }
    if (key && !/-----BEGIN ([A-Z]+ )?PRIVATE KEY-----/.test(key.value)) {
      this.add(join(here, 'key_file'), `${key.file} holds no PEM private key`);
    }
    if ((tls['cert_file'] === undefined) !== (tls['key_file'] === undefined)) {
      this.add(here, 'cert_file and key_file go together');
    }
    if (cert) out.cert = cert;
    if (key) out.key = key;
    return Object.freeze(out);
  }
}

export function isAbsoluteUrl(text: string): boolean {
  try {
    new URL(text);
    return true;
  } catch {
    return false;
  }
}

export function join(path: string, key: string): string {
  return path ? `${path}.${key}` : key;
}

export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  if (typeof value === 'string') return `"${value}"`;
  return `${typeof value} ${String(value)}`;
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
