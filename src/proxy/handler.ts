import type { IncomingMessage, ServerResponse } from 'node:http';
import { type Metrics, statusClass } from '../admin/metrics.js';
import type { Config, RouteConfig } from '../config/types.js';
import type { Credentials, RouteTokens } from '../credentials/credentials.js';
import {
  type BadRequestError,
  InternalError,
  ProxyLoopError,
  RouteNotFoundError,
  TokenInjectorError,
} from '../errors.js';
import type { Logger } from '../log.js';
import { createRouter } from '../router/router.js';
import type { Token } from '../token-endpoint/token.js';
import { sendError } from './error-response.js';
import { CLIENT_CLOSED, forward, hasBody } from './forward.js';
import { hasOurVia, upstreamRequestHeaders } from './headers.js';
import { type ParsedTarget, parseTarget } from './target.js';
import type { Upstreams } from './upstreams.js';

export interface ProxyDeps {
  readonly config: Config;
  readonly credentials: Credentials;
  readonly upstreams: Upstreams;
  readonly metrics: Metrics;
  readonly logger: Logger;
}

const noop = () => {};

/** The request handler of the proxy listener: route, get a token, inject it, forward. */
export function createProxyHandler(deps: ProxyDeps): (req: IncomingMessage, res: ServerResponse) => void {
  const { config, credentials, upstreams, metrics, logger } = deps;
  const route = createRouter(config.routes);
  const tokens = new Map<string, RouteTokens>(config.routes.map((r) => [r.name, credentials.forRoute(r)]));
  // Label children are looked up once per route, not on every request.
  const durations = new Map(
    config.routes.map((r) => [r.name, metrics.upstreamDuration.labels({ route: r.name })]),
  );
  const upstreamDuration = (name: string) => durations.get(name)!;
  const proxied = new Map<string, ReturnType<typeof metrics.proxiedRequests.labels>>();
  const countProxied = (routeName: string, status: number) => {
    const cls = statusClass(status);
    const key = `${routeName}\n${cls}`;
    let child = proxied.get(key);
    if (!child) {
      child = metrics.proxiedRequests.labels({ route: routeName, status_class: cls });
      proxied.set(key, child);
    }
    child.inc();
  };

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<[string, number]> {
    let target: ParsedTarget;
    try {
      target = parseTarget(req);
    } catch (err) {
      return ['none', sendError(res, err as BadRequestError)];
    }
    const matched = route(target);
    if (!matched) return ['none', await unmatched(req, res, target)];
    const routeTokens = tokens.get(matched.name)!;
    // The token, or the status already answered when there is none.
    const tokenOrStatus = async (): Promise<Token | number> => {
      try {
        return await routeTokens.token(req.headers);
      } catch (err) {
        // A client that left while we waited for the token is not a token failure to report.
        if (res.destroyed) return CLIENT_CLOSED;
        return sendError(res, asKnown(err), { route: matched.name });
      }
    };
    const token = await tokenOrStatus();
    if (typeof token === 'number') return [matched.name, token];
    if (res.destroyed) return [matched.name, CLIENT_CLOSED];
    // A body small enough to keep can be sent again if the upstream refuses the token.
    const body = hasBody(req) ? await replayableBody(req, matched.replayBufferBytes) : null;
    if (res.destroyed) return [matched.name, CLIENT_CLOSED];
    const send = (current: Token, mayRetry: boolean) => {
      const started = performance.now();
      return forward(upstreams.forRoute(matched), req, res, {
        path: upstreamPath(matched, target.path),
        headers: upstreamRequestHeaders(
          req.rawHeaders,
          { name: matched.header, value: matched.prefix + current.accessToken },
          routeTokens.consumedHeaders,
        ),
        body: body === undefined ? req : body,
        route: matched.name,
        onResponse: () => upstreamDuration(matched.name).observe((performance.now() - started) / 1000),
        discard: (status, headers) => {
          if (status !== 401 || !(matched.retryOn401 || saysInvalidToken(headers['www-authenticate']))) {
            return false;
          }
          // The upstream refused this token: never serve it again, whatever happens next.
          routeTokens.invalidate(req.headers, current.accessToken);
          return mayRetry;
        },
      });
    };
    const first = await send(token, body !== undefined);
    if (first !== 'discarded') return [matched.name, first];
    // One retry with a new token, never more: a second 401 goes to the app as it is.
    const fresh = await tokenOrStatus();
    if (typeof fresh === 'number') return [matched.name, fresh];
    logger.debug(
      { event: 'retry_after_401', route: matched.name },
      'upstream refused the token; retrying once',
    );
    const second = await send(fresh, false);
    return [matched.name, second === 'discarded' ? CLIENT_CLOSED : second];
  }

  async function unmatched(req: IncomingMessage, res: ServerResponse, target: ParsedTarget): Promise<number> {
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
    const port = target.port === (target.scheme === 'https' ? 443 : 80) ? '' : `:${target.port}`;
    const outcome = await forward(upstreams.passthrough, req, res, {
      origin: `${target.scheme}://${target.host}${port}`,
      path: target.path,
      headers: upstreamRequestHeaders(req.rawHeaders, undefined),
    });
    return outcome === 'discarded' ? CLIENT_CLOSED : outcome;
  }

  return (req, res) => {
    const started = performance.now();
    // Until undici consumes the body, nobody listens: an early client reset must not crash us.
    req.on('error', noop);
    res.on('error', noop);
    handle(req, res).then(
      ([routeName, status]) => {
        countProxied(routeName, status);
        logger.info(
          {
            event: 'request',
            route: routeName,
            method: req.method,
            host: req.headers.host,
            path: pathOnly(req.url ?? ''),
            status,
            duration_ms: Math.round((performance.now() - started) * 100) / 100,
          },
          'proxied',
        );
      },
      (err: unknown) => {
        logger.error({ event: 'internal_error', err: { message: (err as Error).message } }, 'request failed');
        sendError(res, asKnown(err));
      },
    );
  };
}

/**
 * The request body, read into memory when it is no larger than `limit` (by Content-Length) so it
 * can be sent twice; `null` without a body; `undefined` when it must stream (large or chunked).
 */
async function replayableBody(req: IncomingMessage, limit: number): Promise<Buffer | null | undefined> {
  if (!hasBody(req)) return null;
  const length = Number(req.headers['content-length']);
  if (!Number.isFinite(length) || length > limit) return undefined;
  const chunks: Buffer[] = [];
  try {
    for await (const chunk of req) chunks.push(chunk as Buffer);
  } catch {
    return null; // the client went away; the caller sees res destroyed
  }
  return Buffer.concat(chunks);
}

/** RFC 6750 §3.1: `WWW-Authenticate: Bearer error="invalid_token"`, in any letter case. */
export function saysInvalidToken(header: string | string[] | undefined): boolean {
  if (header === undefined) return false;
  const value = Array.isArray(header) ? header.join(', ') : header;
  return /\bbearer\b/i.test(value) && /\berror\s*=\s*"?invalid_token"?/i.test(value);
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

function pathOnly(pathAndQuery: string): string {
  // Query strings may carry secrets (api keys, codes); logs and error bodies keep only the path.
  const q = pathAndQuery.indexOf('?');
  const path = q === -1 ? pathAndQuery : pathAndQuery.slice(0, q);
  if (path.startsWith('http://') || path.startsWith('https://')) {
    try {
      return new URL(path).pathname;
    } catch {
      return '';
    }
  }
  return path;
}

function asKnown(err: unknown): TokenInjectorError {
  if (err instanceof TokenInjectorError) return err;
  return new InternalError(`unexpected error: ${(err as Error).message}`, { cause: err });
}
