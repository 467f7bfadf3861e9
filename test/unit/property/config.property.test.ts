// biome-ignore-all lint/suspicious/noTemplateCurlyInString: these properties are about the literal ${env:} syntax
/**
 * Properties of the configuration loader (src/config/load.ts parseConfigText and the validators
 * behind it), over generated documents: arbitrary YAML-ish text, arbitrary JSON values, valid
 * configurations of every grant and client authentication that needs no file, and those same
 * configurations with typos, wrong types and `${env:}` references in every position.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import type { ConfigSources } from '../../../src/config/interpolate.js';
import { parseConfigText } from '../../../src/config/load.js';
import { Credential } from '../../../src/config/schema-credential.js';
import type { Config } from '../../../src/config/types.js';
import { parseYaml } from '../../../src/config/yaml.js';
import type { ConfigProblem } from '../../../src/errors.js';

const RUNS = 200;

type Doc = Record<string, unknown>;
type Env = Record<string, string>;
type Segment = string | number;

// ---------------------------------------------------------------------------------------------
// The schema, as the README documents it (only the credential's keys are taken from src)

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
  'strict_path',
  'allow_insecure_http',
];
const LIMIT_KEYS = [
  'max_header_size',
  'max_headers',
  'headers_timeout',
  'idle_timeout',
  'request_timeout',
  'max_connections',
  'replay_buffer_total',
];
/** Keys whose value is a duration or a size (parsed by units.ts). */
const UNIT_KEYS = new Set([
  'timeout',
  'connect_timeout',
  'response_timeout',
  'default_lifetime',
  'max_lifetime',
  'initial_backoff',
  'max_backoff',
  'shutdown_timeout',
  'headers_timeout',
  'idle_timeout',
  'request_timeout',
  'lifetime',
  'max_response_size',
  'max_header_size',
  'replay_buffer',
]);

/** The keys a mapping at `path` (as segments) may hold, or undefined when it is free-form. */
function allowedKeys(doc: Doc, path: Segment[], env: Env): readonly string[] | undefined {
  const [a, b, c, d] = path;
  if (path.length === 0) return TOP_KEYS;
  if (path.length === 1 && a === 'limits') return LIMIT_KEYS;
  if (path.length === 1 && a === 'admin') return ['listen'];
  if (path.length === 1 && a === 'log') return ['level'];
  if (a === 'credentials' && path.length === 2) return Object.keys(Credential.shape);
  if (a === 'credentials' && path.length === 3 && c === 'retry') return ['initial_backoff', 'max_backoff'];
  if (
    a === 'credentials' &&
    path.length === 3 &&
    (c === 'subject_token' || c === 'actor_token' || c === 'assertion')
  ) {
    const input = at(doc, path) as Doc;
    const bySource: Record<string, string[]> = {
      request_header: ['header', 'max_entries'],
      credential: ['credential'],
      file: ['path'],
    };
    const source = String(input['source']).replace(/^\$\{env:([^}]*)\}$/, (_m, v: string) => env[v] ?? '');
    return ['source', ...(c === 'assertion' ? [] : ['type']), ...(bySource[source] ?? [])];
  }
  if (a === 'routes' && path.length === 2 && typeof b === 'number') return ROUTE_KEYS;
  if (a === 'routes' && path.length === 3 && c === 'match' && d === undefined)
    return ['host', 'path_prefix', 'methods'];
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// Helpers

/** In-memory sources: the given environment, and no readable file at all. */
function sources(env: Env = {}): ConfigSources {
  return {
    env,
    readFile: (path) => {
      throw Object.assign(new Error(`ENOENT: no such file or directory, open '${path}'`), { code: 'ENOENT' });
    },
    baseDir: '/etc/token-injector',
  };
}

/** The key path as the validator spells it: `credentials.orders.scope[0]`, `routes[1].match`. */
function formatPath(path: readonly Segment[]): string {
  let out = '';
  for (const s of path) out = typeof s === 'number' ? `${out}[${s}]` : out ? `${out}.${s}` : s;
  return out;
}

