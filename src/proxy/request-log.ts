import type { IncomingMessage, ServerResponse } from 'node:http';
import { createAccessLog } from '../log/access-log.js';
import type { Logger } from '../log/logger.js';
import { type Metrics, type StatusClass, statusClass } from '../metrics/metrics.js';
import { asKnown, sendError } from './error-response.js';
import { requestIdOf } from './request-id.js';

/**
 * What is kept of every request the listener answers, plain or upgrade (handler.ts,
 * websocket.ts): one access log line and one count by route and status class.
 */
export interface RequestLog {
  /** Logs and counts a request that has been answered; `host` when it is not the Host header. */
  done(req: IncomingMessage, started: number, routeName: string, status: number, host?: string): void;
  /** Answers a request that failed in an unexpected way. */
  failed(res: ServerResponse, err: unknown): void;
}

export function createRequestLog(metrics: Metrics, logger: Logger): RequestLog {
  const access = createAccessLog(logger);
  // Per route name ('none' too), one increment per status class, made on first use.
  const proxied = new Map<string, Map<StatusClass, () => void>>();
  const countProxied = (routeName: string, status: number) => {
    let byClass = proxied.get(routeName);
    if (!byClass) {
      byClass = new Map();
      proxied.set(routeName, byClass);
    }
    const cls = statusClass(status);
    let inc = byClass.get(cls);
    if (!inc) {
      inc = metrics.proxiedRequests.child({ route: routeName, status_class: cls });
      byClass.set(cls, inc);
    }
    inc();
  };
  return {
    done(req, started, routeName, status, host) {
      countProxied(routeName, status);
      access({
        route: routeName,
        method: req.method,
        host: host ?? req.headers.host ?? (req.headers[':authority'] as string | undefined),
        path: pathOnly(req.url ?? ''),
        status,
        durationMs: Math.round((performance.now() - started) * 100) / 100,
        requestId: requestIdOf(req),
      });
    },
    failed(res, err) {
      logger.error({ event: 'internal_error', err: { message: (err as Error).message } }, 'request failed');
      sendError(res, asKnown(err));
    },
  };
}

/** The path of a request target, without its query string. */
export function pathOnly(pathAndQuery: string): string {
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
