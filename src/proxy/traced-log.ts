import type { Tracing } from '../tracing/tracing.js';
import type { RequestLog } from './request-log.js';

/**
 * The request log, also ending each request's span; used only when tracing is on, so a proxy
 * without it keeps the plain log and its requests pay nothing. `upstreamOf` gives a routed
 * request's upstream by route name; requests no route took (`none`) have none to name.
 */
export function tracedRequestLog(
  log: RequestLog,
  tracing: Tracing,
  upstreamOf: (route: string) => URL | undefined,
): RequestLog {
  return {
    done(req, started, routeName, status, host) {
      // The origin only: scheme, host and port, never the route's base path or credentials.
      tracing.answered(req, routeName, status, upstreamOf(routeName)?.origin);
      log.done(req, started, routeName, status, host);
    },
    failed(res, err) {
      log.failed(res, err);
      tracing.answered(res.req, 'none', res.statusCode, undefined);
    },
  };
}
