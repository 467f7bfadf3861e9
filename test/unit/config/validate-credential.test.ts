// biome-ignore-all lint/suspicious/noTemplateCurlyInString: these tests are about the literal ${env:} and ${file:} syntax
import { generateKeyPairSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import type { ConfigSources } from '../../../src/config/interpolate.js';
import type { Config, CredentialConfig } from '../../../src/config/types.js';
import { generateKey, selfSignedCertificate, TempDir, type TestKey } from '../fixtures.js';
import { problemsOf, validConfig } from './helpers.js';

type Obj = Record<string, unknown>;

const ENDPOINT = 'https://idp.example.com/token';
/** The keys every credential of these tests shares. */
const BASE = { token_endpoint: ENDPOINT, client_id: 'c' };
/** A client_credentials credential with client_secret_basic; spread and extend it. */
const SECRET = { ...BASE, grant_type: 'client_credentials', client_secret: 's' };

let dir: TempDir;
let keys: { rsa: TestKey; p256: TestKey; p384: TestKey; p521: TestKey; ed25519: TestKey };
/** PEM certificates for `keys.p256` and for `keys.rsa`. */
let p256Cert: string;
let rsaCert: string;

beforeAll(() => {
  dir = new TempDir();
  keys = {
    rsa: generateKey('rsa'),
    p256: generateKey('p256'),
    p384: generateKey('p384'),
    p521: generateKey('p521'),
    ed25519: generateKey('ed25519'),
  };
  for (const [name, key] of Object.entries(keys)) {
    dir.file(`${name}.pem`, key.pkcs8);
    dir.file(`${name}.jwk`, key.jwk);
    if (key.traditional) dir.file(`${name}.trad.pem`, key.traditional);
  }
  p256Cert = readFileSync(selfSignedCertificate(path('p256.pem'), path('p256.crt')), 'utf8');
  rsaCert = readFileSync(selfSignedCertificate(path('rsa.pem'), path('rsa.crt')), 'utf8');
  dir.file('not-a-key.pem', 'hello\n');
  dir.file('public.jwk', JSON.stringify(keys.p256.publicKey.export({ format: 'jwk' })));
  dir.file(
    'encrypted.pem',
    keys.p256.privateKey
      .export({ format: 'pem', type: 'pkcs8', cipher: 'aes-256-cbc', passphrase: 'pw' })
      .toString(),
  );
  dir.file(
    'secp256k1.pem',
    generateKeyPairSync('ec', { namedCurve: 'secp256k1' })
      .privateKey.export({ format: 'pem', type: 'pkcs8' })
      .toString(),
  );
  dir.file('assertion.jwt', 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln\n');
  dir.file('assertion.xml', '<saml:Assertion/>\n');
  dir.file('client-secret', 'from-file\n');
  dir.file('password', 'pw-from-file\n');
});

afterAll(() => dir.remove());

/** A path in the temporary directory (relative names in the YAML resolve against it). */
function path(name: string): string {
  return join(dir.path, name);
}

/** Sources reading the real files of the temporary directory, which is also the base directory. */
function disk(env: Record<string, string> = {}): ConfigSources {
  return { env, readFile: (p) => readFileSync(p, 'utf8'), baseDir: dir.path };
}

function yaml(credentials: Obj, routes?: Obj[]): string {
  return stringify(routes ? { credentials, routes } : { credentials });
}

/** Problems of a configuration with these credentials (and routes), as `path: message` lines. */
function problems(credentials: Obj, routes?: Obj[]): string[] {
  return problemsOf(yaml(credentials, routes), disk());
}

function config(credentials: Obj, routes?: Obj[], env: Record<string, string> = {}): Config {
  return validConfig(yaml(credentials, routes), disk(env));
}

/** The one credential `x` of a valid configuration. */
function cred(x: Obj, env: Record<string, string> = {}): CredentialConfig {
  return config({ x }, undefined, env).credentials.get('x')!;
}

describe('auth_method: client secrets', () => {
  it.each(['client_secret_basic', 'client_secret_post'] as const)('%s holds the secret', (method) => {
    expect(cred({ ...SECRET, auth_method: method }).clientAuth).toEqual({ method, secret: { value: 's' } });
  });

  it('defaults to client_secret_basic', () => {
    expect(cred(SECRET).clientAuth).toEqual({ method: 'client_secret_basic', secret: { value: 's' } });
  });

  it('client_secret_jwt holds the secret and the optional assertion_audience', () => {
    expect(cred({ ...SECRET, auth_method: 'client_secret_jwt' }).clientAuth).toEqual({
      method: 'client_secret_jwt',
      secret: { value: 's' },
    });
    expect(
      cred({ ...SECRET, auth_method: 'client_secret_jwt', assertion_audience: 'https://idp.example.com' })
        .clientAuth,
    ).toEqual({
      method: 'client_secret_jwt',
      secret: { value: 's' },
      assertionAudience: 'https://idp.example.com',
    });
  });

  it.each(['client_secret_basic', 'client_secret_post', 'client_secret_jwt'])(
    '%s requires client_secret',
    (method) => {
      expect(problems({ x: { ...BASE, grant_type: 'client_credentials', auth_method: method } })).toEqual([
        'credentials.x.client_secret: is required',
      ]);
    },
  );

  it('rejects an empty client_secret', () => {
    expect(problems({ x: { ...SECRET, client_secret: '' } })).toEqual([
      'credentials.x.client_secret: must not be empty',
    ]);
  });
});

describe('auth_method: private_key_jwt with private_key_file', () => {
  function signing(extra: Obj) {
    const c = cred({ ...BASE, grant_type: 'client_credentials', auth_method: 'private_key_jwt', ...extra });
    if (c.clientAuth.method !== 'private_key_jwt') throw new Error('not private_key_jwt');
    return c.clientAuth;
  }

  it('holds the key file, its content and the inferred algorithm', () => {
    expect(signing({ private_key_file: 'p256.pem' })).toEqual({
      method: 'private_key_jwt',
      signing: { key: { value: keys.p256.pkcs8, file: path('p256.pem') }, alg: 'ES256', algInferred: true },
    });
  });

  it.each([
    ['rsa.pem', 'RS256', 'PKCS#8 RSA'],
    ['rsa.trad.pem', 'RS256', 'PKCS#1 RSA'],
    ['rsa.jwk', 'RS256', 'JWK RSA'],
    ['p256.pem', 'ES256', 'PKCS#8 P-256'],
    ['p256.trad.pem', 'ES256', 'SEC1 P-256'],
    ['p256.jwk', 'ES256', 'JWK P-256'],
    ['p384.pem', 'ES384', 'PKCS#8 P-384'],
    ['p384.trad.pem', 'ES384', 'SEC1 P-384'],
    ['p384.jwk', 'ES384', 'JWK P-384'],
    ['p521.trad.pem', 'ES512', 'SEC1 P-521'],
    ['ed25519.pem', 'EdDSA', 'PKCS#8 Ed25519'],
    ['ed25519.jwk', 'EdDSA', 'JWK Ed25519'],
  ])('accepts %s and infers %s (%s)', (file, alg) => {
    const auth = signing({ private_key_file: file });
    expect(auth.signing?.alg).toBe(alg);
    expect(auth.signing?.algInferred).toBe(true);
    expect(auth.signing?.key.file).toBe(path(file));
  });

  it.each([
    ['rsa.pem', 'PS384'],
    ['rsa.pem', 'RS512'],
    ['p256.pem', 'ES256'],
    ['ed25519.pem', 'EdDSA'],
  ])('accepts %s with the fitting signing_alg %s', (file, alg) => {
    const auth = signing({ private_key_file: file, signing_alg: alg });
    expect(auth.signing?.alg).toBe(alg);
    // An explicit signing_alg is kept for a rotated key, never replaced by an inferred one.
    expect(auth.signing?.algInferred).toBe(false);
  });

  it.each([
    ['rsa.pem', 'ES256', 'ES256 does not fit the key (it signs RS256, RS384, RS512, PS256, PS384, PS512)'],
    ['p256.pem', 'ES384', 'ES384 does not fit the key (it signs ES256)'],
    ['p384.pem', 'RS256', 'RS256 does not fit the key (it signs ES384)'],
    ['ed25519.pem', 'ES256', 'ES256 does not fit the key (it signs EdDSA)'],
    [
      'rsa.pem',
      'HS256',
      'must be one of RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512, EdDSA, got "HS256"',
    ],
  ])('rejects %s with signing_alg %s', (file, alg, message) => {
    expect(
      problems({
        pk: {
          ...BASE,
          grant_type: 'client_credentials',
          auth_method: 'private_key_jwt',
          private_key_file: file,
          signing_alg: alg,
        },
      }),
    ).toEqual([`credentials.pk.signing_alg: ${message}`]);
  });

  it.each([
    ['not-a-key.pem', 'not a PEM or JWK key'],
    ['public.jwk', 'the JWK is a public key; a private key (with "d") is needed'],
    ['p256.crt', 'not a PEM or JWK key'],
  ])('rejects the key file %s', (file, message) => {
    expect(
      problems({
        pk: {
          ...BASE,
          grant_type: 'client_credentials',
          auth_method: 'private_key_jwt',
          private_key_file: file,
        },
      }),
    ).toEqual([`credentials.pk.private_key_file: ${message}`]);
  });

  // BUG (src/jwt/signing-key.ts parsePrivateKey): /-----BEGIN ([A-Z]+ )?PRIVATE KEY-----/ also
  // matches "BEGIN ENCRYPTED PRIVATE KEY", so the "encrypted keys are not supported" branch is
  // never reached and an encrypted key is reported as "not a PEM or JWK key (unreadable PEM)".
  it('says that an encrypted key is not supported', () => {
    expect(
      problems({
        pk: {
          ...BASE,
          grant_type: 'client_credentials',
          auth_method: 'private_key_jwt',
          private_key_file: 'encrypted.pem',
        },
      }),
    ).toEqual(['credentials.pk.private_key_file: encrypted keys are not supported']);
  });

  it('rejects a key of a curve no JWS algorithm uses', () => {
    const found = problems({
      pk: {
        ...BASE,
        grant_type: 'client_credentials',
        auth_method: 'private_key_jwt',
        private_key_file: 'secp256k1.pem',
      },
    });
    expect(found).toHaveLength(1);
    expect(found[0]).toMatch(/^credentials\.pk\.private_key_file: .*cannot sign JWTs/);
  });

  it('names a missing key file by its resolved path', () => {
    expect(
      problems({
        pk: {
          ...BASE,
          grant_type: 'client_credentials',
          auth_method: 'private_key_jwt',
          private_key_file: 'nope.pem',
        },
      }),
    ).toEqual([`credentials.pk.private_key_file: cannot read file ${path('nope.pem')} (ENOENT)`]);
  });

  it('holds key_id and a certificate_file that belongs to the key', () => {
    expect(signing({ private_key_file: 'p256.pem', key_id: 'k1', certificate_file: 'p256.crt' })).toEqual({
      method: 'private_key_jwt',
      signing: {
        key: { value: keys.p256.pkcs8, file: path('p256.pem') },
        alg: 'ES256',
        algInferred: true,
        keyId: 'k1',
        certificate: { value: p256Cert, file: path('p256.crt') },
      },
    });
    expect(
      signing({ private_key_file: 'rsa.jwk', certificate_file: 'rsa.crt' }).signing?.certificate?.value,
    ).toBe(rsaCert);
  });

  it.each([
    ['rsa.crt', 'the certificate does not belong to the private key'],
    ['p256.pem', 'not a PEM certificate'],
  ])('rejects the certificate_file %s for the P-256 key', (file, message) => {
    expect(
      problems({
        pk: {
          ...BASE,
          grant_type: 'client_credentials',
          auth_method: 'private_key_jwt',
          private_key_file: 'p256.pem',
          certificate_file: file,
        },
      }),
    ).toEqual([`credentials.pk.certificate_file: ${message}`]);
  });

  it('holds assertion_audience', () => {
    expect(
      signing({ private_key_file: 'p256.pem', assertion_audience: 'https://idp' }).assertionAudience,
    ).toBe('https://idp');
  });
});

describe('auth_method: private_key_jwt with client_assertion_file', () => {
  const PK = { ...BASE, grant_type: 'client_credentials', auth_method: 'private_key_jwt' };

  it('holds the resolved path of the assertion file', () => {
    expect(cred({ ...PK, client_assertion_file: 'assertion.jwt' }).clientAuth).toEqual({
      method: 'private_key_jwt',
      assertionFile: path('assertion.jwt'),
    });
    expect(
      cred({ ...PK, client_assertion_file: 'assertion.jwt', assertion_audience: 'https://a' }).clientAuth,
    ).toEqual({
      method: 'private_key_jwt',
      assertionFile: path('assertion.jwt'),
      assertionAudience: 'https://a',
    });
  });

  it('reads the file at load time, so a missing one is reported', () => {
    expect(problems({ x: { ...PK, client_assertion_file: 'nope.jwt' } })).toEqual([
      `credentials.x.client_assertion_file: cannot read file ${path('nope.jwt')} (ENOENT)`,
    ]);
  });

  it.each(['signing_alg', 'key_id', 'certificate_file'])(
    'rejects %s, which only private_key_file uses',
    (key) => {
      expect(problems({ x: { ...PK, client_assertion_file: 'assertion.jwt', [key]: 'ES256' } })).toEqual([
        `credentials.x.${key}: is only used with private_key_file`,
      ]);
    },
  );

  it('needs private_key_file or client_assertion_file', () => {
    expect(problems({ x: PK })).toEqual([
      'credentials.x.private_key_file: private_key_jwt needs private_key_file, or client_assertion_file (e.g. a projected service-account token)',
    ]);
  });

  it('refuses both', () => {
    expect(
      problems({ x: { ...PK, private_key_file: 'p256.pem', client_assertion_file: 'assertion.jwt' } }),
    ).toEqual([
      'credentials.x.client_assertion_file: use either private_key_file (we sign) or client_assertion_file (a ready assertion), not both',
    ]);
  });
});

describe('auth_method: mutual TLS and none', () => {
  const TLS = { cert_file: 'p256.crt', key_file: 'p256.pem' };

  it.each(['tls_client_auth', 'self_signed_tls_client_auth'] as const)(
    '%s holds the client certificate',
    (method) => {
      const c = cred({
        ...BASE,
        grant_type: 'client_credentials',
        auth_method: method,
        mtls_token_endpoint: 'https://mtls.idp.example.com/token',
        tls: TLS,
      });
      expect(c.clientAuth).toEqual({ method });
      expect(c.mtlsTokenEndpoint?.href).toBe('https://mtls.idp.example.com/token');
      expect(c.tls.cert).toEqual({ value: p256Cert, file: path('p256.crt') });
      expect(c.tls.key).toEqual({ value: keys.p256.pkcs8, file: path('p256.pem') });
    },
  );

  it.each(['tls_client_auth', 'self_signed_tls_client_auth'])('%s requires tls.cert_file', (method) => {
    expect(problems({ x: { ...BASE, grant_type: 'client_credentials', auth_method: method } })).toEqual([
      `credentials.x.tls.cert_file: is required with auth_method ${method} (RFC 8705)`,
    ]);
  });

  it('rejects a mtls_token_endpoint that is not a URL', () => {
    expect(
      problems({
        x: {
          ...BASE,
          grant_type: 'client_credentials',
          auth_method: 'tls_client_auth',
          tls: TLS,
          mtls_token_endpoint: 'nope',
        },
      }),
    ).toEqual(['credentials.x.mtls_token_endpoint: "nope" is not a URL']);
  });

  it('refuses none with client_credentials', () => {
    expect(problems({ x: { ...BASE, grant_type: 'client_credentials', auth_method: 'none' } })).toEqual([
      'credentials.x.auth_method: client_credentials needs client authentication (RFC 6749 §4.4); none is for public clients',
    ]);
  });

  it('accepts none with the other grants', () => {
    const c = cred({ ...BASE, grant_type: 'password', auth_method: 'none', username: 'u', password: 'p' });
    expect(c.clientAuth).toEqual({ method: 'none' });
  });
});

describe('keys of another auth method', () => {
  it.each([
    ['client_secret_basic', { private_key_file: 'p256.pem' }, 'private_key_file', 'private_key_jwt'],
    ['client_secret_basic', { signing_alg: 'ES256' }, 'signing_alg', 'private_key_jwt'],
    ['client_secret_post', { key_id: 'k' }, 'key_id', 'private_key_jwt'],
    ['client_secret_jwt', { certificate_file: 'p256.crt' }, 'certificate_file', 'private_key_jwt'],
    [
      'client_secret_basic',
      { client_assertion_file: 'assertion.jwt' },
      'client_assertion_file',
      'private_key_jwt',
    ],
    [
      'client_secret_post',
      { assertion_audience: 'https://a' },
      'assertion_audience',
      'private_key_jwt or client_secret_jwt',
    ],
    [
      'client_secret_basic',
      { mtls_token_endpoint: 'https://mtls.example.com/t' },
      'mtls_token_endpoint',
      'tls_client_auth or self_signed_tls_client_auth',
    ],
  ])('with %s, %j is an error naming the method', (method, extra, key, owners) => {
    expect(problems({ x: { ...SECRET, auth_method: method, ...extra } })).toEqual([
      `credentials.x.${key}: is only used with auth_method ${owners}, not ${method}`,
    ]);
  });

  it('names client_secret when the method takes none', () => {
    expect(
      problems({ x: { ...SECRET, auth_method: 'private_key_jwt', private_key_file: 'p256.pem' } }),
    ).toEqual([
      'credentials.x.client_secret: is only used with auth_method client_secret_basic or client_secret_post or client_secret_jwt, not private_key_jwt',
    ]);
    expect(
      problems({
        x: { ...SECRET, grant_type: 'password', username: 'u', password: 'p', auth_method: 'none' },
      }),
    ).toEqual([
      'credentials.x.client_secret: is only used with auth_method client_secret_basic or client_secret_post or client_secret_jwt, not none',
    ]);
  });

  // BUG (src/config/validate-credential.ts credential): an unknown auth_method falls back to
  // client_secret_basic, so the keys of the method the user meant are reported as belonging to
  // another method ("not client_secret_basic", a method nobody wrote) and client_secret is said
  // to be required. Suggested fix: skip notApplicable and clientAuthConfig when auth_method (or
  // grant_type) was invalid.
  it('reports only the misspelt auth_method, not the keys of the method meant', () => {
    expect(
      problems({
        x: {
          ...BASE,
          grant_type: 'client_credentials',
          auth_method: 'private_key_jtw',
          private_key_file: 'p256.pem',
        },
      }),
    ).toEqual([
      'credentials.x.auth_method: must be one of client_secret_basic, client_secret_post, client_secret_jwt, private_key_jwt, tls_client_auth, self_signed_tls_client_auth, none, got "private_key_jtw"',
    ]);
  });
});

describe('grant_type: client_credentials and password', () => {
  it('client_credentials has no keys of its own', () => {
    expect(cred(SECRET).grant).toEqual({ type: 'client_credentials' });
  });

  it('password holds username and password', () => {
    expect(cred({ ...SECRET, grant_type: 'password', username: 'alice', password: 'pw' }).grant).toEqual({
      type: 'password',
      username: 'alice',
      password: { value: 'pw' },
    });
  });

  it('password requires username and password', () => {
    expect(problems({ x: { ...SECRET, grant_type: 'password' } })).toEqual([
      'credentials.x.username: is required',
      'credentials.x.password: is required',
    ]);
  });

  it.each([
    ['client_credentials', { username: 'u' }, 'username', 'password'],
    ['client_credentials', { password: 'p' }, 'password', 'password'],
    [
      'password',
      { assertion: { source: 'file', path: 'assertion.jwt' } },
      'assertion',
      'jwt_bearer or saml2_bearer',
    ],
    [
      'client_credentials',
      { subject_token: { source: 'file', path: 'a', type: 'jwt' } },
      'subject_token',
      'token_exchange',
    ],
    [
      'client_credentials',
      { actor_token: { source: 'file', path: 'a', type: 'jwt' } },
      'actor_token',
      'token_exchange',
    ],
    ['client_credentials', { requested_token_type: 'jwt' }, 'requested_token_type', 'token_exchange'],
  ])('with grant_type %s, %j is an error naming the grant', (grant, extra, key, owners) => {
    const own = grant === 'password' ? { username: 'u', password: 'p' } : {};
    expect(problems({ x: { ...SECRET, grant_type: grant, ...own, ...extra } })).toEqual([
      `credentials.x.${key}: is only used with grant_type ${owners}, not ${grant}`,
    ]);
  });

  it.each([
    'username',
    'password',
    'refresh_token',
    'assertion',
    'subject_token',
    'subject_token_type',
    'actor_token',
    'actor_token_type',
    'requested_token_type',
  ])('rejects the reserved param %s', (param) => {
    expect(problems({ x: { ...SECRET, params: { tenant: 'a', [param]: 'x' } } })).toEqual([
      `credentials.x.params.${param}: is set by token-injector from its own key; use that key instead`,
    ]);
  });
});

describe('secrets remember their file', () => {
  it('a whole ${file:} client_secret remembers its resolved file; plain and ${env:} values do not', () => {
    const file = cred({ ...SECRET, client_secret: '${file:client-secret}' });
    expect(file.clientAuth).toEqual({
      method: 'client_secret_basic',
      secret: { value: 'from-file', file: path('client-secret') },
    });
    const plain = cred(SECRET).clientAuth;
    expect('secret' in plain && plain.secret).toEqual({ value: 's' });
    expect('secret' in plain && Object.hasOwn(plain.secret, 'file')).toBe(false);
    const env = cred({ ...SECRET, client_secret: '${env:S}' }, { S: 'from-env' }).clientAuth;
    expect('secret' in env && env.secret).toEqual({ value: 'from-env' });
  });

  it('a ${file:} inside a longer value is not a file-backed secret (it cannot be re-read alone)', () => {
    const c = cred({ ...SECRET, client_secret: 'prefix-${file:client-secret}' }).clientAuth;
    expect('secret' in c && c.secret).toEqual({ value: 'prefix-from-file' });
  });

  it('a ${file:} password remembers its file', () => {
    expect(
      cred({ ...SECRET, grant_type: 'password', username: 'u', password: '${file:password}' }).grant,
    ).toEqual({
      type: 'password',
      username: 'u',
      password: { value: 'pw-from-file', file: path('password') },
    });
  });
});

describe('grant_type: jwt_bearer', () => {
  const JWT = { ...SECRET, grant_type: 'jwt_bearer' };
  const SIGN = { source: 'sign', private_key_file: 'p256.pem', issuer: 'iss', subject: 'sub' };

  it('requires assertion', () => {
    expect(problems({ x: JWT })).toEqual(['credentials.x.assertion: is required']);
  });

  it('signs with defaults: lifetime 5m, no claims, audience the token endpoint (left out)', () => {
    expect(cred({ ...JWT, assertion: SIGN }).grant).toEqual({
      type: 'jwt_bearer',
      assertion: {
        source: 'sign',
        signing: {
          key: { value: keys.p256.pkcs8, file: path('p256.pem') },
          alg: 'ES256',
          algInferred: true,
        },
        issuer: 'iss',
        subject: 'sub',
        lifetimeMs: 300_000,
        claims: {},
      },
    });
  });

  it('signs with every option', () => {
    const grant = cred({
      ...JWT,
      assertion: {
        ...SIGN,
        private_key_file: 'rsa.jwk',
        signing_alg: 'PS256',
        key_id: 'k',
        certificate_file: 'rsa.crt',
        audience: 'https://aud',
        lifetime: '90s',
        claims: { tenant: 'acme', n: 1 },
      },
    }).grant;
    expect(grant).toEqual({
      type: 'jwt_bearer',
      assertion: {
        source: 'sign',
        signing: {
          key: { value: keys.rsa.jwk, file: path('rsa.jwk') },
          alg: 'PS256',
          algInferred: false,
          keyId: 'k',
          certificate: { value: rsaCert, file: path('rsa.crt') },
        },
        issuer: 'iss',
        subject: 'sub',
        audience: 'https://aud',
        lifetimeMs: 90_000,
        claims: { tenant: 'acme', n: 1 },
      },
    });
  });

  it('requires private_key_file, issuer and subject to sign', () => {
    expect(problems({ x: { ...JWT, assertion: { source: 'sign' } } })).toEqual([
      'credentials.x.assertion.private_key_file: is required',
      'credentials.x.assertion.issuer: is required',
      'credentials.x.assertion.subject: is required',
    ]);
  });

  it.each([
    [{ lifetime: '500ms' }, 'credentials.x.assertion.lifetime: must be at least 1s'],
    [{ claims: 'x' }, 'credentials.x.assertion.claims: must be a mapping, got "x"'],
    [{ private_key_file: 'not-a-key.pem' }, 'credentials.x.assertion.private_key_file: not a PEM or JWK key'],
    [
      { signing_alg: 'RS256' },
      'credentials.x.assertion.signing_alg: RS256 does not fit the key (it signs ES256)',
    ],
    [{ path: 'assertion.jwt' }, 'credentials.x.assertion.path: unknown key'],
  ])('rejects the sign option %j', (extra, problem) => {
    expect(problems({ x: { ...JWT, assertion: { ...SIGN, ...extra } } })).toEqual([problem]);
  });

  it('reads the assertion from a file', () => {
    expect(cred({ ...JWT, assertion: { source: 'file', path: 'assertion.jwt' } }).grant).toEqual({
      type: 'jwt_bearer',
      assertion: { source: 'file', path: path('assertion.jwt') },
    });
  });

  it('requires the file to exist and names it', () => {
    expect(problems({ x: { ...JWT, assertion: { source: 'file' } } })).toEqual([
      'credentials.x.assertion.path: is required',
    ]);
    expect(problems({ x: { ...JWT, assertion: { source: 'file', path: 'nope' } } })).toEqual([
      `credentials.x.assertion.path: cannot read file ${path('nope')} (ENOENT)`,
    ]);
  });

  it('takes the assertion from a request header, with a bounded cache', () => {
    expect(
      cred({ ...JWT, assertion: { source: 'request_header', header: 'X-User-Assertion' } }).grant,
    ).toEqual({
      type: 'jwt_bearer',
      assertion: { source: 'request_header', header: 'X-User-Assertion', maxEntries: 10_000 },
    });
    const small = cred({
      ...JWT,
      assertion: { source: 'request_header', header: 'X-A', max_entries: 5 },
    }).grant;
    expect(small).toEqual({
      type: 'jwt_bearer',
      assertion: { source: 'request_header', header: 'X-A', maxEntries: 5 },
    });
  });

  it.each([
    [{}, 'credentials.x.assertion.header: is required'],
    [{ header: 'X A' }, 'credentials.x.assertion.header: "X A" is not a valid header name'],
    [{ header: 'X-A', max_entries: 0 }, 'credentials.x.assertion.max_entries: must be a positive integer'],
    [{ header: 'X-A', max_entries: 1.5 }, 'credentials.x.assertion.max_entries: must be a positive integer'],
    [{ header: 'X-A', path: 'assertion.jwt' }, 'credentials.x.assertion.path: unknown key'],
  ])('rejects the request_header option %j', (extra, problem) => {
    expect(problems({ x: { ...JWT, assertion: { source: 'request_header', ...extra } } })).toEqual([problem]);
  });

  it('has no token type (only token exchange inputs do)', () => {
    expect(
      problems({ x: { ...JWT, assertion: { source: 'file', path: 'assertion.jwt', type: 'jwt' } } }),
    ).toEqual(['credentials.x.assertion.type: unknown key']);
  });

  // BUG (src/config/validate-credential.ts tokenInput): a missing or unknown `source` falls back
  // to the first allowed source (sign for jwt_bearer, file for saml2_bearer), and the keys of the
  // source the user meant are then reported as unknown, plus "is required" for keys of a source
  // nobody chose. Suggested fix: return undefined right after a missing or invalid `source`.
  it.each([
    [{ path: 'assertion.jwt' }, 'credentials.x.assertion.source: is required'],
    [
      { source: 'credential', credential: 'y' },
      'credentials.x.assertion.source: must be one of sign, file, request_header, got "credential"',
    ],
  ])('reports only the source of %j', (assertion, problem) => {
    expect(problems({ x: { ...JWT, assertion } })).toEqual([problem]);
  });

  it('refuses prefetch with a request_header assertion, and allows it otherwise', () => {
    expect(
      problems({ x: { ...JWT, prefetch: true, assertion: { source: 'request_header', header: 'X-A' } } }),
    ).toEqual([
      'credentials.x.prefetch: cannot prefetch: the token depends on each request (source: request_header)',
    ]);
    expect(
      cred({ ...JWT, prefetch: true, assertion: { source: 'file', path: 'assertion.jwt' } }).prefetch,
    ).toBe(true);
  });
});

describe('grant_type: saml2_bearer', () => {
  const SAML = { ...SECRET, grant_type: 'saml2_bearer' };

  it('reads the assertion from a file or a request header', () => {
    expect(cred({ ...SAML, assertion: { source: 'file', path: 'assertion.xml' } }).grant).toEqual({
      type: 'saml2_bearer',
      assertion: { source: 'file', path: path('assertion.xml') },
    });
    expect(cred({ ...SAML, assertion: { source: 'request_header', header: 'X-Saml' } }).grant).toEqual({
      type: 'saml2_bearer',
      assertion: { source: 'request_header', header: 'X-Saml', maxEntries: 10_000 },
    });
  });

  it('does not sign SAML assertions', () => {
    const found = problems({ x: { ...SAML, assertion: { source: 'sign', private_key_file: 'p256.pem' } } });
    expect(found[0]).toBe('credentials.x.assertion.source: must be one of file, request_header, got "sign"');
  });

  it('refuses prefetch with a request_header assertion', () => {
    expect(
      problems({ x: { ...SAML, prefetch: true, assertion: { source: 'request_header', header: 'X-Saml' } } }),
    ).toEqual([
      'credentials.x.prefetch: cannot prefetch: the token depends on each request (source: request_header)',
    ]);
  });
});

describe('grant_type: token_exchange', () => {
  const TX = { ...SECRET, grant_type: 'token_exchange' };
  const FILE_SUBJECT = { source: 'file', path: 'assertion.jwt', type: 'jwt' };

  it('requires subject_token and its type', () => {
    expect(problems({ x: TX })).toEqual(['credentials.x.subject_token: is required']);
    expect(problems({ x: { ...TX, subject_token: { source: 'file', path: 'assertion.jwt' } } })).toEqual([
      'credentials.x.subject_token.type: is required',
    ]);
  });

  it.each([
    ['access_token', 'urn:ietf:params:oauth:token-type:access_token'],
    ['refresh_token', 'urn:ietf:params:oauth:token-type:refresh_token'],
    ['id_token', 'urn:ietf:params:oauth:token-type:id_token'],
    ['saml1', 'urn:ietf:params:oauth:token-type:saml1'],
    ['saml2', 'urn:ietf:params:oauth:token-type:saml2'],
    ['jwt', 'urn:ietf:params:oauth:token-type:jwt'],
    ['urn:example:custom-type', 'urn:example:custom-type'],
  ])('reads the token type %s as %s', (short, full) => {
    const grant = cred({
      ...TX,
      subject_token: { ...FILE_SUBJECT, type: short },
      actor_token: { source: 'file', path: 'assertion.jwt', type: short },
      requested_token_type: short,
    }).grant;
    expect(grant).toEqual({
      type: 'token_exchange',
      subjectToken: { source: 'file', path: path('assertion.jwt') },
      subjectTokenType: full,
      actorToken: { source: 'file', path: path('assertion.jwt') },
      actorTokenType: full,
      requestedTokenType: full,
    });
  });

  it('leaves the actor token and the requested type out when not configured', () => {
    expect(cred({ ...TX, subject_token: FILE_SUBJECT }).grant).toEqual({
      type: 'token_exchange',
      subjectToken: { source: 'file', path: path('assertion.jwt') },
      subjectTokenType: 'urn:ietf:params:oauth:token-type:jwt',
    });
  });

  it('rejects a token type that is neither a short name nor a URI', () => {
    const message =
      '"bearer" is not a token type URI; use one of access_token, refresh_token, id_token, saml1, saml2, jwt or a full URI';
    expect(problems({ x: { ...TX, subject_token: { ...FILE_SUBJECT, type: 'bearer' } } })).toEqual([
      `credentials.x.subject_token.type: ${message}`,
    ]);
    expect(problems({ x: { ...TX, subject_token: FILE_SUBJECT, requested_token_type: 'bearer' } })).toEqual([
      `credentials.x.requested_token_type: ${message}`,
    ]);
    expect(
      problems({
        x: { ...TX, subject_token: FILE_SUBJECT, actor_token: { ...FILE_SUBJECT, type: 'bearer' } },
      }),
    ).toEqual([`credentials.x.actor_token.type: ${message}`]);
  });

  it('requires the actor token type too', () => {
    expect(
      problems({
        x: { ...TX, subject_token: FILE_SUBJECT, actor_token: { source: 'file', path: 'assertion.jwt' } },
      }),
    ).toEqual(['credentials.x.actor_token.type: is required']);
  });

  it('takes tokens from request headers', () => {
    expect(
      cred({
        ...TX,
        subject_token: { source: 'request_header', header: 'X-Subject', type: 'access_token' },
        actor_token: { source: 'request_header', header: 'X-Actor', type: 'jwt', max_entries: 7 },
      }).grant,
    ).toEqual({
      type: 'token_exchange',
      subjectToken: { source: 'request_header', header: 'X-Subject', maxEntries: 10_000 },
      subjectTokenType: 'urn:ietf:params:oauth:token-type:access_token',
      actorToken: { source: 'request_header', header: 'X-Actor', maxEntries: 7 },
      actorTokenType: 'urn:ietf:params:oauth:token-type:jwt',
    });
  });

  it('does not sign subject tokens', () => {
    const found = problems({ x: { ...TX, subject_token: { source: 'sign', type: 'jwt' } } });
    expect(found[0]).toBe(
      'credentials.x.subject_token.source: must be one of file, request_header, credential, got "sign"',
    );
  });

  it.each([
    [{ subject_token: { source: 'request_header', header: 'X-S', type: 'jwt' } }],
    [{ subject_token: FILE_SUBJECT, actor_token: { source: 'request_header', header: 'X-A', type: 'jwt' } }],
  ])('refuses prefetch when a token comes from a request header: %j', (extra) => {
    expect(problems({ x: { ...TX, prefetch: true, ...extra } })).toEqual([
      'credentials.x.prefetch: cannot prefetch: the token depends on each request (source: request_header)',
    ]);
  });

  describe('source: credential', () => {
    const fromCredential = (name: string, key = 'subject_token') => ({
      [key]: { source: 'credential', credential: name, type: 'access_token' },
    });

    it('takes the token of another credential', () => {
      const c = config({ orders: SECRET, x: { ...TX, ...fromCredential('orders') } }).credentials.get('x')!;
      expect(c.grant).toEqual({
        type: 'token_exchange',
        subjectToken: { source: 'credential', credential: 'orders' },
        subjectTokenType: 'urn:ietf:params:oauth:token-type:access_token',
      });
    });

    it('allows chains without cycles, in any order', () => {
      const c = config({
        a: { ...TX, ...fromCredential('b') },
        b: { ...TX, ...fromCredential('c'), ...fromCredential('c', 'actor_token') },
        c: SECRET,
      });
      expect([...c.credentials.keys()]).toEqual(['a', 'b', 'c']);
    });

    it('must name a known credential', () => {
      expect(problems({ orders: SECRET, x: { ...TX, ...fromCredential('ordrs') } })).toEqual([
        'credentials.x.subject_token.credential: unknown credential "ordrs" (known: orders, x)',
      ]);
      expect(
        problems({
          orders: SECRET,
          x: { ...TX, subject_token: FILE_SUBJECT, ...fromCredential('nope', 'actor_token') },
        }),
      ).toEqual(['credentials.x.actor_token.credential: unknown credential "nope" (known: orders, x)']);
    });

    // BUG (src/config/validate.ts checkCredentialReferences): the key path is chosen by comparing
    // the dependency with the subject token's credential, so when subject and actor name the same
    // credential both problems are reported at subject_token.credential. Suggested fix: iterate
    // over [['subject_token', grant.subjectToken], ['actor_token', grant.actorToken]] instead.
    it('names subject_token and actor_token each when both name an unknown credential', () => {
      expect(
        problems({ x: { ...TX, ...fromCredential('nope'), ...fromCredential('nope', 'actor_token') } }),
      ).toEqual([
        'credentials.x.subject_token.credential: unknown credential "nope" (known: x)',
        'credentials.x.actor_token.credential: unknown credential "nope" (known: x)',
      ]);
    });

    it('refuses a credential that takes its own token', () => {
      expect(problems({ a: { ...TX, ...fromCredential('a') } })).toEqual([
        'credentials.a.subject_token.credential: "a" depends on "a" in turn: credentials must not depend on each other in a cycle',
      ]);
    });

    it('refuses cycles', () => {
      expect(
        problems({
          a: { ...TX, ...fromCredential('b') },
          b: { ...TX, subject_token: FILE_SUBJECT, ...fromCredential('c', 'actor_token') },
          c: { ...TX, ...fromCredential('a') },
        }),
      ).toEqual([
        'credentials.a.subject_token.credential: "b" depends on "a" in turn: credentials must not depend on each other in a cycle',
        'credentials.b.actor_token.credential: "c" depends on "b" in turn: credentials must not depend on each other in a cycle',
        'credentials.c.subject_token.credential: "a" depends on "c" in turn: credentials must not depend on each other in a cycle',
      ]);
    });

    // BUG (src/config/validate.ts checkCredentialReferences): a token exchange may name a credential
    // whose token depends on each request (source: request_header). At run time that credential's
    // token is fetched without a request (Credentials.source(name).get()), so every exchange fails
    // with assertion_missing. Suggested fix: refuse it at load time, at this key path.
    it('refuses a credential whose token depends on each request', () => {
      const found = problems({
        h: { ...SECRET, grant_type: 'jwt_bearer', assertion: { source: 'request_header', header: 'X-A' } },
        x: { ...TX, ...fromCredential('h') },
      });
      expect(found).toHaveLength(1);
      expect(found[0]).toMatch(/^credentials\.x\.subject_token\.credential: .*request_header/);
    });
  });
});

describe('routes: scope, audience and resource overrides', () => {
  const route = (extra: Obj) => ({
    name: 'r',
    upstream: 'https://api.example.com',
    credential: 'orders',
    ...extra,
  });

  it('hold what the route sets, each on its own', () => {
    const c = config({ orders: { ...SECRET, scope: 'cred', audience: 'https://cred' } }, [
      route({ scope: ['a', 'b c'], audience: 'https://aud', resource: 'https://res/' }),
      route({ name: 's', scope: 'only.scope' }),
      route({ name: 't', resource: 'urn:example:res' }),
      route({ name: 'u' }),
    ]);
    expect(c.routes.map((r) => r.tokenScope)).toEqual([
      { scope: 'a b c', audience: 'https://aud', resource: 'https://res/' },
      { scope: 'only.scope' },
      { resource: 'urn:example:res' },
      {},
    ]);
    expect(Object.isFrozen(c.routes[0]!.tokenScope)).toBe(true);
  });

  it('leaves scope out for an empty list', () => {
    expect(config({ orders: SECRET }, [route({ scope: [] })]).routes[0]!.tokenScope).toEqual({});
  });

  it('rejects a resource that is not an absolute URI', () => {
    expect(problems({ orders: SECRET }, [route({ resource: '/orders' })])).toEqual([
      'routes[0].resource: must be an absolute URI (RFC 8707 §2)',
    ]);
  });

  it('names a scope item that is not a string', () => {
    expect(problems({ orders: SECRET }, [route({ scope: ['a', { b: 1 }] })])).toEqual([
      'routes[0].scope[1]: must be a string, got a mapping',
    ]);
  });
});

describe('tls client certificates', () => {
  it('holds cert_file and key_file with their content, for credentials and routes', () => {
    const c = config({ orders: { ...SECRET, tls: { cert_file: 'rsa.crt', key_file: 'rsa.trad.pem' } } }, [
      {
        name: 'r',
        upstream: 'https://api.example.com',
        credential: 'orders',
        tls: { cert_file: 'p256.crt', key_file: 'p256.trad.pem' },
      },
    ]);
    expect(c.credentials.get('orders')!.tls).toEqual({
      cert: { value: rsaCert, file: path('rsa.crt') },
      key: { value: keys.rsa.traditional, file: path('rsa.trad.pem') },
    });
    expect(c.routes[0]!.tls).toEqual({
      cert: { value: p256Cert, file: path('p256.crt') },
      key: { value: keys.p256.traditional, file: path('p256.trad.pem') },
    });
  });

  it.each([[{ cert_file: 'p256.crt' }], [{ key_file: 'p256.pem' }]])(
    'requires cert_file and key_file together: %j',
    (tls) => {
      expect(problems({ x: { ...SECRET, tls } })).toEqual([
        'credentials.x.tls: cert_file and key_file go together',
      ]);
      expect(
        problems({ orders: SECRET }, [
          { name: 'r', upstream: 'https://a.example.com', credential: 'orders', tls },
        ]),
      ).toEqual(['routes[0].tls: cert_file and key_file go together']);
    },
  );

  it('rejects files of the wrong kind', () => {
    expect(problems({ x: { ...SECRET, tls: { cert_file: 'p256.pem', key_file: 'p256.crt' } } })).toEqual([
      `credentials.x.tls.cert_file: ${path('p256.pem')} holds no PEM certificate`,
      `credentials.x.tls.key_file: ${path('p256.crt')} holds no PEM private key`,
    ]);
  });

  it('names a missing certificate file', () => {
    expect(problems({ x: { ...SECRET, tls: { cert_file: 'nope.crt', key_file: 'p256.pem' } } })).toEqual([
      `credentials.x.tls.cert_file: cannot read file ${path('nope.crt')} (ENOENT)`,
    ]);
  });
});
