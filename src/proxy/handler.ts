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
import { CLIENT_CLOSED, forward } from './forward.js';
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
    let token: Token;
    try {
      token = await routeTokens.token(req.headers);
    } catch (err) {
      // A client that left while we waited for the token is not a token failure to report.
      if (res.destroyed) return [matched.name, CLIENT_CLOSED];
      return [matched.name, sendError(res, asKnown(err), { route: matched.name })];
    }
    if (res.destroyed) return [matched.name, CLIENT_CLOSED];
    const headers = upstreamRequestHeaders(
      req.rawHeaders,
      { name: matched.header, value: matched.prefix + token.accessToken },
      routeTokens.consumedHeaders,
    );
    const started = performance.now();
    const status = await forward(upstreams.forRoute(matched), req, res, {
      path: upstreamPath(matched, target.path),
      headers,
      route: matched.name,
      onResponse: () =>
        metrics.upstreamDuration.observe({ route: matched.name }, (performance.now() - started) / 1000),
    });
    return [matched.name, status];
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
    return forward(upstreams.passthrough, req, res, {
      origin: `${target.scheme}://${target.host}${port}`,
      path: target.path,
      headers: upstreamRequestHeaders(req.rawHeaders, undefined),
    });
  }

  return (req, res) => {
    const started = performance.now();
    // Until undici consumes the body, nobody listens: an early client reset must not crash us.
    req.on('error', noop);
    res.on('error', noop);
    handle(req, res).then(
      ([routeName, status]) => {
        metrics.proxiedRequests.inc({ route: routeName, status_class: statusClass(status) });
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