function isMapping(v: unknown): v is Doc {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function at(doc: unknown, path: readonly Segment[]): unknown {
  let v: unknown = doc;
  for (const s of path) v = (v as Record<string | number, unknown>)[s];
  return v;
}

function setAt(doc: Doc, path: readonly Segment[], value: unknown): Doc {
  const copy = structuredClone(doc);
  const parent = at(copy, path.slice(0, -1)) as Record<string | number, unknown>;
  parent[path[path.length - 1]!] = value;
  return copy;
}

/** Every node below the root: mappings, lists and leaves. */
function nodes(value: unknown, path: Segment[] = []): Segment[][] {
  const out: Segment[][] = [];
  if (Array.isArray(value)) {
    value.forEach((item, i) => {
      out.push([...path, i], ...nodes(item, [...path, i]));
    });
  } else if (isMapping(value)) {
    for (const [k, v] of Object.entries(value)) out.push([...path, k], ...nodes(v, [...path, k]));
  }
  return out;
}

function stringLeaves(doc: Doc): Segment[][] {
  return nodes(doc).filter((p) => typeof at(doc, p) === 'string');
}

/** The mapping paths (root included) whose keys the schema fixes, with at least one key. */
function schemaMappings(doc: Doc, env: Env): Segment[][] {
  return [[], ...nodes(doc)].filter((p) => {
    const v = p.length === 0 ? doc : at(doc, p);
    return isMapping(v) && Object.keys(v).length > 0 && allowedKeys(doc, p, env) !== undefined;
  });
}

/** Whether `path` (validator spelling) names a value present in `input`, keys with dots included. */
function resolves(value: unknown, path: string): boolean {
  if (path === '') return true;
  if (Array.isArray(value)) {
    const m = /^\[(\d+)\]/.exec(path);
    if (!m) return false;
    const i = Number(m[1]);
    if (i >= value.length) return false;
    const rest = path.slice(m[0].length);
    if (rest === '' || rest.startsWith('[')) return resolves(value[i], rest);
    return rest.startsWith('.') && resolves(value[i], rest.slice(1));
  }
  if (!isMapping(value)) return false;
  for (const key of Object.keys(value)) {
    if (!path.startsWith(key)) continue;
    const rest = path.slice(key.length);
    if (rest === '') return true;
    if (rest.startsWith('.') && resolves(value[key], rest.slice(1))) return true;
    if (rest.startsWith('[') && resolves(value[key], rest)) return true;
  }
  return false;
}

/** `a.b[2].c` → `a.b[2]` → `a.b` → `a`; '' after the first segment. */
function parentPath(path: string): string {
  const m = /(?:\.[^.[\]]*|\[\d+\])$/.exec(path);
  return m ? path.slice(0, m.index) : '';
}

/** A message about a key that is absent because it is missing: it may name that absent key. */
const MISSING = /^is required\b|\bneeds\b/;

/** The same config as comparable JSON: Maps, Sets and URLs spelled out. */
/** The configuration as data, without `warnings` (which depend on how values were written). */
function canonical(config: Config): string {
  return JSON.stringify({ ...config, warnings: undefined }, (_k, v: unknown) => {
    if (v instanceof Map) return { map: [...v] };
    if (v instanceof Set) return { set: [...v] };
    return v;
  });
}

/** What the loader's YAML step hands to the validator, or undefined when it cannot. */
function yamlInput(text: string): { input?: unknown } {
  const { value, problems } = parseYaml(text);
  return problems.length > 0 ? {} : { input: value };
}

/**
 * The invariants of parseConfigText for any text: it returns (never throws); a frozen config and
 * no problem, or problems and no config; every problem has a message and a path naming a key of
 * the input (or a missing required key under one), the root, or a YAML line and column.
 */
function checkInvariants(text: string, env: Env = {}): { config?: Config; problems: ConfigProblem[] } {
  const result = parseConfigText(text, sources(env));
  const { config, problems } = result;
  if (config) {
    expect(problems).toEqual([]);
    expect(Object.isFrozen(config)).toBe(true);
    for (const part of [config.listen, config.limits, config.admin, config.log, config.routes]) {
      expect(Object.isFrozen(part)).toBe(true);
    }
    for (const r of config.routes) expect(Object.isFrozen(r)).toBe(true);
    for (const c of config.credentials.values()) expect(Object.isFrozen(c)).toBe(true);
  } else {
    expect(problems.length).toBeGreaterThan(0);
  }
  const input = problems.length > 0 ? yamlInput(text).input : undefined;
  for (const p of problems) {
    expect(typeof p.message).toBe('string');
    expect(p.message.trim().length).toBeGreaterThan(0);
    if (p.path === '' || p.path === '(root)' || /^line \d+, column \d+$/.test(p.path)) continue;
    if (resolves(input, p.path)) continue;
    // A missing key may be named, as long as where it is missing from is in the input.
    const named = MISSING.test(p.message) && [1, 2].some((up) => resolvesUp(input, p.path, up));
    expect(named, `problem path "${p.path}" (${p.message}) names no key of the input`).toBe(true);
  }
  return result;
}

function resolvesUp(input: unknown, path: string, levels: number): boolean {
  let p = path;
  for (let i = 0; i < levels; i++) p = parentPath(p);
  return p === '' ? isMapping(input) : resolves(input, p);
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = row;
  }
  return prev[b.length]!;
}

// ---------------------------------------------------------------------------------------------
// Generators of valid configurations (no files needed)

interface Text {
  readonly raw: string;
  readonly value: string;
  readonly env: Env;
}

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** A duration > 0 as YAML may hold it, with its value in ms. */
const duration = fc.oneof(
  fc
    .tuple(fc.integer({ min: 1, max: 999 }), fc.constantFrom('ms', 's', 'm', 'h'))
    .map(([n, u]) => ({ raw: `${n}${u}` as unknown, ms: n * UNITS[u]! })),
  fc
    .tuple(fc.integer({ min: 1, max: 59 }), fc.integer({ min: 1, max: 59 }))
    .map(([m, s]) => ({ raw: `${m}m${s}s` as unknown, ms: m * 60_000 + s * 1000 })),
  fc.integer({ min: 1, max: 3600 }).map((n) => ({ raw: n as unknown, ms: n * 1000 })),
);
/** A size of at least 1 KiB. */
const size = fc.oneof(
  fc.integer({ min: 1024, max: 10_000_000 }).map((n) => n as unknown),
  fc
    // 2 at least: 1KB is 1000 bytes, under the 1KiB minimum of max_header_size.
    .tuple(fc.integer({ min: 2, max: 512 }), fc.constantFrom('KiB', 'KB', 'MiB', 'MB', 'kib'))
    .map(([n, u]) => `${n}${u}` as unknown),
);

