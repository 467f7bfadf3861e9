import { type DestinationStream, type Logger, pino } from 'pino';
import sonicBoom from 'sonic-boom';
import type { LogLevel } from './config/types.js';

export type { Logger } from 'pino';

// A CommonJS module: its class is a property of the default export, for types and at run time.
const { SonicBoom } = sonicBoom;
/** SonicBoom in `contentMode: 'buffer'`, which takes Buffers; its types know only strings. */
type BufferSonicBoom = Omit<InstanceType<typeof SonicBoom>, 'write'> & { write(data: Buffer): boolean };

/**
 * Paths that could ever hold a secret, censored on every line. The code never logs tokens or
 * secrets in the first place; this is the second line of defence, and tests prove the first.
 * Exact paths only: wildcard paths make every log line measurably slower on the request path.
 */
const REDACT = [
  'authorization',
  'cookie',
  'client_secret',
  'client_assertion',
  'access_token',
  'refresh_token',
  'password',
  'assertion',
  'headers.authorization',
  'headers.cookie',
  'headers["proxy-authorization"]',
];

export function createLogger(level: LogLevel, destination?: DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: 'token-injector' },
      redact: { paths: REDACT, censor: '[redacted]' },
      // Epoch milliseconds: several times cheaper per line than an ISO string.
      timestamp: pino.stdTimeFunctions.epochTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    destination ?? new BatchingSink(),
  );
}

/** One proxied request, as its access line tells it. */
export interface AccessEntry {
  readonly route: string;
  readonly method: string | undefined;
  readonly host: string | undefined;
  /** The path without its query string, which may carry secrets. */
  readonly path: string;
  readonly status: number;
  readonly durationMs: number;
}

/**
 * The access log: one line per proxied request, the same JSON that
 * `logger.info({ event: 'request', route, method, host, path, status, duration_ms }, 'proxied')`
 * writes, to the same destination, but built from a fixed template. pino's general serialisation
 * and redaction pass cost more per request than routing and token lookup together, and these
 * fields need neither: their names are fixed and none can hold a secret.
 */
export function createAccessLog(logger: Logger): (entry: AccessEntry) => void {
  if (!logger.isLevelEnabled('info')) return () => {};
  const destination = (logger as unknown as Record<symbol, DestinationStream>)[pino.symbols.streamSym]!;
  const write =
    destination instanceof BatchingSink
      ? (line: string) => destination.writeBatched(line)
      : (line: string) => destination.write(line);
  // `"service":"token-injector"`: the logger's base fields, in the order pino writes them.
  const bindings = JSON.stringify(logger.bindings()).slice(1, -1);
  const prefix = bindings === '' ? ',"event":"request"' : `,${bindings},"event":"request"`;
  const q = JSON.stringify;
  return (e) => {
    write(
      `{"level":"info","time":${Date.now()}${prefix},"route":${q(e.route)}` +
        (e.method === undefined ? '' : `,"method":${q(e.method)}`) +
        (e.host === undefined ? '' : `,"host":${q(e.host)}`) +
        `,"path":${q(e.path)},"status":${e.status},"duration_ms":${e.durationMs},"msg":"proxied"}\n`,
    );
  };
}

/**
 * nginx's `buffer=64k`: on a disk-backed stdout a write costs tens of microseconds whatever its
 * size (measured here: 19 µs for 200 bytes, 48 µs for 16 KiB), so fewer, larger writes are cheaper.
 */
const BATCH_CHARS = 64 * 1024;
/** A full batch plus the line that released it, written in one go. */
const MAX_WRITE_BYTES = 2 * BATCH_CHARS;

export interface BatchingSinkOptions {
  /** Where lines go: a file descriptor; stdout by default. */
  readonly fd?: number;
  /** Held access lines are written once they reach this many characters. */
  readonly batchChars?: number;
  /** …or once the oldest of them has waited this long. */
  readonly maxDelayMs?: number;
}

/**
 * The default log sink: stdout through SonicBoom's asynchronous writer. Access lines
 * ({@link writeBatched}) are held back and written in batches of about 64 KiB, at most 1 s late,
 * as nginx's `access_log … buffer=64k flush=1s` does: at thousands of requests a second, one
 * write per line costs more CPU than building the line. Any other line is written at once, after
 * the held access lines, so the order of lines is kept; held lines are written on `flush`,
 * `flushSync` and process exit.
 */
export class BatchingSink implements DestinationStream {
  readonly #out: BufferSonicBoom;
  readonly #batchChars: number;
  readonly #maxDelayMs: number;
  #held = '';
  #timer: NodeJS.Timeout | undefined;
  readonly #onExit = () => this.flushSync();

  constructor(options: BatchingSinkOptions = {}) {
    // Buffers, encoded once here: given strings, SonicBoom encodes each batch twice.
    this.#out = new SonicBoom({
      fd: options.fd ?? 1,
      sync: false,
      contentMode: 'buffer',
      maxWrite: MAX_WRITE_BYTES,
    }) as unknown as BufferSonicBoom;
    this.#batchChars = options.batchChars ?? BATCH_CHARS;
    this.#maxDelayMs = options.maxDelayMs ?? 1000;
    // Nothing held may be lost when the process ends, however it ends short of a kill.
    process.once('exit', this.#onExit);
    // A closed stdout (EPIPE) must not crash the proxy: logging simply stops.
    this.#out.on('error', () => {});
  }

  /** A line to write now, after any held ones. */
  write(line: string): void {
    this.#release();
    this.#out.write(Buffer.from(line));
  }

  /** An access line, which may wait for a batch. */
  writeBatched(line: string): void {
    this.#held += line;
    if (this.#held.length >= this.#batchChars) this.#release();
    else this.#timer ??= setTimeout(() => this.#release(), this.#maxDelayMs).unref();
  }

  /** Hands what is held to the writer, which writes it without further delay. */
  flush(callback?: (err?: Error) => void): void {
    this.#release();
    this.#out.flush(callback);
  }

  flushSync(): void {
    this.#release();
    try {
      this.#out.flushSync();
    } catch {
      // Not ready yet or already closed: nothing more can be written.
    }
  }

  /** Writes what is held and closes the file descriptor's writer. */
  end(): void {
    this.#release();
    process.off('exit', this.#onExit);
    this.#out.end();
  }

  #release(): void {
    if (this.#timer) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
    if (this.#held === '') return;
    const batch = this.#held;
    this.#held = '';
    this.#out.write(Buffer.from(batch));
  }
}
