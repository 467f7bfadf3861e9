/**
 * Host names as routes compare them. Configured `match.host` patterns and the host of every
 * request (`Host:`, an absolute-form target, a CONNECT authority) go through the same
 * {@link normaliseHost}, so the two sides can never disagree on what names the same host.
 */

export interface HostPort {
  readonly host: string;
  readonly port: number;
}

/**
 * Lower case (host names are case-insensitive, RFC 3986 §3.2.2) and without a trailing dot
 * (`example.com.` is the same fully qualified name). IPv6 literals keep their brackets.
 */
export function normaliseHost(host: string): string {
  return host.toLowerCase().replace(/\.$/, '');
}

/** `host`, `host:port`, `[v6]`, `[v6]:port`; the host may be anything but `:[]/@` and spaces. */
const AUTHORITY = /^(\[[0-9a-fA-F:.]+\]|[^:[\]\s/@]+)(?::(\d+))?$/;
/** RFC 1123 labels (underscores allowed, as real names have them), after an optional `*.`. */
const HOST_NAME = /^[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*$/;

/** The normalised host and the port if one was given, or why the text is not an authority. */
function splitHostPort(text: string): { host: string; port: number | undefined } | string {
  const m = AUTHORITY.exec(text.trim());
  if (!m) return 'not a host';
  const port = m[2] === undefined ? undefined : Number(m[2]);
  if (port !== undefined && (port < 1 || port > 65535)) return `port ${port} is out of range`;
  return { host: normaliseHost(m[1]!), port };
}

/**
 * A configured `match.host`: `host`, `host:port`, `*.suffix`, `[v6]`, `[v6]:port`, normalised
 * as request hosts are. Returns the message for the configuration error when it is not one.
 */
export function parseHostPattern(text: string): { host: string; port?: number } | string {
  const parsed = splitHostPort(text);
  if (typeof parsed === 'string' && parsed !== 'not a host') return parsed;
  if (typeof parsed === 'string' || !validPattern(parsed.host)) {
    return `"${text}" is not a host name; use an exact name, or "*." and a domain for its subdomains`;
  }
  return parsed.port === undefined ? { host: parsed.host } : { host: parsed.host, port: parsed.port };
}

function validPattern(host: string): boolean {
  if (host.startsWith('[')) return true;
  return HOST_NAME.test(host.startsWith('*.') ? host.slice(2) : host);
}

/** Parsed request authorities: a workload talks to few hosts, so most requests skip the parsing. */
const authorityCache = new Map<string, HostPort | null>();
const AUTHORITY_CACHE_MAX = 1024;

/**
 * A request's `Host:` value or CONNECT authority → normalised host and port (`defaultPort` when
 * none is given); undefined when it is not a valid `host[:port]`.
 */
export function splitAuthority(authority: string, defaultPort: number): HostPort | undefined {
  const key = defaultPort === 80 ? authority : `${defaultPort} ${authority}`;
  let parsed = authorityCache.get(key);
  if (parsed === undefined) {
    const split = splitHostPort(authority);
    parsed =
      typeof split === 'string' ? null : Object.freeze({ host: split.host, port: split.port ?? defaultPort });
    // Bounded: a client sending ever new Host values must not grow memory.
    if (authorityCache.size >= AUTHORITY_CACHE_MAX) authorityCache.clear();
    authorityCache.set(key, parsed);
  }
  return parsed ?? undefined;
}
