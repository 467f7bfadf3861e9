// config.schema.json, the JSON Schema (draft 2020-12) editors and CI use, against the validator
// behind `token-injector validate`: the example must pass it, and every case of the corpus in
// test/fixtures/config-corpus/{valid,invalid}/ must get the same verdict from both.
//
// Each corpus file starts with a comment line saying what it shows; an invalid case's second line,
// `# problems: [...]`, lists the key paths the validator names, so each case is invalid for the
// reason it states (and not because a file is missing). Files the cases name (keys, certificates,
// assertions, a CA) are made in a temporary directory, which is the config's directory.
//
// Left out of the corpus: what a JSON Schema cannot decide, because it depends on other values, on
// the environment or on files.
// - A route or a token exchange naming a credential that does not exist; credentials depending
//   on each other in a cycle; a token exchange taking its token from a credential whose
//   assertion comes from request headers; two routes with the same name; a route's header or
//   prefix with a credential that has dpop.
// - listen and admin.listen on the same port; a listen address beyond loopback without
//   allow_remote_clients; http:// to a host beyond loopback without allow_insecure_http.
// - Comparisons between keys: default_lifetime above max_lifetime, retry.initial_backoff above
//   retry.max_backoff, connect_timeout above timeout; strip_prefix without match.path_prefix;
//   auth_method none with grant_type client_credentials.
// - What a value means rather than its form: a URL's user info, query or fragment; a
//   host pattern; a header name that is not a token or is a connection header (Host); a
//   prefix holding CR or LF; a redis URL's database path; tls on a redis:// (not rediss://) URL; a
//   token type that is not a URI; a whole number, duration or size written as a string (as
//   `${env:X}` gives them) that is out of range (max_headers "5", "0s", leaf_lifetime "30m").
// - YAML itself: syntax errors, duplicate keys, several documents, alias bombs (the JSON Schema
//   sees only the parsed tree).
// - `${env:X}` whose variable is unset or whose value is wrong for the key; unreadable files; a
//   key or certificate file of the wrong kind, a signing_alg (or dpop.alg) that does not fit the key, a
//   certificate that does not match its key, a CA key readable by others, an expired CA.
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv2020, type ErrorObject, type ValidateFunction } from 'ajv/dist/2020.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ConfigSources } from '../../../src/config/interpolate.js';
import { parseConfigText } from '../../../src/config/load.js';
import { parseYaml } from '../../../src/config/yaml.js';
import { type TempDir, tempDir, writeNewCa } from '../../support/interception.js';
import { generateKey, selfSignedCertificate } from '../fixtures.js';
import { format } from './helpers.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const SCHEMA_FILE = join(ROOT, 'config.schema.json');
const CORPUS = join(ROOT, 'test/fixtures/config-corpus');

/** The variables the corpus's `${env:X}` references read: each value fits the keys that use it. */
const ENV: Record<string, string> = {
  TI_CORPUS_SECRET: 'corpus-client-secret',
  TI_CORPUS_PASSWORD: 'corpus-password',
  TI_CORPUS_CACHE_KEY: Buffer.alloc(32, 1).toString('base64'),
  TI_CORPUS_CACHE_KEY_OLD: Buffer.alloc(32, 2).toString('base64'),
  TI_CORPUS_INT: '200',
  TI_CORPUS_DURATION: '15s',
  TI_CORPUS_SIZE: '32KiB',
  TI_CORPUS_TRUE: 'true',
  TI_CORPUS_RATIO: '0.5',
  TI_CORPUS_LOG_LEVEL: 'debug',
  TI_CORPUS_UNMATCHED: 'passthrough',
};

type Verdict = 'valid' | 'invalid';

interface Case {
  readonly verdict: Verdict;
  readonly name: string;
  readonly text: string;
  /** The first comment line. */
  readonly what: string;
  /** Invalid cases: the key paths the validator names. */
  readonly problems?: readonly string[];
}

