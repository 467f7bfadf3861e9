import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { ListenAddress, ListenerLimits } from '../config/types.js';
import { listen } from '../net-listen.js';
import { createH2Listener, sniffPreface } from './h2-listener.js';
import { answerAndClose } from './raw-response.js';

/** Events of the listener that are counted or logged elsewhere. */
export interface ProxyServerEvents {
  /** A connection was closed at accept because `limits.max_connections` were open. */
  connectionDropped?(): void;
}

export interface ProxyServer {
  readonly address: AddressInfo;
  /** Requests being handled right now. */
  readonly inFlight: number;
  /** Stops accepting, lets in-flight requests finish for up to `timeoutMs`, then cuts the rest. */
  close(timeoutMs: number): Promise<void>;
  /**
   * A reload's new limits, for connections and requests from now on. `max_header_size` and
   * `max_headers` are not among them: HTTP/2 fixed them in its SETTINGS (reload/plan.ts).
   */
  setLimits(next: ListenerLimits): void;
}

/**
 * The proxy listener. One port serves reverse (origin-form) and forward (absolute-form, CONNECT)
 * requests. Node's strict HTTP parser stays on.
 */
export async function startProxyServer(
  address: ListenAddress,
  initialLimits: ListenerLimits,
  onRequest: (req: IncomingMessage, res: ServerResponse) => void,
  onConnect: (req: IncomingMessage, socket: Duplex, head: Buffer, serve: (socket: Duplex) => void) => void,
  onUpgrade: (req: IncomingMessage, socket: Duplex, head: Buffer, serve: (socket: Duplex) => void) => void,
  events: ProxyServerEvents = {},
): Promise<ProxyServer> {
  // A copy the HTTP/2 listener and the preface sniffer read per connection: a reload updates it.
  const limits: { -readonly [K in keyof ListenerLimits]: ListenerLimits[K] } = { ...initialLimits };
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
      // Node checks the two timeouts above only this often (30 s by default), so a slow client
      // would otherwise hold its connection up to 30 s past `headers_timeout`.
      connectionsCheckingInterval: checkingInterval(limits),
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
  // Beyond this many open connections, new ones are closed at accept ('drop'), so a flood of
  // clients cannot use up the file descriptors that token and upstream requests need.
  server.maxConnections = limits.maxConnections;
  // One more than allowed, so a request with too many is seen (and refused with 431) instead of
  // silently losing the rest of its headers, as Node's default (2000 entries) would.
  server.maxHeadersCount = limits.maxHeaders + 1;
  server.on('drop', () => events.connectionDropped?.());
  // HTTP/2 on the same port (h2c with prior knowledge, RFC 9113 §3.3, told by its preface): its
  // streams go to the request listener above, counted and drained like HTTP/1.1 requests.
  const h2 = createH2Listener(limits, (req, res) => server.emit('request', req, res));
  const [http1] = server.listeners('connection') as ((socket: Duplex) => void)[];
  server.removeAllListeners('connection');
  server.on('connection', (socket: Socket) =>
    sniffPreface(socket, limits.headersTimeoutMs, (isH2) =>
      isH2 ? h2.serve(socket) : http1!.call(server, socket),
    ),
  );
  // A tunnel the proxy terminates (tls_intercept) comes back as a connection of this listener:
  // same limits, same handler, and closed with the others on shutdown. It says by ALPN (RFC 7301)
  // which protocol it speaks, so it is not sniffed.
  const serve = (socket: Duplex) =>
    (socket as { alpnProtocol?: string | false }).alpnProtocol === 'h2'
      ? h2.serve(socket)
      : http1!.call(server, socket);
  server.on('connect', (req, socket, head) => onConnect(req, socket, head, serve));
  // Connections Node handed over for an upgrade (websocket.ts) are no longer the server's: they
  // are kept here so that shutdown closes them with the rest.
  const upgraded = new Set<Duplex>();
  server.on('upgrade', (req, socket, head) => {
    upgraded.add(socket);
    socket.once('close', () => upgraded.delete(socket));
    onUpgrade(req, socket, head, serve);
  });
  // RFC 9110 §10.1.1: left alone, Node answers `Expect` itself (100 Continue before the request
  // is even routed, or a bare 417); as plain requests the handler answers it (expect.ts).
  server.on('checkContinue', (req, res) => server.emit('request', req, res));
  server.on('checkExpectation', (req, res) => server.emit('request', req, res));
  server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
    // Malformed or too slow requests get a plain status and a closed connection, never a crash.
    const status =
      err.code === 'HPE_HEADER_OVERFLOW' ? 431 : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
    answerAndClose(socket, status);
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
          h2.destroy();
          for (const socket of upgraded) socket.destroy();
          resolve();
        };
        const timer = setTimeout(done, timeoutMs);
        drained = done;
        server.close();
        h2.drain();
        server.closeIdleConnections();
        if (inFlight === 0) done();
      });
    },
    setLimits(next) {
      Object.assign(limits, next);
      // Node reads these per connection and per request; its timer that checks the two timeouts
      // keeps the interval set at start (at most a second, see checkingInterval).
      server.headersTimeout = next.headersTimeoutMs;
      server.requestTimeout = next.requestTimeoutMs;
      server.keepAliveTimeout = next.idleTimeoutMs;
      server.maxConnections = next.maxConnections;
    },
  };
}

/** Often enough that the headers and request timeouts fire close to their values. */
function checkingInterval(limits: ListenerLimits): number {
  const shortest = Math.min(
    limits.headersTimeoutMs,
    limits.requestTimeoutMs > 0 ? limits.requestTimeoutMs : Number.POSITIVE_INFINITY,
  );
  return Math.min(1_000, Math.max(50, Math.floor(shortest / 4)));
}
