// biome-ignore-all lint/suspicious/noTemplateCurlyInString: test names mention the literal ${file:} syntax
import { createHash, X509Certificate } from 'node:crypto';
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { decodeJwt, decodeProtectedHeader, jwtVerify } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  clientAssertion,
  clientAuthFor,
  clientIdOnly,
  clientSecretBasic,
  clientSecretPost,
  formEncode,
} from '../../../src/client-auth/client-auth.js';
import type { ClientAuthConfig, CredentialConfig } from '../../../src/config/types.js';
import { FileSet } from '../../../src/files/live-file.js';
import type { SigningKeyConfig } from '../../../src/jwt/signing-key.js';
import {
  credentialConfig,
  generateKey,
  selfSignedCertificate,
  TempDir,
  type TestKey,
  TOKEN_ENDPOINT,
} from '../fixtures.js';

const CLIENT_ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';

const ctx = { endpoint: new URL(TOKEN_ENDPOINT) };

/** A secret getter, as client authentication now reads secrets through their live file. */
const fixed = (value: string) => () => value;

function apply(auth: ReturnType<typeof clientSecretBasic>) {
  const form = new URLSearchParams({ grant_type: 'client_credentials' });
  const headers: Record<string, string> = {};
  auth(form, headers, ctx);
  return { form, headers };
}

function decodeBasic(header: string | undefined): string {
  expect(header).toMatch(/^Basic [A-Za-z0-9+/]+=*$/);
  return Buffer.from(header!.slice('Basic '.length), 'base64').toString('utf8');
}

function credential(method: 'client_secret_basic' | 'client_secret_post') {
  const clientAuth: ClientAuthConfig = { method, secret: { value: 'secret' } };
  return credentialConfig({ clientId: 'id', clientAuth });
}

describe('formEncode', () => {
  it.each([
    ['plain-id_1.x*', 'plain-id_1.x*'],
    ['a b', 'a+b'],
    [':', '%3A'],
    ['%', '%25'],
    ['+', '%2B'],
    ['/', '%2F'],
    ['=', '%3D'],
    ['@', '%40'],
    ['&', '%26'],
    ['~', '%7E'],
    ['\u00e9', '%C3%A9'],
  ])('encodes %j as %j', (value, encoded) => {
    expect(formEncode(value)).toBe(encoded);
  });
});

describe('client_secret_basic (RFC 6749 §2.3.1)', () => {
  it('form-urlencodes the id and the secret before joining and base64-encoding them', () => {
    const { form, headers } = apply(clientSecretBasic('a b:c', fixed('p@ss:w%rd+/=')));
    expect(decodeBasic(headers['authorization'])).toBe('a+b%3Ac:p%40ss%3Aw%25rd%2B%2F%3D');
    expect(headers['authorization']).toBe(
      `Basic ${Buffer.from('a+b%3Ac:p%40ss%3Aw%25rd%2B%2F%3D').toString('base64')}`,
    );
    // The credentials travel in the header only.
    expect(form.has('client_id')).toBe(false);
    expect(form.has('client_secret')).toBe(false);
    expect(form.toString()).toBe('grant_type=client_credentials');
  });

  it('leaves plain ids and secrets unchanged', () => {
    const { headers } = apply(clientSecretBasic('orders-client', fixed('S3cr3t')));
    expect(headers['authorization']).toBe(`Basic ${Buffer.from('orders-client:S3cr3t').toString('base64')}`);
  });

  it('encodes non-ASCII as UTF-8 percent-escapes', () => {
    const { headers } = apply(clientSecretBasic('cl\u00efent', fixed('m\u00f6tley')));
    expect(decodeBasic(headers['authorization'])).toBe('cl%C3%AFent:m%C3%B6tley');
  });

  it('keeps the colon of the id out of the separator position', () => {
    const { headers } = apply(clientSecretBasic('id:with:colons', fixed('secret')));
    const decoded = decodeBasic(headers['authorization']);
    expect(decoded.split(':')).toEqual(['id%3Awith%3Acolons', 'secret']);
  });

  it('replaces an authorization header already present', () => {
    const headers: Record<string, string> = { authorization: 'Bearer old' };
    clientSecretBasic('i', fixed('s'))(new URLSearchParams(), headers, ctx);
    expect(headers['authorization']).toBe(`Basic ${Buffer.from('i:s').toString('base64')}`);
  });
});

