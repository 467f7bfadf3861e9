import { METHODS } from 'node:http';
import { parseHostPattern } from '../router/host.js';
import { Checker, isAbsoluteUrl, join } from './checker.js';
import type { ConfigSources } from './interpolate.js';
import { insecureHttp, isLoopback, positive } from './rules.js';
import type {
  Config,
  CredentialConfig,
  ListenAddress,
  ListenerLimits,
  LogLevel,
  RouteConfig,
  RouteMatch,
  TokenScope,
  UnmatchedPolicy,
  UpstreamProtocol,
} from './types.js';
import { credential, credentialDependencies, usesRequestHeader } from './validate-credential.js';
import { sharedCache } from './validate-shared-cache.js';
import { tlsIntercept } from './validate-tls-intercept.js';
import { tracing } from './validate-tracing.js';

type Obj = Record<string, unknown>;

const TOP_KEYS = [
  'listen',
  'allow_remote_clients',
  'limits',
  'admin',
  'log',
  'unmatched',
  'shutdown_timeout',
  'credentials',
  'routes',
  'shared_cache',
  'tls_intercept',
  'tracing',
];
const ROUTE_KEYS = [
  'name',
  'match',
  'upstream',
  'strip_prefix',
  'credential',
  'header',
  'prefix',
  'scope',
  'audience',
  'resource',
  'tls',
  'retry_on_401',
  'replay_buffer',
  'connect_timeout',
  'response_timeout',
  'upstream_max_connections',
  'allow_insecure_http',
  'strict_path',
  'upstream_protocol',
];
const LOG_LEVELS: readonly LogLevel[] = ['trace', 'debug', 'info', 'warn', 'error'];
const UPSTREAM_PROTOCOLS: readonly UpstreamProtocol[] = ['http1', 'http2'];
/** Headers that must not be chosen for injection: they are connection-level or routing-level. */
const UNINJECTABLE_HEADERS = new Set([
  'host',
  'connection',
  'keep-alive',
  'proxy-authorization',
  'proxy-authenticate',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'content-length',
]);
const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

export const DEFAULTS = {
  listen: Object.freeze({ host: '127.0.0.1', port: 8080 }),
  adminListen: Object.freeze({ host: '127.0.0.1', port: 9090 }),
  shutdownTimeoutMs: 20_000,
  maxHeaderSize: 16 * 1024,
  headersTimeoutMs: 30_000,
  idleTimeoutMs: 5_000,
  tunnelIdleTimeoutMs: 5 * 60_000,
  requestTimeoutMs: 5 * 60_000,
  replayBufferBytes: 64 * 1024,
  upstreamConnectTimeoutMs: 10_000,
  upstreamResponseTimeoutMs: 60_000,
  upstreamMaxConnections: 256,
  maxHeaders: 100,
  maxConnections: 4096,
  replayBufferTotal: 32 * 1024 * 1024,
} as const;

/** Node's parser accepts only these methods, so a route naming another could never match. */
const KNOWN_METHODS: ReadonlySet<string> = new Set(METHODS);

/**
 * Turns parsed YAML into a frozen {@link Config}, or returns every problem found. Never throws
 * for bad input: the caller decides whether problems are fatal.
 */
