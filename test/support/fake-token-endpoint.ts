/**
 * The one fake in the test support: a programmable token endpoint for responses a real authorization
 * server will not produce on demand (malformed JSON, odd `expires_in` values, 5xx, hangs, resets).
 * Everything else should be tested against the real server in `auth-server.ts`.
 *
 * Every path answers with the current behaviour; {@link FakeTokenEndpoint.url} is the conventional one.
 */
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { RecordedTokenRequest } from './auth-server.js';

export type { RecordedTokenRequest } from './auth-server.js';

export type Behavior =
  | {
      kind: 'token';
      /** A fixed token; by default every request gets a fresh `fake-<counter>-<random>`. */
      accessToken?: string;
      /** Default 300. A string is sent as a JSON string, as some real servers do. */
      expiresIn?: number | string;
      /** Default 'Bearer'. */
      tokenType?: string;
      /** Merged into the JSON response (e.g. scope, refresh_token, or overrides). */
      extra?: object;
      /**
       * Interim responses sent first, in this order: `100` an unsolicited `100 Continue`, `103`
       * Early Hints with a Link (RFC 9110 §15.2: a client must take any number of them).
       */
      interim?: readonly (100 | 103)[];
    }
  | { kind: 'json'; status: number; body: unknown; headers?: Record<string, string> }
  | { kind: 'raw'; status: number; body: string; contentType?: string }
  /**
   * An OAuth error whose `error_description` echoes the request as some servers do: the
   * Authorization header, the raw form body and the decoded form as JSON, in that order; or
   * only the value of form field `field`.
   */
  | { kind: 'echo'; status: number; field?: string }
  /** Reads the request, then never answers. */
  | { kind: 'hang' }
  /** Reads the request, then destroys the connection with a TCP RST. */
  | { kind: 'reset' };

export interface FakeTokenEndpoint {
  /** The full token URL, e.g. http://127.0.0.1:PORT/oauth2/v1/token. */
  url: string;
  /** Every request, recorded before it is answered; status is 0 for 'hang' and 'reset'. */
  requests: RecordedTokenRequest[];
  /** Every access_token returned by a 'token' behaviour. */
  issuedTokens: string[];
  setBehavior(b: Behavior): void;
  close(): Promise<void>;
}

export const FAKE_TOKEN_PATH = '/oauth2/v1/token';

function readBody(req: http.IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

export async function startFakeTokenEndpoint(
  initial: Behavior = { kind: 'token' },
): Promise<FakeTokenEndpoint> {
  let behavior = initial;
  let counter = 0;
  const requests: RecordedTokenRequest[] = [];
  const issuedTokens: string[] = [];

  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const body = await readBody(req);
    const form: Record<string, string> = {};
    for (const [k, v] of new URLSearchParams(body.toString('utf8'))) form[k] = v;
    const record: RecordedTokenRequest = { headers: { ...req.headers }, form, status: 0 };
    requests.push(record);
    // Captured now so a setBehavior() racing with this request cannot change its answer halfway.
    const b = behavior;

    switch (b.kind) {
      case 'token': {
        const accessToken = b.accessToken ?? `fake-${++counter}-${randomBytes(8).toString('hex')}`;
        issuedTokens.push(accessToken);
        record.status = 200;
        for (const status of b.interim ?? []) {
          if (status === 100) res.writeContinue();
          else res.writeEarlyHints({ link: '</jwks.json>; rel=preload' });
        }
        res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' });
        res.end(
          JSON.stringify({
            access_token: accessToken,
            token_type: b.tokenType ?? 'Bearer',
            expires_in: b.expiresIn ?? 300,
            ...b.extra,
          }),
        );
        return;
      }
      case 'json':
        record.status = b.status;
        res.writeHead(b.status, { 'content-type': 'application/json', ...b.headers });
        res.end(JSON.stringify(b.body));
        return;
      case 'echo':
        record.status = b.status;
        res.writeHead(b.status, { 'content-type': 'application/json' });
        res.end(
          JSON.stringify({
            error: 'invalid_request',
            error_description:
              b.field !== undefined
                ? (form[b.field] ?? '')
                : `authorization=${req.headers.authorization ?? ''} body=${body.toString('utf8')} form=${JSON.stringify(form)}`,
          }),
        );
        return;
      case 'raw':
        record.status = b.status;
        res.writeHead(b.status, { 'content-type': b.contentType ?? 'text/plain' });
        res.end(b.body);
        return;
      case 'hang':
        return;
      case 'reset':
        req.socket.resetAndDestroy();
        return;
    }
  }

  const server = http.createServer((req, res) => {
    handle(req, res).catch(() => res.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}${FAKE_TOKEN_PATH}`,
    requests,
    issuedTokens,
    setBehavior(b: Behavior) {
      behavior = b;
    },
    close() {
      return new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        // Hanging requests hold their sockets open; close() alone would wait for them forever.
        server.closeAllConnections();
      });
    },
  };
}
