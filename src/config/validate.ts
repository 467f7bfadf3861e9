import { Checker, isMapping, join } from './checker.js';
import type { ConfigSources } from './interpolate.js';
import { inSchemaOrder } from './problem-order.js';
import { insecureHttp, isLoopback, tlsClient } from './rules.js';
import { ConfigFile, Route } from './schema.js';
import { describe } from './schema-kit.js';
import type { Config, CredentialConfig, RouteConfig, RouteMatch } from './types.js';
import { credential, credentialDependencies, usesRequestHeader } from './validate-credential.js';
import { sharedCache } from './validate-shared-cache.js';
import { tlsIntercept } from './validate-tls-intercept.js';

type Obj = Record<string, unknown>;

/**
 * Turns parsed YAML into a frozen {@link Config}, or returns every problem found. Never throws
 * for bad input: the caller decides whether problems are fatal. The schema (schema.ts) checks
 * each key; this checks what needs several keys, files or other sections.
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
  if (!isMapping(raw)) {
    c.add('(root)', `must be a mapping, got ${describe(raw)}`);
    return { problems: c.problems };
  }
  const file = c.fields(ConfigFile, raw, '');

  const listen = file.listen;
  if (!file.allow_remote_clients && !isLoopback(listen.host)) {
    c.add(
      'listen',
      `${listen.host} is beyond loopback: any client that reaches it gets requests sent with your tokens; set allow_remote_clients: true if that is intended`,
    );
  }
  const adminListen = file.admin.listen;
  if (
    listen.port !== 0 &&
    listen.port === adminListen.port &&
    sameHostFamily(listen.host, adminListen.host)
  ) {
    const admin = isMapping(raw['admin']) ? raw['admin'] : {};
    const key = admin['listen'] !== undefined ? 'admin.listen' : 'listen';
    c.add(
      key,
      `must differ from ${key === 'listen' ? 'admin.listen' : 'listen'} (both use port ${listen.port})`,
    );
  }

  const credentials = new Map<string, CredentialConfig>();
  const credObj = c.mapping(file.credentials, 'credentials') ?? {};
  for (const [name, value] of Object.entries(credObj)) {
    const cred = credential(c, name, value);
    if (cred) credentials.set(name, Object.freeze(cred));
  }

  checkCredentialReferences(c, credentials, credObj);

  const routes: RouteConfig[] = [];
  const rawRoutes = file.routes;
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

  const shared = file.shared_cache && sharedCache(c, file.shared_cache, raw['shared_cache']);
  const intercept = file.tls_intercept && tlsIntercept(c, file.tls_intercept);

  if (c.problems.length > 0) return { problems: inSchemaOrder(c.problems, ConfigFile, raw) };
  const { limits } = file;
  const config: Config = Object.freeze({
    listen,
    allowRemoteClients: file.allow_remote_clients,
    limits: Object.freeze({
      maxHeaderSize: limits.max_header_size,
      maxHeaders: limits.max_headers,
      headersTimeoutMs: limits.headers_timeout,
      idleTimeoutMs: limits.idle_timeout,
      tunnelIdleTimeoutMs: limits.tunnel_idle_timeout,
      requestTimeoutMs: limits.request_timeout,
      maxConnections: limits.max_connections,
      replayBufferTotal: limits.replay_buffer_total,
    }),
    admin: Object.freeze({ listen: adminListen }),
    log: Object.freeze({ level: file.log.level }),
    unmatched: file.unmatched,
    shutdownTimeoutMs: file.shutdown_timeout,
    credentials,
    routes: Object.freeze(routes),
    ...(shared ? { sharedCache: shared } : {}),
    ...(intercept ? { tlsIntercept: intercept } : {}),
    // Undefined: no tracer is loaded and requests pay nothing. Spans carry no secret, so a
    // plain-http collector inside the cluster is allowed, as OpenTelemetry's own defaults do.
    ...(file.tracing?.otlp_endpoint
      ? {
          tracing: Object.freeze({
            otlpEndpoint: file.tracing.otlp_endpoint,
            serviceName: file.tracing.service_name,
            sampleRatio: file.tracing.sample_ratio,
          }),
        }
      : {}),
    warnings: Object.freeze(inSchemaOrder(c.warnings, ConfigFile, raw)),
  });
  return { config, problems: [] };
}

function route(c: Checker, i: number, raw: unknown, credentials: Obj): RouteConfig | undefined {
  const path = `routes[${i}]`;
  const value = c.entry(raw, path);
  if (!value) return undefined;
  const before = c.problems.length;
  const r = c.fields(Route, value, path);
  const { name, match, upstream, credential } = r;
  if (r.strip_prefix && !match.path_prefix) c.add(join(path, 'strip_prefix'), 'needs match.path_prefix');
  if (credential !== undefined && !Object.hasOwn(credentials, credential)) {
    const known = Object.keys(credentials);
    c.add(
      join(path, 'credential'),
      `unknown credential "${credential}" (known: ${known.length ? known.join(', ') : 'none'})`,
    );
  }
  const used =
    credential !== undefined && Object.hasOwn(credentials, credential) ? credentials[credential] : undefined;
  if (isMapping(used) && used['dpop'] !== undefined) {
    // RFC 9449 §7.1: a bound token goes in Authorization with the DPoP scheme, nowhere else.
    for (const key of ['header', 'prefix']) {
      if (value[key] !== undefined)
        c.add(
          join(path, key),
          `cannot be set: credential "${credential}" has dpop, sent as Authorization: DPoP`,
        );
    }
  }
  if (r.resource_metadata !== undefined) {
    // RFC 9728: the resource names the authorization servers by issuer; ours must be one of them.
    if (isMapping(used) && used['issuer'] === undefined)
      c.add(join(path, 'resource_metadata'), `needs a credential with issuer; "${credential}" has none`);
    if (value['resource'] !== undefined)
      c.add(join(path, 'resource'), 'is discovered with resource_metadata: discover; remove one of them');
  }
  const tls = tlsClient(c, r.tls, value['tls'], join(path, 'tls'));
  if (upstream && !r.allow_insecure_http) insecureHttp(c, upstream, join(path, 'upstream'), 'a route');
  if (c.problems.length > before || name === undefined || upstream === undefined || credential === undefined)
    return undefined;
  const routeMatch: RouteMatch = Object.freeze({
    ...match.host,
    ...(match.path_prefix !== undefined ? { pathPrefix: match.path_prefix } : {}),
    ...(match.methods !== undefined ? { methods: match.methods } : {}),
  });
  return {
    name,
    match: routeMatch,
    upstream,
    stripPrefix: r.strip_prefix,
    credential,
    header: r.header,
    prefix: r.prefix,
    // A route's own scope, audience and resource; each replaces the credential's when set.
    tokenScope: Object.freeze({
      ...(r.scope && r.scope.length > 0 ? { scope: r.scope.join(' ') } : {}),
      ...(r.audience !== undefined ? { audience: r.audience } : {}),
      ...(r.resource !== undefined ? { resource: r.resource } : {}),
    }),
    tls,
    retryOn401: r.retry_on_401,
    discoverResource: r.resource_metadata === 'discover',
    replayBufferBytes: r.replay_buffer,
    connectTimeoutMs: r.connect_timeout,
    responseTimeoutMs: r.response_timeout,
    upstreamMaxConnections: r.upstream_max_connections,
    allowInsecureHttp: r.allow_insecure_http,
    strictPath: r.strict_path,
    upstreamProtocol: r.upstream_protocol,
  };
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
