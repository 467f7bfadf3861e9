import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Config, RouteConfig } from '../config/types.js';
import type { Credentials, RouteTokens } from '../credentials/credentials.js';
import {
  BadRequestError,
  ProxyLoopError,
  RouteNotFoundError,
  type TokenInjectorError,
  TooManyHeadersError,
} from '../errors.js';
import type { Logger } from '../log/logger.js';
import type { Metrics } from '../metrics/metrics.js';
import type { Router } from '../router/router.js';
import type { Token } from '../token-endpoint/token.js';
import type { Tracing } from '../tracing/tracing.js';
import { DpopUpstream } from './dpop-upstream.js';
import { asKnown, sendError } from './error-response.js';
import { continueIfAwaited, unmetExpectation } from './expect.js';
import {
  CLIENT_CLOSED,
  type ForwardObserver,
  type ForwardOutcome,
  forward,
  forwarded,
  hasBody,
} from './forward.js';
import { isGrpcCall, sendGrpcError } from './grpc-error.js';
import { hasOurVia, upstreamRequestHeaders } from './headers.js';
import { ReplayBudget, readBody, refusesToken, replayableLength } from './replay.js';
import { assignRequestId } from './request-id.js';
import { createRequestLog, pathOnly, type RequestLog } from './request-log.js';
import { type ResourceRetry, resourceRetry } from './resource-retry.js';
import { authority, type ParsedTarget, parseTarget, refusedSpelling } from './target.js';
import { tracedRequestLog } from './traced-log.js';
import type { Upstreams } from './upstreams.js';

export interface ProxyDeps {
  readonly config: Config;
  readonly credentials: Credentials;
  readonly upstreams: Upstreams;
  readonly metrics: Metrics;
  readonly logger: Logger;
  /** Shared with the CONNECT handler: one route index per process. */
  readonly router: Router;
  /** Set only when `tracing` is configured: without it the handler is not wrapped at all. */
  readonly tracing?: Tracing | undefined;
}

/** The request handler of the proxy listener: route, get a token, inject it, forward. */
export function createProxyHandler(deps: ProxyDeps): (req: IncomingMessage, res: ServerResponse) => void {
  const { config, credentials, upstreams, metrics, logger, router: route } = deps;
  // Per-route state and metric children are made on a route's first request and looked up
  // after that, not remade on every request: routes that carry no traffic cost nothing here.
  const routes = new Map<string, RouteState>();
  const stateOf = (r: RouteConfig): RouteState => {
    let state = routes.get(r.name);
    if (state === undefined) {
      state = {
        config: r,
        tokens: credentials.forRoute(r),
        upstreamDuration: metrics.upstreamDuration.labels({ route: r.name }),
      };
      if (r.discoverResource) state.resource = resourceRetry(state, deps);
      routes.set(r.name, state);
    }
    return state;
  };
  const maxRawHeaders = 2 * config.limits.maxHeaders;
  const { tracing } = deps;
  const log =
    tracing === undefined
      ? createRequestLog(metrics, logger)
      : tracedRequestLog(
          createRequestLog(metrics, logger),
          tracing,
          (name) => routes.get(name)?.config.upstream,
        );
  const shared: Shared = {
    upstreams,
    logger,
    replay: new ReplayBudget(config.limits.replayBufferTotal),
    done: log.done,
    failed: log.failed,
  };

  async function unmatched(req: IncomingMessage, res: ServerResponse, target: ParsedTarget): Promise<number> {
    const refused = refuseUnmatched(config, req, res, target);
    if (refused !== undefined) return refused;
    if (hasBody(req)) continueIfAwaited(req, res);
    const outcome = await forwarded(upstreams.passthrough, req, res, {
      origin: `${target.scheme}://${authority(target)}`,
      path: target.path,
      headers: upstreamRequestHeaders(req.rawHeaders, undefined),
    });
    return outcome === 'discarded' ? CLIENT_CLOSED : outcome;
  }

  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    const started = performance.now();
    // No 'error' listeners needed here: Node emits a request's 'error' (a client reset) only when
    // someone listens, and whoever reads the body (undici, the replay buffer) does.
    const refused = refusal(req, maxRawHeaders) ?? unmetExpectation(req);
    // After the header count, which must not count the field it may add; before any answer.
    assignRequestId(req);
    if (refused) {
      // The body (if any) is not read: the connection cannot be reused.
      res.shouldKeepAlive = false;
      shared.done(req, started, 'none', sendError(res, refused));
      return;
    }
    let target: ParsedTarget;
    try {
      target = parseTarget(req);
    } catch (err) {
      shared.done(req, started, 'none', sendError(res, err as BadRequestError));
      return;
    }
    // Forward mode names the host in the request line; `Host:` may name the proxy itself.
    const host = target.forward ? authority(target) : undefined;
    const matched = route(target);
    // Checked only now: whether a loose path spelling is refused depends on the route.
    const loose = refusedSpelling(target, matched);
    if (loose !== undefined) {
      shared.done(req, started, matched?.name ?? 'none', sendError(res, new BadRequestError(loose)), host);
      return;
    }
    if (!matched) {
      unmatched(req, res, target).then(
        (status) => shared.done(req, started, 'none', status, host),
        (err: unknown) => shared.failed(res, err),
      );
      return;
    }
    new RoutedRequest(shared, stateOf(matched), req, res, target.path, started, host).start();
  };
  // Traced, each request gets its span around this handler; untraced, the handler is as it is.
  return tracing === undefined ? handle : tracing.requests(handle, maxRawHeaders);
}

