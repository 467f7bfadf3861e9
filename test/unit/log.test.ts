import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import {
  type AccessEntry,
  BatchingSink,
  type BatchingSinkOptions,
  createAccessLog,
  createLogger,
  type Logger,
} from '../../src/log.js';
import { TempDir } from './fixtures.js';

let dir: TempDir;
let opened: OpenedSink[] = [];
/** The buffers handed to `fs.writeSync`, as text, in call order, by file descriptor. */
let handed: Map<number, string[]>;

beforeEach(() => {
  dir = new TempDir();
  handed = new Map();
  // The sink writes synchronously, so the file shows at once whether a line was written; this spy
  // only counts the write calls that carried it (one per batch), and passes each one through.
  const writeSync = fs.writeSync;
  vi.spyOn(fs, 'writeSync').mockImplementation(((...args: unknown[]) => {
    const fd = args[0] as number;
    handed.set(fd, [...(handed.get(fd) ?? []), String(args[1])]);
    return Reflect.apply(writeSync, fs, args);
  }) as typeof fs.writeSync);
});

afterEach(() => {
  vi.useRealTimers();
  for (const log of opened) log.end();
  opened = [];
  vi.restoreAllMocks();
  dir.remove();
});

/** A BatchingSink writing to a fresh file in the temporary directory. */
class OpenedSink {
  readonly path: string;
  readonly sink: BatchingSink;
  readonly #fd: number;

