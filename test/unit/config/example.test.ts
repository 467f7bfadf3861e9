import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseDocument } from 'yaml';
import { parseConfigText } from '../../../src/config/load.js';
import { Credential } from '../../../src/config/schema-credential.js';
import type { Config } from '../../../src/config/types.js';
import { generateKey, selfSignedCertificate, type TestKey } from '../fixtures.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const EXAMPLE = join(ROOT, 'config.example.yaml');

/** Every key the validator accepts, by section; each must be shown in config.example.yaml. */
const DOCUMENTED_KEYS = {
  top: [
    'listen',
    'allow_remote_clients',
    'limits',
    'admin',
    'log',
    'unmatched',
    'shutdown_timeout',
    'credentials',
    'routes',
  ],
  limits: ['max_header_size', 'headers_timeout', 'idle_timeout', 'request_timeout'],
  retry: ['initial_backoff', 'max_backoff'],
  admin: ['listen'],
  log: ['level'],
  credential: [
    'token_endpoint',
    'issuer',
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
    'private_key_file',
    'signing_alg',
    'key_id',
    'certificate_file',
    'client_assertion_file',
    'client_assertion_type',
    'assertion_audience',
    'mtls_token_endpoint',
    'username',
    'password',
    'assertion',
    'subject_token',
    'actor_token',
    'requested_token_type',
    'connect_timeout',
    'max_response_size',
    'default_lifetime',
    'max_lifetime',
    'token_types',
    'dpop',
    'retry',
    'allow_insecure_http',
  ],
  /** `assertion`, `subject_token` and `actor_token`, over all their sources. */
  tokenInput: [
    'source',
    'type',
    'path',
    'header',
    'max_entries',
    'credential',
    'private_key_file',
    'signing_alg',
    'key_id',
    'issuer',
    'subject',
    'audience',
    'lifetime',
    'claims',
  ],
  route: [
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
    'resource_metadata',
    'tls',
    'retry_on_401',
    'replay_buffer',
    'connect_timeout',
    'response_timeout',
    'allow_insecure_http',
  ],
  match: ['host', 'path_prefix', 'methods'],
  tls: ['ca_file', 'cert_file', 'key_file'],
} as const;

/** Secrets the example takes from the environment. */
const ENV_NAMES = [
  'BILLING_CLIENT_SECRET',
  'DISCOVERED_CLIENT_SECRET',
  'EXCHANGE_CLIENT_SECRET',
  'LEGACY_CLIENT_SECRET',
  'LEGACY_PASSWORD',
  'OBO_CLIENT_SECRET',
  'ORDERS_CLIENT_SECRET',
  'PARTNER_CLIENT_SECRET',
  'PAYMENTS_CLIENT_SECRET',
  'REPORTS_CLIENT_SECRET',
  'SAML_CLIENT_SECRET',
];

const SAML_XML =
  '<saml:Assertion xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="_a"><saml:Conditions NotOnOrAfter="2099-01-01T00:00:00Z"/></saml:Assertion>';

let dir: string;
let text: string;
let env: Record<string, string>;
/** The files the example names, by path, with content of the kind each key expects. */
let files: Record<string, string>;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'ti-example-'));
  const keyFile = (name: string, key: TestKey) => {
    const path = join(dir, name);
    writeFileSync(path, key.pkcs8);
    return path;
  };
  const ec = generateKey('p256');
  const rsa = generateKey('rsa');
  const ecKey = keyFile('ec.pem', ec);
  const rsaKey = keyFile('rsa.pem', rsa);
  const ecCert = readFileSync(selfSignedCertificate(ecKey, join(dir, 'ec.crt')), 'utf8');
  const rsaCert = readFileSync(selfSignedCertificate(rsaKey, join(dir, 'rsa.crt')), 'utf8');
  files = {
    '/etc/token-injector/idp-ca.pem': ecCert,
    '/etc/token-injector/orders-ca.pem': ecCert,
    '/etc/token-injector/inventory-key.pem': rsa.pkcs8,
    '/etc/token-injector/inventory-cert.pem': rsaCert,
    '/var/run/secrets/tokens/azure-identity-token': 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzYSJ9.c2ln\n',
    '/var/run/spiffe/jwt_svid.token': 'eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJzcGlmZmU6Ly9leGFtcGxlLm9yZy9hIn0.c2ln',
    '/etc/token-injector/shipping-cert.pem': ecCert,
    '/etc/token-injector/shipping-key.pem': ec.pkcs8,
    '/etc/token-injector/partner-key.pem': ec.pkcs8,
    '/var/run/secrets/saml/assertion.xml': SAML_XML,
    '/var/run/secrets/tokens/actor-token': 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhY3RvciJ9.c2ln\n',
    '/etc/token-injector/orders-client-cert.pem': rsaCert,
    '/etc/token-injector/orders-client-key.pem': rsa.pkcs8,
  };
  text = readFileSync(EXAMPLE, 'utf8');
  env = {};
  for (const value of strings(parseDocument(text).toJS())) {
    for (const [, name] of value.matchAll(/\$\{env:([A-Za-z0-9_]+)\}/g)) env[name!] = `value-of-${name}`;
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
    readFile: (path) => {
      const content = files[path];
      if (content === undefined) throw Object.assign(new Error(`ENOENT: ${path}`), { code: 'ENOENT' });
      return content;
    },
    baseDir: ROOT,
  });
  expect(problems).toEqual([]);
  expect(config).toBeDefined();
  return config!;
}

