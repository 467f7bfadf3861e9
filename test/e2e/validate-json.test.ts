// `token-injector validate --format json`, run as users run it (a child process from the current
// source): one JSON document on stdout for CI pipelines, the exit codes of the text form, and no
// secret and no stack trace whatever the file holds.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { EXIT } from '../../src/cli/exit-codes.js';
import { killAllCli, runCli, tempDir, writeConfig } from '../support/cli-process.js';
import { leaksInLogs, watchSecret } from '../support/leak-watch.js';

const ENV_SECRET = 'env-secret-4b1d9e77c2a0f3';
const INLINE_SECRET = 'inline-secret-9c3e51ab7d24';
const SECRET_ENV = 'TI_E2E_JSON_SECRET';
const env = { [SECRET_ENV]: ENV_SECRET };

let dir: string;
let removeDir: () => void;

beforeAll(() => {
  ({ dir, remove: removeDir } = tempDir());
  for (const s of [ENV_SECRET, INLINE_SECRET]) watchSecret(s);
});

afterEach(() => {
  expect(leaksInLogs()).toEqual([]);
});

afterAll(async () => {
  await killAllCli();
  removeDir?.();
});

interface Report {
  valid: boolean;
  problems: { path: string; message: string }[];
  warnings: { path: string; message: string }[];
}

/** Exactly one JSON document, on one line, holding exactly the three public keys. */
function report(stdout: string): Report {
  const lines = stdout.split('\n');
  expect(lines).toHaveLength(2);
  expect(lines[1]).toBe('');
  const parsed = JSON.parse(lines[0]!) as Report;
  expect(Object.keys(parsed)).toEqual(['valid', 'problems', 'warnings']);
  for (const p of [...parsed.problems, ...parsed.warnings]) {
    expect(Object.keys(p)).toEqual(['path', 'message']);
    expect(typeof p.path).toBe('string');
    expect(typeof p.message).toBe('string');
  }
  return parsed;
}

function expectNoSecret(...texts: string[]): void {
  for (const text of texts) {
    for (const secret of [ENV_SECRET, INLINE_SECRET]) {
      for (const v of [secret, encodeURIComponent(secret), Buffer.from(secret).toString('base64')]) {
        expect(text).not.toContain(v);
      }
    }
  }
}

const VALID = `listen: 127.0.0.1:0
admin:
  listen: 127.0.0.1:0
credentials:
  orders:
    token_endpoint: http://127.0.0.1:9/token
    grant_type: client_credentials
    client_id: orders-client
    client_secret: \${env:${SECRET_ENV}}
  billing:
    token_endpoint: http://127.0.0.1:9/token
    grant_type: client_credentials
    client_id: billing-client
    client_secret: ${INLINE_SECRET}
routes:
  - name: orders
    upstream: http://127.0.0.1:9
    credential: orders
`;

const INVALID = `listen: 127.0.0.1:0
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
    client_secret: \${env:${SECRET_ENV}}
  billing:
    token_endpoint: ftp://127.0.0.1:9/token
    grant_type: client_credentials
    client_id: billing-client
    client_secret: ${INLINE_SECRET}
    timeot: 5s
routes:
  - name: orders
    match:
      path_prefx: /v1/
    upstream: http://127.0.0.1:9
    credential: ordrs
  - name: billing
    credential: billing
`;

