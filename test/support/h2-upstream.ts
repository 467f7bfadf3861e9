/**
 * A real HTTP/2 upstream (node:http2): h2c with prior knowledge, or h2 over TLS (ALPN `h2` only),
 * that verifies the bearer token against the authorization server's JWKS with `jose`, like
 * upstream.ts does for HTTP/1.1. Every request is recorded with its HTTP version and session.
 *
 * Paths (after the token check):
 * - `/trailers`: a body, then the trailer fields {@link TRAILERS}.
 * - `/held`: answers only once {@link H2Upstream.release} is called.
 * - anything else: a JSON echo of what arrived (body hashed into `bodyBytes`).
 */
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { createRemoteJWKSet, jwtVerify } from 'jose';

export const TRAILERS = { 'x-checksum': 'c0ffee', 'grpc-status': '0' } as const;

export interface H2UpstreamOptions {
  issuer: string;
  jwksUri: string;
  audience: string;
  /** h2 over TLS with this certificate; otherwise h2c. */
  tls?: { cert: string; key: string };
}

export interface H2Request {
  method: string;
  path: string;
  httpVersion: string;
  headers: http2.IncomingHttpHeaders;
  token: string | undefined;
  tokenValid: boolean;
  /** The session (connection) the stream came on, numbered in order of arrival. */
  session: number;
  bodyBytes: number;
}

export interface H2Upstream {
  url: string;
  requests: H2Request[];
  /** Tokens answered `401 invalid_token` from now on, valid signature or not. */
  revoke(token: string): void;
  /** Resolves when a `/held` request has arrived (one per call, in order). */
  nextHeld(): Promise<void>;
  /** Answers every `/held` request waiting so far. */
  release(): void;
  close(): Promise<void>;
}

export async function startH2Upstream(options: H2UpstreamOptions): Promise<H2Upstream> {
  const jwks = createRemoteJWKSet(new URL(options.jwksUri));
  const requests: H2Request[] = [];
  const revoked = new Set<string>();
  const sessions = new WeakMap<http2.Http2Session, number>();
  const held: (() => void)[] = [];
  const heldArrivals: (() => void)[] = [];
  let heldArrived = 0;
  let sessionCount = 0;

  async function handle(req: http2.Http2ServerRequest, res: http2.Http2ServerResponse): Promise<void> {
    const token = /^Bearer +(\S+)$/i.exec(req.headers.authorization ?? '')?.[1];
    let bodyBytes = 0;
    req.on('data', (chunk: Buffer) => {
      bodyBytes += chunk.length;
    });
    const ended = new Promise<void>((resolve) => req.once('end', resolve));
    let tokenValid = false;
    if (token !== undefined && !revoked.has(token)) {
      try {
        await jwtVerify(token, jwks, { issuer: options.issuer, audience: options.audience });
        tokenValid = true;
      } catch {
        tokenValid = false;
      }
    }
    const session = req.stream.session!;
    if (!sessions.has(session)) sessions.set(session, ++sessionCount);
    const path = req.url;
    if (path !== '/held') await ended;
    const record: H2Request = {
      method: req.method,
      path,
      httpVersion: req.httpVersion,
      headers: req.headers,
      token,
      tokenValid,
      session: sessions.get(session)!,
      bodyBytes,
    };
    requests.push(record);
    if (!tokenValid) {
      res
        .writeHead(401, { 'www-authenticate': 'Bearer error="invalid_token"' })
        .end('{"error":"invalid_token"}');
      return;
    }
    if (path === '/trailers') {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('body before trailers');
      res.addTrailers(TRAILERS);
      res.end();
      return;
    }
    if (path === '/held') {
      await new Promise<void>((resolve) => {
        held.push(resolve);
        const waiter = heldArrivals.shift();
        if (waiter) waiter();
        else heldArrived++;
      });
    }
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(record));
  }

  const listener = (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => {
    handle(req, res).catch(() => res.stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR));
  };
  const server = options.tls
    ? http2.createSecureServer({ cert: options.tls.cert, key: options.tls.key, allowHTTP1: false }, listener)
    : http2.createServer(listener);
  const open = new Set<http2.ServerHttp2Session>();
  server.on('session', (s: http2.ServerHttp2Session) => {
    open.add(s);
    s.once('close', () => open.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: options.tls ? `https://localhost:${port}` : `http://127.0.0.1:${port}`,
    requests,
    revoke: (token) => revoked.add(token),
    nextHeld() {
      if (heldArrived > 0) {
        heldArrived--;
        return Promise.resolve();
      }
      return new Promise<void>((resolve) => heldArrivals.push(resolve));
    },
    release() {
      for (const answer of held.splice(0)) answer();
    },
    close() {
      for (const s of open) s.destroy();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
