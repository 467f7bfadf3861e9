// The `token-injector` command as users run it: a child process started from the current source
// (node --import tsx src/cli/main.ts), talking to a real oidc-provider authorization server and a
// real upstream that verifies the injected JWTs. Exit codes, stdout and stderr are the contract.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { dirname } from 'node:path';
import { createRemoteJWKSet, jwtVerify } from 'jose';
import { request } from 'undici';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { EXIT } from '../../src/cli/exit-codes.js';
import {
  type AuthServer,
  BASIC_CLIENT,
  basicAuthorization,
  POST_CLIENT,
  startAuthServer,
} from '../support/auth-server.js';
import { killAllCli, REPO_ROOT, runCli, startRun, tempDir, writeConfig } from '../support/cli-process.js';
import { leaksInLogs, watchSecret } from '../support/leak-watch.js';
import { createTestCa, type TestCa } from '../support/test-ca.js';
import { type EchoResponse, startUpstream, type Upstream } from '../support/upstream.js';

const ORDERS_SECRET_ENV = 'TI_E2E_ORDERS_SECRET';
const BILLING_SECRET_ENV = 'TI_E2E_BILLING_SECRET';
const WRONG_SECRET = 'definitely-not-the-secret-7f3a9c';

let auth: AuthServer;
let upstream: Upstream;
let ca: TestCa;
let dir: string;
let removeDir: () => void;
const secretEnv = { [ORDERS_SECRET_ENV]: BASIC_CLIENT.secret, [BILLING_SECRET_ENV]: POST_CLIENT.secret };

/** A valid configuration with two credentials on the real auth server and one route to the real upstream. */
function goodConfig(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    listen: '127.0.0.1:0',
    admin: { listen: '127.0.0.1:0' },
    log: { level: 'info' },
    credentials: {
      orders: {
        token_endpoint: auth.tokenEndpoint,
        grant_type: 'client_credentials',
        client_id: BASIC_CLIENT.id,
        client_secret: `\${env:${ORDERS_SECRET_ENV}}`,
        auth_method: 'client_secret_basic',
        scope: ['orders.read'],
      },
      billing: {
        token_endpoint: auth.tokenEndpoint,
        grant_type: 'client_credentials',
        client_id: POST_CLIENT.id,
        client_secret: `\${env:${BILLING_SECRET_ENV}}`,
        auth_method: 'client_secret_post',
      },
    },
    routes: [{ name: 'orders', upstream: upstream.url, credential: 'orders' }],
    ...extra,
  };
}

/** Every way a secret could show up in text. */
function secretVariants(secret: string): string[] {
  return [secret, encodeURIComponent(secret), Buffer.from(secret).toString('base64')];
}

beforeAll(async () => {
  auth = await startAuthServer();
  upstream = await startUpstream({ issuer: auth.issuer, jwksUri: auth.jwksUri, audience: auth.audience });
  ca = await createTestCa();
  ({ dir, remove: removeDir } = tempDir());
  for (const s of [BASIC_CLIENT.secret, POST_CLIENT.secret, WRONG_SECRET]) watchSecret(s);
});

afterEach(() => {
  // Tokens the auth server issued must never appear in what the CLI logged (stdout of `token` aside).
  for (const t of auth.issuedTokens) watchSecret(t);
  expect(leaksInLogs()).toEqual([]);
});

afterAll(async () => {
  await killAllCli();
  await upstream?.close();
  await auth?.close();
  await ca?.cleanup();
  removeDir?.();
});