export function validateConfig(
  raw: unknown,
  sources: ConfigSources,
): { config?: Config; problems: Checker['problems'] } {
  const c = new Checker(sources);
  if (raw === undefined || raw === null) {
    c.add('', 'the configuration is empty');
    return { problems: c.problems };
  }
  const root = c.object(raw, '(root)');
  if (!root) return { problems: c.problems };
  c.onlyKeys(root, '', TOP_KEYS);

  const listen = listenAddress(c, root, 'listen', '', DEFAULTS.listen);
  const allowRemoteClients = c.boolean(root, 'allow_remote_clients', '', false);
  if (!allowRemoteClients && !isLoopback(listen.host)) {
    c.add(
      'listen',
      `${listen.host} is beyond loopback: any client that reaches it gets requests sent with your tokens; set allow_remote_clients: true if that is intended`,
    );
  }
  const limits = listenerLimits(c, root);
  const adminObj = c.object(root['admin'], 'admin') ?? {};
  c.onlyKeys(adminObj, 'admin', ['listen']);
  const adminListen = listenAddress(c, adminObj, 'listen', 'admin', DEFAULTS.adminListen);
  if (
    listen.port !== 0 &&
    listen.port === adminListen.port &&
    sameHostFamily(listen.host, adminListen.host)
  ) {
    const key = adminObj['listen'] !== undefined ? 'admin.listen' : 'listen';
    c.add(
      key,
      `must differ from ${key === 'listen' ? 'admin.listen' : 'listen'} (both use port ${listen.port})`,
    );
  }
  const logObj = c.object(root['log'], 'log') ?? {};
  c.onlyKeys(logObj, 'log', ['level']);
  const level = c.oneOf(logObj, 'level', 'log', LOG_LEVELS, 'info');
  const unmatched = c.oneOf<UnmatchedPolicy>(root, 'unmatched', '', ['deny', 'passthrough'], 'deny');
  const shutdownTimeoutMs = c.duration(root, 'shutdown_timeout', '', DEFAULTS.shutdownTimeoutMs);

  const credentials = new Map<string, CredentialConfig>();
  const credObj = c.object(root['credentials'], 'credentials') ?? {};
  for (const [name, value] of Object.entries(credObj)) {
    const cred = credential(c, name, value);
    if (cred) credentials.set(name, Object.freeze(cred));
  }

  checkCredentialReferences(c, credentials, credObj);

  const routes: RouteConfig[] = [];
  const rawRoutes = root['routes'];
  if (rawRoutes !== undefined && rawRoutes !== null && !Array.isArray(rawRoutes)) {
    c.add('routes', 'must be a list');
  } else if (Array.isArray(rawRoutes)) {
    const seen = new Set<string>();
    rawRoutes.forEach((value, i) => {
      const r = route(c, i, value, credObj);
      if (!r) return;
      if (seen.has(r.name)) c.add(`routes[${i}].name`, `duplicate route name "${r.name}"`);
      seen.add(r.name);
      routes.push(Object.freeze(r));
    });
  }

  const shared = sharedCache(c, root);
  const intercept = tlsIntercept(c, root);
  const trace = tracing(c, root);

  if (c.problems.length > 0) return { problems: c.problems };
  const config: Config = Object.freeze({
    listen,
    allowRemoteClients,
    limits,
    admin: Object.freeze({ listen: adminListen }),
    log: Object.freeze({ level }),
    unmatched,
    shutdownTimeoutMs,
    credentials,
    routes: Object.freeze(routes),
    ...(shared ? { sharedCache: shared } : {}),
    ...(intercept ? { tlsIntercept: intercept } : {}),
    ...(trace ? { tracing: trace } : {}),
    warnings: Object.freeze([...c.warnings]),
  });
  return { config, problems: [] };
}

function route(c: Checker, i: number, value: unknown, credentials: Obj): RouteConfig | undefined {
  const path = `routes[${i}]`;
  const obj = c.object(value, path);
  if (!obj) {
    if (value === null || value === undefined) c.add(path, 'must be a mapping');
    return undefined;
  }
  c.onlyKeys(obj, path, ROUTE_KEYS);
  const before = c.problems.length;
  c.required(obj, 'name', path);
  const name = c.string(obj, 'name', path);
  if (name !== undefined && !NAME.test(name)) {
    c.add(join(path, 'name'), 'a route name may hold only letters, digits, ".", "_" and "-"');
  }
  const match = routeMatch(c, obj, path);
  c.required(obj, 'upstream', path);
  const upstream = c.url(obj, 'upstream', path, { allowQuery: false });
  if (upstream) upstream.pathname = upstream.pathname.replace(/\/+$/, '');
  const stripPrefix = c.boolean(obj, 'strip_prefix', path, false);
  if (stripPrefix && !match?.pathPrefix) c.add(join(path, 'strip_prefix'), 'needs match.path_prefix');
  c.required(obj, 'credential', path);
  const credential = c.string(obj, 'credential', path);
  if (credential !== undefined && !Object.hasOwn(credentials, credential)) {
    const known = Object.keys(credentials);
    c.add(
      join(path, 'credential'),
      `unknown credential "${credential}" (known: ${known.length ? known.join(', ') : 'none'})`,
    );
  }
  const header = c.string(obj, 'header', path) ?? 'Authorization';
  if (!TOKEN.test(header)) c.add(join(path, 'header'), `"${header}" is not a valid header name`);
  else if (UNINJECTABLE_HEADERS.has(header.toLowerCase())) {
    c.add(join(path, 'header'), `"${header}" is a connection or routing header and cannot carry a token`);
  }
  const prefix = c.string(obj, 'prefix', path) ?? 'Bearer ';
  if (/[\r\n\0]/.test(prefix)) c.add(join(path, 'prefix'), 'must not contain CR, LF or NUL');
  const tokenScope = routeTokenScope(c, obj, path);
  const tls = c.tls(obj, path);
  const allowInsecureHttp = c.boolean(obj, 'allow_insecure_http', path, false);
  if (upstream && !allowInsecureHttp) insecureHttp(c, upstream, join(path, 'upstream'), 'a route');
  const strictPath = c.boolean(obj, 'strict_path', path, true);
  const upstreamProtocol = c.oneOf(obj, 'upstream_protocol', path, UPSTREAM_PROTOCOLS, 'http1');
  const retryOn401 = c.boolean(obj, 'retry_on_401', path, false);
  const replayBufferBytes = c.size(obj, 'replay_buffer', path, DEFAULTS.replayBufferBytes);
  const connectTimeoutMs = positive(c, obj, 'connect_timeout', path, DEFAULTS.upstreamConnectTimeoutMs);
  const responseTimeoutMs = positive(c, obj, 'response_timeout', path, DEFAULTS.upstreamResponseTimeoutMs);
  const upstreamMaxConnections = c.integer(
    obj,
    'upstream_max_connections',
    path,
    DEFAULTS.upstreamMaxConnections,
    { min: 1, max: 65_535 },
  );
  if (c.problems.length > before || !name || !match || !upstream || !credential) return undefined;
  return {
    name,
    match,
    upstream,
    stripPrefix,
    credential,
    header,
    prefix,
    tokenScope,
    tls,
    retryOn401,
    replayBufferBytes,
    connectTimeoutMs,
    responseTimeoutMs,
    upstreamMaxConnections,
    allowInsecureHttp,
    strictPath,
    upstreamProtocol,
  };
}

