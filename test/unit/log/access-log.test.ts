import { describe, expect, it, vi } from 'vitest';
import { type AccessEntry, createAccessLog } from '../../../src/log/access-log.js';
import { createLogger, type Logger } from '../../../src/log/logger.js';
import { ENTRY, OpenedSink } from './sink-files.js';

/** A destination that keeps each line written to it. */
function capture(): { readonly lines: string[]; write(line: string): void } {
  const lines: string[] = [];
  return { lines, write: (line) => void lines.push(line) };
}

/** The line pino itself writes for the entry: what the access log must reproduce. */
function logWithPino(logger: Logger, e: AccessEntry): void {
  logger.info(
    {
      event: 'request',
      route: e.route,
      method: e.method,
      host: e.host,
      path: e.path,
      status: e.status,
      duration_ms: e.durationMs,
    },
    'proxied',
  );
}

/** The access line and pino's line for the same entry, through one logger. */
function bothLines(logger: Logger, lines: string[], e: AccessEntry): { access: string; pino: string } {
  createAccessLog(logger)(e);
  expect(lines).toHaveLength(1);
  logWithPino(logger, e);
  expect(lines).toHaveLength(2);
  return { access: lines[0]!, pino: lines[1]! };
}

/** Exactly one line: a single trailing newline, none inside (no line can be split or forged). */
function expectOneLine(line: string): void {
  expect(line.endsWith('\n')).toBe(true);
  expect(line.indexOf('\n')).toBe(line.length - 1);
}