// Independent processes: run side by side.
describe.concurrent('validate --format json', () => {
  it('a valid configuration: exit 0, valid true, its warnings by key path, nothing on stderr', async ({
    expect,
  }) => {
    const path = writeConfig(dir, 'valid.yaml', VALID);
    const [json, equals] = await Promise.all([
      runCli(['validate', '--format', 'json', '--config', path], { env }),
      runCli(['validate', `--format=json`, '-c', path], { env }),
    ]);
    for (const res of [json, equals]) {
      expect(res).toMatchObject({ code: EXIT.ok, stderr: '' });
      const r = report(res.stdout);
      expect(r.valid).toBe(true);
      expect(r.problems).toEqual([]);
      expect(r.warnings).toEqual([
        { path: 'credentials.billing.client_secret', message: expect.stringContaining('is written inline') },
      ]);
      expectNoSecret(res.stdout, res.stderr);
    }
  });

  it('an invalid configuration: exit 1, every problem of the text form with its path, no secret', async ({
    expect,
  }) => {
    const path = writeConfig(dir, 'invalid.yaml', INVALID);
    const [json, text] = await Promise.all([
      runCli(['validate', '--format', 'json', '--config', path], { env }),
      runCli(['validate', '--config', path], { env }),
    ]);
    expect(json.code).toBe(EXIT.configInvalid);
    expect(text.code).toBe(EXIT.configInvalid);
    expect(json.stderr).toBe('');
    const r = report(json.stdout);
    expect(r.valid).toBe(false);
    expect(r.warnings).toEqual([]);
    // Every problem, in whatever order the validator finds them.
    const expected = [
      { path: 'shutdown_timout', message: 'unknown key (did you mean "shutdown_timeout"?)' },
      { path: 'log.level', message: 'must be one of trace, debug, info, warn, error, got "verbose"' },
      { path: 'credentials.billing.timeot', message: 'unknown key (did you mean "timeout"?)' },
      {
        path: 'credentials.billing.token_endpoint',
        message: 'must be an http:// or https:// URL, got ftp://',
      },
      { path: 'routes[0].match.path_prefx', message: 'unknown key (did you mean "path_prefix"?)' },
      { path: 'routes[0].credential', message: 'unknown credential "ordrs" (known: orders, billing)' },
      { path: 'routes[1].upstream', message: 'is required' },
    ];
    expect(r.problems).toEqual(expect.arrayContaining(expected));
    expect(r.problems).toHaveLength(expected.length);
    // The same verdict, problem for problem, as the text form's lines.
    expect(text.stderr.split('\n').slice(1, -1)).toEqual(r.problems.map((p) => `  ${p.path}: ${p.message}`));
    expectNoSecret(json.stdout, json.stderr, text.stderr);
  });

  it('--format text is the default form', async ({ expect }) => {
    const path = writeConfig(dir, 'text.yaml', INVALID);
    const valid = writeConfig(dir, 'text-valid.yaml', VALID);
    const [explicit, implicit, explicitValid, implicitValid] = await Promise.all([
      runCli(['validate', '--format', 'text', '--config', path], { env }),
      runCli(['validate', '--config', path], { env }),
      runCli(['validate', '--format', 'text', '--config', valid], { env }),
      runCli(['validate', '--config', valid], { env }),
    ]);
    expect(explicit).toEqual(implicit);
    expect(explicit.code).toBe(EXIT.configInvalid);
    expect(explicit.stderr).toContain(`${path}: invalid configuration\n`);
    expect(explicitValid).toEqual(implicitValid);
    expect(explicitValid.stdout).toBe(`${valid}: valid (2 credentials, 1 route)\n`);
  });

  it('a file that cannot be read: exit 1, one problem at path "" naming it', async ({ expect }) => {
    const [missing, directory] = await Promise.all([
      runCli(['validate', '--format', 'json', '--config', `${dir}/nope.yaml`]),
      runCli(['validate', '--format', 'json', '--config', dir]),
    ]);
    for (const [res, code] of [
      [missing, 'ENOENT'],
      [directory, 'EISDIR'],
    ] as const) {
      expect(res).toMatchObject({ code: EXIT.configInvalid, stderr: '' });
      const r = report(res.stdout);
      expect(r).toEqual({
        valid: false,
        problems: [
          { path: '', message: expect.stringMatching(new RegExp(`^cannot read .+ \\(${code}\\)$`)) },
        ],
        warnings: [],
      });
      expect(r.problems[0]!.message).toContain(res === missing ? `${dir}/nope.yaml` : dir);
    }
  });

  it('a file that is not YAML: exit 1, the problem at its line and column, no stack, no secret', async ({
    expect,
  }) => {
    const broken = writeConfig(
      dir,
      'broken.yaml',
      `credentials:\n  orders:\n    client_secret: ${INLINE_SECRET}\n    client_id: [unclosed\n`,
    );
    const duplicate = writeConfig(
      dir,
      'duplicate.yaml',
      `credentials:\n  orders:\n    client_secret: ${INLINE_SECRET}\n    client_secret: ${INLINE_SECRET}\n`,
    );
    const empty = writeConfig(dir, 'empty.yaml', '# nothing here\n');
    const results = await Promise.all(
      [broken, duplicate, empty].map((p) => runCli(['validate', '--format', 'json', '--config', p])),
    );
    for (const res of results) {
      expect(res).toMatchObject({ code: EXIT.configInvalid, stderr: '' });
      expect(res.stdout).not.toMatch(/\n\s+at /);
      expectNoSecret(res.stdout);
    }
    const [b, d, e] = results.map((res) => report(res.stdout));
    expect(b!.valid).toBe(false);
    expect(b!.problems).toEqual([
      {
        path: expect.stringMatching(/^line \d+, column \d+$/),
        message: expect.stringMatching(/^YAML syntax: /),
      },
    ]);
    expect(d!.problems).toEqual([
      { path: 'line 4, column 5', message: expect.stringMatching(/^YAML syntax: duplicated mapping key/) },
    ]);
    expect(e).toEqual({
      valid: false,
      problems: [{ path: '', message: 'the configuration is empty' }],
      warnings: [],
    });
  });

  it('TOKEN_INJECTOR_CONFIG stands in for --config', async ({ expect }) => {
    const path = writeConfig(dir, 'from-env.yaml', VALID);
    const res = await runCli(['validate', '--format', 'json'], {
      env: { ...env, TOKEN_INJECTOR_CONFIG: path },
    });
    expect(res).toMatchObject({ code: EXIT.ok, stderr: '' });
    expect(report(res.stdout).valid).toBe(true);
  });
});

