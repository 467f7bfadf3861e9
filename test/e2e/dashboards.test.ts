// Issue 14: the Grafana dashboard (deploy/grafana/) and the Prometheus alerts (deploy/prometheus/)
// name metrics that only a running proxy can vouch for. A renamed metric or label would leave a
// panel empty or an alert silent, and nobody would notice until the day it should fire. So a
// two-replica fleet (real proxies in-process, sharing a real redis-server, tls_intercept on, one
// credential on the real authorization server and one on a token endpoint that fails) serves
// traffic until every series the files use exists, and each expression, parsed as PromQL with
// Prometheus's own grammar, is checked against what the replicas' /metrics export.
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import type { Socket } from 'node:net';
import path from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { fileURLToPath } from 'node:url';
import { parser } from '@prometheus-io/lezer-promql';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { nextArrival } from '../support/arrivals.js';
import { type FakeTokenEndpoint, startFakeTokenEndpoint } from '../support/fake-token-endpoint.js';
import { eventually, sharedCacheSection, within } from '../support/fleet.js';
import { startInjector, type TestInjector } from '../support/injector.js';
import { type CaFiles, type TempDir, tempDir, writeNewCa } from '../support/interception.js';
import { watchSecret } from '../support/leak-watch.js';
import { type RedisServer, startRedis, stopAllRedis } from '../support/redis.js';
import { credentialFor, type Stack, startStack } from '../support/stack.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const DASHBOARD_FILE = path.join(root, 'deploy', 'grafana', 'token-injector.json');
const ALERTS_FILE = path.join(root, 'deploy', 'prometheus', 'alerts.yaml');
const PROMETHEUS_RULE_FILE = path.join(root, 'deploy', 'prometheus', 'prometheus-rule.yaml');

/** Grafana's reference to the dashboard's data source variable, on every panel and query. */
const DATASOURCE = { type: 'prometheus', uid: `\${datasource}` };

/** Prometheus's own series: `up` is written by the scrape, not exported by the proxy. */
const PROMETHEUS_SERIES = new Set(['up']);
/** Labels Prometheus attaches to every scraped series (the target's); the proxy never exports them. */
const TARGET_LABELS = new Set(['job', 'instance']);
/** Series a histogram or summary family exports besides its name. */
const FAMILY_SUFFIXES = ['_bucket', '_sum', '_count'] as const;

/** Values Grafana would put in place of its variables: plausible ones, so the result is real PromQL. */
const GRAFANA_BUILTINS: Record<string, string> = {
  __rate_interval: '1m',
  __interval: '30s',
  __range: '6h',
};
const VARIABLE_VALUES: Record<string, string> = {
  job: 'token-injector',
  instance: '10.0.0.7:9090',
  credential: 'orders',
  route: 'orders',
};

// ---- PromQL, through the parse tree of Prometheus's lezer grammar ----

type PromTree = ReturnType<typeof parser.parse>;
type PromNode = PromTree['topNode'];

interface Selector {
  /** The metric name as written (`…_bucket` included). */
  readonly name: string;
  /** Label names its matchers test. */
  readonly labels: string[];
}

interface ParsedExpr {
  readonly errors: string[];
  readonly selectors: Selector[];
  /** Each aggregation's `by (…)` labels with the metric names it aggregates over. */
  readonly groupings: { labels: string[]; over: string[] }[];
}

function text(expr: string, node: PromNode): string {
  return expr.slice(node.from, node.to);
}

function descendants(node: PromNode, type: string): PromNode[] {
  const out: PromNode[] = [];
  for (let child = node.firstChild; child; child = child.nextSibling) {
    if (child.type.name === type) out.push(child);
    out.push(...descendants(child, type));
  }
  return out;
}

function selectorOf(expr: string, node: PromNode): Selector {
  const identifier = node.getChild('Identifier');
  const matchers = node.getChild('LabelMatchers');
  const labels = matchers ? descendants(matchers, 'LabelName').map((n) => text(expr, n)) : [];
  // `{__name__="…"}` hides the name from this check; the files always name their metrics.
  if (!identifier) throw new Error(`selector without a metric name in ${expr}`);
  return { name: text(expr, identifier), labels };
}