// Independent processes: run side by side.
describe.concurrent('--help and --version', () => {
  it('--help prints every command and every exit code, and exits 0', async ({ expect }) => {
    for (const res of await Promise.all([runCli(['--help']), runCli(['-h'])])) {
      expect(res.code).toBe(0);
      expect(res.stderr).toBe('');
      for (const usage of [
        'token-injector run --config FILE',
        'token-injector validate --config FILE',
        'token-injector token NAME --config FILE',
        'token-injector --help | --version',
      ]) {
        expect(res.stdout).toContain(usage);
      }
      const codes = [...res.stdout.matchAll(/^ {2}(\d) {2}\S/gm)].map((m) => Number(m[1]));
      expect(codes).toEqual(Object.values(EXIT).sort());
      expect(res.stdout).toMatch(/^ {2}0 {2}success$/m);
      expect(res.stdout).toMatch(/^ {2}1 {2}invalid configuration/m);
      expect(res.stdout).toMatch(/^ {2}2 {2}bad command-line usage$/m);
      expect(res.stdout).toMatch(/^ {2}3 {2}token: no token could be obtained/m);
      expect(res.stdout).toMatch(/^ {2}4 {2}run: the proxy could not start/m);
    }
  });

  it('--version prints the version of package.json and exits 0', async ({ expect }) => {
    const { version } = JSON.parse(readFileSync(`${REPO_ROOT}package.json`, 'utf8')) as { version: string };
    expect(version).toMatch(/^\d+\.\d+\.\d+/);
    for (const res of await Promise.all([runCli(['--version']), runCli(['-v'])])) {
      expect(res).toMatchObject({ code: 0, stdout: `${version}\n`, stderr: '' });
    }
  });
});

// Independent processes: run side by side.
describe.concurrent('bad usage exits 2', () => {
  it('no command: prints the help on stderr', async ({ expect }) => {
    const res = await runCli([]);
    expect(res.code).toBe(2);
    expect(res.stdout).toBe('');
    expect(res.stderr).toContain('Usage:');
    expect(res.stderr).toContain('Exit codes:');
  });

  it('an unknown command', async ({ expect }) => {
    const res = await runCli(['frobnicate', '--config', 'x.yaml']);
    expect(res.code).toBe(2);
    expect(res.stdout).toBe('');
    expect(res.stderr).toContain('unknown command "frobnicate"');
    expect(res.stderr).toContain("Run 'token-injector --help' for usage.");
  });

  it('an unknown flag', async ({ expect }) => {
    const res = await runCli(['validate', '--bogus']);
    expect(res.code).toBe(2);
    expect(res.stdout).toBe('');
    expect(res.stderr).toContain("Unknown option '--bogus'");
  });

  it('a missing --config, a missing NAME and a stray argument', async ({ expect }) => {
    const path = writeConfig(dir, 'usage.yaml', goodConfig());
    const [noConfig, noName, stray] = await Promise.all([
      runCli(['validate']),
      runCli(['token', '--config', path], { env: secretEnv }),
      runCli(['validate', 'extra', '--config', path], { env: secretEnv }),
    ]);
    expect(noConfig.code).toBe(2);
    expect(noConfig.stderr).toContain('--config FILE is required');
    expect(noName.code).toBe(2);
    expect(noName.stderr).toContain('usage: token-injector token NAME --config FILE');
    expect(stray.code).toBe(2);
    expect(stray.stderr).toContain('"validate" takes no arguments besides --config');
    for (const r of [noConfig, noName, stray]) expect(r.stdout).toBe('');
  });
});

