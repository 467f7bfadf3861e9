import fs from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, vi } from 'vitest';
import type { AccessEntry } from '../../../src/log/access-log.js';
import { BatchingSink, type BatchingSinkOptions } from '../../../src/log/batching-sink.js';
import { TempDir } from '../fixtures.js';

/** Sink files in a temporary directory, with every write call recorded (hooks run per test). */
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
export class OpenedSink {
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

/** An access-log entry the tests write. */
export const ENTRY: AccessEntry = {
  route: 'orders',
  method: 'GET',
  host: 'api.example.com',
  path: '/v1/orders',
  status: 200,
  durationMs: 12.34,
};