describe('createAccessLog', () => {
  it('writes one line with the same keys, order and values as pino, and the current time', () => {
    const dest = capture();
    const logger = createLogger('info', dest);
    const before = Date.now();
    createAccessLog(logger)(ENTRY);
    const after = Date.now();
    expect(dest.lines).toHaveLength(1);
    const line = dest.lines[0]!;
    expectOneLine(line);
    logWithPino(logger, ENTRY);

    const access = JSON.parse(line);
    const reference = JSON.parse(dest.lines[1]!);
    expect(Object.keys(access)).toEqual(Object.keys(reference));
    expect({ ...access, time: 0 }).toEqual({ ...reference, time: 0 });
    expect(access).toMatchObject({
      level: 'info',
      service: 'token-injector',
      event: 'request',
      msg: 'proxied',
    });
    expect(typeof access.time).toBe('number');
    expect(access.time).toBeGreaterThanOrEqual(before);
    expect(access.time).toBeLessThanOrEqual(after);
  });

  it.each<[string, AccessEntry]>([
    ['a complete entry', ENTRY],
    ['no host', { ...ENTRY, host: undefined }],
    ['no method', { ...ENTRY, method: undefined }],
    ['neither host nor method', { ...ENTRY, host: undefined, method: undefined }],
    ['an integral duration and a 5xx status', { ...ENTRY, status: 503, durationMs: 3 }],
    ['quotes and backslashes', { ...ENTRY, host: 'a"b\\c', path: '/"quoted"\\path\\' }],
    [
      'control characters',
      { ...ENTRY, method: 'G\tET', path: '/a\nb\r\u0000\u0007\u001f\u007f', host: 'h\bx\f' },
    ],
    ['non-ASCII', { ...ENTRY, route: 'bücher', host: 'bücher.example', path: '/日本語/🚀/\u2028\u2029' }],
    ['a long escaped path', { ...ENTRY, path: `/${'a"\n'.repeat(100)}` }],
  ])('writes the line pino writes, byte for byte at a fixed time: %s', (_name, entry) => {
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(1_700_000_000_123);
    const dest = capture();
    const { access, pino } = bothLines(createLogger('info', dest), dest.lines, entry);
    expectOneLine(access);
    expect(access).toBe(pino);
    const parsed = JSON.parse(access);
    expect(parsed.time).toBe(1_700_000_000_123);
    expect({ route: parsed.route, method: parsed.method, host: parsed.host, path: parsed.path }).toEqual({
      route: entry.route,
      method: entry.method,
      host: entry.host,
      path: entry.path,
    });
  });

  it('omits an undefined host or method, as pino omits undefined values', () => {
    const dest = capture();
    const { access, pino } = bothLines(createLogger('info', dest), dest.lines, {
      ...ENTRY,
      host: undefined,
      method: undefined,
    });
    const parsed = JSON.parse(access);
    expect(Object.keys(parsed)).toEqual(Object.keys(JSON.parse(pino)));
    expect(parsed).not.toHaveProperty('host');
    expect(parsed).not.toHaveProperty('method');
    expect(access).not.toContain('undefined');
  });

  it('escapes a lone surrogate, so the line still decodes to the input after UTF-8 encoding', () => {
    const dest = capture();
    const entry = { ...ENTRY, host: 'x\ud800y', path: '/\udc00/\ud83d' };
    const { access, pino } = bothLines(createLogger('info', dest), dest.lines, entry);
    expectOneLine(access);
    const parsed = JSON.parse(access);
    const reference = JSON.parse(pino);
    expect(Object.keys(parsed)).toEqual(Object.keys(reference));
    expect({ ...parsed, time: 0 }).toEqual({ ...reference, time: 0 });
    // What reaches the log file: UTF-8 bytes, in which an unpaired surrogate cannot be written raw.
    const decoded = JSON.parse(Buffer.from(access, 'utf8').toString('utf8'));
    expect(decoded.host).toBe('x\ud800y');
    expect(decoded.path).toBe('/\udc00/\ud83d');
  });

  it('includes the bindings of a child logger where pino writes them, still redacted', () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(1_700_000_000_000);
    const dest = capture();
    const logger = createLogger('info', dest).child({
      component: 'proxy',
      note: 'a"b\n',
      authorization: 'Bearer s3cret',
    });
    const { access, pino } = bothLines(logger, dest.lines, ENTRY);
    expect(access).toBe(pino);
    expect(JSON.parse(access)).toMatchObject({
      component: 'proxy',
      note: 'a"b\n',
      authorization: '[redacted]',
    });
    expect(access).not.toContain('s3cret');
  });

  it.each(['warn', 'error'] as const)('writes nothing at level %s', (level) => {
    const dest = capture();
    createAccessLog(createLogger(level, dest))(ENTRY);
    expect(dest.lines).toEqual([]);
  });

  it('writes at level debug, below info', () => {
    const dest = capture();
    createAccessLog(createLogger('debug', dest))(ENTRY);
    expect(dest.lines).toHaveLength(1);
    expect(JSON.parse(dest.lines[0]!)).toMatchObject({ level: 'info', msg: 'proxied' });
  });

  it("follows the logger's level when it changes at run time", () => {
    const dest = capture();
    const logger = createLogger('info', dest);
    const access = createAccessLog(logger);
    access({ ...ENTRY, path: '/1' });
    logger.level = 'warn';
    access({ ...ENTRY, path: '/2' });
    logger.level = 'silent';
    access({ ...ENTRY, path: '/3' });
    logger.level = 'info';
    access({ ...ENTRY, path: '/4' });
    logger.level = 'debug';
    access({ ...ENTRY, path: '/5' });
    expect(dest.lines.map((l) => JSON.parse(l).path)).toEqual(['/1', '/4', '/5']);
  });

  it.each([
    ['NaN', Number.NaN],
    ['Infinity', Number.POSITIVE_INFINITY],
    ['-Infinity', Number.NEGATIVE_INFINITY],
  ])('writes a duration of %s as null, as pino does, in a valid JSON line', (_name, durationMs) => {
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(1_700_000_000_000);
    const dest = capture();
    const { access, pino } = bothLines(createLogger('info', dest), dest.lines, { ...ENTRY, durationMs });
    expectOneLine(access);
    expect(access).toBe(pino);
    expect(JSON.parse(access).duration_ms).toBeNull();
    expect(access).toContain('"duration_ms":null,');
  });

  it('writes pid and hostname bindings of a child logger exactly as pino does', () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(1_700_000_000_000);
    const dest = capture();
    const logger = createLogger('info', dest).child({ pid: 4242, hostname: 'web-1.example' });
    const { access, pino } = bothLines(logger, dest.lines, ENTRY);
    expect(access).toBe(pino);
    expect(JSON.parse(access)).toMatchObject({
      service: 'token-injector',
      pid: 4242,
      hostname: 'web-1.example',
    });

    // And through a grandchild, whose bindings pino appends to its parent's.
    dest.lines.length = 0;
    const grandchild = logger.child({ component: 'proxy', pid: 7 });
    const both = bothLines(grandchild, dest.lines, ENTRY);
    expect(both.access).toBe(both.pino);
  });

  it('holds access lines in a BatchingSink and writes them before a later urgent line', () => {
    const log = new OpenedSink({ batchChars: 10_000, maxDelayMs: 60_000 });
    const logger = createLogger('info', log.sink);
    const access = createAccessLog(logger);
    access(ENTRY);
    access({ ...ENTRY, path: '/v1/orders/7', status: 404 });
    expect(log.contents()).toBe('');

    logger.warn({ event: 'refresh_retry' }, 'refresh failed');
    const lines = log
      .contents()
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => JSON.parse(l));
    expect(lines.map((l) => [l.msg, l.path, l.status])).toEqual([
      ['proxied', '/v1/orders', 200],
      ['proxied', '/v1/orders/7', 404],
      ['refresh failed', undefined, undefined],
    ]);
    expect(lines[2]).toMatchObject({ level: 'warn', event: 'refresh_retry' });
  });

  it('writes 100 held access lines in one write call', () => {
    const log = new OpenedSink({ batchChars: 1_000_000, maxDelayMs: 60_000 });
    const logger = createLogger('info', log.sink);
    const access = createAccessLog(logger);
    for (let i = 0; i < 100; i++) access({ ...ENTRY, path: `/v1/orders/${i}` });
    expect(log.writes).toEqual([]);

    logger.warn('released');
    expect(log.writes).toHaveLength(2);
    const batch = log.writes[0]!.split('\n');
    expect(batch.pop()).toBe('');
    expect(batch.map((l) => JSON.parse(l).path)).toEqual(
      Array.from({ length: 100 }, (_, i) => `/v1/orders/${i}`),
    );
    expect(JSON.parse(log.writes[1]!)).toMatchObject({ level: 'warn', msg: 'released' });
  });
});
