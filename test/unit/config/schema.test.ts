// biome-ignore-all lint/suspicious/noTemplateCurlyInString: these tests are about the literal ${env:} syntax
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { configJsonSchema } from '../../../src/config/json-schema.js';
import { generateKey } from '../fixtures.js';
import { problemsOf, sources, validConfig } from './helpers.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');

describe('config.schema.json', () => {
  it('is what `npm run schema` generates from src/config/schema.ts', () => {
    const committed = JSON.parse(readFileSync(join(ROOT, 'config.schema.json'), 'utf8')) as unknown;
    expect(committed, 'config.schema.json is stale: run npm run schema').toEqual(
      JSON.parse(configJsonSchema()),
    );
  });

  it('is named by the first line of config.example.yaml and shipped in the package', () => {
    const example = readFileSync(join(ROOT, 'config.example.yaml'), 'utf8');
    expect(example.split('\n')[0]).toBe('# yaml-language-server: $schema=./config.schema.json');
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { files: string[] };
    expect(pkg.files).toContain('config.schema.json');
  });

  it('describes every key, with its default', () => {
    const schema = JSON.parse(configJsonSchema()) as {
      $id: string;
      title: string;
      properties: Record<string, { description?: string; default?: unknown }>;
    };
    expect(schema).toMatchObject({ $id: 'urn:token-injector:config', title: 'token-injector configuration' });
    expect(schema.properties['shutdown_timeout']).toMatchObject({ default: '20s' });
    const undocumented = Object.entries(schema.properties).filter(([, s]) => !s.description);
    expect(undocumented.map(([k]) => k)).toEqual([]);
  });
});

describe('validation by the schema', () => {
  it('reads a boolean, a whole number and a fraction given by ${env:}', () => {
    const config = validConfig(
      'listen: 0.0.0.0:${env:PORT}\nallow_remote_clients: ${env:REMOTE}\nlimits:\n  max_headers: ${env:HEADERS}\ntracing:\n  otlp_endpoint: http://collector:4318\n  sample_ratio: ${env:RATIO}\n',
      sources({ PORT: '8081', REMOTE: 'true', HEADERS: '64', RATIO: '0.25' }),
    );
    expect(config.listen).toEqual({ host: '0.0.0.0', port: 8081 });
    expect(config.allowRemoteClients).toBe(true);
    expect(config.limits.maxHeaders).toBe(64);
    expect(config.tracing!.sampleRatio).toBe(0.25);
  });

  it('refuses a boolean or fraction written as a quoted string, as before references were allowed there', () => {
    expect(problemsOf('allow_remote_clients: "true"\n')).toEqual([
      'allow_remote_clients: must be true or false, got "true"',
    ]);
    // Digits in quotes were always read as the number.
    expect(validConfig('limits:\n  max_headers: "64"\n').limits.maxHeaders).toBe(64);
  });

  it('names the key and what it holds when a reference gives the wrong kind of value', () => {
    expect(problemsOf('allow_remote_clients: ${env:REMOTE}\n', sources({ REMOTE: 'yes' }))).toEqual([
      'allow_remote_clients: must be true or false, got "yes"',
    ]);
  });
});

describe('values passed on as written', () => {
  it('leaves ${…} in the claims of a signed assertion as it is', () => {
    const key = generateKey('p256');
    const config = validConfig(
      `credentials:
  c:
    token_endpoint: https://idp.example.com/token
    grant_type: jwt_bearer
    client_id: c
    client_secret: \${env:S}
    assertion:
      source: sign
      private_key_file: /k.pem
      issuer: i
      subject: s
      claims: {note: "\${env:NOT_RESOLVED}"}
`,
      sources({ S: 's' }, { '/k.pem': key.pkcs8 }),
    );
    const grant = config.credentials.get('c')!.grant;
    expect(
      grant.type === 'jwt_bearer' && grant.assertion.source === 'sign' && grant.assertion.claims,
    ).toEqual({
      note: '${env:NOT_RESOLVED}',
    });
  });
});

describe('order of problems', () => {
  it('follows the keys as the schema lists them, whichever check found each problem', () => {
    // The insecure token endpoint is found after the grant type is read, but is listed first.
    const yaml = `credentials:
  c:
    grant_type: bogus
    token_endpoint: http://idp.example.com/token
    client_id: c
    client_secret: \${env:S}
    tiemout: 5s
`;
    expect(problemsOf(yaml, sources({ S: 's' }))).toEqual([
      'credentials.c.tiemout: unknown key (did you mean "timeout"?)',
      'credentials.c.token_endpoint: http:// to idp.example.com would send tokens or secrets unencrypted; use https://, or set allow_insecure_http: true on the credential if the network is trusted',
      'credentials.c.grant_type: must be one of client_credentials, password, jwt_bearer, saml2_bearer, token_exchange, got "bogus"',
    ]);
  });

  it('keeps the order of the file for credentials, whose names may hold dots', () => {
    const yaml = `credentials:
  b.x:
    token_endpoint: https://idp.example.com/token
    grant_type: client_credentials
    client_id: c
  a:
    token_endpoint: https://idp.example.com/token
    grant_type: client_credentials
    client_id: c
`;
    expect(problemsOf(yaml)).toEqual([
      'credentials.b.x.client_secret: is required',
      'credentials.a.client_secret: is required',
    ]);
  });
});
