import { type DestinationStream, type Logger, pino } from 'pino';
import { BatchingSink } from './batching-sink.js';

/** One proxied request, as its access line tells it. */
export interface AccessEntry {
  readonly route: string;
  readonly method: string | undefined;
  readonly host: string | undefined;
  /** The path without its query string, which may carry secrets. */
  readonly path: string;
  readonly status: number;
  readonly durationMs: number;
  /** The request's ID (proxy/request-id.ts): the app's `X-Request-Id`, or the one given it. */
  readonly requestId?: string | undefined;
}

/**
 * The access log: one line per proxied request, the same JSON that
 * `logger.info({ event: 'request', route, method, host, path, status, duration_ms, request_id }, 'proxied')`
 * writes, to the same destination, but built from a fixed template. pino's general serialisation
 * and redaction pass cost more per request than routing and token lookup together, and these
 * fields need neither: their names are fixed and none can hold a secret.
 */
export function createAccessLog(logger: Logger): (entry: AccessEntry) => void {
  const internals = logger as unknown as Record<symbol, unknown>;
  const destination = internals[pino.symbols.streamSym] as DestinationStream;
  const write =
    destination instanceof BatchingSink
      ? (line: string) => destination.writeBatched(line)
      : (line: string) => destination.write(line);
  // The logger's own fields (`,"service":"token-injector"`), serialised by pino once, as it
  // writes them on each of its lines.
  const prefix = `${internals[pino.symbols.chindingsSym] as string},"event":"request"`;
  const q = JSON.stringify;
  return (e) => {
    if (logger.levelVal > INFO) return;
    write(
      `{"level":"info","time":${Date.now()}${prefix},"route":${q(e.route)}` +
        (e.method === undefined ? '' : `,"method":${q(e.method)}`) +
        (e.host === undefined ? '' : `,"host":${q(e.host)}`) +
        `,"path":${q(e.path)},"status":${e.status},"duration_ms":${finite(e.durationMs)}` +
        (e.requestId === undefined ? '' : `,"request_id":${q(e.requestId)}`) +
        ',"msg":"proxied"}\n',
    );
  };
}

const INFO = 30;

/** A number as JSON writes it: NaN and the infinities are not JSON numbers. */
function finite(n: number): number | null {
  return Number.isFinite(n) ? n : null;
}