// Independent processes: run side by side.
describe.concurrent('validate', () => {
  it('a valid configuration: exit 0 and a one-line summary', async ({ expect }) => {
    const path = writeConfig(dir, 'valid.yaml', goodConfig());
    const res = await runCli(['validate', '--config', path], { env: secretEnv });
    expect(res).toMatchObject({ code: 0, stderr: '' });
    expect(res.stdout).toBe(`${path}: valid (2 credentials, 1 route)\n`);
  });

  it('TOKEN_INJECTOR_CONFIG stands in for --config', async ({ expect }) => {
    const path = writeConfig(dir, 'from-env.yaml', goodConfig());
    const res = await runCli(['validate'], { env: { ...secretEnv, TOKEN_INJECTOR_CONFIG: path } });
    expect(res).toMatchObject({ code: 0, stderr: '' });
    expect(res.stdout).toBe(`${path}: valid (2 credentials, 1 route)\n`);
  });

  it('a configuration with several mistakes: exit 1 and every problem with its exact path', async ({
    expect,
  }) => {
    const path = writeConfig(
      dir,
      'bad.yaml',
      `listen: 127.0.0.1:0
admin:
  listen: 127.0.0.1:0
shutdown_timout: 5s
log:
  level: verbose
credentials:
  orders:
    token_endpoint: http://127.0.0.1:9/token
    grant_type: client_credentials
    client_id: orders-client
    client_secret: \${env:TI_E2E_UNSET_SECRET}
  billing:
    token_endpoint: ftp://127.0.0.1:9/token
    grant_type: client_credentials
    client_id: billing-client
    client_secret: \${env:${BILLING_SECRET_ENV}}
    timeot: 5s
routes:
  - name: orders
    match:
      host: orders.test
      path_prefx: /v1/
    upstream: http://127.0.0.1:9
    credential: ordrs
`,
    );
    const res = await runCli(['validate', '--config', path], {
      env: secretEnv,
      unsetEnv: ['TI_E2E_UNSET_SECRET'],
    });
    expect(res.code).toBe(1);
    expect(res.stdout).toBe('');
    expect(res.stderr.split('\n')).toEqual([
      `${path}: invalid configuration`,
      '  shutdown_timout: unknown key (did you mean "shutdown_timeout"?)',
      '  log.level: must be one of trace, debug, info, warn, error, got "verbose"',
      '  credentials.orders.client_secret: environment variable TI_E2E_UNSET_SECRET is not set',
      '  credentials.billing.timeot: unknown key (did you mean "timeout"?)',
      '  credentials.billing.token_endpoint: must be an http:// or https:// URL, got ftp://',
      '  routes[0].match.path_prefx: unknown key (did you mean "path_prefix"?)',
      '  routes[0].credential: unknown credential "ordrs" (known: orders, billing)',
      '',
    ]);
    // The resolved secret of the valid credential is never echoed back.
    for (const v of secretVariants(POST_CLIENT.secret)) expect(res.stderr).not.toContain(v);
  });

  it('a file that does not exist: exit 1 naming it', async ({ expect }) => {
    const res = await runCli(['validate', '--config', `${dir}/nope.yaml`]);
    expect(res.code).toBe(1);
    expect(res.stderr).toContain(`cannot read ${dir}/nope.yaml (ENOENT)`);
  });

  it('config.example.yaml is valid once its variables are set and the files it names exist', async ({
    expect,
  }) => {
    const { path, env } = await exampleWithFiles();
    for (const value of Object.values(env)) watchSecret(value);
    const res = await runCli(['validate', '--config', path], { env });
    expect(res).toMatchObject({ code: 0, stderr: '' });
    expect(res.stdout).toMatch(/: valid \(14 credentials, 4 routes\)\n$/);

    // Without the variables, each missing one is reported at the key that uses it.
    const missing = await runCli(['validate', '--config', path], { unsetEnv: Object.keys(env) });
    expect(missing.code).toBe(1);
    const lines = missing.stderr.split('\n').slice(1, -1);
    expect(lines).toContain(
      '  credentials.orders.client_secret: environment variable ORDERS_CLIENT_SECRET is not set',
    );
    expect(lines).toContain('  credentials.legacy.password: environment variable LEGACY_PASSWORD is not set');
    expect(lines).toHaveLength(Object.keys(env).length);
  });
});

/**
 * A copy of config.example.yaml whose absolute file paths point into a temp dir holding real
 * keys and certificates of the kinds the example names, and every ${env:} variable set.
 */
