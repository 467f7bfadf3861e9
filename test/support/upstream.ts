/**
 * A real upstream (resource server) that verifies the bearer token it receives against the authorization
 * server's JWKS with `jose`, the way a production API would. Every request is recorded, including the
 * rejected ones, so tests can assert what the proxy actually forwarded.
 *
 * Routes (after the token check):
 * - `/hang`: never answers; {@link Upstream.nextAbort} resolves when the client gives up.
 * - `/download?bytes=N[&length=1]`: streams N bytes of {@link patternBytes}, chunked unless `length=1`.
 * - anything else: a JSON echo of what arrived.
 *
 * With `tls.clientCa` it is an mTLS resource server: the TLS handshake requires a client certificate from
 * that CA, and a certificate-bound token (RFC 8705 §3, `cnf.x5t#S256`) is only valid on a connection
 * presenting that very certificate. A bound token is checked this way on any TLS upstream.
 */
import { createHash, type X509Certificate } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { TLSSocket } from 'node:tls';
import { createRemoteJWKSet, type JWTPayload, jwtVerify } from 'jose';
import { subjectDn } from './test-ca.js';

export interface UpstreamOptions {
  issuer: string;
  jwksUri: string;
  audience: string;
  tls?: {
    cert: string;
    key: string;
    /**
     * CA certificate(s) (PEM) for client certificates. When set, the handshake requires a client
     * certificate they issued (requestCert + rejectUnauthorized): connections without one never get here.
     */
    clientCa?: string | string[];
  };
  /** When false, requests without a valid token are served too (still recorded with tokenValid: false). */
  requireToken?: boolean;
}

export interface ReceivedRequest {
  method: string;
  /** Path and query exactly as received. */
  path: string;
  headers: http.IncomingHttpHeaders;
  rawHeaders: string[];
  tokenValid: boolean;
  /** Why the token was refused: 'missing', the jose error message, or the certificate binding mismatch. */
  tokenError?: string;
  claims?: JWTPayload;
  /** The RFC 4514 subject of the TLS client certificate, when the connection presented one. */
  clientCertSubject?: string;
  /** Its SHA-256 thumbprint, base64url: what a bound token's `cnf.x5t#S256` must equal. */
  clientCertThumbprint?: string;
  bodyBytes: number;
  bodySha256: string;
}

export interface Upstream {
  /** http://127.0.0.1:PORT, or https://localhost:PORT with tls so the certificate name matches. */
  url: string;
  port: number;
  requests: ReceivedRequest[];
  close(): Promise<void>;
  /**
   * Resolves when a `/hang` request is aborted by its client. Aborts are queued, so an abort that happened
   * before the call is not lost: each call consumes one.
   */
  nextAbort(): Promise<void>;
}

export interface EchoResponse {
  method: string;
  path: string;
  headers: http.IncomingHttpHeaders;
  bodyBytes: number;
  bodySha256: string;
  claims?: JWTPayload;
}

const PATTERN_PERIOD = 251;
const CHUNK_SIZE = 64 * 1024;
// 251 is prime, so consecutive 64 KiB chunks differ: a dropped or repeated chunk changes the hash.
const PATTERN = Buffer.from(
  Array.from({ length: CHUNK_SIZE + PATTERN_PERIOD }, (_, i) => i % PATTERN_PERIOD),
);

/** The bytes `/download` sends at [offset, offset + length); length must be at most 64 KiB. */
export function patternBytes(offset: number, length: number): Buffer {
  if (length > CHUNK_SIZE) throw new RangeError(`length must be <= ${CHUNK_SIZE}`);
  const start = offset % PATTERN_PERIOD;
  return PATTERN.subarray(start, start + length);
}

/** The sha256 (hex) of the first `bytes` bytes `/download` sends. */
export function patternSha256(bytes: number): string {
  const hash = createHash('sha256');
  for (let offset = 0; offset < bytes; offset += CHUNK_SIZE) {
    hash.update(patternBytes(offset, Math.min(CHUNK_SIZE, bytes - offset)));
  }
  return hash.digest('hex');
}

function thumbprint(cert: X509Certificate): string {
  return createHash('sha256').update(cert.raw).digest('base64url');
}

function bearerToken(header: string | undefined): string | undefined {
  const match = /^Bearer +([A-Za-z0-9\-._~+/]+=*) *$/i.exec(header ?? '');
  return match?.[1];
}

/** Hashes the body as it streams in, so multi-megabyte uploads never sit in memory. */
function consumeBody(req: http.IncomingMessage): Promise<{ bodyBytes: number; bodySha256: string }> {
  return new Promise((resolve, reject) => {
    const hash = createHash('sha256');
    let bodyBytes = 0;
    req.on('data', (chunk: Buffer) => {
      bodyBytes += chunk.length;
      hash.update(chunk);
    });
    req.on('end', () => resolve({ bodyBytes, bodySha256: hash.digest('hex') }));
    req.on('error', reject);
  });
}

