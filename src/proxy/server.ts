import {
  createServer,
  type IncomingMessage,
  type Server,
  type ServerResponse,
  STATUS_CODES,
} from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import type { ListenAddress, ListenerLimits } from '../config/types.js';
import { listen } from '../net-listen.js';

export interface ProxyServer {
  readonly address: AddressInfo;
  /** Requests being handled right now. */
  readonly inFlight: number;
  /** Stops accepting, lets in-flight requests finish for up to `timeoutMs`, then cuts the rest. */
  close(timeoutMs: number): Promise<void>;
}

/**
 * The proxy listener. One port serves reverse (origin-form) and forward (absolute-form, CONNECT)
 * requests. Node's strict HTTP parser stays on.
 */
export async function startProxyServer(
  address: ListenAddress,
  limits: ListenerLimits,
  onRequest: (req: IncomingMessage, res: ServerResponse) => void,
  onConnect: (req: IncomingMessage, socket: Duplex, head: Buffer) => void,
): Promise<ProxyServer> {
  let inFlight = 0;
  let closing = false;
  let drained: (() => void) | undefined;
  const server: Server = createServer(
    {
      // Slow or oversized clients must not hold connections forever (slowloris).
      maxHeaderSize: limits.maxHeaderSize,
      headersTimeout: limits.headersTimeoutMs,
      requestTimeout: limits.requestTimeoutMs,
      keepAliveTimeout: limits.idleTimeoutMs,
      // Node's strict parser stays on: no insecureHTTPParser, ever.
      insecureHTTPParser: false,
    },
    (req, res) => {
      inFlight++;
      res.once('close', () => {
        inFlight--;
        if (closing) {
          server.closeIdleConnections();
          if (inFlight === 0) drained?.();
        }
      });
      if (closing) res.shouldKeepAlive = false;
      onRequest(req, res);
    },
  );
  server.on('connect', (req, socket, head) => onConnect(req, socket, head));
  server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
    // Malformed requests get a plain 400 and a closed connection, never a crash.
    if (socket.writable && !socket.writableEnded) {
      const status =
        err.code === 'HPE_HEADER_OVERFLOW' ? 431 : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
      socket.end(
        `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`,
      );
    } else socket.destroy();
  });
  const bound = await listen(server, address);

  return {
    address: bound,
    get inFlight() {
      return inFlight;
    },
    close(timeoutMs) {
      closing = true;
      return new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          server.closeAllConnections();
          resolve();
        };
        const timer = setTimeout(done, timeoutMs);
        drained = done;
        server.close();
        server.closeIdleConnections();
        if (inFlight === 0) done();
      });
    },
  };
}