/** Parses `expr` as PromQL and lists its error nodes, metric selectors and aggregation labels. */
function parsePromQL(expr: string): ParsedExpr {
  const tree = parser.parse(expr);
  const errors: string[] = [];
  const selectors: Selector[] = [];
  const groupings: { labels: string[]; over: string[] }[] = [];
  tree.iterate({
    enter(ref) {
      if (ref.type.isError) errors.push(`error at ${ref.from}: …${expr.slice(ref.from, ref.from + 20)}`);
      if (ref.name === 'VectorSelector') selectors.push(selectorOf(expr, ref.node));
      if (ref.name === 'AggregateExpr') {
        const modifier = ref.node.getChild('AggregateModifier');
        // `without (…)` drops labels; only `by (…)` names labels the result must carry.
        if (!modifier?.getChild('By')) return;
        const grouping = modifier.getChild('GroupingLabels');
        const body = ref.node.getChild('FunctionCallBody');
        groupings.push({
          labels: grouping ? descendants(grouping, 'LabelName').map((n) => text(expr, n)) : [],
          over: body ? descendants(body, 'VectorSelector').map((n) => selectorOf(expr, n).name) : [],
        });
      }
    },
  });
  return { errors, selectors, groupings };
}

// ---- Grafana's variables ----

/** `$name`, `${name}`, `${name:format}` and the deprecated `[[name]]`. */
const VARIABLE_REFERENCE = /\$\{(\w+)(?::[^}]*)?\}|\$(\w+)|\[\[(\w+)(?::[^\]]*)?\]\]/g;

function variablesIn(query: string): string[] {
  return [...query.matchAll(VARIABLE_REFERENCE)].map((m) => (m[1] ?? m[2] ?? m[3])!);
}

function substitute(query: string): string {
  return query.replace(VARIABLE_REFERENCE, (whole, a?: string, b?: string, c?: string) => {
    const name = (a ?? b ?? c)!;
    const value = GRAFANA_BUILTINS[name] ?? VARIABLE_VALUES[name];
    if (value === undefined) throw new Error(`no test value for Grafana variable ${whole}`);
    return value;
  });
}

// ---- the files ----

interface GrafanaTarget {
  refId?: string;
  expr?: string;
  datasource?: { type?: string; uid?: string };
}
interface GrafanaPanel {
  id?: number;
  type?: string;
  title?: string;
  datasource?: { type?: string; uid?: string };
  gridPos?: { h: number; w: number; x: number; y: number };
  targets?: GrafanaTarget[];
  panels?: GrafanaPanel[];
}
interface GrafanaVariable {
  type: string;
  name: string;
  query?: string | { query?: string };
  definition?: string;
  datasource?: { type?: string; uid?: string };
}
interface Dashboard {
  uid?: string;
  title?: string;
  schemaVersion?: number;
  panels: GrafanaPanel[];
  templating: { list: GrafanaVariable[] };
}
interface Rule {
  alert?: string;
  record?: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}
interface RuleGroup {
  name: string;
  rules: Rule[];
}

const dashboard = JSON.parse(readFileSync(DASHBOARD_FILE, 'utf8')) as Dashboard;
const alerts = parseYaml(readFileSync(ALERTS_FILE, 'utf8')) as { groups: RuleGroup[] };
const prometheusRule = parseYaml(readFileSync(PROMETHEUS_RULE_FILE, 'utf8')) as {
  apiVersion: string;
  kind: string;
  metadata: { name?: string };
  spec: { groups: RuleGroup[] };
};

/** Every panel, rows' nested panels included. */
function allPanels(panels: GrafanaPanel[] = dashboard.panels): GrafanaPanel[] {
  return panels.flatMap((p) => [p, ...allPanels(p.panels ?? [])]);
}

function variableQuery(v: GrafanaVariable): string {
  return typeof v.query === 'string' ? v.query : (v.query?.query ?? '');
}

/** `label_values(selector, label)`: Grafana's query for a variable's values, not PromQL itself. */
function labelValuesQuery(query: string): { selector: string; label: string } {
  const m = /^\s*label_values\(\s*(.+)\s*,\s*(\w+)\s*\)\s*$/s.exec(query);
  if (!m) throw new Error(`not a label_values(selector, label) query: ${query}`);
  return { selector: m[1]!, label: m[2]! };
}