/** A route's own scope, audience and resource; each replaces the credential's when set. */
function routeTokenScope(c: Checker, obj: Obj, path: string): TokenScope {
  const scope = c.stringList(obj, 'scope', path);
  const audience = c.string(obj, 'audience', path);
  const resource = c.string(obj, 'resource', path);
  if (resource !== undefined && !isAbsoluteUrl(resource)) {
    c.add(join(path, 'resource'), 'must be an absolute URI (RFC 8707 §2)');
  }
  return Object.freeze({
    ...(scope && scope.length > 0 ? { scope: scope.join(' ') } : {}),
    ...(audience !== undefined ? { audience } : {}),
    ...(resource !== undefined ? { resource } : {}),
  });
}

function routeMatch(c: Checker, route: Obj, routePath: string): RouteMatch | undefined {
  const path = join(routePath, 'match');
  const obj = c.object(route['match'], path) ?? {};
  c.onlyKeys(obj, path, ['host', 'path_prefix', 'methods']);
  const out: { host?: string; port?: number; pathPrefix?: string; methods?: ReadonlySet<string> } = {};
  const host = c.string(obj, 'host', path);
  if (host !== undefined) {
    const parsed = parseHostPattern(host);
    if (typeof parsed === 'string') c.add(join(path, 'host'), parsed);
    else {
      out.host = parsed.host;
      if (parsed.port !== undefined) out.port = parsed.port;
    }
  }
  const prefix = c.string(obj, 'path_prefix', path);
  if (prefix !== undefined) {
    if (!prefix.startsWith('/')) c.add(join(path, 'path_prefix'), 'must start with "/"');
    else out.pathPrefix = prefix;
  }
  const methods = c.stringList(obj, 'methods', path);
  if (methods !== undefined) {
    const bad = methods.find((m) => !KNOWN_METHODS.has(m.toUpperCase()));
    if (bad !== undefined) {
      const hint = TOKEN.test(bad) ? closestMethod(bad.toUpperCase()) : undefined;
      c.add(
        join(path, 'methods'),
        `"${bad}" is not a known HTTP method${hint ? ` (did you mean "${hint}"?)` : ''}`,
      );
    } else if (methods.length === 0) c.add(join(path, 'methods'), 'must list at least one method');
    else out.methods = new Set(methods.map((m) => m.toUpperCase()));
  }
  return Object.freeze(out);
}

function listenAddress(
  c: Checker,
  obj: Obj,
  key: string,
  path: string,
  fallback: ListenAddress,
): ListenAddress {
  const value = c.string(obj, key, path);
  if (value === undefined) return fallback;
  const parsed = parseListen(value);
  if (!parsed) {
    c.add(join(path, key), `must be host:port such as 127.0.0.1:8080 or [::1]:8080, got "${value}"`);
    return fallback;
  }
  return parsed;
}

