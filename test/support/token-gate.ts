/**
 * A pass-through in front of a real token endpoint that can hold a token request instead of
 * forwarding it. Tests use it to decide when, and how, a request the proxy started on its own (a
 * background refresh) is answered, without sleeping: everything else goes straight through to
 * the real server, which records it as usual.
 *
 * @example
 * const gate = await startTokenGate(auth.tokenEndpoint); // credential token_endpoint: gate.url
 * const held = await gate.holdNext((form) => form.grant_type === 'refresh_token');
 * held.respond(503, { error: 'temporarily_unavailable' }); // or held.forward()
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface HeldTokenRequest {
  readonly headers: http.IncomingHttpHeaders;
  /** The urlencoded form as the client sent it (last value wins on duplicates). */
  readonly form: Record<string, string>;
  /** Sends the request on to the real token endpoint and relays its answer. */
  forward(): void;
  /** Answers with this status and JSON body; the real server never sees the request. */
  respond(status: number, body: unknown): void;
}

export interface TokenGate {
  /** The token endpoint URL to configure: http://127.0.0.1:PORT/token. */
  readonly url: string;
  /**
   * Resolves with the next token request whose form matches, held until forward() or respond().
   * Requests that arrived before the call are not held.
   */
  holdNext(match?: (form: Record<string, string>) => boolean): Promise<HeldTokenRequest>;
  close(): Promise<void>;
}

type Hold = { match: (form: Record<string, string>) => boolean; resolve: (held: HeldTokenRequest) => void };

export async function startTokenGate(target: string): Promise<TokenGate> {
  const targetUrl = new URL(target);
  const holds: Hold[] = [];

  const forward = (req: http.IncomingMessage, body: Buffer, res: http.ServerResponse) => {
    const headers = { ...req.headers, host: targetUrl.host };
    delete headers.connection;
    const out = http.request(
      {
        host: targetUrl.hostname,
        port: targetUrl.port,
        method: req.method,
        path: targetUrl.pathname,
        headers,
      },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    out.on('error', () => res.destroy());
    out.end(body);
  };

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const form: Record<string, string> = {};
      for (const [k, v] of new URLSearchParams(body.toString('utf8'))) form[k] = v;
      const hold = holds.find((h) => h.match(form));
      if (!hold) {
        forward(req, body, res);
        return;
      }
      holds.splice(holds.indexOf(hold), 1);
      hold.resolve({
        headers: req.headers,
        form,
        forward: () => forward(req, body, res),
        respond: (status, json) => {
          const text = JSON.stringify(json);
          res.writeHead(status, {
            'content-type': 'application/json',
            'content-length': Buffer.byteLength(text),
          });
          res.end(text);
        },
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}${targetUrl.pathname}`,
    holdNext: (match = () => true) => new Promise((resolve) => holds.push({ match, resolve })),
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        server.closeAllConnections();
      }),
  };
}
