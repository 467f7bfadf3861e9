/**
 * The load generator of the bench's interception phase (bench/README.md, "The interception
 * phase"). wrk cannot send CONNECT, so this one does what an app behind `HTTPS_PROXY` does, and
 * the same thing in plain HTTP so that its own ceiling is measured in the same run:
 *
 *   plain      N kept-alive connections to a port, one GET at a time on each (as wrk does);
 *   intercept  the same, but each connection first sends `CONNECT host:443` and completes a TLS
 *              handshake trusting only the bench's CA, then sends its GETs inside;
 *   handshake  C workers, each in a loop: connect, CONNECT, TLS handshake, one GET
 *              (`Connection: close`), close. No session is resumed: every handshake is a full one.
 *
 * It is driven over stdin/stdout, so that the orchestrator samples the proxy's CPU time while the
 * load is steady, not while connections are being opened or closed:
 *
 *   → `READY`           every connection is open and sending (or the workers are looping)
 *   ← `GO`              counting starts now
 *   → `DONE {json}`     after the duration: the counts of the window; the load goes on
 *   ← `STOP`            close everything and exit (stdin closing means the same)
 *
 * Run as `node --import tsx bench/intercept-load.ts '<json settings>'`, pinned to the load core.
 */
import net from 'node:net';
import { createInterface } from 'node:readline';
import tls from 'node:tls';

interface Settings {
  mode: 'plain' | 'intercept' | 'handshake';
  port: number;
  /** The Host of every request and, with CONNECT, the host named and the TLS server name. */
  host: string;
  path: string;
  /** Connections (plain, intercept) or workers (handshake). */
  connections: number;
  durationS: number;
  /** The CA certificate (PEM) the TLS client trusts, alone. */
  caPem?: string;
  /** Extra request header lines, e.g. `Authorization: Bearer …` for the upstream itself. */
  headers?: string[];
  /** The body every 200 must carry. */
  body: string;
}

const settings = JSON.parse(process.argv[2] ?? '') as Settings;
const LATENCY_BUCKETS = 1_000_000; // 1 µs buckets up to 1 s; slower answers go in the last one
const latencies = new Uint32Array(LATENCY_BUCKETS);
const CRLFCRLF = Buffer.from('\r\n\r\n');
const CHUNKED_END = Buffer.from('0\r\n\r\n');
const EXPECTED = Buffer.from(settings.body);
const close = settings.mode === 'handshake';
const REQUEST = Buffer.from(
  [
    `GET ${settings.path} HTTP/1.1`,
    `Host: ${settings.host}`,
    ...(settings.headers ?? []),
    ...(close ? ['Connection: close'] : []),
    '',
    '',
  ].join('\r\n'),
  'latin1',
);
const CONNECT = Buffer.from(
  `CONNECT ${settings.host}:443 HTTP/1.1\r\nHost: ${settings.host}:443\r\n\r\n`,
  'latin1',
);
// One context for every connection: building it per connection would parse the CA each time, a
// cost of this client that no app pays per handshake.
const secureContext = settings.caPem ? tls.createSecureContext({ ca: settings.caPem }) : undefined;

/** The window's counts; reset on GO. */
const counts = {
  requests: 0,
  bytes: 0,
  /** Responses with status >= 400, as wrk counts them. */
  badStatus: 0,
  /** 200s whose body is not the expected one. */
  badBody: 0,
  errors: 0,
  errorKinds: {} as Record<string, number>,
};
let counting = false;
let stopped = false;
let windowStart = 0;
let tlsProtocol: string | null = null;
let tlsCipher: string | undefined;

function countError(kind: string): void {
  if (!counting) return;
  counts.errors++;
  counts.errorKinds[kind] = (counts.errorKinds[kind] ?? 0) + 1;
}

function record(startedAt: number, status: number, bodyOk: boolean, bytes: number): void {
  if (!counting) return;
  const us = Math.round((performance.now() - startedAt) * 1000);
  latencies[Math.min(us, LATENCY_BUCKETS - 1)]!++;
  counts.requests++;
  counts.bytes += bytes;
  if (status >= 400) counts.badStatus++;
  else if (status === 200 && !bodyOk) counts.badBody++;
}

/**
 * Reads HTTP/1.1 responses off one connection, one at a time (no pipelining): Content-Length or
 * chunked framing, the status and whether a 200 carries the expected body. The whole response
 * usually arrives in one chunk, which is then parsed without copying.
 */
class ResponseReader {
  private buf: Buffer | undefined;

