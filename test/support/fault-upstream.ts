/**
 * A programmable upstream for fault injection: it does not verify tokens (the fake token
 * endpoint's tokens are opaque), it records exactly what arrived (path as received, headers,
 * the whole body) and answers with the current behaviour, which may be switched mid-run or
 * chosen per request by a function (e.g. "401 for this token, echo for the others").
 *
 * Every connection is tracked, so a test can wait for the proxy to have closed all of them
 * ({@link FaultUpstream.idle}): a socket the proxy leaked would keep it pending. Responses carry
 * `Connection: close`, so no idle keep-alive socket lingers after a request either.
 */
import { createHash } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

export interface FaultRequest {
  method: string;
  /** Path and query exactly as received. */
  path: string;
  headers: http.IncomingHttpHeaders;
  rawHeaders: string[];
  /** The Authorization header, if any. */
  authorization: string | undefined;
  body: Buffer;
}

export type FaultBehavior =
  /** 200 and a JSON echo ({@link FaultEcho}) of what arrived. */
  | { kind: 'echo' }
  | { kind: 'respond'; status: number; headers?: Record<string, string>; body?: string }
  /** Reads the request, then never sends response headers. */
  | { kind: 'hang' }
  /**
   * Sends 200 headers (with `Content-Length: declaredBytes`, or chunked without it) and
   * `sendBytes` body bytes, then closes the connection (a TCP RST with `reset`).
   */
  | { kind: 'die-mid-body'; sendBytes: number; declaredBytes?: number; reset?: boolean }
  /** 200, then `chunkBytes` every `intervalMs` for as long as the client stays. */
  | { kind: 'drip'; chunkBytes: number; intervalMs: number };

export interface FaultEcho {
  method: string;
  path: string;
  authorization: string | null;
  bodyBytes: number;
  bodySha256: string;
}

export interface FaultUpstream {
  /** http://127.0.0.1:PORT */
  url: string;
  port: number;
  requests: FaultRequest[];
  /** Connections open right now. */
  readonly openConnections: number;
  /** Connections ever accepted. */
  readonly totalConnections: number;
  setBehavior(b: FaultBehavior | ((req: FaultRequest) => FaultBehavior)): void;
  /** Resolves once no connection is open; rejects after `timeoutMs` naming how many still are. */
  idle(timeoutMs?: number): Promise<void>;
  close(): Promise<void>;
}

function readBody(req: http.IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

export async function startFaultUpstream(
  initial: FaultBehavior | ((req: FaultRequest) => FaultBehavior) = { kind: 'echo' },
): Promise<FaultUpstream> {
  let behavior = initial;
  const requests: FaultRequest[] = [];
  const open = new Set<Socket>();
  let total = 0;
  let idleWaiters: (() => void)[] = [];

  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const body = await readBody(req);
    const record: FaultRequest = {
      method: req.method ?? '',
      path: req.url ?? '',
      headers: req.headers,
      rawHeaders: req.rawHeaders,
      authorization: req.headers.authorization,
      body,
    };
    requests.push(record);
    const b = typeof behavior === 'function' ? behavior(record) : behavior;
    switch (b.kind) {
      case 'echo': {
        const echo: FaultEcho = {
          method: record.method,
          path: record.path,
          authorization: record.authorization ?? null,
          bodyBytes: body.length,
          bodySha256: createHash('sha256').update(body).digest('hex'),
        };
        res.writeHead(200, { 'content-type': 'application/json', connection: 'close' });
        res.end(JSON.stringify(echo));
        return;
      }
      case 'respond':
        res.writeHead(b.status, { connection: 'close', ...b.headers });
        res.end(b.body ?? '');
        return;
      case 'hang':
        return;
      case 'die-mid-body': {
        const headers: Record<string, string | number> = {
          'content-type': 'application/octet-stream',
          connection: 'close',
        };
        if (b.declaredBytes !== undefined) headers['content-length'] = b.declaredBytes;
        res.writeHead(200, headers);
        res.flushHeaders();
        // Only once these bytes are handed to the kernel does the connection die.
        res.write(Buffer.alloc(b.sendBytes, 0x61), () => {
          if (b.reset) req.socket.resetAndDestroy();
          else req.socket.destroy();
        });
        return;
      }
      case 'drip': {
        res.writeHead(200, { 'content-type': 'application/octet-stream', connection: 'close' });
        const timer = setInterval(() => res.write(Buffer.alloc(b.chunkBytes, 0x62)), b.intervalMs);
        res.on('close', () => clearInterval(timer));
        return;
      }
    }
  }

  const server = http.createServer((req, res) => {
    handle(req, res).catch(() => res.destroy());
  });
  server.on('connection', (socket: Socket) => {
    total++;
    open.add(socket);
    socket.on('close', () => {
      open.delete(socket);
      if (open.size === 0) {
        const waiters = idleWaiters;
        idleWaiters = [];
        for (const w of waiters) w();
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}`,
    port,
    requests,
    get openConnections() {
      return open.size;
    },
    get totalConnections() {
      return total;
    },
    setBehavior(b) {
      behavior = b;
    },
    idle(timeoutMs = 5_000) {
      if (open.size === 0) return Promise.resolve();
      return new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => {
          idleWaiters = idleWaiters.filter((w) => w !== done);
          reject(new Error(`fault upstream: ${open.size} connection(s) still open after ${timeoutMs} ms`));
        }, timeoutMs);
        const done = () => {
          clearTimeout(timer);
          resolve();
        };
        idleWaiters.push(done);
      });
    },
    close() {
      return new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        server.closeAllConnections();
        for (const socket of open) socket.destroy();
      });
    },
  };
}
