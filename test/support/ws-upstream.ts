/**
 * A real WebSocket upstream (the `ws` package's server) that verifies the bearer token of every
 * opening handshake against the authorization server's JWKS with `jose`, as a production API
 * would. Each handshake is recorded, refused ones included, so tests can assert what the proxy
 * forwarded. Accepted connections echo every message back (same type) unless a test takes them
 * over through {@link WsUpstream.nextConnection}.
 *
 * {@link WsUpstream.answer} lets a test answer a handshake itself (e.g. 401 for the first token,
 * 404 for a path) with any status, headers and body: what an upstream may send instead of 101.
 */
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { createRemoteJWKSet, type JWTPayload, jwtVerify } from 'jose';
import { type WebSocket, WebSocketServer } from 'ws';

export interface WsHandshake {
  /** Path and query exactly as received. */
  path: string;
  headers: http.IncomingHttpHeaders;
  /** The bearer token sent, if any. */
  token: string | undefined;
  tokenValid: boolean;
  tokenError?: string;
  claims?: JWTPayload;
}

/** An answer instead of the handshake's 101. */
export interface WsRefusal {
  status: number;
  headers?: Record<string, string>;
  body?: string;
}

/** One accepted connection: the server side, its raw socket and its handshake. */
export interface WsConnection {
  ws: WebSocket;
  socket: Socket;
  handshake: WsHandshake;
}

export interface WsUpstream {
  /** http://127.0.0.1:PORT, or https://localhost:PORT with tls. */
  url: string;
  handshakes: WsHandshake[];
  /**
   * Decides a verified handshake's fate: a refusal, or undefined to accept (the default). A
   * handshake whose token does not verify is refused with 401 `invalid_token` before this runs.
   */
  answer: (handshake: WsHandshake) => WsRefusal | undefined;
  /** The next accepted connection (one already accepted and not yet taken comes first). */
  nextConnection(): Promise<WsConnection>;
  close(): Promise<void>;
}

export async function startWsUpstream(options: {
  issuer: string;
  jwksUri: string;
  audience: string;
  tls?: { cert: string; key: string };
  /** Connections are echoed unless false. */
  echo?: boolean;
  /** When false, handshakes without a valid token are accepted too (still recorded as such). */
  requireToken?: boolean;
}): Promise<WsUpstream> {
  const jwks = createRemoteJWKSet(new URL(options.jwksUri));
  const handshakes: WsHandshake[] = [];
  const accepted: WsConnection[] = [];
  const waiting: ((c: WsConnection) => void)[] = [];
  const sockets = new Set<Socket>();
  const wss = new WebSocketServer({ noServer: true });

  async function verify(req: http.IncomingMessage): Promise<WsHandshake> {
    const token = /^Bearer +(\S+)$/i.exec(req.headers.authorization ?? '')?.[1];
    const base = { path: req.url ?? '/', headers: req.headers, token };
    if (!token) return { ...base, tokenValid: false, tokenError: 'missing' };
    try {
      const { payload } = await jwtVerify(token, jwks, {
        issuer: options.issuer,
        audience: options.audience,
      });
      return { ...base, tokenValid: true, claims: payload };
    } catch (err) {
      return { ...base, tokenValid: false, tokenError: (err as Error).message };
    }
  }

  const onRequest = (_req: http.IncomingMessage, res: http.ServerResponse) => {
    res.writeHead(426, { upgrade: 'websocket' }).end();
  };
  const server: http.Server | https.Server = options.tls
    ? https.createServer({ cert: options.tls.cert, key: options.tls.key }, onRequest)
    : http.createServer(onRequest);
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  server.on('secureConnection', (s: Socket) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });

  const upstream: WsUpstream = {
    url: '',
    handshakes,
    answer: () => undefined,
    nextConnection() {
      const ready = accepted.shift();
      if (ready) return Promise.resolve(ready);
      return new Promise((resolve) => waiting.push(resolve));
    },
    close() {
      for (const s of sockets) s.destroy();
      wss.close();
      return new Promise((resolve, reject) => server.close((err) => (err ? reject(err) : resolve())));
    },
  };

  server.on('upgrade', (req: http.IncomingMessage, socket: Socket, head: Buffer) => {
    socket.on('error', () => socket.destroy());
    verify(req).then((handshake) => {
      handshakes.push(handshake);
      const refusal: WsRefusal | undefined =
        handshake.tokenValid || options.requireToken === false
          ? upstream.answer(handshake)
          : {
              status: 401,
              headers: { 'www-authenticate': 'Bearer error="invalid_token"' },
              body: '{"error":"invalid_token"}',
            };
      if (refusal) {
        const body = refusal.body ?? '';
        const lines = Object.entries({
          ...refusal.headers,
          'content-length': String(Buffer.byteLength(body)),
        })
          .map(([k, v]) => `${k}: ${v}\r\n`)
          .join('');
        socket.end(
          `HTTP/1.1 ${refusal.status} ${http.STATUS_CODES[refusal.status]}\r\n${lines}connection: close\r\n\r\n${body}`,
        );
        return;
      }
      wss.handleUpgrade(req, socket, head, (ws) => {
        if (options.echo !== false) {
          ws.on('message', (data, isBinary) => ws.send(data as Buffer, { binary: isBinary }));
        }
        const connection = { ws, socket, handshake };
        const waiter = waiting.shift();
        if (waiter) waiter(connection);
        else accepted.push(connection);
      });
    });
  });

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  upstream.url = options.tls ? `https://localhost:${port}` : `http://127.0.0.1:${port}`;
  return upstream;
}