interface RouteState {
  readonly config: RouteConfig;
  /** Replaced once, by the tokens for the resource a `resource_metadata: discover` route finds. */
  tokens: RouteTokens;
  /** `resource_metadata: discover` routes only. */
  resource?: ResourceRetry;
  readonly upstreamDuration: { observe(seconds: number): void };
}

/** What every request of one handler shares. */
interface Shared extends RequestLog {
  readonly upstreams: Upstreams;
  readonly logger: Logger;
  readonly replay: ReplayBudget;
}

/**
 * One routed request, from its token to its answer. A class, so the request path allocates one
 * object instead of a closure per step; a request whose token is cached and that has no body
 * goes to the upstream without waiting a tick.
 */
class RoutedRequest implements ForwardObserver {
  /** A body kept in memory (replayable), none (null), or the client's stream (undefined). */
  #body: Buffer | null | undefined = null;
  #token: Token | undefined;
  #mayRetry = false;
  /** Sent again after a 401: its answer tells whether the new token is taken. */
  #retried = false;
  #sentAt = 0;
  /** Bytes of the process-wide replay budget this request holds. */
  #reserved = 0;
  /** DPoP credentials only: the proofs' nonce and the one `use_dpop_nonce` retry. */
  #dpop: DpopUpstream | undefined;
  /** RFC 9728: the discovery this request's 401 started; the request is retried after it. */
  #discovering: Promise<string> | undefined;

  constructor(
    readonly shared: Shared,
    readonly route: RouteState,
    readonly req: IncomingMessage,
    readonly res: ServerResponse,
    readonly path: string,
    readonly started: number,
    readonly host: string | undefined,
  ) {}

  start(): void {
    if (!hasBody(this.req)) {
      let token: Token | Promise<Token>;
      try {
        token = this.route.tokens.token(this.req);
      } catch (err) {
        this.#answered(this.#tokenFailure(err));
        return;
      }
      if (!(token instanceof Promise)) {
        this.#send(token, true);
        return;
      }
      this.#startAsync(token).catch((err: unknown) => this.#crashed(err));
      return;
    }
    this.#startAsync(undefined).catch((err: unknown) => this.#crashed(err));
  }

