import type { ConfigProblem } from '../errors.js';
import { type ConfigSources, interpolate } from './interpolate.js';
import { parseDuration, parseSize } from './units.js';

type Obj = Record<string, unknown>;

/**
 * Reads values out of parsed YAML while collecting every problem with its exact key path, so
 * `validate` can report all mistakes at once instead of the first. Each getter returns
 * `undefined` after recording a problem; callers never throw.
 */
export class Checker {
  readonly problems: ConfigProblem[] = [];

  constructor(private readonly sources: ConfigSources) {}

  add(path: string, message: string): void {
    this.problems.push({ path, message });
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

  duration(obj: Obj, key: string, path: string, fallbackMs: number): number {
    const value = obj[key];
    if (value === undefined || value === null) return fallbackMs;
    const ms = parseDuration(value);
    if (ms === undefined) {
      this.add(join(path, key), `must be a duration such as 500ms, 30s or 5m, got ${describe(value)}`);
      return fallbackMs;
    }
    return ms;
  }

  size(obj: Obj, key: string, path: string, fallback: number): number {
    const value = obj[key];
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