  /** Returns the response once complete: [status, body ok, bytes]; undefined while incomplete. */
  push(chunk: Buffer): [number, boolean, number] | undefined {
    const buf = this.buf ? Buffer.concat([this.buf, chunk]) : chunk;
    const head = buf.indexOf(CRLFCRLF);
    if (head === -1) {
      this.buf = buf;
      return undefined;
    }
    const headers = buf.toString('latin1', 0, head);
    const status = Number(headers.slice(9, 12));
    const bodyStart = head + 4;
    const length = /\r\ncontent-length:\s*(\d+)/i.exec(headers);
    let end: number;
    let bodyOk: boolean;
    if (length) {
      end = bodyStart + Number(length[1]);
      if (buf.length < end) {
        this.buf = buf;
        return undefined;
      }
      bodyOk =
        end - bodyStart === EXPECTED.length &&
        buf.compare(EXPECTED, 0, EXPECTED.length, bodyStart, end) === 0;
    } else if (/\r\ntransfer-encoding:\s*chunked/i.test(headers)) {
      const last = buf.indexOf(CHUNKED_END, bodyStart);
      if (last === -1) {
        this.buf = buf;
        return undefined;
      }
      end = last + CHUNKED_END.length;
      bodyOk = buf.indexOf(EXPECTED, bodyStart) !== -1;
    } else {
      // No framing: the body runs to the close. The bench's answers always carry a length.
      end = buf.length;
      bodyOk = false;
    }
    this.buf = end < buf.length ? buf.subarray(end) : undefined;
    return [status, bodyOk, end];
  }

  reset(): void {
    this.buf = undefined;
  }
}

/** Opens a TCP connection and, for interception, the tunnel and the TLS session inside it. */
async function open(): Promise<net.Socket> {
  const socket = net.connect({ host: '127.0.0.1', port: settings.port, noDelay: true });
  await once(socket, 'connect');
  if (settings.mode === 'plain') return socket;
  socket.write(CONNECT);
  await connectAnswer(socket);
  // Its errors reach the TLS socket above it, which is the one watched.
  socket.on('error', () => undefined);
  const secure = tls.connect({
    socket,
    servername: settings.host,
    secureContext,
    ALPNProtocols: ['http/1.1'],
  });
  await once(secure, 'secureConnect');
  tlsProtocol ??= secure.getProtocol();
  tlsCipher ??= secure.getCipher().name;
  return secure;
}

/** Reads the proxy's answer to CONNECT; resolves on a 200, with the socket paused for TLS. */
async function connectAnswer(socket: net.Socket): Promise<void> {
  let answer = Buffer.alloc(0);
  try {
    await readFrom(socket, 'the CONNECT answer', (chunk) => {
      answer = Buffer.concat([answer, chunk]);
      const end = answer.indexOf(CRLFCRLF);
      if (end === -1) return undefined;
      // Paused inside the handler, so that no byte is emitted with nobody listening.
      socket.pause();
      const line = answer.toString('latin1', 0, answer.indexOf('\r\n'));
      if (!/^HTTP\/1\.[01] 200 /.test(line)) throw new Error(`CONNECT answered "${line}"`);
      // The proxy waits for the ClientHello: a byte after its 200 would be a broken tunnel.
      if (end + 4 < answer.length) throw new Error('bytes after the CONNECT answer');
      return true;
    });
  } catch (err) {
    socket.destroy();
    throw err;
  }
}

/** Reads one whole response off a socket. */
function response(socket: net.Socket, reader: ResponseReader): Promise<[number, boolean, number]> {
  return readFrom(socket, 'the response', (chunk) => reader.push(chunk));
}

/**
 * Feeds a socket's bytes to `take` until it gives a result (or throws); rejects on an error or a
 * close first. The listeners are gone before the promise settles.
 */
function readFrom<T>(socket: net.Socket, what: string, take: (chunk: Buffer) => T | undefined): Promise<T> {
  return new Promise((resolve, reject) => {
    const onData = (chunk: Buffer) => {
      let done: T | undefined;
      try {
        done = take(chunk);
      } catch (err) {
        cleanup();
        reject(err);
        return;
      }
      if (done === undefined) return;
      cleanup();
      resolve(done);
    };
    const onError = (err: Error) => {
      cleanup();
      reject(err);
    };
    const onClose = () => {
      cleanup();
      reject(new Error(`connection closed before ${what}`));
    };
    const cleanup = () => {
      socket.off('data', onData);
      socket.off('error', onError);
      socket.off('close', onClose);
    };
    socket.on('data', onData);
    socket.once('error', onError);
    socket.once('close', onClose);
  });
}

/** Resolves on `event` (not a data event: nothing is read), rejects on `error` or an early `close`. */
function once(emitter: net.Socket, event: 'connect' | 'secureConnect'): Promise<void> {
  return new Promise((resolve, reject) => {
    const onEvent = () => {
      cleanup();
      resolve();
    };
    const onError = (err: Error) => {
      cleanup();
      reject(err);
    };
    const onClose = () => {
      cleanup();
      reject(new Error(`connection closed before ${event}`));
    };
    const cleanup = () => {
      emitter.off(event, onEvent);
      emitter.off('error', onError);
      emitter.off('close', onClose);
    };
    emitter.on(event, onEvent);
    emitter.once('error', onError);
    emitter.once('close', onClose);
  });
}