/** One PromQL expression of the files, with where it comes from (for failure messages). */
interface Expression {
  readonly where: string;
  readonly expr: string;
  /** A label the expression reads from `selector`'s values (variables' label_values). */
  readonly readsLabel?: string;
}

function dashboardExpressions(): Expression[] {
  const out: Expression[] = [];
  for (const panel of allPanels()) {
    for (const target of panel.targets ?? []) {
      out.push({ where: `panel "${panel.title}" ${target.refId}`, expr: substitute(target.expr ?? '') });
    }
  }
  for (const v of dashboard.templating.list.filter((x) => x.type === 'query')) {
    const { selector, label } = labelValuesQuery(variableQuery(v));
    out.push({ where: `variable $${v.name}`, expr: substitute(selector), readsLabel: label });
  }
  return out;
}

function ruleExpressions(groups: RuleGroup[]): Expression[] {
  return groups.flatMap((g) => g.rules.map((r) => ({ where: `rule ${r.alert ?? r.record}`, expr: r.expr })));
}

// ---- the proxies' /metrics ----

interface Exported {
  /** Family name -> type (`# TYPE`). */
  readonly families: Map<string, string>;
  /** Family name -> every label name on its samples (`le` of buckets included). */
  readonly labels: Map<string, Set<string>>;
}

/** The exposition format, as far as names and label names go. */
function parseExposition(body: string, into: Exported): void {
  for (const line of body.split('\n')) {
    const type = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (type) into.families.set(type[1]!, type[2]!);
  }
  for (const line of body.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const sample = /^([A-Za-z_:][\w:]*)(?:\{(.*)\})? \S+$/.exec(line);
    if (!sample) throw new Error(`unparsable /metrics line: ${line}`);
    const family = familyOf(sample[1]!, into.families);
    if (family === undefined) throw new Error(`sample of no declared family: ${line}`);
    const labels = into.labels.get(family) ?? new Set<string>();
    for (const m of (sample[2] ?? '').matchAll(/([A-Za-z_]\w*)="(?:[^"\\]|\\.)*"/g)) labels.add(m[1]!);
    into.labels.set(family, labels);
  }
}

/** The family a series name belongs to: itself, or the histogram or summary it is a part of. */
function familyOf(name: string, families: Map<string, string>): string | undefined {
  if (families.has(name)) return name;
  for (const suffix of FAMILY_SUFFIXES) {
    const base = name.slice(0, -suffix.length);
    const type = families.get(base);
    if (name.endsWith(suffix) && (type === 'histogram' || type === 'summary')) return base;
  }
  return undefined;
}

async function scrape(proxies: readonly TestInjector[]): Promise<Exported> {
  const exported: Exported = { families: new Map(), labels: new Map() };
  for (const proxy of proxies) {
    const res = await request(`${proxy.adminUrl}/metrics`);
    expect(res.statusCode).toBe(200);
    parseExposition(await res.body.text(), exported);
  }
  return exported;
}

/** What is wrong with `e` against `exported`: unknown metrics, and labels no sample carries. */
function problemsOf(e: Expression, exported: Exported): string[] {
  const parsed = parsePromQL(e.expr);
  const problems = parsed.errors.map((err) => `${e.where}: PromQL ${err}`);
  const labelsOf = (name: string) => {
    const family = familyOf(name, exported.families);
    return family === undefined ? undefined : (exported.labels.get(family) ?? new Set<string>());
  };
  for (const s of parsed.selectors) {
    if (PROMETHEUS_SERIES.has(s.name)) continue;
    const labels = labelsOf(s.name);
    if (!labels) {
      problems.push(`${e.where}: metric ${s.name} is not on /metrics`);
      continue;
    }
    const used = [...s.labels, ...(e.readsLabel ? [e.readsLabel] : [])];
    for (const label of used.filter((l) => !TARGET_LABELS.has(l) && !labels.has(l))) {
      problems.push(`${e.where}: no sample of ${s.name} has label ${label}`);
    }
  }
  for (const g of parsed.groupings) {
    for (const label of g.labels.filter((l) => !TARGET_LABELS.has(l))) {
      if (!g.over.some((name) => labelsOf(name)?.has(label))) {
        problems.push(`${e.where}: by (${label}) over ${g.over.join(', ')}, which no sample labels so`);
      }
    }
  }
  return problems;
}

// ---- the fleet ----

