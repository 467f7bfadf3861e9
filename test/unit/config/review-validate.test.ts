// biome-ignore-all lint/suspicious/noTemplateCurlyInString: these tests are about the literal ${env:} and ${file:} syntax
// Issue 10, finding 12: `validate` refuses what could never work (a mistyped method, a connect
// timeout longer than the whole request's) and warns about secrets written into the file.
import { describe, expect, it } from 'vitest';
import { runCli } from '../../../src/cli/run-cli.js';
import { parseConfigText } from '../../../src/config/load.js';
import { format, problemsOf, sources, validConfig, withRoutes } from './helpers.js';

const ROUTE = `  - name: r
    match: { host: api.example.com, methods: [__METHODS__] }
    upstream: https://api.example.com
    credential: orders
`;

describe('route methods', () => {
  it('refuses a method no request can have, and suggests the one meant', () => {
    expect(problemsOf(withRoutes(ROUTE.replace('__METHODS__', 'GTE')))).toEqual([
      'routes[0].match.methods: "GTE" is not a known HTTP method (did you mean "GET"?)',
    ]);
    expect(problemsOf(withRoutes(ROUTE.replace('__METHODS__', 'FETCH')))).toEqual([
      'routes[0].match.methods: "FETCH" is not a known HTTP method',
    ]);
  });

  it('accepts every method of RFC 9110, PATCH and WebDAV ones, in any letter case', () => {
    const config = validConfig(
      withRoutes(ROUTE.replace('__METHODS__', 'get, post, PATCH, PROPFIND, OPTIONS')),
    );
    expect([...config.routes[0]!.match.methods!]).toEqual(['GET', 'POST', 'PATCH', 'PROPFIND', 'OPTIONS']);
  });
});

describe('credential timeouts', () => {
  const cred = (extra: string) => `credentials:
  c:
    token_endpoint: https://idp.example.com/token
    grant_type: client_credentials
    client_id: x
    client_secret: \${env:S}
${extra}`;

  it('refuses a connect_timeout longer than the timeout that bounds the whole request', () => {
    expect(problemsOf(cred('    timeout: 2s\n    connect_timeout: 5s\n'), sources({ S: 's' }))).toEqual([
      'credentials.c.connect_timeout: must not be longer than timeout (2000 ms), which bounds the whole token request',
    ]);
    expect(problemsOf(cred('    timeout: 5s\n    connect_timeout: 5s\n'), sources({ S: 's' }))).toEqual([]);
  });
});

describe('limits', () => {
  it('reads max_headers, max_connections and replay_buffer_total, with defaults', () => {
    const yaml = withRoutes(ROUTE.replace('__METHODS__', 'GET'));
    expect(validConfig(yaml).limits).toMatchObject({
      maxHeaders: 100,
      maxConnections: 4096,
      replayBufferTotal: 32 * 1024 * 1024,
    });
    const set = validConfig(
      `limits: { max_headers: 50, max_connections: 100, replay_buffer_total: 1MiB }\n${yaml}`,
    ).limits;
    expect(set).toMatchObject({ maxHeaders: 50, maxConnections: 100, replayBufferTotal: 1024 * 1024 });
    expect(validConfig(yaml).routes[0]!.upstreamMaxConnections).toBe(256);
  });

  it('names the key of a limit that is not a whole number in range', () => {
    const yaml = withRoutes(ROUTE.replace('__METHODS__', 'GET'));
    expect(problemsOf(`limits: { max_headers: 2, max_connections: 1.5 }\n${yaml}`)).toEqual([
      'limits.max_headers: must be a whole number from 8 to 10000, got number 2',
      'limits.max_connections: must be a whole number from 1 to 1000000, got number 1.5',
    ]);
    const zero = withRoutes(`${ROUTE.replace('__METHODS__', 'GET')}    upstream_max_connections: 0\n`);
    expect(problemsOf(zero)).toEqual([
      'routes[0].upstream_max_connections: must be a whole number from 1 to 65535, got number 0',
    ]);
  });
});

describe('secrets written inline', () => {
  it('are a warning naming the key, never a problem; references are not', () => {
    const { config, problems } = parseConfigText(withRoutes(ROUTE.replace('__METHODS__', 'GET')), sources());
    expect(problems).toEqual([]);
    expect(config!.warnings.map(format)).toEqual([
      'credentials.orders.client_secret: is written inline; keep secrets out of the file with ${env:NAME} or ${file:/path/to/secret}',
      'credentials.billing.client_secret: is written inline; keep secrets out of the file with ${env:NAME} or ${file:/path/to/secret}',
    ]);
    const referenced = parseConfigText(
      `credentials:
  c:
    token_endpoint: https://idp.example.com/token
    grant_type: password
    username: u
    password: \${file:/run/pw}
    client_id: x
    client_secret: \${env:S}
`,
      sources({ S: 's' }, { '/run/pw': 'pw' }),
    );
    expect(referenced.problems).toEqual([]);
    expect(referenced.config!.warnings).toEqual([]);
  });

  it('`validate` prints the warning on stderr and still exits 0', async () => {
    const { mkdtempSync, writeFileSync, rmSync } = await import('node:fs');
    const { join } = await import('node:path');
    const { tmpdir } = await import('node:os');
    const dir = mkdtempSync(join(tmpdir(), 'ti-validate-'));
    try {
      const file = join(dir, 'c.yaml');
      writeFileSync(file, withRoutes(ROUTE.replace('__METHODS__', 'GET')));
      let out = '';
      let err = '';
      const code = await runCli(['validate', '--config', file], {
        out: (t) => {
          out += t;
        },
        err: (t) => {
          err += t;
        },
        env: {},
      });
      expect(code).toBe(0);
      expect(out).toContain('valid (2 credentials, 1 route)');
      expect(err).toContain(`${file}: warning: credentials.orders.client_secret: is written inline`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