/** `127.0.0.1:8080`, `[::1]:8080`, `0.0.0.0:8080`, or a bare port (bound to loopback). */
export function parseListen(text: string): ListenAddress | undefined {
  // The colon is required whenever a host is given, so "8080" cannot split into "808" and "0".
  const m = /^(?:(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):)?(\d{1,5})$/.exec(text.trim());
  if (!m) return undefined;
  const port = Number(m[3]);
  if (port > 65535) return undefined;
  return Object.freeze({ host: m[1] ?? m[2] ?? '127.0.0.1', port });
}

function sameHostFamily(a: string, b: string): boolean {
  const wild = (h: string) => h === '0.0.0.0' || h === '::';
  return a === b || wild(a) || wild(b);
}

/**
 * A token exchange may take its subject or actor token from another credential: that one must
 * exist, and following such references must never lead back (the fetch would wait on itself).
 */
function checkCredentialReferences(c: Checker, credentials: Map<string, CredentialConfig>, raw: Obj): void {
  const known = Object.keys(raw);
  for (const cred of credentials.values()) {
    if (cred.grant.type !== 'token_exchange') continue;
    const inputs = [
      ['subject_token', cred.grant.subjectToken],
      ['actor_token', cred.grant.actorToken],
    ] as const;
    for (const [key, input] of inputs) {
      if (input?.source !== 'credential') continue;
      const dep = input.credential;
      const path = `credentials.${cred.name}.${key}.credential`;
      const target = credentials.get(dep);
      if (!known.includes(dep)) c.add(path, `unknown credential "${dep}" (known: ${known.join(', ')})`);
      else if (leadsBack(credentials, dep, cred.name, new Set())) {
        c.add(
          path,
          `"${dep}" depends on "${cred.name}" in turn: credentials must not depend on each other in a cycle`,
        );
      } else if (target && usesRequestHeader(target.grant)) {
        // Its token exists only for a request's assertion; there is none when exchanging.
        c.add(
          path,
          `"${dep}" gets its tokens from request headers (source: request_header) and cannot be used as a token source`,
        );
      }
    }
  }
}

function leadsBack(
  all: Map<string, CredentialConfig>,
  from: string,
  target: string,
  seen: Set<string>,
): boolean {
  if (from === target) return true;
  if (seen.has(from)) return false;
  seen.add(from);
  const cred = all.get(from);
  return cred ? credentialDependencies(cred).some((d) => leadsBack(all, d, target, seen)) : false;
}

function listenerLimits(c: Checker, root: Obj): ListenerLimits {
  const obj = c.object(root['limits'], 'limits') ?? {};
  c.onlyKeys(obj, 'limits', [
    'max_header_size',
    'max_headers',
    'headers_timeout',
    'idle_timeout',
    'tunnel_idle_timeout',
    'request_timeout',
    'max_connections',
    'replay_buffer_total',
  ]);
  const maxHeaderSize = c.size(obj, 'max_header_size', 'limits', DEFAULTS.maxHeaderSize);
  if (maxHeaderSize < 1024) c.add('limits.max_header_size', 'must be at least 1KiB');
  return Object.freeze({
    maxHeaderSize,
    // At least a handful: a request needs Host, and a token-carrying header may be added.
    maxHeaders: c.integer(obj, 'max_headers', 'limits', DEFAULTS.maxHeaders, { min: 8, max: 10_000 }),
    headersTimeoutMs: positive(c, obj, 'headers_timeout', 'limits', DEFAULTS.headersTimeoutMs),
    idleTimeoutMs: positive(c, obj, 'idle_timeout', 'limits', DEFAULTS.idleTimeoutMs),
    tunnelIdleTimeoutMs: positive(c, obj, 'tunnel_idle_timeout', 'limits', DEFAULTS.tunnelIdleTimeoutMs),
    requestTimeoutMs: c.duration(obj, 'request_timeout', 'limits', DEFAULTS.requestTimeoutMs),
    maxConnections: c.integer(obj, 'max_connections', 'limits', DEFAULTS.maxConnections, {
      min: 1,
      max: 1_000_000,
    }),
    replayBufferTotal: c.size(obj, 'replay_buffer_total', 'limits', DEFAULTS.replayBufferTotal),
  });
}

/** The known method nearest to a mistyped one (`GTE` → `GET`), by letters regardless of order. */
function closestMethod(method: string): string | undefined {
  const sorted = (m: string) => [...m].sort().join('');
  return METHODS.find((m) => sorted(m) === sorted(method));
}