  /** The path for a token that must be awaited, or a body that must be read first. */
  async #startAsync(pending: Promise<Token> | undefined): Promise<void> {
    const token = await this.#tokenOrStatus(pending);
    if (typeof token === 'number') return this.#answered(token);
    if (this.res.destroyed) return this.#answered(CLIENT_CLOSED);
    this.#body = null;
    if (hasBody(this.req)) {
      // Routed and with a token: only now may the app send its body (RFC 9110 §10.1.1).
      continueIfAwaited(this.req, this.res);
      // Kept in memory when small enough, so it can be sent again after a 401 (replay.ts).
      const length = replayableLength(this.req, this.route.config.replayBufferBytes);
      if (length !== undefined && this.shared.replay.take(length)) {
        this.#reserved = length;
        this.#body = await readBody(this.req);
      } else this.#body = undefined;
    }
    if (this.res.destroyed) return this.#answered(CLIENT_CLOSED);
    this.#send(token, this.#body !== undefined);
  }

  /** The token, or the status already answered when there is none. */
  async #tokenOrStatus(pending?: Promise<Token>): Promise<Token | number> {
    try {
      return await (pending ?? this.route.tokens.token(this.req));
    } catch (err) {
      return this.#tokenFailure(err);
    }
  }

  #tokenFailure(err: unknown): number {
    // A client that left while we waited for the token is not a token failure to report.
    if (this.res.destroyed) return CLIENT_CLOSED;
    // A gRPC client understands a gRPC status, not a JSON body (grpc-error.ts).
    if (isGrpcCall(this.req)) return sendGrpcError(this.res, asKnown(err), this.route.config.credential);
    return sendError(this.res, asKnown(err), { route: this.route.config.name });
  }

  #send(token: Token, mayRetry: boolean): void {
    const route = this.route.config;
    this.#token = token;
    this.#mayRetry = mayRetry;
    this.#sentAt = performance.now();
    const path = upstreamPath(route, this.path);
    const prover = this.route.tokens.dpop;
    // Made on a DPoP request's first send, kept for its retry; a plain route never makes one.
    if (prover !== undefined) this.#dpop ??= new DpopUpstream(prover, route.upstream.origin);
    const dpop = this.#dpop;
    forward(
      this.shared.upstreams.forRoute(route),
      this.req,
      this.res,
      {
        path,
        headers:
          dpop === undefined
            ? upstreamRequestHeaders(
                this.req.rawHeaders,
                { name: route.header, value: route.prefix + token.accessToken },
                this.route.tokens.consumedHeaders,
              )
            : dpop.headers(this.req, this.route.tokens.consumedHeaders, token.accessToken, path),
        body: this.#body === undefined ? this.req : this.#body,
        route: route.name,
        queueTimeoutMs: route.responseTimeoutMs,
      },
      this,
    );
  }

  onUpstreamResponse(status: number, headers: Record<string, string | string[]>): boolean {
    this.route.upstreamDuration.observe((performance.now() - this.#sentAt) / 1000);
    // RFC 9449 §9: a `use_dpop_nonce` challenge is sent again, once, with the same token.
    if (this.#dpop?.wantsRetry(status, headers, this.#mayRetry)) return true;
    // RFC 9728: the first 401 of a discovering route is sent again once the resource is known.
    const resource = this.route.resource;
    if (resource !== undefined && !this.#retried && resource.wants(status)) {
      this.#discovering = resource.discover(headers['www-authenticate'], this.#mayRetry);
      return this.#discovering !== undefined;
    }
    if (!refusesToken(this.route.config, status, headers)) {
      // A token fetched to replace a refused one is on trial until a retry with it gets through.
      if (this.#retried && status !== 401) this.route.tokens.accepted(this.req, this.#token!.accessToken);
      return false;
    }
    // Always reported, so the cache replaces the token; the request is retried only if that gives
    // it another one (a refused replacement is held for a backoff step: no token storm).
    return this.route.tokens.invalidate(this.req, this.#token!.accessToken) && this.#mayRetry;
  }

  onForwarded(outcome: ForwardOutcome): void {
    if (outcome !== 'discarded') {
      this.#answered(outcome);
      return;
    }
    if (this.#dpop?.retrying()) {
      this.shared.logger.debug(
        { event: 'retry_with_dpop_nonce', route: this.route.config.name },
        'upstream asked for a DPoP nonce; retrying once with it',
      );
      // Not from within the finished exchange's own callbacks.
      queueMicrotask(() => this.#send(this.#token!, this.#mayRetry));
      return;
    }
    // Only a response that may be retried is ever discarded (onUpstreamResponse).
    if (this.#discovering !== undefined) {
      this.#afterDiscovery(this.#discovering).catch((err: unknown) => this.#crashed(err));
      return;
    }
    this.#retry().catch((err: unknown) => this.#crashed(err));
  }

  /** RFC 9728: the resource is known (the route's tokens now name it), or the route fails. */
  async #afterDiscovery(discovering: Promise<string>): Promise<void> {
    try {
      await discovering;
    } catch (err) {
      return this.#answered(this.#tokenFailure(err));
    }
    this.shared.logger.debug(
      { event: 'retry_after_resource_discovery', route: this.route.config.name },
      'upstream resource discovered; retrying once with a token for it',
    );
    return this.#retry();
  }

  /** One retry with a new token, never more: a second 401 goes to the app as it is. */
  async #retry(): Promise<void> {
    const fresh = await this.#tokenOrStatus();
    if (typeof fresh === 'number') return this.#answered(fresh);
    this.shared.logger.debug(
      { event: 'retry_after_401', route: this.route.config.name },
      'upstream refused the token; retrying once',
    );
    this.#retried = true;
    this.#send(fresh, false);
  }

  #answered(status: number): void {
    this.#release();
    this.shared.done(this.req, this.started, this.route.config.name, status, this.host);
  }

  #crashed(err: unknown): void {
    this.#release();
    this.shared.failed(this.res, err);
  }

  #release(): void {
    if (this.#reserved === 0) return;
    this.shared.replay.give(this.#reserved);
    this.#reserved = 0;
    this.#body = null;
  }
}

/**
 * The error a request is refused with before routing: more header fields than allowed (Node
 * stops collecting them one past the limit, so a longer list means the rest was cut).
 */
export function refusal(req: IncomingMessage, maxRawHeaders: number): TokenInjectorError | undefined {
  const entries = req.httpVersionMajor === 2 ? fieldEntries(req.rawHeaders) : req.rawHeaders.length;
  if (entries > maxRawHeaders) {
    return new TooManyHeadersError(
      `the request has more than ${maxRawHeaders / 2} header fields (limits.max_headers)`,
    );
  }
  return undefined;
}

/** Raw header entries of an HTTP/2 request without its pseudo-header fields (`:path`, …). */
function fieldEntries(rawHeaders: readonly string[]): number {
  let n = rawHeaders.length;
  for (let i = 0; i < rawHeaders.length; i += 2) if (rawHeaders[i]!.startsWith(':')) n -= 2;
  return n;
}

/**
 * Answers a request no route matched when it may not pass through, and returns the status sent;
 * undefined when `unmatched: passthrough` lets it go on without a token.
 */
export function refuseUnmatched(
  config: Config,
  req: IncomingMessage,
  res: ServerResponse,
  target: ParsedTarget,
): number | undefined {
  if (config.unmatched === 'deny') {
    return sendError(res, new RouteNotFoundError(target.host, pathOnly(target.path)), {
      host: target.host,
      path: pathOnly(target.path),
    });
  }
  // Passthrough forwards to whatever the client named; a request that already passed through
  // us would come back forever, e.g. a reverse-mode request whose Host is our own address.
  if (hasOurVia(req.rawHeaders)) {
    return sendError(
      res,
      new ProxyLoopError('request already passed through token-injector; refusing to loop'),
    );
  }
  return undefined;
}

/** The path sent upstream: the upstream's base path, then the request path (minus the prefix). */
export function upstreamPath(route: RouteConfig, requestPath: string): string {
  let rest = requestPath;
  if (route.stripPrefix && route.match.pathPrefix) {
    rest = requestPath.slice(route.match.pathPrefix.length);
    if (!rest.startsWith('/')) rest = `/${rest}`;
  }
  const base = route.upstream.pathname === '/' ? '' : route.upstream.pathname;
  return base + rest;
}