describe('client_secret_post', () => {
  it('sets client_id and client_secret as form fields, raw (the form encodes them once)', () => {
    const { form, headers } = apply(clientSecretPost('a b:c', fixed('p@ss:w%rd+/=')));
    expect(form.get('client_id')).toBe('a b:c');
    expect(form.get('client_secret')).toBe('p@ss:w%rd+/=');
    expect(form.get('grant_type')).toBe('client_credentials');
    expect(form.toString()).toBe(
      'grant_type=client_credentials&client_id=a+b%3Ac&client_secret=p%40ss%3Aw%25rd%2B%2F%3D',
    );
    expect(headers).toEqual({});
  });

  it('replaces fields of the same name instead of duplicating them', () => {
    const form = new URLSearchParams([
      ['client_id', 'x'],
      ['client_id', 'y'],
    ]);
    clientSecretPost('id', fixed('secret'))(form, {}, ctx);
    expect(form.getAll('client_id')).toEqual(['id']);
    expect(form.getAll('client_secret')).toEqual(['secret']);
  });
});

describe('clientAuthFor', () => {
  it('picks client_secret_basic', async () => {
    const form = new URLSearchParams();
    const headers: Record<string, string> = {};
    await clientAuthFor(credential('client_secret_basic'), new FileSet())(form, headers, ctx);
    expect(headers['authorization']).toBe(`Basic ${Buffer.from('id:secret').toString('base64')}`);
    expect([...form.keys()]).toEqual([]);
  });

  it('picks client_secret_post', async () => {
    const form = new URLSearchParams();
    const headers: Record<string, string> = {};
    await clientAuthFor(credential('client_secret_post'), new FileSet())(form, headers, ctx);
    expect(headers).toEqual({});
    expect(form.toString()).toBe('client_id=id&client_secret=secret');
  });
});

describe('secret getters', () => {
  it('reads the secret at every request, so a rotated secret is used from the next request on', () => {
    let current = 'first';
    const basic = clientSecretBasic('id', () => current);
    const post = clientSecretPost('id', () => current);
    expect(decodeBasic(apply(basic).headers['authorization'])).toBe('id:first');
    expect(apply(post).form.get('client_secret')).toBe('first');
    current = 'second';
    expect(decodeBasic(apply(basic).headers['authorization'])).toBe('id:second');
    expect(apply(post).form.get('client_secret')).toBe('second');
  });

  it('clientAuthFor re-reads a ${file:} secret when its file is replaced', async () => {
    const dir = new TempDir();
    try {
      const path = dir.file('secret', 'one\n');
      const cred = credentialConfig({
        clientAuth: { method: 'client_secret_post', secret: { value: 'one', file: path } },
      });
      const auth = clientAuthFor(cred, new FileSet());
      const run = async () => {
        const form = new URLSearchParams();
        await auth(form, {}, ctx);
        return form.get('client_secret');
      };
      expect(await run()).toBe('one');
      replaceFile(path, 'two-longer\n');
      expect(await run()).toBe('two-longer');
    } finally {
      dir.remove();
    }
  });
});

/** Writes a new file and renames it over `path`, as Kubernetes and most secret tools do. */
function replaceFile(path: string, content: string): void {
  writeFileSync(`${path}.new`, content);
  renameSync(`${path}.new`, path);
}

async function runAuth(cred: CredentialConfig, files = new FileSet(), endpoint = ctx.endpoint) {
  const form = new URLSearchParams({ grant_type: 'client_credentials' });
  const headers: Record<string, string> = {};
  await clientAuthFor(cred, files)(form, headers, { endpoint });
  return { form, headers };
}