  constructor(options: Omit<BatchingSinkOptions, 'fd'> = {}) {
    this.path = join(dir.path, `log-${opened.length}.ndjson`);
    this.#fd = fs.openSync(this.path, 'w');
    this.sink = new BatchingSink({ ...options, fd: this.#fd });
    opened.push(this);
  }

  /** Each write call made for this file so far, as the text it carried. */
  get writes(): readonly string[] {
    return handed.get(this.#fd) ?? [];
  }

  contents(): string {
    return fs.readFileSync(this.path, 'utf8');
  }

  /** `sink.end()`, which also closes the file descriptor (SonicBoom closes any fd but 1 and 2). */
  end(): void {
    this.sink.end();
  }
}

describe('BatchingSink', () => {
  it('holds batched lines until the oldest has waited maxDelayMs, then writes them in one go', () => {
    vi.useFakeTimers();
    const log = new OpenedSink({ batchChars: 1000, maxDelayMs: 500 });
    log.sink.writeBatched('{"n":1}\n');
    vi.advanceTimersByTime(400);
    log.sink.writeBatched('{"n":2}\n');
    vi.advanceTimersByTime(99);
    expect(log.contents()).toBe('');

    vi.advanceTimersByTime(1);
    expect(log.contents()).toBe('{"n":1}\n{"n":2}\n');
    expect(log.writes).toEqual(['{"n":1}\n{"n":2}\n']);
  });

  it('starts a new wait for the first line held after a release', () => {
    vi.useFakeTimers();
    const log = new OpenedSink({ batchChars: 1000, maxDelayMs: 500 });
    log.sink.writeBatched('a\n');
    vi.advanceTimersByTime(500);
    expect(log.contents()).toBe('a\n');
    vi.advanceTimersByTime(300);
    log.sink.writeBatched('b\n');
    vi.advanceTimersByTime(499);
    expect(log.contents()).toBe('a\n');

    vi.advanceTimersByTime(1);
    expect(log.contents()).toBe('a\nb\n');
    expect(log.writes).toEqual(['a\n', 'b\n']);
  });

  it('writes the batch as soon as the held lines reach batchChars, with no timer left behind', () => {
    vi.useFakeTimers();
    const log = new OpenedSink({ batchChars: 10, maxDelayMs: 500 });
    log.sink.writeBatched('12345\n');
    expect(log.contents()).toBe('');
    expect(vi.getTimerCount()).toBe(1);

    log.sink.writeBatched('6789\n');
    expect(log.contents()).toBe('12345\n6789\n');
    expect(log.writes).toEqual(['12345\n6789\n']);
    expect(vi.getTimerCount()).toBe(0);
    vi.advanceTimersByTime(10_000);
    expect(log.writes).toEqual(['12345\n6789\n']);
    expect(log.contents()).toBe('12345\n6789\n');
  });

  it('writes held lines before an urgent line, keeping the order of all lines', () => {
    const log = new OpenedSink({ batchChars: 1000, maxDelayMs: 60_000 });
    log.sink.writeBatched('b1\n');
    log.sink.writeBatched('b2\n');
    log.sink.write('u1\n');
    expect(log.contents()).toBe('b1\nb2\nu1\n');
    log.sink.writeBatched('b3\n');
    log.sink.write('u2\n');
    log.sink.writeBatched('b4\n');
    expect(log.contents()).toBe('b1\nb2\nu1\nb3\nu2\n');

    log.end();
    expect(log.contents()).toBe('b1\nb2\nu1\nb3\nu2\nb4\n');
  });

  it('flushSync writes everything held before it returns, once', () => {
    vi.useFakeTimers();
    const log = new OpenedSink({ batchChars: 1000, maxDelayMs: 500 });
    log.sink.writeBatched('a\n');
    log.sink.writeBatched('b\n');
    expect(log.contents()).toBe('');

    log.sink.flushSync();
    expect(log.contents()).toBe('a\nb\n');
    expect(vi.getTimerCount()).toBe(0);
    log.sink.flushSync();
    expect(log.contents()).toBe('a\nb\n');
    expect(log.writes).toEqual(['a\nb\n']);
  });

  it('flush calls back once what is held is written', async () => {
    const log = new OpenedSink({ batchChars: 1000, maxDelayMs: 60_000 });
    log.sink.writeBatched('a\n');
    expect(log.contents()).toBe('');

    const seen = await new Promise<{ err: Error | undefined; contents: string }>((resolve) =>
      log.sink.flush((err) => resolve({ err, contents: log.contents() })),
    );
    expect(seen).toEqual({ err: undefined, contents: 'a\n' });
  });

  it("a pino logger's flush calls back once the held access lines are written", async () => {
    const log = new OpenedSink({ batchChars: 10_000, maxDelayMs: 60_000 });
    const logger = createLogger('info', log.sink);
    createAccessLog(logger)(ENTRY);
    expect(log.contents()).toBe('');

    const contents = await new Promise<string>((resolve, reject) =>
      logger.flush((err) => (err ? reject(err) : resolve(log.contents()))),
    );
    expect(JSON.parse(contents)).toMatchObject({ msg: 'proxied', path: ENTRY.path });
  });

  it('end writes what is held and removes its process exit hook', () => {
    const before = process.listeners('exit');
    const log = new OpenedSink({ batchChars: 1000, maxDelayMs: 60_000 });
    const added = process.listeners('exit').filter((l) => !before.includes(l));
    expect(added).toHaveLength(1);
    log.sink.writeBatched('a\n');
    log.sink.writeBatched('b\n');

    log.end();
    expect(log.contents()).toBe('a\nb\n');
    expect(log.writes).toEqual(['a\nb\n']);
    expect(process.listeners('exit')).not.toContain(added[0]);
  });

  it('drops every line after end, never throws, and leaves no timer to fire', () => {
    vi.useFakeTimers();
    const log = new OpenedSink({ batchChars: 1000, maxDelayMs: 500 });
    const logger = createLogger('info', log.sink);
    log.sink.writeBatched('held\n');
    expect(vi.getTimerCount()).toBe(1);

    log.end();
    expect(log.contents()).toBe('held\n');
    expect(vi.getTimerCount()).toBe(0);

    const flushed = vi.fn();
    expect(() => {
      log.sink.writeBatched('batched after end\n');
      log.sink.write('urgent after end\n');
      log.sink.flush(flushed);
      log.sink.flushSync();
      log.sink.end();
      logger.warn('after end');
      createAccessLog(logger)(ENTRY);
    }).not.toThrow();
    // No caller of flush is left waiting, though nothing is written.
    expect(flushed).toHaveBeenCalledTimes(1);
    expect(vi.getTimerCount()).toBe(0);
    vi.advanceTimersByTime(60_000);
    expect(log.writes).toEqual(['held\n']);
    expect(log.contents()).toBe('held\n');
  });

  it('writes held lines when the process exits', () => {
    const before = process.listeners('exit');
    const log = new OpenedSink({ batchChars: 1000, maxDelayMs: 60_000 });
    const [onExit] = process.listeners('exit').filter((l) => !before.includes(l));
    log.sink.writeBatched('last words\n');
    expect(log.contents()).toBe('');

    (onExit as () => void)();
    // Written before the listener returns: the process ends right after its exit listeners.
    expect(log.contents()).toBe('last words\n');
  });

  it('keeps multi-byte UTF-8 intact, in batches, urgent lines and across batch boundaries', () => {
    const log = new OpenedSink({ batchChars: 40, maxDelayMs: 60_000 });
    const lines = [
      '{"path":"/café/naïve"}\n',
      '{"path":"/日本語/テスト"}\n',
      '{"msg":"✓ 🚀 𝄞"}\n',
      '{"host":"bücher.example"}\n',
      '{"path":"/Ωμέγα/🙂"}\n',
    ];
    log.sink.writeBatched(lines[0]!);
    log.sink.writeBatched(lines[1]!);
    log.sink.write(lines[2]!);
    log.sink.writeBatched(lines[3]!);
    log.sink.writeBatched(lines[4]!);
    log.end();
    expect(fs.readFileSync(log.path)).toEqual(Buffer.from(lines.join(''), 'utf8'));
  });

  it('keeps multi-byte UTF-8 intact when a default-sized batch is larger in bytes than in characters', () => {
    const log = new OpenedSink();
    // Three bytes a character: a 64 Ki-character batch is about 192 KiB.
    const line = (i: number) => `{"n":${i},"path":"/${'日本語'.repeat(30)}/🚀"}\n`;
    const lines = Array.from({ length: 1500 }, (_, i) => line(i));
    for (const l of lines) log.sink.writeBatched(l);
    expect(log.writes.length).toBeGreaterThan(0);
    log.end();
    expect(log.contents()).toBe(lines.join(''));
  });
});

const ENTRY: AccessEntry = {
  route: 'orders',
  method: 'GET',
  host: 'api.example.com',
  path: '/v1/orders',
  status: 200,
  durationMs: 12.34,
};

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

const LINES = 3000;
const PAD = 'x'.repeat(40);

/**
 * A Node process that logs 3000 access lines through the default sink (stdout) and exits at once.
 * Its reader is behind from the start: before logging, it fills its stdout pipe with newlines up to
 * the first `EAGAIN`, and so again in an exit listener that runs before the sink's, so that the
 * lines the sink holds at exit meet a full pipe too, whatever the pipe's size. It reports on
 * stderr, which the test reads at once: `exit` when it starts to exit, and `blocked` whenever a
 * write to stdout finds the pipe full (the sink then waits and tries again).
 */
const EXITING_CHILD = `
import fs from 'node:fs';
import { createAccessLog, createLogger } from ${JSON.stringify(new URL('../../src/log.ts', import.meta.url).href)};

const writeSync = fs.writeSync;
fs.writeSync = (fd, ...rest) => {
  try {
    return writeSync(fd, ...rest);
  } catch (err) {
    if (fd === 1 && err.code === 'EAGAIN') writeSync(2, 'blocked\\n');
    throw err;
  }
};
// As in any Node program that uses process.stdout: the pipe becomes non-blocking.
void process.stdout;
function fill() {
  const newlines = Buffer.alloc(4096, '\\n');
  try {
    for (;;) writeSync(1, newlines);
  } catch (err) {
    if (err.code !== 'EAGAIN') throw err;
  }
}
process.on('exit', () => {
  writeSync(2, 'exit\\n');
  fill();
});

fill();
const access = createAccessLog(createLogger('info'));
for (let i = 0; i < ${LINES}; i++) {
  access({ route: 'orders', method: 'GET', host: 'api.example.com', path: '/v1/orders/' + i + '/${PAD}', status: 200, durationMs: i });
}
process.exit(0);
`;

/**
 * A Node process whose stdout reader has gone: once told on stdin (after the test closed its end
 * of the pipe), it logs access lines and urgent lines, then exits. Every write fails with EPIPE.
 */
const ORPHANED_CHILD = `
import { createAccessLog, createLogger } from ${JSON.stringify(new URL('../../src/log.ts', import.meta.url).href)};

const logger = createLogger('info');
const access = createAccessLog(logger);
process.stdin.once('data', () => {
  for (let i = 0; i < 1000; i++) {
    access({ route: 'orders', method: 'GET', host: 'h', path: '/' + i, status: 200, durationMs: 1 });
    if (i % 100 === 0) logger.warn({ event: 'urgent', i }, 'urgent line');
  }
  logger.flush();
  process.stderr.write('logged\\n');
  process.exit(0);
});
`;

describe('the default sink on a real stdout pipe', () => {
  let child: ChildProcess | undefined;

  afterEach(() => {
    if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    child = undefined;
  });

  /** Runs an ES module source (TypeScript imports allowed) in a child Node process. */
  function spawnScript(source: string, stdin: 'pipe' | 'ignore'): ChildProcess {
    child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', source], {
      cwd: fileURLToPath(new URL('../../', import.meta.url)),
      stdio: [stdin, 'pipe', 'pipe'],
    });
    return child;
  }

  it('stops logging without throwing or hanging the exit once nobody reads stdout (EPIPE)', {
    timeout: 10_000,
  }, async () => {
    const proc = spawnScript(ORPHANED_CHILD, 'pipe');
    let stderr = '';
    proc.stderr!.setEncoding('utf8');
    proc.stderr!.on('data', (text: string) => {
      stderr += text;
    });
    proc.stdout!.destroy();
    proc.stdin!.write('go\n');
    const code = await new Promise<number | null>((resolve) => proc.once('close', resolve));
    expect({ code, stderr }).toEqual({ code: 0, stderr: 'logged\n' });
  });

  // The data-loss case: a process exiting right after logging, while its reader is behind. The
  // reader here reads nothing until the child reports that it found the pipe full, and then one
  // chunk per report, so the pipe stays full; once the child has exited, it reads the rest.
  it('writes every line, in order, when the process exits with its stdout pipe full', {
    timeout: 10_000,
  }, async () => {
    const proc = spawnScript(EXITING_CHILD, 'ignore');
    const stdout = proc.stdout!;
    const stderr = proc.stderr!;
    stdout.pause();
    let exited = false;
    const chunks: Buffer[] = [];
    stdout.on('data', (chunk: Buffer) => {
      chunks.push(chunk);
      if (!exited) stdout.pause();
    });
    const reports: string[] = [];
    let partial = '';
    stderr.setEncoding('utf8');
    stderr.on('data', (text: string) => {
      const lines = (partial + text).split('\n');
      partial = lines.pop()!;
      for (const line of lines) {
        reports.push(line);
        if (line === 'blocked') stdout.resume();
      }
    });
    proc.once('exit', () => {
      exited = true;
      stdout.resume();
    });
    const code = await new Promise<number | null>((resolve) => proc.once('close', resolve));

    const unexpected = [...reports.filter((r) => r !== 'blocked' && r !== 'exit'), partial].filter(
      (r) => r !== '',
    );
    expect({ code, unexpected }).toEqual({ code: 0, unexpected: [] });

    const lines = Buffer.concat(chunks)
      .toString('utf8')
      .split('\n')
      .filter((l) => l !== '');
    expect(lines).toHaveLength(LINES);
    const parsed = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(parsed.map((l) => l['path'])).toEqual(
      Array.from({ length: LINES }, (_, i) => `/v1/orders/${i}/${PAD}`),
    );
    expect(parsed.every((l) => l['msg'] === 'proxied' && l['duration_ms'] !== undefined)).toBe(true);
    expect(lines[0]!.length).toBeGreaterThan(180);

    // What the test covers: the pipe filled while the lines were logged, and again under the lines
    // held at exit.
    const exitAt = reports.indexOf('exit');
    expect(exitAt).toBeGreaterThan(0);
    expect(reports.slice(0, exitAt)).toContain('blocked');
    expect(reports.slice(exitAt + 1)).toContain('blocked');
  });
});