describe('config.example.yaml', () => {
  it('references the environment variables the tests provide', () => {
    expect(Object.keys(env).sort()).toEqual(ENV_NAMES);
  });

  it('is a valid configuration', () => {
    const config = load();
    expect(config.listen).toEqual({ host: '127.0.0.1', port: 8080 });
    expect(config.admin.listen).toEqual({ host: '127.0.0.1', port: 9090 });
    expect(config.unmatched).toBe('deny');
    expect(config.shutdownTimeoutMs).toBe(20_000);
    expect([...config.credentials.keys()]).toEqual([
      'orders',
      'billing',
      'reports',
      'inventory',
      'federated',
      'spiffe',
      'shipping',
      'payments',
      'discovered',
      'legacy',
      'partner',
      'on-behalf',
      'saml',
      'exchange',
    ]);
    expect(config.routes.map((r) => r.name)).toEqual(['orders', 'billing', 'on-behalf', 'mcp']);
  });

  it('resolves the secrets and CA files it references', () => {
    const config = load();
    const orders = config.credentials.get('orders')!;
    expect(orders.clientAuth).toEqual({
      method: 'client_secret_basic',
      secret: { value: 'value-of-ORDERS_CLIENT_SECRET' },
    });
    expect(orders.grant).toEqual({ type: 'client_credentials' });
    expect(orders.scope).toBe('orders.read orders.write');
    expect(orders.tls.caFile).toBe('/etc/token-injector/idp-ca.pem');
    expect(orders.tls.ca).toBe(files['/etc/token-injector/idp-ca.pem']);
    const billing = config.credentials.get('billing')!;
    expect(billing.clientAuth).toEqual({
      method: 'client_secret_post',
      secret: { value: 'value-of-BILLING_CLIENT_SECRET' },
    });
    expect(billing.scope).toBe('billing.read');
    expect(config.routes[0]!.tls.ca).toContain('-----BEGIN CERTIFICATE-----');
  });

  it('shows every client authentication method as its comments describe', () => {
    const config = load();
    const auth = (name: string) => config.credentials.get(name)!.clientAuth;
    expect(auth('reports')).toEqual({
      method: 'client_secret_jwt',
      secret: { value: 'value-of-REPORTS_CLIENT_SECRET' },
      assertionAudience: 'https://idp.example.com',
    });
    expect(auth('inventory')).toEqual({
      method: 'private_key_jwt',
      signing: {
        key: {
          value: files['/etc/token-injector/inventory-key.pem'],
          file: '/etc/token-injector/inventory-key.pem',
        },
        alg: 'RS256',
        algInferred: false,
        keyId: 'inventory-2026',
        certificate: {
          value: files['/etc/token-injector/inventory-cert.pem'],
          file: '/etc/token-injector/inventory-cert.pem',
        },
      },
    });
    expect(auth('federated')).toEqual({
      method: 'private_key_jwt',
      assertionFile: '/var/run/secrets/tokens/azure-identity-token',
    });
    expect(auth('spiffe')).toEqual({
      method: 'private_key_jwt',
      assertionFile: '/var/run/spiffe/jwt_svid.token',
      assertionType: 'urn:ietf:params:oauth:client-assertion-type:jwt-spiffe',
    });
    const shipping = config.credentials.get('shipping')!;
    expect(shipping.clientAuth).toEqual({ method: 'tls_client_auth' });
    expect(shipping.mtlsTokenEndpoint?.href).toBe('https://mtls.idp.example.com/oauth2/v1/token');
    expect(shipping.tls.cert?.file).toBe('/etc/token-injector/shipping-cert.pem');
    expect(shipping.tls.key?.file).toBe('/etc/token-injector/shipping-key.pem');
  });

  it('shows every grant as its comments describe', () => {
    const config = load();
    const grant = (name: string) => config.credentials.get(name)!.grant;
    expect(grant('legacy')).toEqual({
      type: 'password',
      username: 'svc-legacy',
      password: { value: 'value-of-LEGACY_PASSWORD' },
    });
    expect(grant('partner')).toEqual({
      type: 'jwt_bearer',
      assertion: {
        source: 'sign',
        signing: {
          key: {
            value: files['/etc/token-injector/partner-key.pem'],
            file: '/etc/token-injector/partner-key.pem',
          },
          alg: 'ES256',
          algInferred: false,
          keyId: 'partner-1',
        },
        issuer: 'partner-client',
        subject: 'batch@partner.example.com',
        audience: 'https://idp.example.com',
        lifetimeMs: 300_000,
        claims: { tenant: 'acme' },
      },
    });
    expect(grant('on-behalf')).toEqual({
      type: 'jwt_bearer',
      assertion: { source: 'request_header', header: 'X-User-Assertion', maxEntries: 10_000 },
    });
    expect(grant('saml')).toEqual({
      type: 'saml2_bearer',
      assertion: { source: 'file', path: '/var/run/secrets/saml/assertion.xml' },
    });
    expect(grant('exchange')).toEqual({
      type: 'token_exchange',
      subjectToken: { source: 'credential', credential: 'orders' },
      subjectTokenType: 'urn:ietf:params:oauth:token-type:access_token',
      actorToken: { source: 'file', path: '/var/run/secrets/tokens/actor-token' },
      actorTokenType: 'urn:ietf:params:oauth:token-type:jwt',
      requestedTokenType: 'urn:ietf:params:oauth:token-type:access_token',
    });
    expect(config.credentials.get('exchange')!.audience).toBe('https://downstream.example.com');
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
    expect(orders!.tokenScope).toEqual({
      scope: 'orders.read',
      audience: 'https://orders.example.com',
      resource: 'https://orders.example.com',
    });
    expect(orders!.tls.cert?.file).toBe('/etc/token-injector/orders-client-cert.pem');
    expect(orders!.tls.key?.file).toBe('/etc/token-injector/orders-client-key.pem');
    expect(billing!.tokenScope).toEqual({});
    expect(config.routes[2]!.credential).toBe('on-behalf');
  });

  it('shows every key the validator accepts', () => {
    const doc = parseDocument(text).toJS() as Record<string, unknown>;
    const credentials = Object.values(doc['credentials'] as Record<string, Record<string, unknown>>);
    const routes = doc['routes'] as Record<string, unknown>[];
    const keys = (objs: unknown[]) => new Set(objs.flatMap((o) => Object.keys((o ?? {}) as object)));

    const inputs = credentials.flatMap((c) => [c['assertion'], c['subject_token'], c['actor_token']]);

    const shown = {
      top: keys([doc]),
      limits: keys([doc['limits']]),
      retry: keys(credentials.map((c) => c['retry'])),
      admin: keys([doc['admin']]),
      log: keys([doc['log']]),
      credential: keys(credentials),
      tokenInput: keys(inputs),
      route: keys(routes),
      match: keys(routes.map((r) => r['match'])),
      tls: keys([...credentials, ...routes].map((o) => o['tls'])),
    };
    for (const [section, names] of Object.entries(DOCUMENTED_KEYS)) {
      const missing = names.filter((k) => !shown[section as keyof typeof shown].has(k));
      expect(missing, `keys of ${section} missing from config.example.yaml`).toEqual([]);
    }
  });

  it('lists every credential key the validator accepts', () => {
    expect([...DOCUMENTED_KEYS.credential].sort()).toEqual(Object.keys(Credential.shape).sort());
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
