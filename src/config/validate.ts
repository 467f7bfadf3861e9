import { Checker, join } from './checker.js';
import type { ConfigSources } from './interpolate.js';
import type {
  ClientAuthMethod,
  Config,
  CredentialConfig,
  GrantType,
  ListenAddress,
  LogLevel,
  RouteConfig,
  RouteMatch,
  TlsTrust,
  UnmatchedPolicy,
} from './types.js';

type Obj = Record<string, unknown>;

const TOP_KEYS = ['listen', 'admin', 'log', 'unmatched', 'shutdown_timeout', 'credentials', 'routes'];
const CREDENTIAL_KEYS = [
  'token_endpoint',
  'grant_type',
  'client_id',
  'client_secret',
  'auth_method',
  'scope',
  'audience',
  'resource',
  'params',
  'prefetch',
  'timeout',
  'refresh_ahead',
  'tls',
];
const ROUTE_KEYS = ['name', 'match', 'upstream', 'strip_prefix', 'credential', 'header', 'prefix', 'tls'];
const GRANT_TYPES: readonly GrantType[] = ['client_credentials'];
const AUTH_METHODS: readonly ClientAuthMethod[] = ['client_secret_basic', 'client_secret_post'];
const LOG_LEVELS: readonly LogLevel[] = ['trace', 'debug', 'info', 'warn', 'error'];
/** Form fields token-injector writes itself; letting `params` set them would hide the real config. */
const RESERVED_PARAMS = [
  'grant_type',
  'client_id',
  'client_secret',
  'client_assertion',
  'client_assertion_type',
  'scope',
  'audience',
  'resource',
];
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
  tokenTimeoutMs: 10_000,
  refreshAhead: 0.8,
  shutdownTimeoutMs: 20_000,
} as const;

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
  const adminObj = c.object(root['admin'], 'admin') ?? {};
  c.onlyKeys(adminObj, 'admin', ['listen']);
  const adminListen = listenAddress(c, adminObj, 'listen', 'admin', DEFAULTS.adminListen);
  if (
    listen.port !== 0 &&
    listen.port === adminListen.port &&
    sameHostFamily(listen.host, adminListen.host)
  ) {
    c.add('admin.listen', `must differ from listen (both use port ${listen.port})`);
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

  if (c.problems.length > 0) return { problems: c.problems };
  const config: Config = Object.freeze({
    listen,
    admin: Object.freeze({ listen: adminListen }),
    log: Object.freeze({ level }),
    unmatched,
    shutdownTimeoutMs,
    credentials,
    routes: Object.freeze(routes),
  });
  return { config, problems: [] };
}

function credential(c: Checker, name: string, value: unknown): CredentialConfig | undefined {
  const path = join('credentials', name);
  if (!NAME.test(name)) c.add(path, 'a credential name may hold only letters, digits, ".", "_" and "-"');
  const obj = c.object(value, path);
  if (!obj) {
    if (value === null || value === undefined) c.add(path, 'must be a mapping');
    return undefined;
  }
  c.onlyKeys(obj, path, CREDENTIAL_KEYS);
  const before = c.problems.length;
  c.required(obj, 'token_endpoint', path);
  const tokenEndpoint = url(c, obj, 'token_endpoint', path, { allowQuery: true });
  const grantType = c.oneOf(obj, 'grant_type', path, GRANT_TYPES, 'client_credentials');
  if (obj['grant_type'] === undefined) c.required(obj, 'grant_type', path);
  c.required(obj, 'client_id', path);
  const clientId = c.string(obj, 'client_id', path);
  const authMethod = c.oneOf(obj, 'auth_method', path, AUTH_METHODS, 'client_secret_basic');
  c.required(obj, 'client_secret', path);
  const clientSecret = c.string(obj, 'client_secret', path);
  if (clientSecret === '') c.add(join(path, 'client_secret'), 'must not be empty');
  const scope = c.stringList(obj, 'scope', path);
  const audience = c.string(obj, 'audience', path);
  const resource = c.string(obj, 'resource', path);
  if (resource !== undefined && !isAbsoluteUrl(resource)) {
    c.add(join(path, 'resource'), 'must be an absolute URI (RFC 8707 §2)');
  }
  const params = stringMap(c, obj, 'params', path);
  for (const key of Object.keys(params)) {
    if (RESERVED_PARAMS.includes(key)) {
      c.add(
        join(join(path, 'params'), key),
        'is set by token-injector from its own key; use that key instead',
      );
    }
  }
  const prefetch = c.boolean(obj, 'prefetch', path, false);
  const timeoutMs = c.duration(obj, 'timeout', path, DEFAULTS.tokenTimeoutMs);
  if (timeoutMs === 0) c.add(join(path, 'timeout'), 'must be greater than 0');
  let refreshAhead: number = DEFAULTS.refreshAhead;
  if (obj['refresh_ahead'] !== undefined) {
    const v = obj['refresh_ahead'];
    if (typeof v !== 'number' || !(v > 0 && v < 1)) {
      c.add(
        join(path, 'refresh_ahead'),
        'must be a fraction of the token lifetime between 0 and 1, e.g. 0.8',
      );
    } else refreshAhead = v;
  }
  const tls = tlsTrust(c, obj, path);
  if (c.problems.length > before || !tokenEndpoint || clientId === undefined || clientSecret === undefined) {
    return undefined;
  }
  return {
    name,
    tokenEndpoint,
    grantType,
    clientId,
    clientSecret,
    authMethod,
    ...(scope && scope.length > 0 ? { scope: scope.join(' ') } : {}),
    ...(audience !== undefined ? { audience } : {}),
    ...(resource !== undefined ? { resource } : {}),
    params: Object.freeze(params),
    prefetch,
    timeoutMs,
    refreshAhead,
    tls,
  };
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
  const upstream = url(c, obj, 'upstream', path, { allowQuery: false });
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
  const tls = tlsTrust(c, obj, path);
  if (c.problems.length > before || !name || !match || !upstream || !credential) return undefined;
  return { name, match, upstream, stripPrefix, credential, header, prefix, tls };
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
    const bad = methods.find((m) => !TOKEN.test(m));
    if (bad !== undefined) c.add(join(path, 'methods'), `"${bad}" is not an HTTP method`);
    else if (methods.length === 0) c.add(join(path, 'methods'), 'must list at least one method');
    else out.methods = new Set(methods.map((m) => m.toUpperCase()));
  }
  return Object.freeze(out);
}