/** Free text: printable ASCII without a `${`. */
const plain = fc
  .string({ unit: 'grapheme-ascii', minLength: 1, maxLength: 16 })
  .filter((s) => !s.includes('${'));
/** Free text that can precede a `${`: a final "$" would turn it into the `$${` escape. */
const prefixText = plain.filter((s) => !s.endsWith('$'));

function envName(value: string): string {
  // Derived from the value, so two fields never disagree about one variable.
  return `TI_${Buffer.from(value).toString('hex')}`;
}

/** A value written as is, through `${env:}` (whole or embedded), or with a `$${` escape. */
function text(base: fc.Arbitrary<string> = plain): fc.Arbitrary<Text> {
  return fc.oneof(
    { weight: 3, arbitrary: base.map((v) => ({ raw: v, value: v, env: {} })) },
    {
      weight: 1,
      arbitrary: base.map((v) => ({ raw: `\${env:${envName(v)}}`, value: v, env: { [envName(v)]: v } })),
    },
    {
      weight: 1,
      arbitrary: fc.tuple(prefixText, base, plain).map(([a, v, b]) => ({
        raw: `${a}\${env:${envName(v)}}${b}`,
        value: `${a}${v}${b}`,
        env: { [envName(v)]: v },
      })),
    },
    {
      weight: 1,
      arbitrary: fc
        .tuple(base, plain)
        .map(([v, b]) => ({ raw: `$\${${v}}${b}`, value: `\${${v}}${b}`, env: {} })),
    },
  );
}

/** A value with a fixed form (URL, header name…): as is, or whole through `${env:}`. */
function viaEnv(base: fc.Arbitrary<string>): fc.Arbitrary<Text> {
  return fc.oneof(
    { weight: 3, arbitrary: base.map((v) => ({ raw: v, value: v, env: {} })) },
    {
      weight: 1,
      arbitrary: base.map((v) => ({ raw: `\${env:${envName(v)}}`, value: v, env: { [envName(v)]: v } })),
    },
  );
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,11}$/;
const name = fc.stringMatching(NAME);
const headerName = fc.constantFrom('Authorization', 'X-Api-Token', 'x-token', 'X-Assertion', 'X_Weird!');
const remoteHost = fc.constantFrom(
  'idp.example.com',
  'login.example.org',
  'auth.internal',
  'IDP.Example.COM',
);
const httpsUrl = fc
  .tuple(
    remoteHost,
    fc.constantFrom('', ':8443'),
    fc.constantFrom('/token', '/oauth2/v1/token', '/t?tenant=a'),
  )
  .map(([h, p, path]) => `https://${h}${p}${path}`);
const loopbackUrl = fc.constantFrom(
  'http://127.0.0.1:9000/token',
  'http://localhost/token',
  'http://[::1]:8080/t',
);
const tokenTypeName = fc.constantFrom(
  'access_token',
  'refresh_token',
  'id_token',
  'saml1',
  'saml2',
  'jwt',
  'urn:ietf:params:oauth:token-type:jwt',
  'urn:example:custom',
);
const scopeToken = fc.stringMatching(/^[a-z][a-z0-9.:_-]{0,10}$/);
const resource = fc.constantFrom(
  'https://api.example.com',
  'urn:example:resource',
  'https://x.example/p?q=1',
);

interface Part {
  readonly doc: Doc;
  readonly env: Env;
}

/** Merges optional entries: undefined values are left out, and the env maps are joined. */
function part(entries: Record<string, Text | unknown | undefined>): Part {
  const doc: Doc = {};
  const env: Env = {};
  for (const [k, v] of Object.entries(entries)) {
    if (v === undefined) continue;
    if (isText(v)) {
      doc[k] = v.raw;
      Object.assign(env, v.env);
    } else if (isPart(v)) {
      doc[k] = v.doc;
      Object.assign(env, v.env);
    } else doc[k] = v;
  }
  return { doc, env };
}

function isText(v: unknown): v is Text {
  return (
    isMapping(v) && typeof v['raw'] === 'string' && typeof v['value'] === 'string' && isMapping(v['env'])
  );
}

function isPart(v: unknown): v is Part {
  return isMapping(v) && isMapping(v['doc']) && isMapping(v['env']) && Object.keys(v).length === 2;
}

const opt = <T>(arb: fc.Arbitrary<T>) => fc.option(arb, { nil: undefined });

type Kind = 'client_credentials' | 'password' | 'jwt_bearer' | 'saml2_bearer' | 'token_exchange';
const KINDS: readonly Kind[] = [
  'client_credentials',
  'password',
  'jwt_bearer',
  'saml2_bearer',
  'token_exchange',
];

interface ExpectedCredential {
  readonly name: string;
  readonly clientId: string;
  readonly method: string;
  readonly secret?: string;
  readonly grant: Kind;
  readonly username?: string;
  readonly password?: string;
  /** Its token depends on each request (`source: request_header`). */
  readonly perRequest: boolean;
}

interface GenCredential extends Part {
  readonly expected: ExpectedCredential;
}

/** A fixed value, as is or whole through `${env:}`, decided by a generated flag. */
function fixedText(value: string, viaEnvironment: boolean): Text {
  return viaEnvironment
    ? { raw: `\${env:${envName(value)}}`, value, env: { [envName(value)]: value } }
    : { raw: value, value, env: {} };
}