const CACHE_KEY = randomBytes(32).toString('base64');
const FAILING_SECRET = 'dashboards-failing-secret-41c7e2';
/**
 * Tokens of the authorization server live 10 s and are refreshed at a tenth of their usable life:
 * a background refresh (refreshes are bounded to one per second) comes a second after the first
 * token, which the second replica can still take from the shared cache for 9 s.
 */
const TOKEN_TTL_SECONDS = 10;
const REFRESH_AHEAD = 0.1;

let redis: RedisServer;
let stack: Stack;
let failing: FakeTokenEndpoint;
let dir: TempDir;
let ca: CaFiles;
let first: TestInjector;
let second: TestInjector;
let exported: Exported;

function replica(): Promise<TestInjector> {
  return startInjector(
    {
      shared_cache: sharedCacheSection(redis.url, { encryption_keys: [`\${env:TI_DASHBOARDS_KEY}`] }),
      tls_intercept: { ca_cert_file: ca.certFile, ca_key_file: ca.keyFile },
      credentials: {
        orders: credentialFor(stack.auth, undefined, { refresh_ahead: REFRESH_AHEAD }),
        billing: {
          token_endpoint: failing.url,
          grant_type: 'client_credentials',
          client_id: 'dashboards-billing',
          client_secret: FAILING_SECRET,
        },
      },
      routes: [
        {
          name: 'orders',
          match: { host: 'orders.test' },
          upstream: stack.upstream.url,
          credential: 'orders',
        },
        {
          name: 'billing',
          match: { host: 'billing.test' },
          upstream: stack.upstream.url,
          credential: 'billing',
        },
        {
          name: 'secure',
          match: { host: 'secure.test' },
          upstream: stack.upstream.url,
          credential: 'orders',
        },
      ],
    },
    { TI_DASHBOARDS_KEY: CACHE_KEY },
  );
}

/** Resolves once `proxy` has connected to the shared cache (its `shared_cache_up` log line). */
async function sharedCacheUp(proxy: TestInjector): Promise<void> {
  const up = (line: Record<string, unknown>) => line['event'] === 'shared_cache_up';
  if (!proxy.logs.some(up)) await within(nextArrival(proxy.logs, up), 10_000, 'shared_cache_up');
}

async function call(proxy: TestInjector, host: string): Promise<number> {
  const res = await request(`${proxy.url}/v1/items`, { headers: { host } });
  await res.body.dump();
  return res.statusCode;
}

/** A CONNECT to a routed host and a TLS handshake over it, with a client trusting the proxy's CA. */
function interceptedHandshake(proxy: TestInjector, host: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const port = Number(new URL(proxy.url).port);
    const req = httpRequest({ host: '127.0.0.1', port, method: 'CONNECT', path: `${host}:443` });
    req.once('connect', (res, socket: Socket) => {
      if (res.statusCode !== 200) {
        socket.destroy();
        reject(new Error(`CONNECT answered ${res.statusCode}`));
        return;
      }
      const tls = tlsConnect({ socket, servername: host, ca: ca.certPem, ALPNProtocols: ['http/1.1'] });
      tls.once('secureConnect', () => {
        tls.end();
        resolve();
      });
      tls.once('error', reject);
    });
    req.once('error', reject);
    req.end();
  });
}

beforeAll(async () => {
  watchSecret(FAILING_SECRET);
  watchSecret(CACHE_KEY);
  redis = await startRedis();
  stack = await startStack({ accessTokenTtlSeconds: TOKEN_TTL_SECONDS });
  // A refusal (not retried): the proxy answers 502 token_endpoint_rejected.
  failing = await startFakeTokenEndpoint({ kind: 'json', status: 401, body: { error: 'invalid_client' } });
  dir = tempDir();
  ca = await writeNewCa(dir.path, 'intercept');
  [first, second] = await Promise.all([replica(), replica()]);
  await Promise.all([sharedCacheUp(first), sharedCacheUp(second)]);
  expect(await call(first, 'orders.test')).toBe(200);
  // The second replica takes the first one's token from the shared cache instead of asking.
  expect(await call(second, 'orders.test')).toBe(200);
  expect(stack.auth.tokenRequests).toHaveLength(1);
  expect(await call(first, 'orders.test')).toBe(200);
  // A token endpoint that fails: a 5xx answer, a failed token request, a failing credential.
  expect(await call(first, 'billing.test')).toBe(502);
  await interceptedHandshake(first, 'secure.test');
  // A background refresh starts ahead of expiry for a token in use; it gives no event to await.
  await eventually(
    async () =>
      (await scrape([first])).labels.get('token_injector_token_refreshes_total')?.has('credential') ?? false,
    10_000,
    'a background refresh of the orders token',
  );
  exported = await scrape([first, second]);
});

