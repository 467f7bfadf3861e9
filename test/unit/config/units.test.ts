import { describe, expect, it } from 'vitest';
import { parseDuration, parseSize } from '../../../src/config/units.js';

describe('parseDuration', () => {
  it.each([
    ['30s', 30_000],
    ['5m', 300_000],
    ['1h', 3_600_000],
    ['250ms', 250],
    ['1m30s', 90_000],
    ['1h2m3s', 3_723_000],
    ['1s500ms', 1_500],
    ['1.5s', 1_500],
    ['0s', 0],
    ['  20s  ', 20_000],
  ])('%j is %d ms', (text, ms) => {
    expect(parseDuration(text)).toBe(ms);
  });

  it('reads a bare number as seconds', () => {
    expect(parseDuration(5)).toBe(5_000);
    expect(parseDuration(0.25)).toBe(250);
    expect(parseDuration(0)).toBe(0);
  });

  it.each(['', '30', 's', '30 s', '1m 30s', '-5s', '5S', '5d', '5sec', 'soon', '1.s', '.5s'])(
    'rejects %j',
    (text) => {
      expect(parseDuration(text)).toBeUndefined();
    },
  );

  it.each([[-1], [Number.NaN], [Number.POSITIVE_INFINITY], [null], [true], [{}], [['5s']]])(
    'rejects the non-duration %j',
    (value) => {
      expect(parseDuration(value)).toBeUndefined();
    },
  );
});

describe('parseSize', () => {
  it.each([
    ['64KiB', 65_536],
    ['64kib', 65_536],
    ['10MB', 10_000_000],
    ['1MiB', 1_048_576],
    ['1GiB', 1_073_741_824],
    ['2GB', 2_000_000_000],
    ['1kb', 1_000],
    ['512', 512],
    ['512b', 512],
    ['10 MB', 10_000_000],
    ['1.5KiB', 1_536],
  ])('%j is %d bytes', (text, bytes) => {
    expect(parseSize(text)).toBe(bytes);
  });

  it('accepts a non-negative integer number of bytes', () => {
    expect(parseSize(4096)).toBe(4096);
    expect(parseSize(0)).toBe(0);
  });

  it('returns whole bytes', () => {
    expect(Number.isInteger(parseSize('1.3KiB'))).toBe(true);
    expect(parseSize('1.3KiB')).toBe(Math.floor(1.3 * 1024));
  });

  it.each(['', 'KiB', '64 KiBs', '64TB', '-1', '64K', 'lots'])('rejects %j', (text) => {
    expect(parseSize(text)).toBeUndefined();
  });

  it.each([[-1], [1.5], [Number.NaN], [2 ** 60], [null], [false]])('rejects the non-size %j', (value) => {
    expect(parseSize(value)).toBeUndefined();
  });
});
