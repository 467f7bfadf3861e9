import type { IncomingMessage } from 'node:http';
import { BadRequestError } from '../errors.js';
import type { RequestTarget } from '../router/router.js';
import { normalizePath } from './normalize-path.js';

export interface ParsedTarget extends RequestTarget {
  /** True when the client sent absolute-form (`GET http://host/path`), i.e. used us as HTTP_PROXY. */
  readonly forward: boolean;
  readonly scheme: 'http' | 'https';
}

/**
 * Works out which host, port and path a request is for, with the path normalised so that route
 * matching and the upstream see the same thing. Origin-form requests (reverse mode) name
 * the host in `Host:`; absolute-form requests (forward mode) name it in the request line, which
 * then wins over `Host:` (RFC 9112 §3.2.2).
 */
export function parseTarget(req: IncomingMessage): ParsedTarget {
  const url = req.url ?? '';
  const method = req.method ?? 'GET';
  // RFC 9112 §3.2: more than one Host is an error; another hop might route by the other one.
  if (hostCount(req.rawHeaders) > 1) throw new BadRequestError('request has more than one Host header');
  if (url.startsWith('/')) {
    const authority = req.headers.host;
    if (!authority) throw new BadRequestError('request has no Host header');
    const hp = splitAuthority(authority, 80);
    if (!hp) throw new BadRequestError('Host header is not a valid host[:port]');
    return { host: hp.host, port: hp.port, path: normalizePath(url), method, forward: false, scheme: 'http' };
  }
  const scheme = url.slice(0, 8).toLowerCase();
  if (scheme.startsWith('http://') || scheme.startsWith('https://')) {
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
    return {
      host: normaliseHost(parsed.hostname),
      port,
      path: normalizePath(`${parsed.pathname}${parsed.search}`),
      method,
      forward: true,
      scheme: isHttps ? 'https' : 'http',
    };
  }
  throw new BadRequestError('request target must be a path or an absolute http:// URL');
}

function hostCount(rawHeaders: readonly string[]): number {
  let n = 0;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!;
    if (name.length === 4 && name.toLowerCase() === 'host') n++;
  }
  return n;
}

type HostPort = { readonly host: string; readonly port: number };

/** Parsed Host headers: a workload talks to few hosts, so most requests skip the parsing. */
const authorityCache = new Map<string, HostPort | null>();
const AUTHORITY_CACHE_MAX = 1024;

/** `host`, `host:port`, `[v6]`, `[v6]:port` → lower-case host (no trailing dot) and port. */
export function splitAuthority(authority: string, defaultPort: number): HostPort | undefined {
  const key = defaultPort === 80 ? authority : `${defaultPort} ${authority}`;
  let parsed = authorityCache.get(key);
  if (parsed === undefined) {
    parsed = parseAuthority(authority, defaultPort) ?? null;
    // Bounded: a client sending ever new Host values must not grow memory.
    if (authorityCache.size >= AUTHORITY_CACHE_MAX) authorityCache.clear();
    authorityCache.set(key, parsed);
  }
  return parsed ?? undefined;
}

function parseAuthority(authority: string, defaultPort: number): HostPort | undefined {
  const m = /^(\[[0-9a-fA-F:.]+\]|[^:[\]\s/@]+)(?::(\d{1,5}))?$/.exec(authority.trim());
  if (!m) return undefined;
  const port = m[2] === undefined ? defaultPort : Number(m[2]);
  if (port < 1 || port > 65535) return undefined;
  return Object.freeze({ host: normaliseHost(m[1]!), port });
}

function normaliseHost(host: string): string {
  return host.toLowerCase().replace(/\.$/, '');
}