afterAll(async () => {
  await first?.close();
  await second?.close();
  for (const token of failing?.issuedTokens ?? []) watchSecret(token);
  await failing?.close();
  await stack?.close();
  await stopAllRedis();
  dir?.remove();
});

describe('PromQL checks (the checker itself)', () => {
  it('finds metric names, matcher labels and by-labels in the parse tree, and reports error nodes', () => {
    const parsed = parsePromQL(
      'histogram_quantile(0.9, sum by (le, route) (rate(a_seconds_bucket{route=~"x"}[5m]))) > on (job) b',
    );
    expect(parsed.errors).toEqual([]);
    expect(parsed.selectors).toEqual([
      { name: 'a_seconds_bucket', labels: ['route'] },
      { name: 'b', labels: [] },
    ]);
    expect(parsed.groupings).toEqual([{ labels: ['le', 'route'], over: ['a_seconds_bucket'] }]);
    expect(parsePromQL('sum(rate(a[5m])) /').errors).not.toEqual([]);
    expect(parsePromQL('rate(a[$__rate_interval])').errors).not.toEqual([]);
  });

  it('flags a metric, a matcher label or a by-label that /metrics lacks', () => {
    const fake: Exported = {
      families: new Map([
        ['a_total', 'counter'],
        ['h_seconds', 'histogram'],
      ]),
      labels: new Map([
        ['a_total', new Set(['route'])],
        ['h_seconds', new Set(['le'])],
      ]),
    };
    const check = (expr: string) => problemsOf({ where: 'x', expr }, fake);
    expect(check('sum by (route) (rate(a_total{job="j", route="r"}[5m])) and up')).toEqual([]);
    expect(check('histogram_quantile(0.5, sum by (le) (rate(h_seconds_bucket[5m])))')).toEqual([]);
    expect(check('rate(a_totl[5m])')).toEqual(['x: metric a_totl is not on /metrics']);
    expect(check('a_total_bucket')).toEqual(['x: metric a_total_bucket is not on /metrics']);
    expect(check('a_total{routes="r"}')).toEqual(['x: no sample of a_total has label routes']);
    expect(check('sum by (status) (a_total)')).toEqual([
      'x: by (status) over a_total, which no sample labels so',
    ]);
  });
});