/** The form a client assertion method must produce (RFC 7523 §2.2), apart from the assertion itself. */
function expectAssertionForm(
  form: URLSearchParams,
  headers: Record<string, string>,
  clientId: string,
): string {
  expect(headers).toEqual({});
  expect(form.getAll('client_assertion_type')).toEqual([CLIENT_ASSERTION_TYPE]);
  expect(form.getAll('client_id')).toEqual([clientId]);
  expect(form.has('client_secret')).toBe(false);
  expect(form.get('grant_type')).toBe('client_credentials');
  const assertion = form.getAll('client_assertion');
  expect(assertion).toHaveLength(1);
  return assertion[0]!;
}

describe('client_secret_jwt (RFC 7523 §2.2, HS256 with the client secret)', () => {
  const secret = 'a-shared-secret-of-at-least-32-bytes!';

  function cred(extra: { assertionAudience?: string } = {}): CredentialConfig {
    return credentialConfig({
      clientId: 'jwt-client',
      clientAuth: { method: 'client_secret_jwt', secret: { value: secret }, ...extra },
    });
  }

  it('sends a fresh HS256 assertion with iss = sub = client_id and aud = the token endpoint', async () => {
    const { form, headers } = await runAuth(cred());
    const assertion = expectAssertionForm(form, headers, 'jwt-client');
    const { payload, protectedHeader } = await jwtVerify(assertion, new TextEncoder().encode(secret), {
      algorithms: ['HS256'],
      issuer: 'jwt-client',
      subject: 'jwt-client',
      audience: TOKEN_ENDPOINT,
    });
    expect(protectedHeader.alg).toBe('HS256');
    expect(typeof payload.jti).toBe('string');
    expect(payload.exp! - payload.iat!).toBeGreaterThan(0);
    expect(payload.exp! - payload.iat!).toBeLessThanOrEqual(300);
    // A different secret must not verify it.
    await expect(jwtVerify(assertion, new TextEncoder().encode(`${secret}x`))).rejects.toThrow();
    const again = await runAuth(cred());
    const second = expectAssertionForm(again.form, again.headers, 'jwt-client');
    expect(decodeJwt(second).jti).not.toBe(payload.jti);
  });

  it('uses the endpoint of the request as audience (e.g. the mTLS alias)', async () => {
    const { form } = await runAuth(cred(), new FileSet(), new URL('https://mtls.idp.example.com/token'));
    expect(decodeJwt(form.get('client_assertion')!).aud).toBe('https://mtls.idp.example.com/token');
  });

  it('uses assertion_audience instead of the endpoint when configured', async () => {
    const { form } = await runAuth(cred({ assertionAudience: 'https://idp.example.com' }));
    expect(decodeJwt(form.get('client_assertion')!).aud).toBe('https://idp.example.com');
  });
});