type TokenInputFn = (deps: readonly string[]) => { part: Part; perRequest: boolean };

/**
 * `subject_token`, `actor_token` or `assertion`: from a request header, or (exchanges only) from
 * an earlier credential, picked once the eligible ones are known.
 */
function tokenInput(exchange: boolean): fc.Arbitrary<TokenInputFn> {
  return fc
    .record({
      header: viaEnv(headerName),
      maxEntries: opt(fc.integer({ min: 1, max: 100_000 })),
      type: viaEnv(tokenTypeName),
      useCredential: fc.boolean(),
      depPick: fc.nat(),
      depViaEnv: fc.boolean(),
      sourceViaEnv: fc.boolean(),
    })
    .map((g) => (deps: readonly string[]) => {
      if (exchange && g.useCredential && deps.length > 0) {
        const dep = fixedText(deps[g.depPick % deps.length]!, g.depViaEnv);
        const source = fixedText('credential', g.sourceViaEnv);
        return { part: part({ source, type: g.type, credential: dep }), perRequest: false };
      }
      return {
        part: part({
          source: 'request_header',
          ...(exchange ? { type: g.type } : {}),
          header: g.header,
          max_entries: g.maxEntries,
        }),
        perRequest: true,
      };
    });
}

function orderedPair(defaultLow: number, defaultHigh: number) {
  // Two durations with low <= high, each maybe left out as long as the defaults keep the order.
  return fc.tuple(duration, duration, fc.boolean(), fc.boolean()).map(([x, y, keepLow, keepHigh]) => {
    const [low, high] = x.ms <= y.ms ? [x, y] : [y, x];
    const lowMs = keepLow ? low.ms : defaultLow;
    const highMs = keepHigh ? high.ms : defaultHigh;
    if (lowMs > highMs) return { low: low.raw, high: high.raw };
    return { low: keepLow ? low.raw : undefined, high: keepHigh ? high.raw : undefined };
  });
}

type CredentialFn = (name: string, eligible: readonly string[]) => GenCredential;

interface GrantPart {
  readonly entries: Record<string, unknown>;
  readonly perRequest: boolean;
  readonly username?: Text;
  readonly password?: Text;
}

function grantPart(kind: Kind): fc.Arbitrary<(deps: readonly string[]) => GrantPart> {
  switch (kind) {
    case 'client_credentials':
      return fc.constant(() => ({ entries: {}, perRequest: false }));
    case 'password':
      return fc.record({ username: text(), password: text() }).map(({ username, password }) => () => ({
        entries: { username, password },
        perRequest: false,
        username,
        password,
      }));
    case 'jwt_bearer':
    case 'saml2_bearer':
      return tokenInput(false).map((assertion) => (deps) => {
        const a = assertion(deps);
        return { entries: { assertion: a.part }, perRequest: true };
      });
    case 'token_exchange':
      return fc
        .record({
          subject: tokenInput(true),
          actor: opt(tokenInput(true)),
          requested: opt(viaEnv(tokenTypeName)),
        })
        .map(({ subject, actor, requested }) => (deps) => {
          const s = subject(deps);
          const a = actor?.(deps);
          return {
            entries: { subject_token: s.part, actor_token: a?.part, requested_token_type: requested },
            perRequest: s.perRequest || a?.perRequest === true,
          };
        });
  }
}