async function exampleWithFiles(): Promise<{ path: string; env: Record<string, string> }> {
  const text = readFileSync(`${REPO_ROOT}/config.example.yaml`, 'utf8');
  const { dir: root } = tempDir();
  const rsa = await ca.issue(['inventory'], { keyType: 'rsa' });
  const ec = await ca.issue(['partner'], { client: true });
  const contents = (file: string): string => {
    if (file.includes('inventory-key')) return rsa.key;
    if (file.includes('inventory-cert')) return rsa.cert;
    if (file.endsWith('ca.pem')) return ca.caPem;
    if (file.endsWith('key.pem')) return ec.key;
    if (file.endsWith('cert.pem')) return ec.cert;
    return 'example-assertion-or-token';
  };
  const copy = text.replace(/(?<=[\s:])\/(etc|var)\/[\w./-]+/g, (file) => {
    const local = `${root}${file}`;
    mkdirSync(dirname(local), { recursive: true });
    writeFileSync(local, contents(file));
    return local;
  });
  const env: Record<string, string> = {};
  // Variables used in values (not the `${env:NAME}` of the explanatory comments).
  for (const m of text.matchAll(/^[^#\n]*\$\{env:([A-Z0-9_]+)\}/gm))
    env[m[1]!] = `example-${m[1]!.toLowerCase()}-1234`;
  return { path: writeConfig(root, 'config.example.yaml', copy), env };
}

describe('token NAME', () => {
  it('prints exactly one line: a JWT the auth server issued, verifiable against its JWKS', async () => {
    const path = writeConfig(dir, 'token.yaml', goodConfig());
    const before = auth.tokenRequests.length;
    const res = await runCli(['token', 'orders', '--config', path], { env: secretEnv, recordStdout: false });
    expect(res.code).toBe(0);
    expect(res.stderr).toBe('');
    const lines = res.stdout.split('\n');
    expect(lines).toHaveLength(2);
    expect(lines[1]).toBe('');
    const token = lines[0]!;
    expect(auth.issuedTokens).toContain(token);
    const { payload, protectedHeader } = await jwtVerify(token, createRemoteJWKSet(new URL(auth.jwksUri)), {
      issuer: auth.issuer,
      audience: auth.audience,
    });
    expect(protectedHeader.alg).toBe('ES256');
    expect(payload).toMatchObject({ client_id: BASIC_CLIENT.id, scope: 'orders.read' });

    // One request, authenticated with HTTP Basic as configured.
    expect(auth.tokenRequests.length).toBe(before + 1);
    const recorded = auth.tokenRequests.at(-1)!;
    expect(recorded.status).toBe(200);
    expect(recorded.headers.authorization).toBe(basicAuthorization(BASIC_CLIENT.id, BASIC_CLIENT.secret));
    expect(recorded.form).toEqual({ grant_type: 'client_credentials', scope: 'orders.read' });
  });

  it('uses client_secret_post for a credential configured so', async () => {
    const path = writeConfig(dir, 'token-post.yaml', goodConfig());
    const res = await runCli(['token', 'billing', '--config', path], { env: secretEnv, recordStdout: false });
    expect(res.code).toBe(0);
    const token = res.stdout.trimEnd();
    expect(res.stdout).toBe(`${token}\n`);
    const { payload } = await jwtVerify(token, createRemoteJWKSet(new URL(auth.jwksUri)), {
      issuer: auth.issuer,
      audience: auth.audience,
    });
    expect(payload['client_id']).toBe(POST_CLIENT.id);
    const recorded = auth.tokenRequests.at(-1)!;
    expect(recorded.headers.authorization).toBeUndefined();
    expect(recorded.form).toMatchObject({ client_id: POST_CLIENT.id, client_secret: POST_CLIENT.secret });
  });

  it('--scope and --resource ask for another token of the credential, as a route override would', async () => {
    const path = writeConfig(dir, 'token-override.yaml', goodConfig());
    const res = await runCli(
      ['token', 'orders', '--config', path, '--scope', 'orders.write', '--resource', auth.audience],
      { env: secretEnv, recordStdout: false },
    );
    expect(res.code).toBe(0);
    const { payload } = await jwtVerify(res.stdout.trimEnd(), createRemoteJWKSet(new URL(auth.jwksUri)), {
      issuer: auth.issuer,
      audience: auth.audience,
    });
    expect(payload).toMatchObject({ client_id: BASIC_CLIENT.id, scope: 'orders.write' });
    expect(auth.tokenRequests.at(-1)!.form).toEqual({
      grant_type: 'client_credentials',
      scope: 'orders.write',
      resource: auth.audience,
    });
  });

  it.each([
    [['validate', '--scope', 'orders.write'], 'token-injector: --scope applies to the token command only\n'],
    [
      ['token', 'orders', '--resource', 'orders-api'],
      'token-injector: --resource must be an absolute URI (RFC 8707 §2)\n',
    ],
  ])('bad token overrides %j: exit 2, no token request', async (args, stderr) => {
    const path = writeConfig(dir, 'token-override-bad.yaml', goodConfig());
    const before = auth.tokenRequests.length;
    const res = await runCli([...args, '--config', path], { env: secretEnv });
    expect(res).toMatchObject({ code: 2, stdout: '', stderr });
    expect(auth.tokenRequests.length).toBe(before);
  });

  it('an unknown credential: exit 2 naming the known ones, and no token request', async () => {
    const path = writeConfig(dir, 'token-unknown.yaml', goodConfig());
    const before = auth.tokenRequests.length;
    const res = await runCli(['token', 'shipping', '--config', path], { env: secretEnv });
    expect(res.code).toBe(2);
    expect(res.stdout).toBe('');
    expect(res.stderr).toBe('token-injector: unknown credential "shipping" (known: orders, billing)\n');
    expect(auth.tokenRequests.length).toBe(before);
  });

  it('a client the token endpoint rejects: exit 3, the OAuth error on stderr, no secret anywhere', async () => {
    const path = writeConfig(dir, 'token-wrong.yaml', goodConfig());
    const res = await runCli(['token', 'orders', '--config', path], {
      env: { ...secretEnv, [ORDERS_SECRET_ENV]: WRONG_SECRET },
    });
    expect(res.code).toBe(3);
    expect(res.stdout).toBe('');
    expect(res.stderr).toContain('token_endpoint_rejected');
    expect(res.stderr).toContain('HTTP 401');
    expect(res.stderr).toContain('invalid_client');
    expect(auth.tokenRequests.at(-1)!.status).toBe(401);
    for (const secret of [WRONG_SECRET, BASIC_CLIENT.secret, POST_CLIENT.secret]) {
      for (const v of secretVariants(secret)) {
        expect(res.stdout).not.toContain(v);
        expect(res.stderr).not.toContain(v);
      }
    }
  });

  it('an unreachable token endpoint: exit 3 with the reason', async () => {
    const port = await closedPort();
    const config = goodConfig();
    (config['credentials'] as Record<string, Record<string, unknown>>)['orders']!['token_endpoint'] =
      `http://127.0.0.1:${port}/token`;
    const path = writeConfig(dir, 'token-unreachable.yaml', config);
    const res = await runCli(['token', 'orders', '--config', path], { env: secretEnv });
    expect(res.code).toBe(3);
    expect(res.stdout).toBe('');
    expect(res.stderr).toContain('token_endpoint_unreachable');
    expect(res.stderr).toContain('ECONNREFUSED');
  });
});

describe('run', () => {
  afterEach(killAllCli);

  it('a port already in use: exit 4 with the reason', async () => {
    const blocker = await listenOn0();
    try {
      const port = (blocker.address() as { port: number }).port;
      const path = writeConfig(dir, 'busy.yaml', goodConfig({ listen: `127.0.0.1:${port}` }));
      const res = await runCli(['run', '--config', path], { env: secretEnv });
      expect(res.code).toBe(4);
      expect(res.stderr).toContain('token-injector: cannot start:');
      expect(res.stderr).toContain('EADDRINUSE');
    } finally {
      await new Promise<void>((resolve) => blocker.close(() => resolve()));
    }
  });

  it.each(['SIGTERM', 'SIGINT'] as const)(
    'serves with injected tokens; %s stops it with exit 0 and a "stopped" line',
    async (signal) => {
      const path = writeConfig(dir, `run-${signal}.yaml`, goodConfig());
      const { proc, proxyUrl } = await startRun(path, { env: secretEnv });

      const res = await request(`${proxyUrl}/v1/things?id=7`);
      expect(res.statusCode).toBe(200);
      const echo = (await res.body.json()) as EchoResponse;
      expect(echo.path).toBe('/v1/things?id=7');
      expect(echo.claims).toMatchObject({ client_id: BASIC_CLIENT.id, iss: auth.issuer });
      await proc.waitForLog((l) => l['event'] === 'request' && l['status'] === 200, 'the request log line');

      proc.signal(signal);
      expect(await proc.exited).toEqual({ code: 0, signal: null });
      const events = proc.logs.map((l) => l['event']);
      expect(events).toContain('stopped');
      expect(events.indexOf('signal')).toBeLessThan(events.indexOf('stopping'));
      expect(events.indexOf('stopping')).toBeLessThan(events.indexOf('stopped'));
      expect(proc.logs.find((l) => l['event'] === 'signal')).toMatchObject({ signal });
      expect(proc.stderr).toBe('');
      // The injected token is in no log line (the shared leak check covers this too).
      const injected = echo.headers.authorization!.replace(/^Bearer /, '');
      expect(proc.stdout).not.toContain(injected);
    },
  );
});

function listenOn0(): Promise<Server> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve(server));
  });
}

/** A port nothing listens on (bound, then released). */
async function closedPort(): Promise<number> {
  const server = await listenOn0();
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}
