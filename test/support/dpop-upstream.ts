/**
 * A real resource server for DPoP-bound tokens (RFC 9449 §7), verifying each request the way one
 * must: `Authorization: DPoP <token>` (never Bearer), exactly one `DPoP` proof whose signature
 * verifies with its own `jwk` header, `typ` dpop+jwt, `htm` and `htu` (this server's URL of the
 * request, without query) matching the request, `iat` within a minute, a `jti` never seen before,
 * `ath` the hash of the token; the token itself verified against the authorization server's JWKS,
 * with `cnf.jkt` the proof key's thumbprint. With `requireNonce`, a proof must carry the current
 * nonce, else the answer is `401` `WWW-Authenticate: DPoP error="use_dpop_nonce"` with
 * `DPoP-Nonce` (§9). Every request is recorded with its verdict.
 */
import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  calculateJwkThumbprint,
  createRemoteJWKSet,
  decodeProtectedHeader,
  EmbeddedJWK,
  type JWK,
  type JWTPayload,
  jwtVerify,
} from 'jose';

export interface DpopUpstreamOptions {
  issuer: string;
  jwksUri: string;
  audience: string;
  /** Proofs must carry the current nonce (RFC 9449 §9). */
  requireNonce?: boolean;
  /** Answers every proof, nonce or not, with a challenge and a new nonce: a server never content. */
  alwaysChallenge?: boolean;
}

export interface DpopReceived {
  method: string;
  path: string;
  headers: http.IncomingHttpHeaders;
  /** 'ok', 'use_dpop_nonce', or why the request was refused. */
  verdict: string;
  proof?: { header: Record<string, unknown>; payload: JWTPayload };
  claims?: JWTPayload;
  bodyBytes: number;
}

export interface DpopUpstream {
  url: string;
  requests: DpopReceived[];
  /** The nonce proofs must carry now (with `requireNonce`). */
  readonly nonce: string;
  /**
   * A new nonce, announced in the `DPoP-Nonce` header of the next successful answer (§8.2) and
   * required from then on.
   */
  rotateNonce(): string;
  close(): Promise<void>;
}

const ALGS = ['ES256', 'EdDSA', 'PS256', 'RS256'];

export async function startDpopUpstream(options: DpopUpstreamOptions): Promise<DpopUpstream> {
  const jwks = createRemoteJWKSet(new URL(options.jwksUri));
  const requests: DpopReceived[] = [];
  const seenJti = new Set<string>();
  let nonce = randomBytes(12).toString('base64url');
  /** Announced by the next successful answer, and from then on the only nonce taken. */
  let next: string | undefined;
  let origin = '';

  async function verify(
    req: http.IncomingMessage,
    record: DpopReceived,
  ): Promise<'ok' | 'use_dpop_nonce' | string> {
    const auth = /^DPoP ([A-Za-z0-9\-._~+/]+=*)$/.exec(req.headers.authorization ?? '');
    if (!auth) return req.headers.authorization ? 'not the DPoP scheme' : 'missing token';
    const token = auth[1]!;
    const proofs = req.headersDistinct['dpop'] ?? [];
    if (proofs.length !== 1) return proofs.length === 0 ? 'missing proof' : 'more than one proof';
    const proof = proofs[0]!;
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(proof, EmbeddedJWK, { typ: 'dpop+jwt', algorithms: ALGS }));
    } catch (err) {
      return `proof: ${(err as Error).message}`;
    }
    const header = decodeProtectedHeader(proof) as Record<string, unknown>;
    record.proof = { header, payload };
    const jwk = header['jwk'] as JWK;
    if ('d' in jwk) return 'proof jwk holds a private key';
    if (payload['htm'] !== req.method) return 'htm mismatch';
    const url = new URL(req.url ?? '/', origin);
    if (payload['htu'] !== `${origin}${url.pathname}`) return `htu mismatch: ${String(payload['htu'])}`;
    const iat = payload.iat;
    if (typeof iat !== 'number' || Math.abs(Date.now() / 1000 - iat) > 60) return 'iat out of window';
    if (typeof payload.jti !== 'string' || payload.jti.length === 0) return 'no jti';
    if (seenJti.has(payload.jti)) return 'replayed proof';
    seenJti.add(payload.jti);
    if (payload['ath'] !== createHash('sha256').update(token).digest('base64url')) return 'ath mismatch';
    let claims: JWTPayload;
    try {
      ({ payload: claims } = await jwtVerify(token, jwks, {
        issuer: options.issuer,
        audience: options.audience,
      }));
    } catch (err) {
      return `token: ${(err as Error).message}`;
    }
    record.claims = claims;
    const jkt = (claims['cnf'] as { jkt?: unknown } | undefined)?.jkt;
    if (jkt !== (await calculateJwkThumbprint(jwk))) return 'cnf.jkt is not the proof key';
    if (options.requireNonce && payload['nonce'] !== nonce) return 'use_dpop_nonce';
    return 'ok';
  }

  const server = http.createServer((req, res) => {
    const record: DpopReceived = {
      method: req.method ?? '',
      path: req.url ?? '/',
      headers: req.headers,
      verdict: '',
      bodyBytes: 0,
    };
    req.on('data', (chunk: Buffer) => {
      record.bodyBytes += chunk.length;
    });
    const body = new Promise<void>((resolve) => req.on('end', resolve));
    Promise.all([verify(req, record), body]).then(
      ([checked]) => {
        let verdict = checked;
        if (options.alwaysChallenge && (verdict === 'ok' || verdict === 'use_dpop_nonce')) {
          nonce = randomBytes(12).toString('base64url');
          verdict = 'use_dpop_nonce';
        }
        record.verdict = verdict;
        requests.push(record);
        if (verdict === 'use_dpop_nonce') {
          res.writeHead(401, { 'www-authenticate': 'DPoP error="use_dpop_nonce"', 'dpop-nonce': nonce });
          res.end();
          return;
        }
        if (verdict !== 'ok') {
          res.writeHead(401, { 'www-authenticate': 'DPoP error="invalid_token"' });
          res.end(JSON.stringify({ error: verdict }));
          return;
        }
        const headers: http.OutgoingHttpHeaders = { 'content-type': 'application/json' };
        if (next !== undefined) {
          headers['dpop-nonce'] = next;
          nonce = next;
          next = undefined;
        }
        res.writeHead(200, headers);
        res.end(JSON.stringify({ ok: true, path: record.path, bodyBytes: record.bodyBytes }));
      },
      () => res.destroy(),
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  origin = `http://127.0.0.1:${port}`;
  return {
    url: origin,
    requests,
    get nonce() {
      return nonce;
    },
    rotateNonce() {
      next = randomBytes(12).toString('base64url');
      return next;
    },
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        server.closeAllConnections();
      }),
  };
}
