import type { IncomingMessage } from 'node:http';
import { Http2ServerRequest } from 'node:http2';
import type { RouteConfig } from '../config/types.js';
import { BadRequestError, MisdirectedRequestError } from '../errors.js';
import { type HostPort, normaliseHost, splitAuthority } from '../router/host.js';
import type { RequestTarget } from '../router/router.js';
import { FRAGMENT, looseSpelling, normalizePath } from './normalize-path.js';
import { tunnelOf } from './tunnel.js';

export interface ParsedTarget extends RequestTarget {
  /** True when the client sent absolute-form (`GET http://host/path`), i.e. used us as HTTP_PROXY. */
  readonly forward: boolean;
  readonly scheme: 'http' | 'https';
  /**
   * Set when the path is spelled in a way some upstreams decode into a dot segment or a NUL
   * (see {@link looseSpelling}): why a route with `strict_path` refuses it. Known only after
   * routing whether it matters, so it is reported here rather than thrown.
   */
  readonly looseSpelling: string | undefined;
}

/**
 * Works out which host, port and path a request is for, with the path normalised so that route
 * matching and the upstream see the same thing. Origin-form requests (reverse mode) name
 * the host in `Host:`; absolute-form requests (forward mode) name it in the request line, which
 * then wins over `Host:` (RFC 9112 §3.2.2).
 */
export function parseTarget(req: IncomingMessage): ParsedTarget {
  const refusal = versionRefusal(req);
  if (refusal) throw refusal;
  const url = req.url ?? '';
  const method = req.method ?? 'GET';
  // RFC 9112 §3.2: more than one Host is an error; another hop might route by the other one.
  if (hostCount(req.rawHeaders) > 1) throw new BadRequestError('request has more than one Host header');
  // On an intercepted connection the app spoke TLS to the origin the CONNECT named.
  const tunnel = tunnelOf(req.socket);
  if (url.startsWith('/')) {
    const authority = req.httpVersionMajor === 2 ? h2Authority(req) : req.headers.host;
    if (!authority) throw new BadRequestError('request has no Host header');
    const hp = splitAuthority(authority, tunnel ? 443 : 80);
    if (!hp) throw new BadRequestError('Host header is not a valid host[:port]');
    if (tunnel) sameOrigin(hp, tunnel);
    const path = normalizePath(url);
    return {
      host: hp.host,
      port: hp.port,
      path,
      method,
      forward: false,
      scheme: tunnel ? 'https' : 'http',
      looseSpelling: looseSpelling(path),
    };
  }
  const scheme = url.slice(0, 8).toLowerCase();
  if (scheme.startsWith('http://') || scheme.startsWith('https://')) {
    // An absolute-URI has no fragment either (RFC 9112 §3.2.2); URL parsing would drop it silently.
    if (url.includes('#')) throw new BadRequestError(FRAGMENT);
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      throw new BadRequestError('request target is not a valid absolute URL');
    }
    if (parsed.username || parsed.password)
      throw new BadRequestError('request target must not contain user info');
    const isHttps = parsed.protocol === 'https:';
    const port = parsed.port ? Number(parsed.port) : isHttps ? 443 : 80;
    // Port 0 names no service (RFC 6335 §6): nothing could be forwarded to it.
    if (port === 0) throw new BadRequestError('request target names port 0');
    const path = normalizePath(`${parsed.pathname}${parsed.search}`);
    const host = normaliseHost(parsed.hostname);
    if (tunnel && (!isHttps || host !== tunnel.host || port !== tunnel.port)) {
      throw misdirected(tunnel, `${parsed.protocol}//${host}:${port}`);
    }
    return {
      host,
      port,
      path,
      method,
      forward: true,
      scheme: isHttps ? 'https' : 'http',
      looseSpelling: looseSpelling(path),
    };
  }
  throw new BadRequestError('request target must be a path or an absolute http:// URL');
}

/**
 * RFC 9113 §8.3.1: an HTTP/2 request names its authority in `:authority`, or in `Host` if it
 * has none; both, naming different hosts, is a malformed request.
 */
function h2Authority(req: IncomingMessage): string | undefined {
  const pseudo = req.headers[':authority'] as string | undefined;
  const host = req.headers.host;
  if (pseudo !== undefined && host !== undefined && pseudo.toLowerCase() !== host.toLowerCase()) {
    throw new BadRequestError(':authority and Host name different hosts');
  }
  return pseudo ?? host;
}

/** RFC 9110 §15.5.20: a connection made (and its certificate minted) for one origin serves only that one. */
function sameOrigin(hp: HostPort, tunnel: HostPort): void {
  if (hp.host !== tunnel.host || hp.port !== tunnel.port) throw misdirected(tunnel, `${hp.host}:${hp.port}`);
}

function misdirected(tunnel: HostPort, asked: string): MisdirectedRequestError {
  return new MisdirectedRequestError(
    `this connection was opened with CONNECT ${tunnel.host}:${tunnel.port}; a request for ${asked} needs its own CONNECT`,
  );
}

/**
 * Why a request, CONNECT included, is refused for its HTTP version, or undefined for HTTP/1.0 and
 * HTTP/1.1. Node's parser lets "HTTP/2.0" and "HTTP/0.9" request lines through, but this listener
 * speaks those two only (RFC 9112 §2.3): another version's request means something else.
 */
export function versionRefusal(req: IncomingMessage): BadRequestError | undefined {
  if (req.httpVersionMajor === 1 && req.httpVersionMinor <= 1) return undefined;
  // A stream of a real HTTP/2 connection (h2-listener.ts), not an "HTTP/2.0" request line.
  if (req.httpVersionMajor === 2 && (req as object) instanceof Http2ServerRequest) return undefined;
  return new BadRequestError(
    `HTTP/${req.httpVersionMajor}.${req.httpVersionMinor} is not spoken on this listener; use HTTP/1.1`,
  );
}

/**
 * Why the request must be refused now that its route is known, or undefined: a loose spelling
 * is refused unless the route sets `strict_path: false`, and always when no route matched.
 */
export function refusedSpelling(target: ParsedTarget, route: RouteConfig | undefined): string | undefined {
  return route?.strictPath === false ? undefined : target.looseSpelling;
}

/** `host[:port]` of a target, the port only when it is not the scheme's default. */
export function authority(target: ParsedTarget): string {
  return target.port === (target.scheme === 'https' ? 443 : 80)
    ? target.host
    : `${target.host}:${target.port}`;
}

function hostCount(rawHeaders: readonly string[]): number {
  let n = 0;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!;
    if (name.length === 4 && name.toLowerCase() === 'host') n++;
  }
  return n;
}