describe('private_key_jwt (RFC 7523 §2.2)', () => {
  let dir: TempDir;
  let ec: TestKey;
  let rsa: TestKey;
  let keyFile: string;
  let certFile: string;

  beforeAll(() => {
    dir = new TempDir();
    ec = generateKey('p256');
    rsa = generateKey('rsa');
    keyFile = dir.file('ec.pem', ec.pkcs8);
    certFile = selfSignedCertificate(keyFile, join(dir.path, 'ec.crt'));
  });

  afterAll(() => dir.remove());

  function signingCred(signing: SigningKeyConfig, assertionAudience?: string): CredentialConfig {
    return credentialConfig({
      clientId: 'pk-client',
      clientAuth: {
        method: 'private_key_jwt',
        signing,
        ...(assertionAudience !== undefined ? { assertionAudience } : {}),
      },
    });
  }

  it('signs with the key file: verifiable with the public key, iss = sub = client_id, aud = endpoint', async () => {
    const { form, headers } = await runAuth(
      signingCred({ key: { value: ec.pkcs8, file: keyFile }, alg: 'ES256' }),
    );
    const assertion = expectAssertionForm(form, headers, 'pk-client');
    const { payload, protectedHeader } = await jwtVerify(assertion, ec.publicKey, {
      algorithms: ['ES256'],
      issuer: 'pk-client',
      subject: 'pk-client',
      audience: TOKEN_ENDPOINT,
    });
    expect(protectedHeader).toEqual({ alg: 'ES256', typ: 'JWT' });
    expect(typeof payload.jti).toBe('string');
    await expect(jwtVerify(assertion, generateKey('p256').publicKey)).rejects.toThrow();
  });

  it('puts kid and x5t#S256 in the header when key_id and certificate_file are set', async () => {
    const cert = readFileSync(certFile, 'utf8');
    const { form } = await runAuth(
      signingCred({
        key: { value: ec.pkcs8, file: keyFile },
        alg: 'ES256',
        keyId: 'key-2024',
        certificate: { value: cert, file: certFile },
      }),
    );
    const header = decodeProtectedHeader(form.get('client_assertion')!);
    expect(header.kid).toBe('key-2024');
    expect(header['x5t#S256']).toBe(
      createHash('sha256').update(new X509Certificate(cert).raw).digest('base64url'),
    );
  });

  it('signs with an RSA key and the configured algorithm', async () => {
    const { form } = await runAuth(
      signingCred({ key: { value: rsa.pkcs8 }, alg: 'PS256' }, 'https://idp.example.com'),
    );
    const { protectedHeader, payload } = await jwtVerify(form.get('client_assertion')!, rsa.publicKey, {
      algorithms: ['PS256'],
    });
    expect(protectedHeader.alg).toBe('PS256');
    expect(payload.aud).toBe('https://idp.example.com');
  });

  it('signs with a rotated key file from the next request on', async () => {
    const path = dir.file('rotating.pem', ec.pkcs8);
    const auth = clientAuthFor(
      signingCred({ key: { value: ec.pkcs8, file: path }, alg: 'ES256' }),
      new FileSet(),
    );
    const sign = async () => {
      const form = new URLSearchParams();
      await auth(form, {}, ctx);
      return form.get('client_assertion')!;
    };
    await jwtVerify(await sign(), ec.publicKey);
    const next = generateKey('p256');
    replaceFile(path, next.pkcs8);
    const rotated = await sign();
    await jwtVerify(rotated, next.publicKey);
    await expect(jwtVerify(rotated, ec.publicKey)).rejects.toThrow();
  });

  it('sends the client_assertion_file content, read fresh at each request and trimmed', async () => {
    const path = dir.file('sa-token', 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln\n');
    const auth = clientAuthFor(
      credentialConfig({ clientId: 'sa', clientAuth: { method: 'private_key_jwt', assertionFile: path } }),
      new FileSet(),
    );
    const run = async () => {
      const form = new URLSearchParams({ grant_type: 'client_credentials' });
      const headers: Record<string, string> = {};
      await auth(form, headers, ctx);
      return expectAssertionForm(form, headers, 'sa');
    };
    expect(await run()).toBe('eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln');
    // Rewritten in place (same inode, maybe same size and mtime): must still be read again.
    writeFileSync(path, 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJiIn0.c2ln\n');
    expect(await run()).toBe('eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJiIn0.c2ln');
  });
});

describe('tls_client_auth, self_signed_tls_client_auth and none', () => {
  it.each(['tls_client_auth', 'self_signed_tls_client_auth', 'none'] as const)(
    '%s puts only client_id in the form and no header',
    async (method) => {
      const { form, headers } = await runAuth(
        credentialConfig({ clientId: 'mtls id', clientAuth: { method } }),
      );
      expect(headers).toEqual({});
      expect(form.toString()).toBe('grant_type=client_credentials&client_id=mtls+id');
    },
  );

  it('clientIdOnly replaces an existing client_id', () => {
    const form = new URLSearchParams([
      ['client_id', 'x'],
      ['client_id', 'y'],
    ]);
    clientIdOnly('id')(form, {}, ctx);
    expect(form.getAll('client_id')).toEqual(['id']);
  });
});

describe('clientAssertion', () => {
  it('trims the assertion and passes the request context to it', async () => {
    const seen: URL[] = [];
    const auth = clientAssertion('id', (c) => {
      seen.push(c.endpoint);
      return '  a.b.c\n';
    });
    const form = new URLSearchParams();
    await auth(form, {}, ctx);
    expect(form.get('client_assertion')).toBe('a.b.c');
    expect(seen).toEqual([ctx.endpoint]);
  });
});
