import {
  TokenEndpointTimeoutError,
  TokenEndpointUnreachableError,
  type TokenError,
  TokenResponseInvalidError,
} from '../errors.js';
import type { FileSet } from '../files/live-file.js';
import { interimTolerantConnector } from '../interim-responses.js';
import { readCapped } from '../read-capped.js';
import type { TlsClient } from '../tls.js';
import { liveTlsOptions } from '../tls.js';
import { Agent, type Dispatcher, request } from '../undici.js';
import { parseTokenResponse } from './parse-response.js';
import { redactSecrets, requestSecrets } from './redact.js';
import type { Token } from './token.js';

export interface TokenEndpointOptions {
  readonly credential: string;
  readonly url: URL;
  readonly timeoutMs: number;
  readonly connectTimeoutMs?: number;
  readonly tls: TlsClient;
  /** Where the client certificate and key are re-read from when they rotate. */
  readonly files: FileSet;
  readonly maxResponseBytes: number;
  readonly defaultLifetimeMs: number;
  readonly maxLifetimeMs: number;
  readonly now?: () => number;
}

export interface PostOptions {
  readonly extraTokenTypes?: readonly string[];
  /** The only `token_type` accepted (lower-case), e.g. `dpop` for a DPoP-bound token. */
  readonly tokenType?: string;
  readonly deadline?: number;
  /** Given the `DPoP-Nonce` header of the response, success or error (RFC 9449 §8). */
  readonly onDpopNonce?: (value: string | string[] | undefined) => void;
}

/** One POST to a token endpoint: form in, {@link Token} or a typed {@link TokenError} out. */
export interface TokenEndpoint {
  post(
    form: URLSearchParams,
    headers: Record<string, string>,
    /** `deadline`: epoch ms by which the whole exchange must be done (default: now + timeout). */
    opts?: PostOptions,
  ): Promise<Token>;
  close(): Promise<void>;
}

/**
 * A token endpoint reached over its own keep-alive connection pool, so token traffic never
 * competes with proxied traffic for sockets. The whole exchange (connect, send, headers, body)
 * is bounded by one deadline.
 */
export function createTokenEndpoint(opts: TokenEndpointOptions): TokenEndpoint {
  const tlsOptions = liveTlsOptions(opts.tls, opts.files);
  let connect = tlsOptions();
  const connectTimeout = opts.connectTimeoutMs ?? opts.timeoutMs;
  let dispatcher: Dispatcher = newAgent(connect, connectTimeout);
  const now = opts.now ?? Date.now;

  async function post(
    form: URLSearchParams,
    headers: Record<string, string>,
    postOpts: PostOptions = {},
  ): Promise<Token> {
    const current = tlsOptions();
    if (current !== connect) {
      // A rotated client certificate needs new connections; the old ones finish their work.
      const old = dispatcher;
      connect = current;
      dispatcher = newAgent(connect, connectTimeout);
      old.close().catch(() => {});
    }
    const budget = postOpts.deadline !== undefined ? postOpts.deadline - now() : opts.timeoutMs;
    const signal = AbortSignal.timeout(Math.max(1, Math.min(budget, opts.timeoutMs)));
    // The lifetime counts from before the request: the server's clock started it no later.
    const startedAt = now();
    let status: number;
    let contentType: string | undefined;
    let retryAfter: string | undefined;
    let body: string;
    try {
      const res = await request(opts.url, {
        dispatcher,
        method: 'POST',
        headers: {
          ...headers,
          'content-type': 'application/x-www-form-urlencoded',
          accept: 'application/json',
        },
        body: form.toString(),
        signal,
      });
      status = res.statusCode;
      const ct = res.headers['content-type'];
      contentType = Array.isArray(ct) ? ct[0] : ct;
      const ra = res.headers['retry-after'];
      retryAfter = Array.isArray(ra) ? ra[0] : ra;
      postOpts.onDpopNonce?.(res.headers['dpop-nonce']);
      body = await readCapped(
        res.body,
        opts.maxResponseBytes,
        () =>
          new TokenResponseInvalidError(
            opts.credential,
            `token response is larger than ${opts.maxResponseBytes} bytes`,
          ),
      );
    } catch (err) {
      throw classify(err, opts, signal);
    }
    return parseTokenResponse(
      { status, contentType, body, retryAfter },
      {
        ...opts,
        ...postOpts,
        now: startedAt,
        // Here the request's form and headers are known: servers echo them in their errors.
        redact: (text) => redactSecrets(text, requestSecrets(form, headers)),
      },
    );
  }

  // destroy, not close: a shutdown must not wait for a token request that may take its whole timeout.
  return { post, close: () => dispatcher.destroy() };
}

function newAgent(connect: ReturnType<ReturnType<typeof liveTlsOptions>>, timeout: number): Dispatcher {
  return new Agent({
    keepAliveTimeout: 30_000,
    connections: 4,
    // An identity provider's unsolicited `100 Continue` must not fail the token request (RFC 9110
    // §15.2); the filter doing that needs one request at a time per connection.
    connect: interimTolerantConnector({ ...connect, timeout }),
    pipelining: 1,
  });
}

function classify(err: unknown, opts: TokenEndpointOptions, signal: AbortSignal): TokenError {
  if (err instanceof TokenResponseInvalidError) return err;
  const e = err as { name?: string; code?: string; message?: string };
  const where = `${opts.url.origin}${opts.url.pathname}`;
  if (
    signal.aborted ||
    e.name === 'TimeoutError' ||
    e.code === 'UND_ERR_HEADERS_TIMEOUT' ||
    e.code === 'UND_ERR_BODY_TIMEOUT'
  ) {
    return new TokenEndpointTimeoutError(
      opts.credential,
      `token endpoint ${where} did not answer within ${opts.timeoutMs} ms`,
      { cause: err },
    );
  }
  const reason = e.code ?? e.name ?? 'error';
  return new TokenEndpointUnreachableError(
    opts.credential,
    `token endpoint ${where} is unreachable (${reason}${e.message ? `: ${e.message}` : ''})`,
    { cause: err },
  );
}