/** A credential of one grant, any client authentication that needs no file, any optional key. */
function credential(kind: Kind): fc.Arbitrary<CredentialFn> {
  const methods =
    kind === 'client_credentials'
      ? (['client_secret_basic', 'client_secret_post', 'client_secret_jwt'] as const)
      : (['client_secret_basic', 'client_secret_post', 'client_secret_jwt', 'none'] as const);
  const endpoint = fc.oneof(
    viaEnv(httpsUrl).map((url) => ({ url, insecure: undefined as boolean | undefined })),
    viaEnv(loopbackUrl).map((url) => ({ url, insecure: undefined as boolean | undefined })),
    viaEnv(fc.constantFrom('http://idp.internal/token', 'http://10.0.0.7:8080/token')).map((url) => ({
      url,
      insecure: true as boolean | undefined,
    })),
  );
  return fc
    .record({
      endpoint,
      grantType: viaEnv(fc.constant(kind)),
      clientId: text(),
      method: fc.constantFrom(...methods),
      writeMethod: fc.boolean(),
      secret: text(),
      assertionAudience: opt(text()),
      grant: grantPart(kind),
      scope: opt(fc.oneof(fc.array(viaEnv(scopeToken), { minLength: 1, maxLength: 3 }), viaEnv(scopeToken))),
      audience: opt(text()),
      resource: opt(viaEnv(resource)),
      params: opt(
        fc.dictionary(
          fc.constantFrom('tenant', 'realm', 'x_custom', 'prompt'),
          fc.oneof(text(), fc.integer(), fc.boolean()),
          { maxKeys: 3 },
        ),
      ),
      prefetch: opt(fc.boolean()),
      timeout: opt(duration),
      refreshAhead: opt(fc.double({ min: 0.05, max: 0.95, noNaN: true })),
      connectTimeout: opt(duration),
      maxResponseSize: opt(size),
      lifetimes: orderedPair(5 * 60_000, 24 * 3_600_000),
      tokenTypes: opt(fc.array(viaEnv(fc.constantFrom('DPoP', 'mac', 'n_a')), { maxLength: 3 })),
      retry: opt(orderedPair(250, 30_000)),
    })
    .map((g) => (credName: string, eligible: readonly string[]): GenCredential => {
      const method = g.method;
      const withSecret = method !== 'none';
      const grant = g.grant(eligible);
      const params: Record<string, unknown> = {};
      const env: Env = {};
      for (const [k, v] of Object.entries(g.params ?? {})) {
        if (isText(v)) {
          params[k] = v.raw;
          Object.assign(env, v.env);
        } else params[k] = v;
      }
      const scopes = g.scope === undefined ? [] : Array.isArray(g.scope) ? g.scope : [g.scope];
      for (const t of [...scopes, ...(g.tokenTypes ?? [])]) Object.assign(env, t.env);
      const p = part({
        token_endpoint: g.endpoint.url,
        grant_type: g.grantType,
        client_id: g.clientId,
        auth_method: g.writeMethod || method !== 'client_secret_basic' ? method : undefined,
        client_secret: withSecret ? g.secret : undefined,
        assertion_audience: method === 'client_secret_jwt' ? g.assertionAudience : undefined,
        ...grant.entries,
        scope: Array.isArray(g.scope) ? g.scope.map((s) => s.raw) : g.scope?.raw,
        audience: g.audience,
        resource: g.resource,
        params: g.params === undefined ? undefined : params,
        prefetch: grant.perRequest ? undefined : g.prefetch,
        timeout: g.timeout?.raw,
        refresh_ahead: g.refreshAhead,
        // A connect phase longer than the whole request is refused (credentials.*.connect_timeout).
        connect_timeout:
          g.connectTimeout !== undefined && g.connectTimeout.ms <= (g.timeout?.ms ?? 10_000)
            ? g.connectTimeout.raw
            : undefined,
        max_response_size: g.maxResponseSize,
        default_lifetime: g.lifetimes.low,
        max_lifetime: g.lifetimes.high,
        token_types: g.tokenTypes?.map((t) => t.raw),
        retry:
          g.retry === undefined
            ? undefined
            : part({ initial_backoff: g.retry.low, max_backoff: g.retry.high }).doc,
        allow_insecure_http: g.endpoint.insecure,
      });
      return {
        doc: p.doc,
        env: { ...p.env, ...env },
        expected: {
          name: credName,
          clientId: g.clientId.value,
          method,
          ...(withSecret ? { secret: g.secret.value } : {}),
          grant: kind,
          ...(grant.username ? { username: grant.username.value } : {}),
          ...(grant.password ? { password: grant.password.value } : {}),
          perRequest: grant.perRequest,
        },
      };
    });
}

/** One prebuilt arbitrary per grant: building them per sample would cost more than running them. */
const anyCredential = fc.oneof(...KINDS.map((k) => credential(k)));

interface ExpectedRoute {
  readonly name: string;
  readonly credential: string;
  readonly header: string;
  readonly prefix: string;
}

type RouteFn = (name: string, credentials: readonly string[]) => Part & { expected: ExpectedRoute };

const anyRoute: fc.Arbitrary<RouteFn> = fc
  .record({
    nameViaEnv: fc.boolean(),
    host: opt(
      viaEnv(
        fc.constantFrom('api.example.com', '*.example.com', 'API.Example.COM:8443', '[::1]:8080', 'orders'),
      ),
    ),
    pathPrefix: opt(viaEnv(fc.stringMatching(/^\/[a-z0-9/_-]{0,10}$/))),
    methods: opt(
      fc.oneof(
        fc.array(viaEnv(fc.constantFrom('GET', 'post', 'PUT', 'PATCH', 'DELETE')), {
          minLength: 1,
          maxLength: 3,
        }),
        viaEnv(fc.constantFrom('GET', 'GET POST', 'put delete')),
      ),
    ),
    stripPrefix: opt(fc.boolean()),
    upstream: fc.oneof(
      viaEnv(
        fc
          .tuple(remoteHost, fc.constantFrom('', ':8443'), fc.constantFrom('', '/', '/api', '/base/v1/'))
          .map(([h, p, b]) => `https://${h}${p}${b}`),
      ).map((url) => ({ url, insecure: undefined as boolean | undefined })),
      viaEnv(fc.constantFrom('http://127.0.0.1:8081', 'http://localhost:3000/x')).map((url) => ({
        url,
        insecure: undefined as boolean | undefined,
      })),
      viaEnv(fc.constant('http://orders.internal')).map((url) => ({
        url,
        insecure: true as boolean | undefined,
      })),
    ),
    credentialPick: fc.nat(),
    credentialViaEnv: fc.boolean(),
    header: opt(viaEnv(fc.constantFrom('Authorization', 'X-Api-Key', 'x-token'))),
    prefix: opt(viaEnv(fc.constantFrom('Bearer ', 'Token ', 'bearer', ''))),
    scope: opt(viaEnv(fc.constantFrom('a b', 'orders.read'))),
    audience: opt(text()),
    resource: opt(viaEnv(resource)),
    retryOn401: opt(fc.boolean()),
    replayBuffer: opt(size),
    connectTimeout: opt(duration),
    responseTimeout: opt(duration),
  })
  .map((r) => (routeName: string, credentials: readonly string[]) => {
    const methods = r.methods === undefined ? [] : Array.isArray(r.methods) ? r.methods : [r.methods];
    const match = part({
      host: r.host,
      path_prefix: r.pathPrefix,
      methods: Array.isArray(r.methods) ? r.methods.map((m) => m.raw) : r.methods?.raw,
    });
    const credential = fixedText(credentials[r.credentialPick % credentials.length]!, r.credentialViaEnv);
    const p = part({
      name: fixedText(routeName, r.nameViaEnv),
      match: Object.keys(match.doc).length > 0 || r.stripPrefix === undefined ? match : undefined,
      upstream: r.upstream.url,
      strip_prefix: r.pathPrefix ? r.stripPrefix : undefined,
      credential,
      header: r.header,
      prefix: r.prefix,
      scope: r.scope,
      audience: r.audience,
      resource: r.resource,
      retry_on_401: r.retryOn401,
      replay_buffer: r.replayBuffer,
      connect_timeout: r.connectTimeout?.raw,
      response_timeout: r.responseTimeout?.raw,
      allow_insecure_http: r.upstream.insecure,
    });
    const env = Object.assign({}, p.env, match.env, ...methods.map((m) => m.env));
    const expected: ExpectedRoute = {
      name: routeName,
      credential: credential.value,
      header: r.header?.value ?? 'Authorization',
      prefix: r.prefix?.value ?? 'Bearer ',
    };
    return { doc: p.doc, env, expected };
  });