async function streamDownload(res: http.ServerResponse, bytes: number, withLength: boolean): Promise<void> {
  res.statusCode = 200;
  res.setHeader('content-type', 'application/octet-stream');
  if (withLength) res.setHeader('content-length', String(bytes));
  for (let offset = 0; offset < bytes && !res.destroyed; offset += CHUNK_SIZE) {
    if (!res.write(patternBytes(offset, Math.min(CHUNK_SIZE, bytes - offset)))) {
      await new Promise<void>((resolve) => {
        // 'close' as well, or a client that disconnects mid-download would leave this waiting forever.
        const done = () => {
          res.off('drain', done);
          res.off('close', done);
          resolve();
        };
        res.on('drain', done);
        res.on('close', done);
      });
    }
  }
  if (!res.destroyed) res.end();
}

export async function startUpstream(options: UpstreamOptions): Promise<Upstream> {
  const requireToken = options.requireToken ?? true;
  // One key set per upstream: jose caches the fetched keys, so verification is a local signature check.
  const jwks = createRemoteJWKSet(new URL(options.jwksUri));
  const requests: ReceivedRequest[] = [];
  let unclaimedAborts = 0;
  const abortWaiters: (() => void)[] = [];

  const onAbort = () => {
    const waiter = abortWaiters.shift();
    if (waiter) waiter();
    else unclaimedAborts++;
  };

  async function verify(
    req: http.IncomingMessage,
    cert: X509Certificate | undefined,
  ): Promise<{ claims: JWTPayload } | { error: string }> {
    const token = bearerToken(req.headers.authorization);
    if (!token) return { error: 'missing' };
    let claims: JWTPayload;
    try {
      ({ payload: claims } = await jwtVerify(token, jwks, {
        issuer: options.issuer,
        audience: options.audience,
      }));
    } catch (err) {
      return { error: err instanceof Error ? err.message : String(err) };
    }
    // RFC 8705 §3.1: a bound token is only good on a connection with the certificate it was bound to.
    const bound = (claims['cnf'] as Record<string, unknown> | undefined)?.['x5t#S256'];
    if (bound !== undefined && bound !== (cert ? thumbprint(cert) : undefined)) {
      return { error: 'certificate-bound token without the matching client certificate' };
    }
    return { claims };
  }

  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://upstream');
    const path = req.url ?? '/';

    if (url.pathname === '/hang') {
      res.on('close', () => {
        if (!res.writableFinished) onAbort();
      });
    }

    const cert = req.socket instanceof TLSSocket ? req.socket.getPeerX509Certificate() : undefined;
    const [verdict, body] = await Promise.all([verify(req, cert), consumeBody(req)]);
    const claims = 'claims' in verdict ? verdict.claims : undefined;
    const record: ReceivedRequest = {
      method: req.method ?? '',
      path,
      headers: req.headers,
      rawHeaders: req.rawHeaders,
      tokenValid: claims !== undefined,
      ...('error' in verdict ? { tokenError: verdict.error } : {}),
      ...(claims ? { claims } : {}),
      ...(cert ? { clientCertSubject: subjectDn(cert), clientCertThumbprint: thumbprint(cert) } : {}),
      ...body,
    };
    requests.push(record);

    if (!claims && requireToken) {
      res.writeHead(401, {
        'www-authenticate': 'Bearer error="invalid_token"',
        'content-type': 'application/json',
      });
      res.end(JSON.stringify({ error: 'invalid_token' }));
      return;
    }

    if (url.pathname === '/hang') return;

    if (url.pathname === '/download') {
      const bytes = Number(url.searchParams.get('bytes') ?? '0');
      if (!Number.isSafeInteger(bytes) || bytes < 0) {
        res.writeHead(400, { 'content-type': 'text/plain' }).end('bytes must be a non-negative integer');
        return;
      }
      await streamDownload(res, bytes, url.searchParams.get('length') === '1');
      return;
    }

    const echo: EchoResponse = {
      method: record.method,
      path,
      headers: req.headers,
      bodyBytes: body.bodyBytes,
      bodySha256: body.bodySha256,
      ...(claims ? { claims } : {}),
    };
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify(echo));
  }

  const listener = (req: http.IncomingMessage, res: http.ServerResponse) => {
    handle(req, res).catch(() => res.destroy());
  };
  const tls = options.tls;
  const server: http.Server | https.Server = tls
    ? https.createServer(
        {
          cert: tls.cert,
          key: tls.key,
          ...(tls.clientCa !== undefined
            ? { ca: tls.clientCa, requestCert: true, rejectUnauthorized: true }
            : {}),
        },
        listener,
      )
    : http.createServer(listener);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  return {
    url: options.tls ? `https://localhost:${port}` : `http://127.0.0.1:${port}`,
    port,
    requests,
    nextAbort() {
      if (unclaimedAborts > 0) {
        unclaimedAborts--;
        return Promise.resolve();
      }
      return new Promise<void>((resolve) => abortWaiters.push(resolve));
    },
    close() {
      return new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        // /hang responses and keep-alive sockets would otherwise keep close() pending.
        server.closeAllConnections();
      });
    },
  };
}
