import { type IncomingHttpHeaders, type IncomingMessage, ServerResponse, STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { RouteConfig } from '../config/types.js';
import type { RouteTokens } from '../credentials/credentials.js';
import { BadRequestError, UpgradeNotSupportedError } from '../errors.js';
import type { Token } from '../token-endpoint/token.js';
import { dpopRequestHeaders } from './dpop-headers.js';
import { asKnown, sendError } from './error-response.js';
import { unmetExpectation } from './expect.js';
import {
  CLIENT_CLOSED,
  type ForwardObserver,
  type ForwardOutcome,
  forwardUpgrade,
  hasBody,
} from './forward.js';
import { type ProxyDeps, refusal, refuseUnmatched, upstreamPath } from './handler.js';
import { downstreamResponseHeaders, upstreamRequestHeaders } from './headers.js';
import { endAndClose } from './raw-response.js';
import { refusesToken } from './replay.js';
import { assignRequestId } from './request-id.js';
import { createRequestLog, type RequestLog } from './request-log.js';
import { splice } from './splice.js';
import { authority, type ParsedTarget, parseTarget, refusedSpelling } from './target.js';
import type { Upstreams } from './upstreams.js';

/** RFC 6455 §4.1: the opening handshake asks for `Upgrade: websocket`, in any letter case. */
export function isWebSocketUpgrade(req: IncomingMessage): boolean {
  const upgrade = req.headers.upgrade;
  return upgrade !== undefined && /\bwebsocket\b/i.test(upgrade);
}

/**
 * WebSocket proxying, on the connection Node hands over for an `Upgrade: websocket` request. The
 * request is checked, routed and given its token exactly as a plain request (handler.ts); the
 * upstream's `101` is relayed and the two connections are spliced until either side closes. Any
 * other answer (an error of ours, or the upstream's non-101) is an ordinary HTTP response on a
 * connection that is then closed: the same JSON errors, the same one retry after a refused token.
 */
export function createWebSocketHandler(
  deps: ProxyDeps,
): (req: IncomingMessage, socket: Duplex, head: Buffer) => void {
  const { config, credentials, upstreams, metrics, logger, router: route } = deps;
  const ctx: Context = {
    upstreams,
    log: createRequestLog(metrics, logger),
    logger,
    // Past the handshake no HTTP timeout applies to the connection any more (Node let go of it).
    idleMs: config.limits.tunnelIdleTimeoutMs,
    upstreamDuration: (name) => metrics.upstreamDuration.labels({ route: name }),
  };
  const maxRawHeaders = 2 * config.limits.maxHeaders;

  return (req, socket, head) => {
    const started = performance.now();
    const client = socket as Socket;
    client.on('error', () => client.destroy());
    const res = new HandedOverResponse(req, client);
    const refused = refusal(req, maxRawHeaders) ?? unmetExpectation(req) ?? bodyRefusal(req);
    assignRequestId(req);
    if (refused) {
      ctx.log.done(req, started, 'none', sendError(res, refused));
      return;
    }
    let target: ParsedTarget;
    try {
      target = parseTarget(req);
    } catch (err) {
      ctx.log.done(req, started, 'none', sendError(res, asKnown(err)));
      return;
    }
    const host = target.forward ? authority(target) : undefined;
    const matched = route(target);
    const loose = refusedSpelling(target, matched);
    if (loose !== undefined) {
      ctx.log.done(req, started, matched?.name ?? 'none', sendError(res, new BadRequestError(loose)), host);
      return;
    }
    if (!matched) {
      const status = refuseUnmatched(config, req, res, target);
      if (status !== undefined) {
        ctx.log.done(req, started, 'none', status, host);
        return;
      }
      new WebSocketUpgrade(ctx, req, res, client, head, started, host, undefined).passThrough(target);
      return;
    }
    if (matched.upstreamProtocol === 'http2') {
      const err = new UpgradeNotSupportedError(
        `route "${matched.name}" speaks HTTP/2 to its upstream (upstream_protocol: http2), which carries no WebSocket upgrade; give WebSockets a route with upstream_protocol: http1`,
      );
      ctx.log.done(req, started, matched.name, sendError(res, err, { route: matched.name }), host);
      return;
    }
    const routed = { config: matched, tokens: credentials.forRoute(matched) };
    new WebSocketUpgrade(ctx, req, res, client, head, started, host, routed).start(target.path);
  };
}

interface Context {
  readonly upstreams: Upstreams;
  readonly log: RequestLog;
  readonly logger: ProxyDeps['logger'];
  readonly idleMs: number;
  upstreamDuration(route: string): { observe(seconds: number): void };
}

interface Routed {
  readonly config: RouteConfig;
  readonly tokens: RouteTokens;
}

/**
 * One upgrade request, from its token to a spliced connection or an answer. The token comes as
 * for a body-less plain request (handler.ts RoutedRequest): cached or awaited, refetched once
 * when the upstream refuses it.
 */
class WebSocketUpgrade implements ForwardObserver {
  #token: Token | undefined;
  #retried = false;
  #path = '';
  #sentAt = 0;

  constructor(
    readonly ctx: Context,
    readonly req: IncomingMessage,
    readonly res: HandedOverResponse,
    readonly client: Socket,
    readonly head: Buffer,
    readonly started: number,
    readonly host: string | undefined,
    readonly route: Routed | undefined,
  ) {}

  /** `unmatched: passthrough`: to whatever the client named, without a token. */
  passThrough(target: ParsedTarget): void {
    forwardUpgrade(
      this.ctx.upstreams.passthrough,
      this.req,
      this.res,
      {
        origin: `${target.scheme}://${authority(target)}`,
        path: target.path,
        headers: upstreamRequestHeaders(this.req.rawHeaders, undefined),
        protocol: 'websocket',
      },
      this,
    );
  }

  start(path: string): void {
    this.#path = path;
    this.#withToken().catch((err: unknown) => this.ctx.log.failed(this.res, err));
  }

  async #withToken(): Promise<void> {
    const route = this.route!;
    let token: Token;
    try {
      token = await route.tokens.token(this.req);
    } catch (err) {
      // No upgrade without a token: the app gets the JSON error any request would (RFC 6455 §4.1
      // lets the handshake fail with any non-101 status), and the upstream is never asked.
      if (this.res.destroyed) return this.#answered(CLIENT_CLOSED);
      return this.#answered(sendError(this.res, asKnown(err), { route: route.config.name }));
    }
    if (this.res.destroyed) return this.#answered(CLIENT_CLOSED);
    this.#send(route, token);
  }

  #send(route: Routed, token: Token): void {
    this.#token = token;
    this.#sentAt = performance.now();
    const path = upstreamPath(route.config, this.#path);
    const dpop = route.tokens.dpop;
    forwardUpgrade(
      this.ctx.upstreams.forRoute(route.config),
      this.req,
      this.res,
      {
        path,
        headers:
          dpop === undefined
            ? upstreamRequestHeaders(
                this.req.rawHeaders,
                { name: route.config.header, value: route.config.prefix + token.accessToken },
                route.tokens.consumedHeaders,
              )
            : // A bound token is never sent as Bearer; its proof is for the handshake's GET.
              dpopRequestHeaders(
                this.req.rawHeaders,
                route.tokens.consumedHeaders,
                dpop,
                token.accessToken,
                this.req.method ?? 'GET',
                route.config.upstream.origin,
                path,
                dpop.nonce(route.config.upstream.origin),
              ),
        route: route.config.name,
        queueTimeoutMs: route.config.responseTimeoutMs,
        protocol: 'websocket',
      },
      this,
    );
  }

  onUpstreamResponse(status: number, headers: Record<string, string | string[]>): boolean {
    const route = this.route;
    if (route === undefined) return false;
    this.#observe(route);
    route.tokens.dpop?.heard(route.config.upstream.origin, headers['dpop-nonce']);
    if (!refusesToken(route.config, status, headers)) {
      if (this.#retried && status !== 401) route.tokens.accepted(this.req, this.#token!.accessToken);
      return false;
    }
    // As for a plain request: reported so the cache replaces the token, retried once at most.
    return route.tokens.invalidate(this.req, this.#token!.accessToken) && !this.#retried;
  }

  onUpgrade(status: number, headers: IncomingHttpHeaders, upstream: Duplex): number {
    const route = this.route;
    if (route !== undefined) {
      this.#observe(route);
      if (this.#retried) route.tokens.accepted(this.req, this.#token!.accessToken);
    }
    const client = this.client;
    if (client.destroyed) {
      upstream.destroy();
      return CLIENT_CLOSED;
    }
    // From here on the connection carries WebSocket frames, not HTTP: no response object on it.
    this.res.release();
    client.write(switchingProtocols(status, headers));
    // Bytes the app sent after its request head belong to the new protocol.
    if (this.head.length > 0) upstream.write(this.head);
    splice(client, upstream as Socket, this.ctx.idleMs);
    return status;
  }

  onForwarded(outcome: ForwardOutcome): void {
    if (outcome !== 'discarded') {
      this.#answered(outcome);
      return;
    }
    // Only a refused token's answer is discarded (onUpstreamResponse): one retry, never more.
    this.#retry().catch((err: unknown) => this.ctx.log.failed(this.res, err));
  }

  async #retry(): Promise<void> {
    this.#retried = true;
    this.ctx.logger.debug(
      { event: 'retry_after_401', route: this.route!.config.name },
      'upstream refused the token; retrying the upgrade once',
    );
    await this.#withToken();
  }

  #observe(route: Routed): void {
    this.ctx.upstreamDuration(route.config.name).observe((performance.now() - this.#sentAt) / 1000);
  }

  #answered(status: number): void {
    this.ctx.log.done(this.req, this.started, this.route?.config.name ?? 'none', status, this.host);
  }
}

/**
 * A response on the handed-over connection, so that refusals and upstream answers other than
 * `101` are written exactly as on any request (error-response.ts, forward.ts). The connection
 * cannot serve another request after it: once the answer is out, it is closed.
 */
class HandedOverResponse extends ServerResponse {
  readonly #client: Socket;
  /**
   * Node's server passes its sockets' 'drain' on to their response (socketOnDrain in
   * lib/_http_server.js); it let go of this one, so it is done here: forward.ts waits for it when
   * the app reads slower than the upstream sends.
   */
  readonly #drain = () => this.emit('drain');

  constructor(req: IncomingMessage, client: Socket) {
    super(req);
    this.#client = client;
    this.shouldKeepAlive = false;
    this.assignSocket(client);
    client.on('drain', this.#drain);
    this.once('finish', () => endAndClose(client));
  }

  /** The connection switched protocols: from now on it is no response's. */
  release(): void {
    this.detachSocket(this.#client);
    this.#client.off('drain', this.#drain);
  }
}

/**
 * RFC 6455 §4.1: the handshake is a GET without content; a body would be read as frames after
 * the switch. Refused rather than guessed at.
 */
function bodyRefusal(req: IncomingMessage): BadRequestError | undefined {
  return hasBody(req) ? new BadRequestError('a WebSocket upgrade request must not have a body') : undefined;
}

/**
 * The upstream's `101` as the app receives it: its end-to-end headers (Sec-WebSocket-Accept,
 * -Protocol, -Extensions, …), with `Connection` and `Upgrade`, hop-by-hop as they are, sent by
 * this hop for this hop (RFC 9110 §7.8).
 */
function switchingProtocols(status: number, headers: IncomingHttpHeaders): string {
  let head = `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Switching Protocols'}\r\nConnection: Upgrade\r\nUpgrade: ${String(headers.upgrade ?? 'websocket')}\r\n`;
  const relayed = downstreamResponseHeaders(headers);
  for (const name in relayed) {
    const value = relayed[name];
    if (Array.isArray(value)) for (const v of value) head += `${name}: ${v}\r\n`;
    else head += `${name}: ${String(value)}\r\n`;
  }
  return `${head}\r\n`;
}