// Independent processes: run side by side.
describe.concurrent('--format usage errors exit 2 as other usage errors do', () => {
  it('an unknown format, before the file is even read', async ({ expect }) => {
    const path = writeConfig(dir, 'usage.yaml', INVALID);
    const [xml, upper, none] = await Promise.all([
      runCli(['validate', '--format', 'xml', '--config', path], { env }),
      runCli(['validate', '--format', 'JSON', '--config', path], { env }),
      runCli(['validate', '--config', path, '--format'], { env }),
    ]);
    expect(xml).toMatchObject({
      code: EXIT.usage,
      stdout: '',
      stderr: 'token-injector: --format must be text or json, got "xml"\n',
    });
    expect(upper).toMatchObject({
      code: EXIT.usage,
      stdout: '',
      stderr: 'token-injector: --format must be text or json, got "JSON"\n',
    });
    expect(none.code).toBe(EXIT.usage);
    expect(none.stdout).toBe('');
    expect(none.stderr).toContain("Option '--format <value>' argument missing");
  });

  it('--format with another command than validate', async ({ expect }) => {
    const path = writeConfig(dir, 'usage-run.yaml', VALID);
    const [run, token] = await Promise.all([
      runCli(['run', '--format', 'json', '--config', path], { env }),
      runCli(['token', 'orders', '--format', 'json', '--config', path], { env }),
    ]);
    for (const res of [run, token]) {
      expect(res).toMatchObject({
        code: EXIT.usage,
        stdout: '',
        stderr: 'token-injector: --format applies to the validate command only\n',
      });
    }
  });

  it('--help documents the option and both forms', async ({ expect }) => {
    const res = await runCli(['--help']);
    expect(res.code).toBe(EXIT.ok);
    expect(res.stdout).toContain('token-injector validate --config FILE [--format text|json]');
    expect(res.stdout).toMatch(/^ {2}--format F {10}validate: text \(default/m);
    expect(res.stdout).toContain('json (one');
  });
});