/** Below the admin ports generated, and never the default admin port 9090. */
const listenPort = fc.integer({ min: 1, max: 30_000 }).map((p) => (p === 9090 ? 9091 : p));

const topLevel = fc.record({
  listen: opt(
    fc.oneof(
      fc
        .tuple(
          fc.constantFrom('127.0.0.1:', '', '[::1]:', 'localhost:', '127.1.2.3:'),
          listenPort,
          fc.boolean(),
        )
        .map(([h, p, e]) => ({ listen: fixedText(`${h}${p}`, e), remote: undefined as boolean | undefined })),
      fc
        .tuple(listenPort, fc.boolean())
        .map(([p, e]) => ({ listen: fixedText(`0.0.0.0:${p}`, e), remote: true as boolean | undefined })),
    ),
  ),
  adminPort: opt(fc.integer({ min: 30_001, max: 65_535 })),
  level: opt(viaEnv(fc.constantFrom('trace', 'debug', 'info', 'warn', 'error'))),
  unmatched: opt(viaEnv(fc.constantFrom('deny', 'passthrough'))),
  shutdown: opt(duration),
  limits: opt(
    fc.record(
      {
        max_header_size: size,
        headers_timeout: duration.map((d) => d.raw),
        idle_timeout: duration.map((d) => d.raw),
        request_timeout: fc.oneof(
          duration.map((d) => d.raw),
          fc.constant(0 as unknown),
        ),
      },
      { requiredKeys: [] },
    ),
  ),
});

interface Generated {
  readonly doc: Doc;
  readonly env: Env;
  readonly credentials: readonly ExpectedCredential[];
  readonly routes: readonly ExpectedRoute[];
}

/** A valid configuration of 1–4 credentials (exchanges use earlier ones) and 0–4 routes. */
const validConfig: fc.Arbitrary<Generated> = fc
  .record({
    names: fc.uniqueArray(name, { minLength: 1, maxLength: 4 }),
    credentials: fc.array(anyCredential, { minLength: 4, maxLength: 4 }),
    routeNames: fc.uniqueArray(name, { maxLength: 4 }),
    routes: fc.array(anyRoute, { minLength: 4, maxLength: 4 }),
    top: topLevel,
  })
  .map(({ names, credentials: credentialFns, routeNames, routes: routeFns, top }) => {
    const creds: Doc = {};
    const env: Env = {};
    const expected: ExpectedCredential[] = [];
    // An exchange may take its token from an earlier credential, never from one that works per request.
    const eligible: string[] = [];
    names.forEach((credName, i) => {
      const c = credentialFns[i]!(credName, eligible);
      creds[credName] = c.doc;
      Object.assign(env, c.env);
      expected.push(c.expected);
      if (!c.expected.perRequest) eligible.push(credName);
    });
    const routes = routeNames.map((r, i) => routeFns[i]!(r, names));
    for (const r of routes) Object.assign(env, r.env);
    const tp = part({
      listen: top.listen?.listen,
      allow_remote_clients: top.listen?.remote,
      admin: top.adminPort === undefined ? undefined : { listen: `127.0.0.1:${top.adminPort}` },
      log: top.level === undefined ? undefined : part({ level: top.level }),
      unmatched: top.unmatched,
      shutdown_timeout: top.shutdown?.raw,
      limits: top.limits,
    });
    Object.assign(env, tp.env);
    const doc: Doc = {
      ...tp.doc,
      credentials: creds,
      ...(routes.length > 0 ? { routes: routes.map((r) => r.doc) } : {}),
    };
    return { doc, env, credentials: expected, routes: routes.map((r) => r.expected) };
  });

// ---------------------------------------------------------------------------------------------
// Generators of broken input