describe('deploy/grafana/token-injector.json', () => {
  it('is a dashboard with a Prometheus data source variable, job/instance/credential/route variables and unique panel ids', () => {
    expect(dashboard.uid).toBe('token-injector');
    expect(dashboard.schemaVersion).toBeGreaterThanOrEqual(39);
    const variables = new Map(dashboard.templating.list.map((v) => [v.name, v]));
    expect(variables.get('datasource')).toMatchObject({ type: 'datasource', query: 'prometheus' });
    for (const name of ['job', 'instance', 'credential', 'route']) {
      expect(variables.get(name), name).toMatchObject({
        type: 'query',
        datasource: DATASOURCE,
      });
      expect(labelValuesQuery(variableQuery(variables.get(name)!)).label).toBe(name);
    }
    const ids = allPanels().map((p) => p.id);
    expect(ids.every((id) => Number.isInteger(id))).toBe(true);
    expect(new Set(ids).size).toBe(ids.length);
  });

  it('has a Prometheus data source and queries with unique refIds on every panel but rows', () => {
    const panels = allPanels().filter((p) => p.type !== 'row');
    expect(panels.length).toBeGreaterThan(10);
    for (const panel of panels) {
      const what = `panel "${panel.title}"`;
      expect(panel.datasource, what).toEqual(DATASOURCE);
      expect(panel.gridPos, what).toBeDefined();
      const targets = panel.targets ?? [];
      expect(targets.length, what).toBeGreaterThan(0);
      expect(new Set(targets.map((t) => t.refId)).size, what).toBe(targets.length);
      for (const t of targets) {
        expect(t.refId, what).toMatch(/^[A-Z]$/);
        expect(t.expr, what).toMatch(/\S/);
        expect(t.datasource ?? panel.datasource, what).toEqual(panel.datasource);
      }
    }
    for (const row of allPanels().filter((p) => p.type === 'row')) expect(row.targets).toBeUndefined();
  });

  it('uses only variables it defines (or Grafana built-ins)', () => {
    const defined = new Set([
      ...dashboard.templating.list.map((v) => v.name),
      ...Object.keys(GRAFANA_BUILTINS),
    ]);
    const queries = [
      ...allPanels().flatMap((p) => (p.targets ?? []).map((t) => t.expr ?? '')),
      ...dashboard.templating.list.map(variableQuery),
    ];
    const used = new Set(queries.flatMap(variablesIn));
    expect([...used].filter((v) => !defined.has(v))).toEqual([]);
    // Each variable it defines is used somewhere (the data source one by every panel).
    expect(
      [...defined].filter((v) => !used.has(v) && v !== 'datasource' && !(v in GRAFANA_BUILTINS)),
    ).toEqual([]);
  });

  it('covers requests and errors, latency, tokens, credential states and expiry, caches, reloads and the process', () => {
    const metrics = new Set(
      dashboardExpressions().flatMap((e) => parsePromQL(e.expr).selectors.map((s) => s.name)),
    );
    for (const name of [
      'token_injector_proxied_requests_total',
      'token_injector_upstream_duration_seconds_bucket',
      'token_injector_token_requests_total',
      'token_injector_token_request_duration_seconds_bucket',
      'token_injector_credential_state',
      'token_injector_token_expiry_timestamp_seconds',
      'token_injector_token_cache_hits_total',
      'token_injector_token_cache_misses_total',
      'token_injector_token_refreshes_total',
      'token_injector_shared_cache_up',
      'token_injector_shared_cache_operations_total',
      'token_injector_shared_cache_fetches_avoided_total',
      'token_injector_config_reloads_total',
      'token_injector_config_last_reload_success_timestamp_seconds',
      'token_injector_connections_dropped_total',
      'token_injector_intercepted_connections_total',
      'process_resident_memory_bytes',
      'nodejs_heap_size_used_bytes',
      'nodejs_eventloop_lag_p99_seconds',
    ]) {
      expect(metrics, name).toContain(name);
    }
  });

  it('parses as PromQL everywhere and names only metrics and labels a running proxy exports', () => {
    const problems = dashboardExpressions().flatMap((e) => problemsOf(e, exported));
    expect(problems).toEqual([]);
  });
});

describe('deploy/prometheus/alerts.yaml and prometheus-rule.yaml', () => {
  it('hold the same rule groups', () => {
    expect(prometheusRule).toMatchObject({
      apiVersion: 'monitoring.coreos.com/v1',
      kind: 'PrometheusRule',
      metadata: { name: 'token-injector' },
    });
    expect(prometheusRule.spec.groups).toEqual(alerts.groups);
  });

  it('alert on a failing credential, tokens near expiry, the error ratio and a proxy that is down', () => {
    const rules = alerts.groups.flatMap((g) => g.rules);
    expect(rules.map((r) => r.alert)).toEqual(
      expect.arrayContaining([
        'TokenInjectorDown',
        'TokenInjectorCredentialFailing',
        'TokenInjectorTokenNearExpiryWithoutRefresh',
        'TokenInjectorHighErrorRatio',
        'TokenInjectorConfigReloadFailed',
      ]),
    );
    expect(new Set(rules.map((r) => r.alert)).size).toBe(rules.length);
    for (const rule of rules) {
      expect(rule.labels?.['severity'], rule.alert).toMatch(/^(critical|warning|info)$/);
      expect(rule.annotations?.['summary'], rule.alert).toMatch(/\S/);
      expect(rule.annotations?.['description'], rule.alert).toMatch(/\S/);
      expect(rule.for, rule.alert).toMatch(/^\d+[smh]$/);
    }
  });

  it('parse as PromQL and name only metrics and labels a running proxy exports', () => {
    const problems = ruleExpressions(alerts.groups).flatMap((e) => problemsOf(e, exported));
    expect(problems).toEqual([]);
  });
});
