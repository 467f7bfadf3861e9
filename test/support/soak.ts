/**
 * Support for long load runs of the real proxy (test/e2e/soak.test.ts), where the usual helpers
 * would grow without bound: every log line kept, every upstream request recorded.
 *
 * - {@link ledgerFor}: wraps the fake token endpoint to know when each token was issued and when it
 *   really expires, and to answer chosen token requests with faults (one behaviour per request).
 * - {@link startFastUpstream}: a plain node:http upstream answering 100 bytes, reporting each
 *   request's Authorization header to a callback instead of recording it.
 * - {@link startLeanInjector}: the real proxy in-process at info level, counting (not keeping) its
 *   per-request log lines; every other line is kept and leak-checked as in `injector.ts`.
 * - {@link tcpSockets} and {@link forceGc}: what is left open, and the heap after a full GC.
 */
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import v8 from 'node:v8';
import vm from 'node:vm';
import { startTokenInjector } from '../../src/app.js';
import type { Behavior, FakeTokenEndpoint } from './fake-token-endpoint.js';
import { configFrom, type TestInjector } from './injector.js';
import { recordLog } from './leak-watch.js';

export type TokenBehavior = Extract<Behavior, { kind: 'token' }> & { expiresIn: number };

export interface IssuedToken {
  /** Epoch ms at which the fake answered with it. */
  readonly issuedAt: number;
  /** issuedAt + expires_in: after this the token is expired for its issuer. */
  readonly expiresAt: number;
}

export interface TokenLedger {
  /** Every token issued since the ledger was attached. */
  readonly issued: ReadonlyMap<string, IssuedToken>;
  /** How each token request was answered, by behaviour kind (a 'json'/'raw' answer by its status). */
  readonly answered: ReadonlyMap<string, number>;
  /** The behaviour for token requests when no fault is queued. */
  setBase(b: TokenBehavior | Behavior): void;
  /** Answers the next token requests with these behaviours, one each, before the base one again. */
  failNext(...faults: Behavior[]): void;
  /** Called after each token is issued, with how many have been issued so far. */
  onIssue(listener: ((count: number) => void) | undefined): void;
}

/**
 * Attaches to a fake token endpoint. It relies on the fake's documented order: a request is recorded
 * (`requests.push`) before its behaviour is read, and an issued token is recorded
 * (`issuedTokens.push`) synchronously while that behaviour is being answered.
 */
export function ledgerFor(fake: FakeTokenEndpoint, base: TokenBehavior): TokenLedger {
  let baseBehavior: Behavior = base;
  let current: Behavior = base;
  const queue: Behavior[] = [];
  const issued = new Map<string, IssuedToken>();
  const answered = new Map<string, number>();
  let listener: ((count: number) => void) | undefined;
  let count = 0;

  const pushRequest = fake.requests.push.bind(fake.requests);
  fake.requests.push = (...items) => {
    for (const _ of items) {
      current = queue.shift() ?? baseBehavior;
      fake.setBehavior(current);
      const key = current.kind === 'json' || current.kind === 'raw' ? `${current.status}` : current.kind;
      answered.set(key, (answered.get(key) ?? 0) + 1);
    }
    return pushRequest(...items);
  };
  const pushToken = fake.issuedTokens.push.bind(fake.issuedTokens);
  fake.issuedTokens.push = (...tokens) => {
    const now = Date.now();
    const expiresIn = current.kind === 'token' ? Number(current.expiresIn ?? 300) : 300;
    for (const t of tokens) issued.set(t, { issuedAt: now, expiresAt: now + expiresIn * 1000 });
    const length = pushToken(...tokens);
    count += tokens.length;
    // After the answer is written: a fault queued now is for the next request.
    queueMicrotask(() => listener?.(count));
    return length;
  };
  fake.setBehavior(base);

  return {
    issued,
    answered,
    setBase(b) {
      baseBehavior = b;
    },
    failNext(...faults) {
      queue.push(...faults);
    },
    onIssue(l) {
      listener = l;
    },
  };
}

export interface FastUpstream {
  readonly url: string;
  readonly port: number;
  /** Connections open right now on the upstream side. */
  readonly liveConnections: number;
  /** Resolves once no connection is open (immediately if none is). */
  idle(): Promise<void>;
  close(): Promise<void>;
}

