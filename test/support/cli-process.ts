/**
 * Runs the real `token-injector` command as a child process, from the TypeScript source through tsx
 * (`node --import tsx src/cli/main.ts …`), so end-to-end tests exercise the current code without a build.
 *
 * Every stdout/stderr line is captured and handed to {@link recordLog}, so the suite-wide leak check
 * covers the child's output too. Stdout lines that are JSON are parsed as log lines; {@link CliProcess.waitForLog}
 * waits for one by event, never by sleeping. Every spawned process is tracked: call {@link killAllCli} in an
 * afterEach/afterAll hook so a failing test never leaves a proxy running.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { request } from 'undici';
import { stringify } from 'yaml';
import { recordLog } from './leak-watch.js';

export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));

export type LogLine = Record<string, unknown>;

export interface CliExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface CliResult extends CliExit {
  stdout: string;
  stderr: string;
}

export interface SpawnOptions {
  /** Added to the environment (which never carries TOKEN_INJECTOR_CONFIG from the test runner). */
  env?: Record<string, string>;
  /** Environment variables to remove. */
  unsetEnv?: string[];
  /**
   * Whether stdout lines go to the leak registry (default true). `token` prints the token on stdout by
   * design, so its stdout is excluded; its stderr never is.
   */
  recordStdout?: boolean;
}

const live = new Set<CliProcess>();

export class CliProcess {
  readonly child: ChildProcess;
  readonly exited: Promise<CliExit>;
  /** Parsed JSON lines from stdout (the pino log). */
  readonly logs: LogLine[] = [];
  #stdout = '';
  #stderr = '';
  #exit: CliExit | undefined;
  readonly #logWaiters: { match: (l: LogLine) => boolean; resolve: (l: LogLine) => void }[] = [];
  readonly #exitWaiters: ((e: CliExit) => void)[] = [];

  constructor(args: readonly string[], opts: SpawnOptions = {}) {
    const env: NodeJS.ProcessEnv = { ...process.env };
    delete env['TOKEN_INJECTOR_CONFIG'];
    Object.assign(env, opts.env);
    for (const name of opts.unsetEnv ?? []) delete env[name];
    this.child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], {
      cwd: REPO_ROOT,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    live.add(this);
    const recordStdout = opts.recordStdout ?? true;
    this.#lines(this.child.stdout!, (line) => {
      this.#stdout += `${line}\n`;
      if (recordStdout) recordLog(line);
      let parsed: unknown;
      try {
        parsed = JSON.parse(line);
      } catch {
        return;
      }
      if (parsed === null || typeof parsed !== 'object') return;
      const log = parsed as LogLine;
      this.logs.push(log);
      for (const w of [...this.#logWaiters]) {
        if (w.match(log)) {
          this.#logWaiters.splice(this.#logWaiters.indexOf(w), 1);
          w.resolve(log);
        }
      }
    });
    this.#lines(this.child.stderr!, (line) => {
      this.#stderr += `${line}\n`;
      recordLog(line);
    });
    // 'close' (not 'exit'): by then both pipes are drained, so every line has been seen.
    this.exited = new Promise<CliExit>((resolve) => {
      this.child.once('close', (code, signal) => {
        this.#exit = { code, signal };
        live.delete(this);
        for (const w of this.#exitWaiters.splice(0)) w(this.#exit);
        resolve(this.#exit);
      });
    });
  }

  get pid(): number {
    return this.child.pid!;
  }
  get stdout(): string {
    return this.#stdout;
  }
  get stderr(): string {
    return this.#stderr;
  }
  get running(): boolean {
    return this.#exit === undefined;
  }

  /** Resolves with the first log line (already seen or still to come) that matches; rejects if the process ends first. */
  waitForLog(match: (l: LogLine) => boolean, what = 'a matching log line'): Promise<LogLine> {
    const seen = this.logs.find(match);
    if (seen) return Promise.resolve(seen);
    return new Promise<LogLine>((resolve, reject) => {
      if (this.#exit) {
        reject(this.#endedError(what));
        return;
      }
      const waiter = { match, resolve };
      this.#logWaiters.push(waiter);
      this.#exitWaiters.push(() => {
        const i = this.#logWaiters.indexOf(waiter);
        if (i !== -1) {
          this.#logWaiters.splice(i, 1);
          reject(this.#endedError(what));
        }
      });
    });
  }

  waitForEvent(event: string): Promise<LogLine> {
    return this.waitForLog((l) => l['event'] === event, `event "${event}"`);
  }

  signal(sig: NodeJS.Signals): void {
    this.child.kill(sig);
  }

  /** SIGKILL if still running; resolves once it is gone. */
  async kill(): Promise<void> {
    if (this.running) this.child.kill('SIGKILL');
    await this.exited;
  }

  #endedError(what: string): Error {
    return new Error(
      `token-injector exited (${JSON.stringify(this.#exit)}) before ${what}\nstdout:\n${this.#stdout}\nstderr:\n${this.#stderr}`,
    );
  }

  #lines(stream: NodeJS.ReadableStream, onLine: (line: string) => void): void {
    let partial = '';
    stream.setEncoding('utf8');
    stream.on('data', (chunk: string) => {
      const parts = (partial + chunk).split('\n');
      partial = parts.pop()!;
      for (const line of parts) onLine(line);
    });
    stream.on('end', () => {
      if (partial) onLine(partial);
      partial = '';
    });
  }
}

