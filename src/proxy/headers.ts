import type { IncomingHttpHeaders, IncomingMessage, OutgoingHttpHeaders } from 'node:http';

/**
 * Hop-by-hop headers (RFC 9110 §7.6.1) plus those undici manages itself. `proxy-authorization`
 * is the proxy's own credential and must never travel upstream; `expect` is answered by us.
 */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-authenticate',
  'proxy-authorization',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'host',
  'expect',
  // HTTP/2 pseudo-header fields (RFC 9113 §8.3) are in the raw list of an HTTP/2 request; each
  // hop writes its own.
  ':method',
  ':scheme',
  ':authority',
  ':path',
  ':protocol',
]);

export const VIA = '1.1 token-injector';

/** A TE value (RFC 9110 §10.1.4) that lists `trailers`. */
const TRAILERS = /(?:^|,)\s*trailers\s*(?:[;,]|$)/i;

/**
 * Whether the client takes trailer fields: any HTTP/2 client (trailers are part of the protocol,
 * RFC 9113 §8.1), an HTTP/1.1 client only if it said `TE: trailers` (RFC 9110 §6.5.1, §10.1.4).
 */
export function clientTakesTrailers(req: IncomingMessage): boolean {
  if (req.httpVersionMajor >= 2) return true;
  const te = req.headers.te;
  return te !== undefined && TRAILERS.test(Array.isArray(te) ? te.join(',') : te);
}

/**
 * The headers sent upstream, as undici's flat `[name, value, …]` list: the client's headers in
 * their order, minus hop-by-hop headers, those named in `Connection` and the `consumed` ones
 * (lower-case), with `inject` (if any) first, replacing every header of that name the client sent.
 */
export function upstreamRequestHeaders(
  rawHeaders: readonly string[],
  inject: { readonly name: string; readonly value: string } | undefined,
  consumed: readonly string[] = [],
): string[] {
  const named = connectionNamed(rawHeaders);
  const injectName = inject?.name.toLowerCase();
  // The token goes first: an upstream that stops reading after its own header limit must not
  // lose it behind the client's headers.
  const out: string[] = inject ? [inject.name, inject.value] : [];
  let via: string | undefined;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!;
    const lower = name.toLowerCase();
    if (HOP_BY_HOP.has(lower) || lower === injectName || named?.has(lower)) continue;
    // The app's assertion was for the token endpoint; the upstream gets the token instead.
    if (consumed.length > 0 && consumed.includes(lower)) continue;
    if (lower === 'via') {
      via = via === undefined ? rawHeaders[i + 1]! : `${via}, ${rawHeaders[i + 1]!}`;
      continue;
    }
    out.push(name, rawHeaders[i + 1]!);
  }
  // RFC 9110 §7.6.3: a proxy appends itself to Via; it also lets us detect forwarding loops.
  out.push('via', via === undefined ? VIA : `${via}, ${VIA}`);
  return out;
}

/** Response headers from undici's parsed object, minus hop-by-hop ones, ready for `writeHead`. */
export function downstreamResponseHeaders(
  headers: IncomingHttpHeaders | Record<string, string | string[] | undefined>,
): OutgoingHttpHeaders {
  const connection = headers['connection'];
  const named =
    connection === undefined
      ? undefined
      : connectionNames(Array.isArray(connection) ? connection.join(',') : connection);
  const out: OutgoingHttpHeaders = {};
  for (const name in headers) {
    const value = headers[name];
    if (value === undefined || HOP_BY_HOP.has(name) || named?.has(name)) continue;
    out[name] = value;
  }
  return out;
}

/** True when this request already went through a token-injector (ours or a peer's). */
export function hasOurVia(rawHeaders: readonly string[]): boolean {
  for (let i = 0; i < rawHeaders.length; i += 2) {
    if (rawHeaders[i]!.toLowerCase() === 'via' && rawHeaders[i + 1]!.includes('token-injector')) return true;
  }
  return false;
}

function connectionNamed(rawHeaders: readonly string[]): Set<string> | undefined {
  let named: Set<string> | undefined;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    if (rawHeaders[i]!.toLowerCase() !== 'connection') continue;
    const listed = connectionNames(rawHeaders[i + 1]!);
    if (listed === undefined) continue;
    named ??= new Set();
    for (const t of listed) named.add(t);
  }
  return named;
}

/**
 * The header names a `Connection` value lists (lower-case), or undefined when it lists only
 * `keep-alive` or `close`, which are hop-by-hop already: the usual case, answered without a Set.
 */
function connectionNames(value: string): Set<string> | undefined {
  const lower = value.toLowerCase();
  if (lower === 'keep-alive' || lower === 'close') return undefined;
  return new Set(
    lower
      .split(',')
      .map((t) => t.trim())
      .filter(Boolean),
  );
}