function readCorpus(): Case[] {
  return (['valid', 'invalid'] as const).flatMap((verdict) =>
    readdirSync(join(CORPUS, verdict))
      .filter((f) => f.endsWith('.yaml'))
      .sort()
      .map((file) => {
        const text = readFileSync(join(CORPUS, verdict, file), 'utf8');
        const [first = '', second = ''] = text.split('\n');
        const problems = /^# problems: (\[.*\])$/.exec(second)?.[1];
        return {
          verdict,
          name: `${verdict}/${file}`,
          text,
          what: first.replace(/^# ?/, ''),
          ...(problems !== undefined ? { problems: JSON.parse(problems) as string[] } : {}),
        };
      }),
  );
}

const corpus = readCorpus();

let files: TempDir;
let sources: ConfigSources;

beforeAll(async () => {
  files = tempDir();
  const at = (name: string) => join(files.path, name);
  const ec = generateKey('p256');
  const rsa = generateKey('rsa');
  writeFileSync(at('ec.pem'), ec.pkcs8);
  writeFileSync(at('rsa.pem'), rsa.pkcs8);
  selfSignedCertificate(at('ec.pem'), at('ec.crt'));
  selfSignedCertificate(at('rsa.pem'), at('rsa.crt'));
  writeFileSync(at('assertion.jwt'), 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzYSJ9.c2ln\n');
  writeFileSync(at('actor.jwt'), 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhY3RvciJ9.c2ln\n');
  writeFileSync(
    at('saml.xml'),
    '<saml:Assertion xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="_a"><saml:Conditions NotOnOrAfter="2099-01-01T00:00:00Z"/></saml:Assertion>',
  );
  await writeNewCa(files.path, 'ca');
  sources = { env: ENV, readFile: (path) => readFileSync(path, 'utf8'), baseDir: files.path };
});

afterAll(() => files?.remove());

/** The validator's verdict, as `token-injector validate` gives it. */
function validate(text: string): { verdict: Verdict; problems: string[]; paths: string[] } {
  const { config, problems } = parseConfigText(text, sources);
  return {
    verdict: config ? 'valid' : 'invalid',
    problems: problems.map(format),
    paths: problems.map((p) => p.path),
  };
}

function readSchema(): object {
  return JSON.parse(readFileSync(SCHEMA_FILE, 'utf8')) as object;
}

/**
 * The JSON Schema compiled for judging the corpus: strict, so an unknown keyword or format fails
 * the compile, except for ajv's `strictTypes`, which the next test checks on its own so that its
 * findings and the verdicts below are reported apart.
 */
let compiled: ValidateFunction | undefined;
function schema(): ValidateFunction {
  compiled ??= new Ajv2020({ strict: true, strictTypes: false, allErrors: true }).compile(readSchema());
  return compiled;
}

/** The JSON Schema's verdict on a YAML text, read as the project reads it. */
function schemaVerdict(text: string): { verdict: Verdict; errors: string[] } {
  const { value, problems } = parseYaml(text);
  expect(problems, 'the corpus is YAML').toEqual([]);
  const check = schema();
  const ok = check(value ?? null);
  return { verdict: ok ? 'valid' : 'invalid', errors: (check.errors ?? []).map(describeError) };
}

function describeError(e: ErrorObject): string {
  return `${e.instancePath || '/'} ${e.message ?? e.keyword} ${JSON.stringify(e.params)}`;
}

describe('the corpus', () => {
  it('holds 40 cases or more, valid and invalid ones, each saying what it shows', () => {
    expect(corpus.length).toBeGreaterThanOrEqual(40);
    expect(corpus.filter((c) => c.verdict === 'valid').length).toBeGreaterThanOrEqual(15);
    expect(corpus.filter((c) => c.verdict === 'invalid').length).toBeGreaterThanOrEqual(25);
    for (const c of corpus) {
      expect(c.text, c.name).toMatch(/^# \S/);
      expect(c.what.length, c.name).toBeGreaterThan(10);
      expect(c.problems !== undefined, `${c.name}: an invalid case lists its problems`).toBe(
        c.verdict === 'invalid',
      );
    }
  });

  it('shows every grant type and every client authentication method in valid form', () => {
    const valid = corpus.filter((c) => c.verdict === 'valid').map((c) => c.text);
    const shown = (key: string) =>
      new Set(
        valid.flatMap((t) => [...t.matchAll(new RegExp(`^\\s+${key}: (\\S+)$`, 'gm'))].map((m) => m[1])),
      );
    expect([...shown('grant_type')].sort()).toEqual(
      ['client_credentials', 'jwt_bearer', 'password', 'saml2_bearer', 'token_exchange'].sort(),
    );
    expect([...shown('auth_method')].sort()).toEqual(
      [
        'client_secret_basic',
        'client_secret_post',
        'client_secret_jwt',
        'private_key_jwt',
        'tls_client_auth',
        'self_signed_tls_client_auth',
        'none',
      ].sort(),
    );
  });
});

describe('the validator', () => {
  it.each(corpus.filter((c) => c.verdict === 'valid'))('accepts $name', ({ text }) => {
    expect(validate(text).problems).toEqual([]);
  });

  it.each(corpus.filter((c) => c.verdict === 'invalid'))(
    'rejects $name at exactly the keys it states',
    ({ text, problems }) => {
      const result = validate(text);
      expect(result.verdict).toBe('invalid');
      expect(result.paths, result.problems.join('\n')).toEqual(problems);
    },
  );
});

describe('config.schema.json', () => {
  it('is a draft 2020-12 schema that compiles in strict mode', () => {
    const json = readSchema() as Record<string, unknown>;
    expect(json['$schema']).toBe('https://json-schema.org/draft/2020-12/schema');
    expect(() => schema()).not.toThrow();
    // strictTypes too: a `pattern` or `properties` without its `type` lets other types through
    // unchecked (a number passes a pattern), which editors would then accept.
    expect(() => new Ajv2020({ strict: true, allErrors: true }).compile(readSchema())).not.toThrow();
  });

  it('accepts config.example.yaml', () => {
    const text = readFileSync(join(ROOT, 'config.example.yaml'), 'utf8');
    expect(text.split('\n')[0]).toBe('# yaml-language-server: $schema=./config.schema.json');
    expect(schemaVerdict(text)).toEqual({ verdict: 'valid', errors: [] });
  });

  // With the validator's own checks above, the two judges agree on every case.
  it.each(corpus)('judges $name as the validator does', ({ text, verdict }) => {
    const result = schemaVerdict(text);
    expect(result.verdict, result.errors.join('\n')).toBe(verdict);
  });
});