/** Exactly 100 bytes. */
export const BODY_100 = '0123456789'.repeat(10);

/** A node:http upstream answering every request with 100 bytes, after `onRequest` saw it. */
export async function startFastUpstream(
  onRequest: (req: http.IncomingMessage) => void,
): Promise<FastUpstream> {
  let live = 0;
  let waiters: (() => void)[] = [];
  const server = http.createServer((req, res) => {
    onRequest(req);
    req.resume();
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': BODY_100.length });
    res.end(BODY_100);
  });
  server.on('connection', (socket) => {
    live++;
    socket.once('close', () => {
      live--;
      if (live === 0) {
        for (const w of waiters) w();
        waiters = [];
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    get liveConnections() {
      return live;
    },
    idle: () => (live === 0 ? Promise.resolve() : new Promise<void>((resolve) => waiters.push(resolve))),
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        server.closeAllConnections();
      }),
  };
}

export interface LeanInjector extends TestInjector {
  /** Per-request log lines written, by status. */
  readonly requestLines: Map<number, number>;
  /** Per-request log lines in which `forbidden` found something (e.g. a token). */
  readonly leakyRequestLines: string[];
}

/**
 * The real proxy, in-process, logging at the configured level (info by default here). Per-request
 * lines are counted and checked with `forbidden`, not kept; all other lines are kept in `logs` and
 * go to the suite-wide leak check like `startInjector`'s.
 */
export async function startLeanInjector(
  raw: Record<string, unknown>,
  forbidden: (line: string) => boolean,
): Promise<LeanInjector> {
  const config = configFrom({ log: { level: 'info' }, ...raw });
  const logs: Record<string, unknown>[] = [];
  const requestLines = new Map<number, number>();
  const leakyRequestLines: string[] = [];
  const destination = new Writable({
    write(chunk, _enc, done) {
      for (const line of String(chunk).split('\n')) {
        if (!line) continue;
        if (line.includes('"event":"request"')) {
          const status = Number(/"status":(\d+)/.exec(line)?.[1] ?? 0);
          requestLines.set(status, (requestLines.get(status) ?? 0) + 1);
          if (forbidden(line) && leakyRequestLines.length < 10) leakyRequestLines.push(line);
          continue;
        }
        recordLog(line);
        logs.push(JSON.parse(line) as Record<string, unknown>);
      }
      done();
    },
  });
  const injector = await startTokenInjector(config, { logDestination: destination });
  return {
    injector,
    config,
    url: `http://127.0.0.1:${injector.proxyAddress.port}`,
    adminUrl: `http://127.0.0.1:${injector.adminAddress.port}`,
    logs,
    requestLines,
    leakyRequestLines,
    close: () => injector.close(),
  };
}

export interface SocketEnds {
  readonly localPort?: number;
  readonly remotePort?: number;
}

/**
 * Every open TCP socket of this process with its ports, so a test can tell the proxy's client
 * connections (local port = proxy port) from its upstream (remote port = upstream port) and token
 * endpoint ones. Uses Node's undocumented `process._getActiveHandles()`.
 */
export function tcpSockets(): { socket: net.Socket; ends: SocketEnds }[] {
  const handles = (process as unknown as { _getActiveHandles(): unknown[] })._getActiveHandles();
  return handles
    .filter((h): h is net.Socket => h instanceof net.Socket && !h.destroyed && h.remotePort !== undefined)
    .map((socket) => ({ socket, ends: { localPort: socket.localPort, remotePort: socket.remotePort } }));
}

/** `TCPSocketWrap` resources alive, as `process.getActiveResourcesInfo()` reports them. */
export function tcpSocketResources(): number {
  return process.getActiveResourcesInfo().filter((r) => r === 'TCPSocketWrap').length;
}

let gcFunction: (() => void) | undefined;

/** A full garbage collection, then the heap in use. Works without --expose-gc. */
export function forceGc(): number {
  if (!gcFunction) {
    v8.setFlagsFromString('--expose_gc');
    gcFunction = vm.runInNewContext('gc') as () => void;
  }
  gcFunction();
  gcFunction();
  return process.memoryUsage().heapUsed;
}