/** `host`, `host:port`, `*.suffix`, `[v6]:port` → lower-case host without trailing dot. */
export function parseHostPattern(text: string): { host: string; port?: number } | string {
  let host = text.trim().toLowerCase();
  let port: number | undefined;
  const v6 = /^\[([0-9a-f:.]+)\](?::(\d+))?$/.exec(host);
  if (v6) {
    host = `[${v6[1]}]`;
    if (v6[2] !== undefined) port = Number(v6[2]);
  } else {
    const m = /^([^:]+):(\d+)$/.exec(host);
    if (m) {
      host = m[1]!;
      port = Number(m[2]);
    }
    host = host.replace(/\.$/, '');
    const body = host.startsWith('*.') ? host.slice(2) : host;
    if (!/^[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*$/.test(body)) {
      return `"${text}" is not a host name; use an exact name, or "*." and a domain for its subdomains`;
    }
  }
  if (port !== undefined && (port < 1 || port > 65535)) return `port ${port} is out of range`;
  return port === undefined ? { host } : { host, port };
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

function url(
  c: Checker,
  obj: Obj,
  key: string,
  path: string,
  opts: { allowQuery: boolean },
): URL | undefined {
  const text = c.string(obj, key, path);
  if (text === undefined) return undefined;
  const here = join(path, key);
  let parsed: URL;
  try {
    parsed = new URL(text);
  } catch {
    c.add(here, `"${text}" is not a URL`);
    return undefined;
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    c.add(here, `must be an http:// or https:// URL, got ${parsed.protocol}//`);
    return undefined;
  }
  if (parsed.username || parsed.password) {
    c.add(here, 'must not contain user info; put credentials in their own keys');
    return undefined;
  }
  if (parsed.hash) {
    c.add(here, 'must not contain a fragment (#…)');
    return undefined;
  }
  if (!opts.allowQuery && parsed.search) {
    c.add(here, 'must not contain a query string');
    return undefined;
  }
  return parsed;
}

function stringMap(c: Checker, obj: Obj, key: string, path: string): Record<string, string> {
  const here = join(path, key);
  const map = c.object(obj[key], here);
  const out: Record<string, string> = {};
  if (!map) return out;
  for (const [k, v] of Object.entries(map)) {
    const s = c.stringValue(v, join(here, k));
    if (s !== undefined) out[k] = s;
  }
  return out;
}

function tlsTrust(c: Checker, obj: Obj, path: string): TlsTrust {
  const here = join(path, 'tls');
  const tls = c.object(obj['tls'], here);
  if (!tls) return Object.freeze({});
  c.onlyKeys(tls, here, ['ca_file']);
  const caFile = c.string(tls, 'ca_file', here);
  if (caFile === undefined) return Object.freeze({});
  const ca = c.stringValue(`\${file:${caFile}}`, join(here, 'ca_file'));
  if (ca === undefined) return Object.freeze({});
  // An empty or wrong file must not silently fall back to the public roots alone.
  if (!ca.includes('-----BEGIN CERTIFICATE-----'))
    c.add(join(here, 'ca_file'), `${caFile} holds no PEM certificate`);
  return Object.freeze({ ca, caFile });
}

function isAbsoluteUrl(text: string): boolean {
  try {
    new URL(text);
    return true;
  } catch {
    return false;
  }
}