export function spawnCli(args: readonly string[], opts?: SpawnOptions): CliProcess {
  return new CliProcess(args, opts);
}

/** Runs a command to completion. */
export async function runCli(args: readonly string[], opts?: SpawnOptions): Promise<CliResult> {
  const proc = new CliProcess(args, opts);
  const exit = await proc.exited;
  return { ...exit, stdout: proc.stdout, stderr: proc.stderr };
}

/** Kills every CLI process a test left running. */
export async function killAllCli(): Promise<void> {
  await Promise.all([...live].map((p) => p.kill()));
}

/** A temporary directory for config files; remove it with the returned function. */
export function tempDir(prefix = 'token-injector-e2e-'): { dir: string; remove: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Writes a configuration (a plain object, as YAML would give it) and returns its path. */
export function writeConfig(dir: string, name: string, config: Record<string, unknown> | string): string {
  const path = join(dir, name);
  writeFileSync(path, typeof config === 'string' ? config : stringify(config));
  return path;
}

export interface RunningCli {
  proc: CliProcess;
  /** http://127.0.0.1:PORT of the proxy listener. */
  proxyUrl: string;
  proxyPort: number;
  /** http://127.0.0.1:PORT of the admin listener. */
  adminUrl: string;
}

/**
 * `token-injector run --config FILE` with listeners on port 0: the real ports come from the "started"
 * log line. Resolves once GET /readyz answers 200.
 */
export async function startRun(configPath: string, opts?: SpawnOptions): Promise<RunningCli> {
  const proc = spawnCli(['run', '--config', configPath], opts);
  const started = await proc.waitForEvent('started');
  const proxyPort = Number(String(started['listen']).split(':').pop());
  const adminPort = Number(String(started['admin']).split(':').pop());
  const adminUrl = `http://127.0.0.1:${adminPort}`;
  await waitReady(adminUrl);
  return { proc, proxyUrl: `http://127.0.0.1:${proxyPort}`, proxyPort, adminUrl };
}

/** Polls GET /readyz with a bounded number of short attempts. */
export async function waitReady(adminUrl: string, attempts = 200): Promise<void> {
  let last = '';
  for (let i = 0; i < attempts; i++) {
    try {
      const res = await request(`${adminUrl}/readyz`);
      last = await res.body.text();
      if (res.statusCode === 200) return;
    } catch (err) {
      last = String(err);
    }
    await delay(25);
  }
  throw new Error(`not ready after ${attempts} attempts: ${last}`);
}

export interface ProcMemory {
  /** Peak resident set size (VmHWM), bytes. */
  peakRss: number;
  /** Current resident set size (VmRSS), bytes. */
  rss: number;
}

/** Reads a process's resident memory from /proc/PID/status (Linux). */
export function procMemory(pid: number): ProcMemory {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kib = (field: string) => {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB$`, 'm').exec(status);
    if (!m) throw new Error(`${field} missing from /proc/${pid}/status`);
    return Number(m[1]) * 1024;
  };
  return { peakRss: kib('VmHWM'), rss: kib('VmRSS') };
}