/** Tokens of YAML syntax, glued at random: indentation, flow collections, anchors, tags… */
const yamlSoup = fc
  .array(
    fc.oneof(
      {
        weight: 4,
        arbitrary: fc.constantFrom(
          ...TOP_KEYS.map((k) => `${k}:`),
          'credentials:\n  orders:',
          'routes:\n  -',
        ),
      },
      {
        weight: 6,
        arbitrary: fc.constantFrom(
          '\n',
          '\n  ',
          '  ',
          '- ',
          ': ',
          ':',
          '{',
          '}',
          '[',
          ']',
          ', ',
          '"',
          "'",
          '&a ',
          '*a',
          '&b ',
          '*b',
          '!!str ',
          '!!int ',
          '!!binary ',
          '!!map ',
          '!custom ',
          '? ',
          '# comment',
          '|\n  x',
          '>\n  y',
          '---\n',
          '...\n',
          '%YAML 1.1\n---\n',
          '<<: ',
          '\t',
          'a',
          '1',
          '1e999',
          '.nan',
          'true',
          '~',
          'null',
          '${env:X}',
          '${env:',
          '$${',
          'token_endpoint: ',
          'grant_type: ',
          'https://idp.example.com/token',
          'client_credentials',
          'client_id: c',
          'client_secret: s',
        ),
      },
      { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 4 }) },
    ),
    { maxLength: 40 },
  )
  .map((tokens) => tokens.join(''));

function typo(key: string): fc.Arbitrary<string> {
  const i = fc.nat({ max: Math.max(0, key.length - 1) });
  const letter = fc.constantFrom('a', 'e', 's', '_', '-', 'x', 'T');
  return fc.oneof(
    i.map((n) => key.slice(0, n) + key.slice(n + 1)), // a letter left out
    fc.tuple(i, letter).map(([n, c]) => key.slice(0, n) + c + key.slice(n)), // one added
    fc.tuple(i, letter).map(([n, c]) => key.slice(0, n) + c + key.slice(n + 1)), // one replaced
    i.map((n) => (n + 1 < key.length ? key.slice(0, n) + key[n + 1] + key[n] + key.slice(n + 2) : `${key}s`)), // swapped
    i.map((n) => key.slice(0, n) + key.charAt(n).toUpperCase() + key.slice(n + 1)), // capitalised
  );
}

/** Anything a YAML value could turn into, and strings the validator treats specially. */
const anyValue = fc.oneof(
  fc.jsonValue({ maxDepth: 2 }),
  fc.constantFrom(
    '',
    ' ',
    '${env:UNSET_VARIABLE}',
    '${env:',
    '$${',
    '${file:/nope}',
    '${other:x}',
    '0',
    '-1',
    '1e999',
  ),
);

// ---------------------------------------------------------------------------------------------

describe('parseConfigText on arbitrary input', () => {
  it('arbitrary JSON values (as YAML): never throws; a frozen config or problems with real paths', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (value) => {
        checkInvariants(stringify(value));
      }),
      { numRuns: RUNS * 3 },
    );
  });

  it('arbitrary mappings with the real top-level keys holding anything', () => {
    fc.assert(
      fc.property(fc.dictionary(fc.constantFrom(...TOP_KEYS, 'credentail', 'route'), anyValue), (value) => {
        checkInvariants(stringify(value));
      }),
      { numRuns: RUNS * 3 },
    );
  });

  it('arbitrary text: never throws, and problems name lines and columns or keys', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 200 }), (text) => {
        checkInvariants(text);
      }),
      { numRuns: RUNS * 3 },
    );
  });

  it('YAML-ish token soup (anchors, aliases, tags, directives, flow collections): never throws', () => {
    fc.assert(
      fc.property(yamlSoup, (text) => {
        checkInvariants(text);
      }),
      { numRuns: RUNS * 3 },
    );
  });
});

