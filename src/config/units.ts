/**
 * Human-friendly units used throughout the configuration. Each parser returns `undefined` for
 * input it does not understand so the caller can name the key in its error.
 */

const DURATION_UNITS: Readonly<Record<string, number>> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
const SIZE_UNITS: Readonly<Record<string, number>> = {
  b: 1,
  kb: 1000,
  mb: 1000 ** 2,
  gb: 1000 ** 3,
  kib: 1024,
  mib: 1024 ** 2,
  gib: 1024 ** 3,
};

/** `"30s"`, `"5m"`, `"1h"`, `"250ms"`, `"1m30s"` → milliseconds. A bare number means seconds. */
export function parseDuration(value: unknown): number | undefined {
  if (typeof value === 'number') return Number.isFinite(value) && value >= 0 ? value * 1000 : undefined;
  if (typeof value !== 'string') return undefined;
  const text = value.trim();
  if (!/^(\d+(\.\d+)?(ms|s|m|h))+$/.test(text)) return undefined;
  let total = 0;
  for (const [, amount, , unit] of text.matchAll(/(\d+(\.\d+)?)(ms|s|m|h)/g)) {
    total += Number(amount) * DURATION_UNITS[unit as string]!;
  }
  return total;
}

/** `"64KiB"`, `"10MB"`, `"512"` → bytes (integer). */
export function parseSize(value: unknown): number | undefined {
  if (typeof value === 'number') return Number.isSafeInteger(value) && value >= 0 ? value : undefined;
  if (typeof value !== 'string') return undefined;
  const match = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i.exec(value.trim());
  if (!match) return undefined;
  const unit = (match[2] || 'b').toLowerCase();
  // Own keys only: a unit such as "constructor" must not find Object.prototype.
  if (!Object.hasOwn(SIZE_UNITS, unit)) return undefined;
  const factor = SIZE_UNITS[unit]!;
  return Math.floor(Number(match[1]) * factor);
}
