import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';

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
import { createLogger } from ${JSON.stringify(new URL('../../../src/log/logger.ts', import.meta.url).href)};
import { createAccessLog } from ${JSON.stringify(new URL('../../../src/log/access-log.ts', import.meta.url).href)};

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
import { createLogger } from ${JSON.stringify(new URL('../../../src/log/logger.ts', import.meta.url).href)};
import { createAccessLog } from ${JSON.stringify(new URL('../../../src/log/access-log.ts', import.meta.url).href)};

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
      cwd: fileURLToPath(new URL('../../../', import.meta.url)),
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