const sockets = new Set<net.Socket>();

/**
 * One kept-alive connection sending GET after GET until stopped, starting on `first`. A
 * connection that breaks is counted as an error and opened again, as wrk does.
 */
async function keepAlive(first: net.Socket): Promise<void> {
  const reader = new ResponseReader();
  let next: net.Socket | undefined = first;
  while (!stopped) {
    let socket: net.Socket;
    try {
      socket = next ?? (await open());
    } catch (err) {
      countError(`open: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
      await new Promise((r) => setTimeout(r, 10));
      continue;
    }
    next = undefined;
    sockets.add(socket);
    reader.reset();
    await new Promise<void>((resolve) => {
      let sentAt = performance.now();
      socket.on('data', (chunk: Buffer) => {
        const done = reader.push(chunk);
        if (!done) return;
        record(sentAt, done[0], done[1], done[2]);
        if (stopped) return;
        sentAt = performance.now();
        socket.write(REQUEST);
      });
      socket.on('error', (err: NodeJS.ErrnoException) => {
        if (!stopped) countError(`socket: ${err.code ?? err.message}`);
      });
      socket.once('close', () => {
        sockets.delete(socket);
        if (!stopped) countError('closed by the peer');
        resolve();
      });
      socket.write(REQUEST);
      socket.resume();
    });
  }
}

/** One worker of the handshake mode: a new connection, tunnel and TLS session per request. */
async function handshakes(): Promise<void> {
  const reader = new ResponseReader();
  while (!stopped) {
    const startedAt = performance.now();
    let socket: net.Socket | undefined;
    try {
      socket = await open();
      sockets.add(socket);
      reader.reset();
      socket.write(REQUEST);
      const [status, bodyOk, bytes] = await response(socket, reader);
      record(startedAt, status, bodyOk, bytes);
    } catch (err) {
      if (!stopped) countError((err as NodeJS.ErrnoException).code ?? (err as Error).message);
    } finally {
      // A well-behaved client: close_notify and FIN; the proxy closes its side after the answer.
      if (socket) {
        const s = socket;
        s.once('close', () => sockets.delete(s));
        s.on('error', () => undefined);
        s.end();
      }
    }
  }
}

/** The window's percentile from the latency histogram, in µs. */
function percentile(p: number): number {
  const total = counts.requests;
  if (total === 0) return 0;
  const rank = Math.ceil((p / 100) * total);
  let seen = 0;
  for (let us = 0; us < LATENCY_BUCKETS; us++) {
    seen += latencies[us]!;
    if (seen >= rank) return us;
  }
  return LATENCY_BUCKETS - 1;
}

function maxLatency(): number {
  for (let us = LATENCY_BUCKETS - 1; us >= 0; us--) if (latencies[us]! > 0) return us;
  return 0;
}

function stop(code: number): void {
  stopped = true;
  for (const s of sockets) s.destroy();
  process.exit(code);
}

async function main(): Promise<void> {
  if (settings.mode === 'handshake') {
    for (let i = 0; i < settings.connections; i++) void handshakes();
  } else {
    // Every connection is open before READY: the window must not hold their handshakes.
    const opened = await Promise.allSettled(Array.from({ length: settings.connections }, () => open()));
    const failed = opened.find((r) => r.status === 'rejected');
    if (failed) throw (failed as PromiseRejectedResult).reason;
    for (const r of opened) if (r.status === 'fulfilled') void keepAlive(r.value);
  }
  process.stdout.write('READY\n');

  const lines = createInterface({ input: process.stdin });
  lines.on('line', (line) => {
    if (line === 'GO') {
      latencies.fill(0);
      counting = true;
      windowStart = performance.now();
      setTimeout(() => {
        counting = false;
        const durationUs = Math.round((performance.now() - windowStart) * 1000);
        const summary = {
          durationUs,
          ...counts,
          p50Us: percentile(50),
          p90Us: percentile(90),
          p99Us: percentile(99),
          maxUs: maxLatency(),
          tlsProtocol,
          tlsCipher,
        };
        process.stdout.write(`DONE ${JSON.stringify(summary)}\n`);
      }, settings.durationS * 1000);
    } else if (line === 'STOP') {
      stop(0);
    }
  });
  // The orchestrator went away: never outlive it.
  lines.once('close', () => stop(0));
}

main().catch((err: unknown) => {
  process.stderr.write(`intercept-load: ${(err as Error).message}\n`);
  stop(1);
});
