import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseDocument } from 'yaml';
import { parseConfigText } from '../../../src/config/load.js';
import type { Config } from '../../../src/config/types.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const EXAMPLE = join(ROOT, 'config.example.yaml');

/** Every key the validator accepts, by section; each must be shown in config.example.yaml. */
const DOCUMENTED_KEYS = {
  top: ['listen', 'admin', 'log', 'unmatched', 'shutdown_timeout', 'credentials', 'routes'],
  admin: ['listen'],
  log: ['level'],
  credential: [
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
  ],
  route: ['name', 'match', 'upstream', 'strip_prefix', 'credential', 'header', 'prefix', 'tls'],
  match: ['host', 'path_prefix', 'methods'],
  tls: ['ca_file'],
} as const;

let dir: string;
let caFile: string;
let text: string;
let env: Record<string, string>;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'ti-example-'));
  caFile = join(dir, 'ca.pem');
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-subj',
      '/CN=test',
      '-days',
      '1',
      '-keyout',
      join(dir, 'ca.key'),
      '-out',
      caFile,
    ],
    { stdio: 'ignore' },
  );
  text = readFileSync(EXAMPLE, 'utf8');
  env = {};
  for (const value of strings(parseDocument(text).toJS())) {
    for (const [, name] of value.matchAll(/\$\{env:([A-Za-z0-9_]+)\}/g)) {
      env[name!] = name!.endsWith('_CA_FILE') ? caFile : `value-of-${name}`;
    }
  }
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** Every string value in parsed YAML (comments are not values). */
function strings(value: unknown): string[] {
  if (typeof value === 'string') return [value];
  if (value === null || typeof value !== 'object') return [];
  return Object.values(value).flatMap(strings);
}

function load(): Config {
  const { config, problems } = parseConfigText(text, {
    env,
    readFile: (path) => readFileSync(path, 'utf8'),
    baseDir: ROOT,
  });
  expect(problems).toEqual([]);
  expect(config).toBeDefined();
  return config!;
}

describe('config.example.yaml', () => {
  it('references the environment variables the tests provide', () => {
    expect(Object.keys(env).sort()).toEqual([
      'BILLING_CLIENT_SECRET',
      'IDP_CA_FILE',
      'ORDERS_CA_FILE',
      'ORDERS_CLIENT_SECRET',
    ]);
  });

  it('is a valid configuration', () => {
    const config = load();
    expect(config.listen).toEqual({ host: '127.0.0.1', port: 8080 });
    expect(config.admin.listen).toEqual({ host: '127.0.0.1', port: 9090 });
    expect(config.unmatched).toBe('deny');
    expect(config.shutdownTimeoutMs).toBe(20_000);
    expect([...config.credentials.keys()]).toEqual(['orders', 'billing']);
    expect(config.routes.map((r) => r.name)).toEqual(['orders', 'billing']);
  });

  it('resolves the secrets and CA files it references', () => {
    const config = load();
    const orders = config.credentials.get('orders')!;
    expect(orders.clientSecret).toBe('value-of-ORDERS_CLIENT_SECRET');
    expect(orders.scope).toBe('orders.read orders.write');
    expect(orders.tls.caFile).toBe(caFile);
    expect(orders.tls.ca).toBe(readFileSync(caFile, 'utf8').replace(/\n$/, ''));
    const billing = config.credentials.get('billing')!;
    expect(billing.clientSecret).toBe('value-of-BILLING_CLIENT_SECRET');
    expect(billing.authMethod).toBe('client_secret_post');
    expect(billing.scope).toBe('billing.read');
    expect(config.routes[0]!.tls.ca).toContain('-----BEGIN CERTIFICATE-----');
  });

  it('routes as its comments describe', () => {
    const config = load();
    const [orders, billing] = config.routes;
    expect(orders!.match.host).toBe('orders.example.com');
    expect(orders!.match.pathPrefix).toBe('/v1/');
    expect([...orders!.match.methods!]).toEqual(['GET', 'POST']);
    expect(orders!.header).toBe('Authorization');
    expect(orders!.prefix).toBe('Bearer ');
    expect(billing!.match.host).toBe('*.billing.example.com');
    expect(billing!.upstream.href).toBe('https://api.billing.example.com/v2');
    expect(billing!.credential).toBe('billing');
  });

  it('shows every key the validator accepts', () => {
    const doc = parseDocument(text).toJS() as Record<string, unknown>;
    const credentials = Object.values(doc['credentials'] as Record<string, Record<string, unknown>>);
    const routes = doc['routes'] as Record<string, unknown>[];
    const keys = (objs: unknown[]) => new Set(objs.flatMap((o) => Object.keys((o ?? {}) as object)));

    const shown = {
      top: keys([doc]),
      admin: keys([doc['admin']]),
      log: keys([doc['log']]),
      credential: keys(credentials),
      route: keys(routes),
      match: keys(routes.map((r) => r['match'])),
      tls: keys([...credentials, ...routes].map((o) => o['tls'])),
    };
    for (const [section, names] of Object.entries(DOCUMENTED_KEYS)) {
      const missing = names.filter((k) => !shown[section as keyof typeof shown].has(k));
      expect(missing, `keys of ${section} missing from config.example.yaml`).toEqual([]);
    }
  });

  it('mentions every key by name in the file text', () => {
    const all = new Set(Object.values(DOCUMENTED_KEYS).flat());
    const missing = [...all].filter((k) => !new RegExp(`^\\s*(- )?${k}:`, 'm').test(text));
    expect(missing).toEqual([]);
  });

  it('has every key named in README.md too', () => {
    const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
    const all = [...new Set(Object.values(DOCUMENTED_KEYS).flat())];
    expect(all.filter((k) => !new RegExp(`\\b${k}\\b`).test(readme))).toEqual([]);
  });
});