describe('valid configurations of every grant and client authentication without files', () => {
  it('always validate, frozen, with the values (and ${env:} values) they were written with', () => {
    fc.assert(
      fc.property(validConfig, (g) => {
        const { config, problems } = checkInvariants(stringify(g.doc), g.env);
        expect(problems).toEqual([]);
        expect(config).toBeDefined();
        // JavaScript objects list integer-like keys first, so compare the names as sets.
        expect([...config!.credentials.keys()].sort()).toEqual(g.credentials.map((c) => c.name).sort());
        for (const want of g.credentials) {
          const got = config!.credentials.get(want.name)!;
          expect(got.clientId).toBe(want.clientId);
          expect(got.grant.type).toBe(want.grant);
          expect(got.clientAuth.method).toBe(want.method);
          if (want.secret !== undefined) {
            expect('secret' in got.clientAuth && got.clientAuth.secret.value).toBe(want.secret);
          }
          if (got.grant.type === 'password') {
            expect(got.grant.username).toBe(want.username);
            expect(got.grant.password.value).toBe(want.password);
          }
        }
        expect(config!.routes.map((r) => [r.name, r.credential, r.header, r.prefix])).toEqual(
          g.routes.map((r) => [r.name, r.credential, r.header, r.prefix]),
        );
      }),
      { numRuns: RUNS },
    );
  });

  it('a ${env:} reference to an unset variable, in any string position, is a problem at that key', () => {
    fc.assert(
      fc.property(
        validConfig,
        fc.nat(),
        fc.constantFrom('', 'pre-'),
        fc.constantFrom('', '-post'),
        (g, pick, before, after) => {
          const leaves = stringLeaves(g.doc);
          const leaf = leaves[pick % leaves.length]!;
          const variable = 'TI_SURELY_UNSET_VARIABLE';
          const doc = setAt(g.doc, leaf, `${before}\${env:${variable}}${after}`);
          const { config, problems } = checkInvariants(stringify(doc), g.env);
          expect(config).toBeUndefined();
          const at = problems.filter((p) => p.path === formatPath(leaf));
          expect(at.length, `no problem at ${formatPath(leaf)}: ${JSON.stringify(problems)}`).toBeGreaterThan(
            0,
          );
          expect(at.some((p) => p.message.includes(variable))).toBe(true);
        },
      ),
      { numRuns: RUNS },
    );
  });

  it('moving any string value (but durations and sizes) into a set variable gives the same config', () => {
    fc.assert(
      fc.property(validConfig, fc.nat(), (g, pick) => {
        const leaves = stringLeaves(g.doc).filter((p) => {
          const v = at(g.doc, p) as string;
          return !v.includes('$') && !UNIT_KEYS.has(String(p[p.length - 1]));
        });
        fc.pre(leaves.length > 0);
        const leaf = leaves[pick % leaves.length]!;
        const value = at(g.doc, leaf) as string;
        const doc = setAt(g.doc, leaf, '${env:TI_MOVED}');
        const direct = checkInvariants(stringify(g.doc), g.env).config!;
        const moved = checkInvariants(stringify(doc), { ...g.env, TI_MOVED: value });
        expect(moved.problems).toEqual([]);
        expect(canonical(moved.config!)).toBe(canonical(direct));
      }),
      { numRuns: RUNS },
    );
  });

  it('durations and sizes may hold ${env:} too (README: "Any string may hold ${env:NAME}")', () => {
    fc.assert(
      fc.property(validConfig, fc.nat(), (g, pick) => {
        const leaves = stringLeaves(g.doc).filter((p) => UNIT_KEYS.has(String(p[p.length - 1])));
        fc.pre(leaves.length > 0);
        const leaf = leaves[pick % leaves.length]!;
        const value = at(g.doc, leaf) as string;
        const doc = setAt(g.doc, leaf, '${env:TI_MOVED}');
        const direct = checkInvariants(stringify(g.doc), g.env).config!;
        const moved = checkInvariants(stringify(doc), { ...g.env, TI_MOVED: value });
        expect(moved.problems).toEqual([]);
        expect(canonical(moved.config!)).toBe(canonical(direct));
      }),
      { numRuns: RUNS },
    );
  });
});

describe('valid configurations, damaged', () => {
  it('a mistyped key in any fixed-schema mapping is an "unknown key" problem at that key, with a hint', () => {
    fc.assert(
      fc.property(
        validConfig.chain((g) => {
          const mappings = schemaMappings(g.doc, g.env);
          return fc.constantFrom(...mappings).chain((path) => {
            const mapping = (path.length === 0 ? g.doc : at(g.doc, path)) as Doc;
            return fc
              .constantFrom(...Object.keys(mapping))
              .chain((key) => typo(key).map((wrong) => ({ g, path, key, wrong })));
          });
        }),
        ({ g, path, key, wrong }) => {
          const allowed = allowedKeys(g.doc, path, g.env)!;
          const mapping = (path.length === 0 ? g.doc : at(g.doc, path)) as Doc;
          fc.pre(!allowed.includes(wrong) && !(wrong in mapping));
          // The typo replaces the key in place, keeping its value.
          const renamed = Object.fromEntries(
            Object.entries(mapping).map(([k, v]) => [k === key ? wrong : k, v]),
          );
          const doc = path.length === 0 ? renamed : setAt(g.doc, path, renamed);
          const { config, problems } = checkInvariants(stringify(doc), g.env);
          expect(config).toBeUndefined();
          const where = formatPath([...path, wrong]);
          const problem = problems.find((p) => p.path === where);
          expect(problem, `no problem at ${where}: ${JSON.stringify(problems)}`).toBeDefined();
          expect(problem!.message).toMatch(/^unknown key/);
          const hint = /did you mean "([^"]+)"/.exec(problem!.message)?.[1];
          expect(hint, problem!.message).toBeDefined();
          expect(allowed).toContain(hint);
          expect(editDistance(wrong, hint!)).toBeLessThanOrEqual(editDistance(wrong, key));
        },
      ),
      { numRuns: RUNS },
    );
  });

  it('any value of any type in any position: never throws, problems name real keys', () => {
    fc.assert(
      fc.property(
        validConfig.chain((g) => fc.tuple(fc.constant(g), fc.constantFrom(...nodes(g.doc)), anyValue)),
        ([g, path, value]) => {
          checkInvariants(stringify(setAt(g.doc, path, value)), g.env);
        },
      ),
      { numRuns: RUNS * 2 },
    );
  });

  it('any key left out: never throws, problems name real keys or the missing required one', () => {
    fc.assert(
      fc.property(
        validConfig.chain((g) =>
          fc.tuple(
            fc.constant(g),
            fc.constantFrom(...nodes(g.doc).filter((p) => typeof p[p.length - 1] === 'string')),
          ),
        ),
        ([g, path]) => {
          const doc = structuredClone(g.doc);
          delete (at(doc, path.slice(0, -1)) as Doc)[path[path.length - 1] as string];
          checkInvariants(stringify(doc), g.env);
        },
      ),
      { numRuns: RUNS * 2 },
    );
  });
});
