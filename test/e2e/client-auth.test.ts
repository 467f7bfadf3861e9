/**
 * Every client authentication method end to end: the real proxy obtains tokens from the real
 * authorization server (oidc-provider, with its mTLS listener) and injects them into requests to an
 * upstream that verifies them. Each test checks what the token endpoint received, field by field.
 */
import { createHash, type KeyObject, X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rename, rm, unlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeJwt, jwtVerify } from 'jose';
import { request } from 'undici';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  type AuthServer,
  BASIC_CLIENT,
  type ClientMetadata,
  clientMetadata,
  DEFAULT_SCOPE,
  type RecordedTokenRequest,
  startAuthServer,
} from '../support/auth-server.js';
import {
  CLIENT_ASSERTION_TYPE,
  type ClientKeyPair,
  clientAssertion,
  clientSecretJwtClient,
  generateClientKey,
  type KeyFiles,
  privateKeyJwtClient,
  publicClient,
  selfSignedTlsClient,
  tlsClientAuthClient,
  writeKeyFiles,
} from '../support/client-keys.js';
import { startInjector, type TestInjector } from '../support/injector.js';
import { watchSecret } from '../support/leak-watch.js';
import { createTestCa, type IssuedCertificate, subjectDn, type TestCa } from '../support/test-ca.js';
import { type ReceivedRequest, startUpstream, type Upstream } from '../support/upstream.js';

const SECRET_JWT = { id: 'secret-jwt-client', secret: 'hmac-secret-for-client-secret-jwt-0123456789' };
const PUBLIC_USER = { username: 'svc-public', password: 'public-user-password-0123' };
const FORM_CONTENT_TYPE = 'application/x-www-form-urlencoded';
/** A fixed mtime (whole seconds, so it survives utimes exactly) for the stat-invisible rewrite. */
const FIXED_MTIME = 1_700_000_000;

let ca: TestCa;
let otherCa: TestCa;
let auth: AuthServer;
let upstream: Upstream;
let mtlsUpstream: Upstream;
let dir: string;
let proxy: TestInjector | undefined;

let rsa: ClientKeyPair;
let es: ClientKeyPair;
let ed: ClientKeyPair;
let wrong: ClientKeyPair;
let fileKey: ClientKeyPair;
let files: Record<'rsa' | 'es' | 'ed' | 'wrong', KeyFiles>;

let tlsCert: IssuedCertificate;
let selfCert: IssuedCertificate;
let jwtCert: IssuedCertificate;
let routeCert: IssuedCertificate;

/** Every private key text a test hands to the proxy is watched by the suite's log-leak check. */
async function watchKeyFiles(keyFiles: KeyFiles): Promise<void> {
  for (const path of [keyFiles.pkcs8, keyFiles.pkcs1, keyFiles.sec1, keyFiles.jwk]) {
    if (path) watchSecret(await readFile(path, 'utf8'));
  }
}

function watchKeyPair(key: ClientKeyPair): void {
  watchSecret(key.privateJwk.d);
  watchSecret(JSON.stringify(key.privateJwk));
}

function watchCertificate(cert: IssuedCertificate): IssuedCertificate {
  watchSecret(cert.key);
  return cert;
}

/** oidc-provider's Client model reads clients it was not configured with from its adapter. */
interface ClientAdapter {
  upsert(id: string, payload: ClientMetadata): Promise<void>;
}

/**
 * Registers or replaces a client at runtime, the way a provider's admin API rotates a secret or a
 * key: oidc-provider rebuilds a client whose stored metadata changed on its next lookup.
 */
async function putClient(metadata: ClientMetadata): Promise<void> {
  const adapter = (auth.provider.Client as unknown as { adapter: ClientAdapter }).adapter;
  await adapter.upsert(metadata.client_id, metadata);
  if (metadata.client_secret) watchSecret(metadata.client_secret);
}

/** Replaces a file the way Kubernetes and most tools do: write a sibling, rename it over the original. */
async function replaceFile(path: string, content: string): Promise<void> {
  const tmp = `${path}.${process.pid}.tmp`;
  await writeFile(tmp, content, { mode: 0o600 });
  await rename(tmp, path);
}

beforeAll(async () => {
  [ca, otherCa] = await Promise.all([createTestCa(), createTestCa()]);
  dir = await mkdtemp(join(tmpdir(), 'token-injector-client-auth-'));
  [rsa, es, ed, wrong, fileKey] = await Promise.all([
    generateClientKey('RS256'),
    generateClientKey('ES256'),
    generateClientKey('EdDSA'),
    generateClientKey('ES256'),
    generateClientKey('ES256'),
  ]);
  for (const key of [rsa, es, ed, wrong, fileKey]) watchKeyPair(key);
  const [rsaFiles, esFiles, edFiles, wrongFiles] = await Promise.all(
    [rsa, es, ed, wrong].map((key) => writeKeyFiles(key, { dir })),
  );
  files = { rsa: rsaFiles!, es: esFiles!, ed: edFiles!, wrong: wrongFiles! };
  await Promise.all(Object.values(files).map(watchKeyFiles));

  [tlsCert, selfCert, jwtCert, routeCert] = (
    await Promise.all([
      ca.issue(['tls-client.example.test'], { client: true, subject: { O: 'Example', CN: 'tls-client' } }),
      ca.selfSigned(['self-client.example.test']),
      ca.issue(['jwt-client.example.test'], { client: true }),
      ca.issue(['route-client.example.test'], { client: true }),
    ])
  ).map(watchCertificate) as [IssuedCertificate, IssuedCertificate, IssuedCertificate, IssuedCertificate];

  auth = await startAuthServer({
    mtls: { ca },
    users: [PUBLIC_USER],
    clients: [
      clientMetadata(BASIC_CLIENT),
      clientSecretJwtClient(SECRET_JWT.id, SECRET_JWT.secret),
      await privateKeyJwtClient('key-jwt-client', [rsa, es, ed]),
      // Registered by certificate (x5c) under a kid of our choosing: the key_id / certificate_file case.
      await privateKeyJwtClient('cert-jwt-client', { key: jwtCert.cert, kid: 'inventory-2026' }),
      await privateKeyJwtClient('assertion-file-client', fileKey),
      tlsClientAuthClient('tls-client', { subjectDn: subjectDn(tlsCert.cert) }),
      await selfSignedTlsClient('self-signed-client', selfCert.cert),
      publicClient('public-client', { grant_types: ['password'] }),
    ],
  });
  watchSecret(SECRET_JWT.secret);
  watchSecret(PUBLIC_USER.password);
  upstream = await startUpstream({ issuer: auth.issuer, jwksUri: auth.jwksUri, audience: auth.audience });
  const serverCert = await ca.issue(['localhost', '127.0.0.1']);
  mtlsUpstream = await startUpstream({
    issuer: auth.issuer,
    jwksUri: auth.jwksUri,
    audience: auth.audience,
    tls: { cert: serverCert.cert, key: serverCert.key, clientCa: ca.caPem },
  });
});

afterEach(async () => {
  await proxy?.close();
  proxy = undefined;
});

afterAll(async () => {
  for (const token of auth?.issuedTokens ?? []) watchSecret(token);
  await mtlsUpstream?.close();
  await upstream?.close();
  await auth?.close();
  await Promise.all([ca?.cleanup(), otherCa?.cleanup()]);
  if (dir) await rm(dir, { recursive: true, force: true });
});

/**
 * Three routes to the verifying upstream over one credential: `main` uses the credential's scope,
 * `read` and `write` override it, so each has its own token cache and forces its own token request.
 */
async function start(credential: Record<string, unknown>): Promise<TestInjector> {
  proxy = await startInjector({
    credentials: { c: credential },
    routes: [
      { name: 'main', match: { host: 'main.test' }, upstream: upstream.url, credential: 'c' },
      {
        name: 'read',
        match: { host: 'read.test' },
        upstream: upstream.url,
        credential: 'c',
        scope: 'orders.read',
      },
      {
        name: 'write',
        match: { host: 'write.test' },
        upstream: upstream.url,
        credential: 'c',
        scope: 'orders.write',
      },
    ],
  });
  return proxy;
}

function clientCredentials(clientId: string, extra: Record<string, unknown>): Record<string, unknown> {
  return {
    token_endpoint: auth.tokenEndpoint,
    grant_type: 'client_credentials',
    client_id: clientId,
    scope: DEFAULT_SCOPE,
    ...extra,
  };
}

async function call(route: string) {
  const res = await request(`${proxy!.url}/v1/orders`, { headers: { host: `${route}.test` } });
  const text = await res.body.text();
  return { status: res.statusCode, text, body: JSON.parse(text) as Record<string, unknown> };
}

const SCOPE_OF: Record<string, string> = {
  main: DEFAULT_SCOPE,
  read: 'orders.read',
  write: 'orders.write',
};

/**
 * One app request through the proxy that must cause exactly `tokenRequests` token requests (the last
 * one accepted) and one upstream request carrying the token the server issued, which the upstream
 * verified. Returns what the token endpoint and the upstream received.
 */
async function expectAccepted(
  route: string,
  tokenRequests = 1,
): Promise<{ sent: RecordedTokenRequest[]; received: ReceivedRequest }> {
  const tokensBefore = auth.tokenRequests.length;
  const issuedBefore = auth.issuedTokens.length;
  const upstreamBefore = upstream.requests.length;
  const res = await call(route);
  expect(res.status, res.text).toBe(200);
  const sent = auth.tokenRequests.slice(tokensBefore);
  expect(sent).toHaveLength(tokenRequests);
  expect(sent.at(-1)!.status).toBe(200);
  expect(auth.issuedTokens.length).toBe(issuedBefore + 1);
  const received = upstream.requests.slice(upstreamBefore);
  expect(received).toHaveLength(1);
  expect(received[0]!.tokenValid).toBe(true);
  expect(received[0]!.headers.authorization).toBe(`Bearer ${auth.issuedTokens.at(-1)}`);
  expect(received[0]!.claims?.['scope']).toBe(SCOPE_OF[route]);
  return { sent, received: received[0]! };
}

/** One app request the token endpoint refuses: 502 with invalid_client, and no upstream call. */
async function expectInvalidClient(route: string): Promise<RecordedTokenRequest> {
  const tokensBefore = auth.tokenRequests.length;
  const upstreamBefore = upstream.requests.length;
  const res = await call(route);
  expect(res.status).toBe(502);
  expect(res.body).toMatchObject({ error: 'token_endpoint_rejected', credential: 'c', route });
  expect(res.body['detail']).toContain('invalid_client');
  expect(upstream.requests.length).toBe(upstreamBefore);
  // The files did not change, so there is no second attempt.
  const sent = auth.tokenRequests.slice(tokensBefore);
  expect(sent).toHaveLength(1);
  expect(sent[0]!.status).toBe(401);
  expect(proxy!.logs.some((l) => l['event'] === 'files_reloaded')).toBe(false);
  expect(proxy!.logs.filter((l) => l['event'] === 'token_failed').at(-1)).toMatchObject({
    error: 'token_endpoint_rejected',
    status: 401,
    oauth_error: 'invalid_client',
  });
  return sent[0]!;
}

/** The form of a client assertion request; the assertion itself is checked separately. */
function assertionForm(clientId: string, scope = DEFAULT_SCOPE) {
  return {
    grant_type: 'client_credentials',
    scope,
    client_id: clientId,
    client_assertion_type: CLIENT_ASSERTION_TYPE,
    client_assertion: expect.any(String),
  };
}

function expectNoClientSecretHeaders(sent: RecordedTokenRequest): void {
  expect(sent.headers['authorization']).toBeUndefined();
  expect(sent.headers['content-type']).toBe(FORM_CONTENT_TYPE);
  expect(sent.headers['accept']).toBe('application/json');
}

/** Verifies an RFC 7523 §2.2 client assertion: signature, iss = sub = client_id, aud, 60 s life. */
async function verifyAssertion(
  assertion: string,
  key: KeyObject | Uint8Array,
  alg: string,
  clientId: string,
  audience: string,
) {
  watchSecret(assertion);
  const { payload, protectedHeader } = await jwtVerify(assertion, key, {
    algorithms: [alg],
    issuer: clientId,
    subject: clientId,
    audience,
  });
  expect(protectedHeader.alg).toBe(alg);
  expect(protectedHeader.typ).toBe('JWT');
  expect(payload.aud).toBe(audience);
  expect(payload.exp! - payload.iat!).toBe(60);
  expect(Math.abs(payload.iat! - Date.now() / 1000)).toBeLessThan(30);
  expect(payload.jti).toMatch(/^[\w-]{16,}$/);
  return { payload, protectedHeader };
}

describe('client_secret_jwt', () => {
  it('an HS256 assertion keyed by the secret: iss = sub = client_id, aud = the token endpoint', async () => {
    await start(
      clientCredentials(SECRET_JWT.id, {
        client_secret: SECRET_JWT.secret,
        auth_method: 'client_secret_jwt',
      }),
    );
    const { sent, received } = await expectAccepted('main');
    expect(sent[0]!.form).toEqual(assertionForm(SECRET_JWT.id));
    expectNoClientSecretHeaders(sent[0]!);
    expect(JSON.stringify(sent[0]!.form)).not.toContain(SECRET_JWT.secret);
    const { protectedHeader } = await verifyAssertion(
      sent[0]!.form['client_assertion']!,
      new TextEncoder().encode(SECRET_JWT.secret),
      'HS256',
      SECRET_JWT.id,
      auth.tokenEndpoint,
    );
    expect(protectedHeader.kid).toBeUndefined();
    expect(received.claims?.['client_id']).toBe(SECRET_JWT.id);
  });

  it('assertion_audience: aud is the issuer instead', async () => {
    await start(
      clientCredentials(SECRET_JWT.id, {
        client_secret: SECRET_JWT.secret,
        auth_method: 'client_secret_jwt',
        assertion_audience: auth.issuer,
      }),
    );
    const { sent } = await expectAccepted('main');
    expect(sent[0]!.form).toEqual(assertionForm(SECRET_JWT.id));
    await verifyAssertion(
      sent[0]!.form['client_assertion']!,
      new TextEncoder().encode(SECRET_JWT.secret),
      'HS256',
      SECRET_JWT.id,
      auth.issuer,
    );
  });
});

describe('private_key_jwt', () => {
  type KeyName = 'rsa' | 'es' | 'ed';
  const keyOf = (name: KeyName) => ({ rsa, es, ed })[name];
  it.each([
    ['RSA PKCS#8, RS256 inferred', 'rsa', 'pkcs8', undefined, 'RS256'],
    ['RSA PKCS#1, RS256', 'rsa', 'pkcs1', 'RS256', 'RS256'],
    ['RSA PKCS#1, PS256', 'rsa', 'pkcs1', 'PS256', 'PS256'],
    ['RSA JWK, PS256', 'rsa', 'jwk', 'PS256', 'PS256'],
    ['EC SEC1, ES256 inferred', 'es', 'sec1', undefined, 'ES256'],
    ['EC PKCS#8, ES256', 'es', 'pkcs8', 'ES256', 'ES256'],
    ['EC JWK, ES256 inferred', 'es', 'jwk', undefined, 'ES256'],
    ['Ed25519 PKCS#8, EdDSA inferred', 'ed', 'pkcs8', undefined, 'EdDSA'],
    ['Ed25519 JWK, EdDSA', 'ed', 'jwk', 'EdDSA', 'EdDSA'],
  ] as const)('%s', async (_name, keyName, format, configuredAlg, expectedAlg) => {
    const key = keyOf(keyName);
    const path = files[keyName][format]!;
    expect(path).toBeDefined();
    await start(
      clientCredentials('key-jwt-client', {
        auth_method: 'private_key_jwt',
        private_key_file: path,
        ...(configuredAlg ? { signing_alg: configuredAlg } : {}),
      }),
    );
    const { sent, received } = await expectAccepted('main');
    expect(sent[0]!.form).toEqual(assertionForm('key-jwt-client'));
    expectNoClientSecretHeaders(sent[0]!);
    const { protectedHeader } = await verifyAssertion(
      sent[0]!.form['client_assertion']!,
      key.publicKey,
      expectedAlg,
      'key-jwt-client',
      auth.tokenEndpoint,
    );
    // Neither key_id nor certificate_file configured: no kid (even from a JWK file) and no x5t#S256.
    expect(protectedHeader.kid).toBeUndefined();
    expect(protectedHeader['x5t#S256']).toBeUndefined();
    expect(received.claims?.['client_id']).toBe('key-jwt-client');
  });

  it('key_id → kid, certificate_file → x5t#S256, assertion_audience, and a fresh jti per token request', async () => {
    const x5t = createHash('sha256').update(new X509Certificate(jwtCert.cert).raw).digest('base64url');
    await start(
      clientCredentials('cert-jwt-client', {
        auth_method: 'private_key_jwt',
        private_key_file: jwtCert.keyFile,
        key_id: 'inventory-2026',
        certificate_file: jwtCert.certFile,
        assertion_audience: auth.issuer,
      }),
    );
    const first = await expectAccepted('read');
    const second = await expectAccepted('write');
    const publicKey = new X509Certificate(jwtCert.cert).publicKey;
    const jtis: unknown[] = [];
    for (const [{ sent }, scope] of [
      [first, 'orders.read'],
      [second, 'orders.write'],
    ] as const) {
      expect(sent[0]!.form).toEqual(assertionForm('cert-jwt-client', scope));
      expectNoClientSecretHeaders(sent[0]!);
      const { payload, protectedHeader } = await verifyAssertion(
        sent[0]!.form['client_assertion']!,
        publicKey,
        'ES256',
        'cert-jwt-client',
        auth.issuer,
      );
      expect(protectedHeader).toEqual({ alg: 'ES256', typ: 'JWT', kid: 'inventory-2026', 'x5t#S256': x5t });
      jtis.push(payload.jti);
    }
    expect(jtis[0]).not.toBe(jtis[1]);
    expect(first.sent[0]!.form['client_assertion']).not.toBe(second.sent[0]!.form['client_assertion']);
    expect(first.received.claims?.['scope']).toBe('orders.read');
    expect(second.received.claims?.['scope']).toBe('orders.write');
  });

  it('a key the server does not know → 502 invalid_client, one token request, no upstream call', async () => {
    await start(
      clientCredentials('key-jwt-client', {
        auth_method: 'private_key_jwt',
        private_key_file: files.wrong.pkcs8,
      }),
    );
    const sent = await expectInvalidClient('main');
    expect(sent.form).toEqual(assertionForm('key-jwt-client'));
    // Signed with the unknown key, so the server had nothing to verify it with.
    await verifyAssertion(
      sent.form['client_assertion']!,
      wrong.publicKey,
      'ES256',
      'key-jwt-client',
      auth.tokenEndpoint,
    );
  });

  it('client_assertion_file: read at every token request, a replaced file is used by the next one', async () => {
    const path = join(dir, 'client-assertion.jwt');
    const make = async () => {
      const assertion = await clientAssertion({
        clientId: 'assertion-file-client',
        audience: auth.tokenEndpoint,
        key: fileKey,
        expiresIn: 600,
      });
      watchSecret(assertion);
      return assertion;
    };
    const firstAssertion = await make();
    // A trailing newline, as editors and `kubectl create secret --from-file` leave it, is not sent.
    await writeFile(path, `${firstAssertion}\n`, { mode: 0o600 });
    await start(
      clientCredentials('assertion-file-client', {
        auth_method: 'private_key_jwt',
        client_assertion_file: path,
      }),
    );
    const first = await expectAccepted('read');
    expect(first.sent[0]!.form).toEqual({
      ...assertionForm('assertion-file-client', 'orders.read'),
      client_assertion: firstAssertion,
    });
    expectNoClientSecretHeaders(first.sent[0]!);

    const secondAssertion = await make();
    expect(secondAssertion).not.toBe(firstAssertion);
    await replaceFile(path, `${secondAssertion}\n`);
    const second = await expectAccepted('write');
    expect(second.sent[0]!.form).toEqual({
      ...assertionForm('assertion-file-client', 'orders.write'),
      client_assertion: secondAssertion,
    });
    expect(second.received.claims?.['client_id']).toBe('assertion-file-client');
  });
});

describe('mutual TLS client authentication (RFC 8705)', () => {
  function mtlsCredential(method: string, clientId: string, cert: IssuedCertificate) {
    return clientCredentials(clientId, {
      // The plain endpoint must not be used: the mTLS alias replaces it for these methods.
      token_endpoint: auth.tokenEndpoint,
      mtls_token_endpoint: auth.mtlsTokenEndpoint,
      auth_method: method,
      tls: { ca_file: ca.caFile, cert_file: cert.certFile, key_file: cert.keyFile },
    });
  }

  it.each([
    ['tls_client_auth', 'tls-client', () => tlsCert],
    ['self_signed_tls_client_auth', 'self-signed-client', () => selfCert],
  ] as const)(
    '%s: the certificate on the mTLS alias authenticates the client',
    async (method, clientId, certOf) => {
      const cert = certOf();
      await start(mtlsCredential(method, clientId, cert));
      const first = await expectAccepted('read');
      const second = await expectAccepted('write');
      for (const [{ sent }, scope] of [
        [first, 'orders.read'],
        [second, 'orders.write'],
      ] as const) {
        expect(sent[0]).toMatchObject({ mtls: true, status: 200, clientCertSubject: subjectDn(cert.cert) });
        expect(sent[0]!.form).toEqual({ grant_type: 'client_credentials', scope, client_id: clientId });
        expect(sent[0]!.headers['authorization']).toBeUndefined();
        expect(sent[0]!.headers['content-type']).toBe(FORM_CONTENT_TYPE);
      }
      expect(first.received.claims?.['client_id']).toBe(clientId);
      // Never the plain token endpoint, not even once.
      const ofClient = auth.tokenRequests.filter((r) => r.form['client_id'] === clientId);
      expect(ofClient.length).toBeGreaterThanOrEqual(2);
      expect(ofClient.every((r) => r.mtls === true)).toBe(true);
    },
  );

  it('tls_client_auth with issuer: the mTLS alias comes from the metadata (mtls_endpoint_aliases, RFC 8705 §5)', async () => {
    const {
      token_endpoint: _,
      mtls_token_endpoint: __,
      ...credential
    } = mtlsCredential('tls_client_auth', 'tls-client', tlsCert);
    await start({ ...credential, issuer: auth.issuer });
    const { sent } = await expectAccepted('read');
    expect(sent[0]).toMatchObject({ mtls: true, status: 200, clientCertSubject: subjectDn(tlsCert.cert) });
  });

  it.each([
    [
      'tls_client_auth, same subject issued by another CA',
      'tls_client_auth',
      'tls-client',
      () =>
        otherCa.issue(['tls-client.example.test'], {
          client: true,
          subject: { O: 'Example', CN: 'tls-client' },
        }),
    ],
    [
      'tls_client_auth, trusted CA but another subject',
      'tls_client_auth',
      'tls-client',
      () => ca.issue(['someone-else.example.test'], { client: true }),
    ],
    [
      'self_signed_tls_client_auth, a self-signed certificate that is not the registered one',
      'self_signed_tls_client_auth',
      'self-signed-client',
      () => ca.selfSigned(['self-client.example.test']),
    ],
  ] as const)('%s → 502 invalid_client, no upstream call', async (_name, method, clientId, issue) => {
    const cert = watchCertificate(await issue());
    await start(mtlsCredential(method, clientId, cert));
    const sent = await expectInvalidClient('main');
    expect(sent).toMatchObject({ mtls: true, clientCertSubject: subjectDn(cert.cert) });
    expect(sent.form).toEqual({
      grant_type: 'client_credentials',
      scope: DEFAULT_SCOPE,
      client_id: clientId,
    });
  });
});

describe('none (public client)', () => {
  it('only client_id identifies the client (password grant), and the upstream accepts the token', async () => {
    await start({
      token_endpoint: auth.tokenEndpoint,
      grant_type: 'password',
      client_id: 'public-client',
      auth_method: 'none',
      username: PUBLIC_USER.username,
      password: PUBLIC_USER.password,
      scope: DEFAULT_SCOPE,
    });
    const { sent, received } = await expectAccepted('main');
    expect(sent[0]!.form).toEqual({
      grant_type: 'password',
      username: PUBLIC_USER.username,
      password: PUBLIC_USER.password,
      scope: DEFAULT_SCOPE,
      client_id: 'public-client',
    });
    expectNoClientSecretHeaders(sent[0]!);
    expect(received.claims).toMatchObject({ client_id: 'public-client', sub: PUBLIC_USER.username });
  });
});

describe('credential rotation without a restart', () => {
  function basicClient(id: string, secret: string): ClientMetadata {
    return clientMetadata({ id, secret, authMethod: 'client_secret_basic' });
  }
  const basic = (id: string, secret: string) => `Basic ${Buffer.from(`${id}:${secret}`).toString('base64')}`;

  it('client_secret as a whole-file reference: the server rotates first (502, no retry), the file follows, the next request works', async () => {
    const id = 'rotating-secret-client';
    const [oldSecret, newSecret] = [
      'rotation-secret-old-0123456789',
      'rotation-secret-new-abcdefghijk-longer',
    ];
    const path = join(dir, 'rotating-client-secret');
    await writeFile(path, `${oldSecret}\n`, { mode: 0o600 });
    await putClient(basicClient(id, oldSecret));
    await start(
      clientCredentials(id, {
        client_secret: `\${file:${path}}`,
        auth_method: 'client_secret_basic',
        // After the rejection the route's cache fails fast until its next probe; keep that short.
        retry: { initial_backoff: '1ms', max_backoff: '1ms' },
      }),
    );

    const first = await expectAccepted('read');
    expect(first.sent[0]!.headers['authorization']).toBe(basic(id, oldSecret));
    expect(first.sent[0]!.form).toEqual({ grant_type: 'client_credentials', scope: 'orders.read' });

    // The secret is rotated on the server; the mounted file has not caught up yet.
    await putClient(basicClient(id, newSecret));
    const rejected = await expectInvalidClient('write');
    expect(rejected.headers['authorization']).toBe(basic(id, oldSecret));

    await replaceFile(path, `${newSecret}\n`);
    const second = await expectAccepted('write');
    expect(second.sent[0]!.headers['authorization']).toBe(basic(id, newSecret));
    expect(second.received.claims?.['client_id']).toBe(id);
    // The cached token of the first route is still served, without a token request.
    const before = auth.tokenRequests.length;
    expect((await call('read')).status).toBe(200);
    expect(auth.tokenRequests.length).toBe(before);
  });

  it('invalid_client after a rewrite stat cannot see: the files are re-read and the request retried once', async () => {
    const id = 'stat-blind-client';
    // Same length, same inode, same mtime: only re-reading the content shows the change.
    const [oldSecret, newSecret] = ['stat-blind-secret-AAAAAAAAAA', 'stat-blind-secret-BBBBBBBBBB'];
    expect(newSecret.length).toBe(oldSecret.length);
    const path = join(dir, 'stat-blind-client-secret');
    await writeFile(path, oldSecret, { mode: 0o600 });
    await utimes(path, FIXED_MTIME, FIXED_MTIME);
    await putClient(basicClient(id, oldSecret));
    await start(
      clientCredentials(id, { client_secret: `\${file:${path}}`, auth_method: 'client_secret_basic' }),
    );

    const first = await expectAccepted('read');
    expect(first.sent[0]!.headers['authorization']).toBe(basic(id, oldSecret));

    await putClient(basicClient(id, newSecret));
    await writeFile(path, newSecret);
    await utimes(path, FIXED_MTIME, FIXED_MTIME);

    const { sent, received } = await expectAccepted('write', 2);
    expect(sent[0]!.status).toBe(401);
    expect(sent[0]!.headers['authorization']).toBe(basic(id, oldSecret));
    expect(sent[1]!.status).toBe(200);
    expect(sent[1]!.headers['authorization']).toBe(basic(id, newSecret));
    for (const s of sent) expect(s.form).toEqual({ grant_type: 'client_credentials', scope: 'orders.write' });
    expect(received.claims?.['client_id']).toBe(id);
    const events = proxy!.logs.map((l) => l['event']);
    expect(events.filter((e) => e === 'files_reloaded')).toHaveLength(1);
    expect(events.indexOf('token_failed')).toBeLessThan(events.indexOf('files_reloaded'));

    // From now on the new secret is used directly.
    const third = await expectAccepted('main');
    expect(third.sent[0]!.headers['authorization']).toBe(basic(id, newSecret));
  });

  it('private_key_file: a replaced key (registered on the server instead of the old one) signs the next request', async () => {
    const id = 'rotating-key-client';
    const [oldKey, newKey] = await Promise.all([generateClientKey('ES256'), generateClientKey('ES256')]);
    watchKeyPair(oldKey);
    watchKeyPair(newKey);
    const [oldFiles, newFiles] = await Promise.all([
      writeKeyFiles(oldKey, { dir }),
      writeKeyFiles(newKey, { dir }),
    ]);
    await Promise.all([watchKeyFiles(oldFiles), watchKeyFiles(newFiles)]);
    const path = join(dir, 'rotating-client-key.pem');
    await writeFile(path, await readFile(oldFiles.pkcs8, 'utf8'), { mode: 0o600 });
    await putClient(await privateKeyJwtClient(id, oldKey));
    await start(clientCredentials(id, { auth_method: 'private_key_jwt', private_key_file: path }));

    const first = await expectAccepted('read');
    await verifyAssertion(
      first.sent[0]!.form['client_assertion']!,
      oldKey.publicKey,
      'ES256',
      id,
      auth.tokenEndpoint,
    );

    await putClient(await privateKeyJwtClient(id, newKey));
    // A different format on purpose (SEC1 after PKCS#8): the file is parsed again, not patched.
    await replaceFile(path, await readFile(newFiles.sec1!, 'utf8'));
    const second = await expectAccepted('write');
    const assertion = second.sent[0]!.form['client_assertion']!;
    await verifyAssertion(assertion, newKey.publicKey, 'ES256', id, auth.tokenEndpoint);
    await expect(jwtVerify(assertion, oldKey.publicKey)).rejects.toThrow();
    expect(second.received.claims?.['client_id']).toBe(id);
    expect(decodeJwt(auth.issuedTokens.at(-1)!)['client_id']).toBe(id);
  });

  it('private_key_file replaced by a key of another type, signing_alg inferred: the new key signs with its own alg', async () => {
    // The credential was loaded with an EC key and no signing_alg, so ES256 was inferred; the
    // rotated Ed25519 key can only sign EdDSA, which the inference would pick for it too.
    const id = 'retyped-key-client';
    const path = join(dir, 'retyped-client-key.pem');
    await writeFile(path, await readFile(files.es.pkcs8, 'utf8'), { mode: 0o600 });
    await putClient(await privateKeyJwtClient(id, es));
    await start(clientCredentials(id, { auth_method: 'private_key_jwt', private_key_file: path }));
    const first = await expectAccepted('read');
    await verifyAssertion(
      first.sent[0]!.form['client_assertion']!,
      es.publicKey,
      'ES256',
      id,
      auth.tokenEndpoint,
    );

    await putClient(await privateKeyJwtClient(id, ed));
    await replaceFile(path, await readFile(files.ed.pkcs8, 'utf8'));
    const second = await expectAccepted('write');
    await verifyAssertion(
      second.sent[0]!.form['client_assertion']!,
      ed.publicKey,
      'EdDSA',
      id,
      auth.tokenEndpoint,
    );
  });

  it('a secret file briefly missing during a rotation: its last content is used until the new file is there', async () => {
    const id = 'missing-file-client';
    const [oldSecret, newSecret] = [
      'missing-file-secret-old-0123456789',
      'missing-file-secret-new-0123456789',
    ];
    const path = join(dir, 'missing-client-secret');
    await writeFile(path, oldSecret, { mode: 0o600 });
    await putClient(basicClient(id, oldSecret));
    await start(
      clientCredentials(id, { client_secret: `\${file:${path}}`, auth_method: 'client_secret_basic' }),
    );
    await expectAccepted('read');

    await unlink(path);
    const during = await expectAccepted('write');
    expect(during.sent[0]!.headers['authorization']).toBe(basic(id, oldSecret));

    await putClient(basicClient(id, newSecret));
    await writeFile(path, newSecret, { mode: 0o600 });
    const after = await expectAccepted('main');
    expect(after.sent[0]!.headers['authorization']).toBe(basic(id, newSecret));
  });
});

describe('credential rotation: mutual TLS', () => {
  it('tls_client_auth: replaced certificate and key files (a new registered subject) are used by the next request', async () => {
    const id = 'rotating-tls-client';
    const [oldCert, newCert] = (
      await Promise.all([
        ca.issue(['rotating-old.example.test'], { client: true }),
        ca.issue(['rotating-new.example.test'], { client: true }),
      ])
    ).map(watchCertificate) as [IssuedCertificate, IssuedCertificate];
    const certFile = join(dir, 'rotating-tls-cert.pem');
    const keyFile = join(dir, 'rotating-tls-key.pem');
    await writeFile(certFile, oldCert.cert);
    await writeFile(keyFile, oldCert.key, { mode: 0o600 });
    await putClient(tlsClientAuthClient(id, { subjectDn: subjectDn(oldCert.cert) }));
    await start(
      clientCredentials(id, {
        mtls_token_endpoint: auth.mtlsTokenEndpoint,
        auth_method: 'tls_client_auth',
        tls: { ca_file: ca.caFile, cert_file: certFile, key_file: keyFile },
      }),
    );
    const first = await expectAccepted('read');
    expect(first.sent[0]).toMatchObject({ mtls: true, clientCertSubject: subjectDn(oldCert.cert) });

    await putClient(tlsClientAuthClient(id, { subjectDn: subjectDn(newCert.cert) }));
    await replaceFile(keyFile, newCert.key);
    await replaceFile(certFile, newCert.cert);
    const second = await expectAccepted('write');
    expect(second.sent[0]).toMatchObject({ mtls: true, clientCertSubject: subjectDn(newCert.cert) });
    expect(second.sent[0]!.form).toEqual({
      grant_type: 'client_credentials',
      scope: 'orders.write',
      client_id: id,
    });
    expect(second.received.claims?.['client_id']).toBe(id);
  });
});

describe('route client certificate (mTLS upstream)', () => {
  it('an upstream requiring a client certificate is reached with the route certificate; without one → 502', async () => {
    const before = mtlsUpstream.requests.length;
    proxy = await startInjector({
      credentials: {
        c: clientCredentials(BASIC_CLIENT.id, {
          client_secret: BASIC_CLIENT.secret,
          auth_method: 'client_secret_basic',
        }),
      },
      routes: [
        {
          name: 'with-cert',
          match: { host: 'with-cert.test' },
          upstream: mtlsUpstream.url,
          credential: 'c',
          tls: { ca_file: ca.caFile, cert_file: routeCert.certFile, key_file: routeCert.keyFile },
        },
        {
          name: 'without-cert',
          match: { host: 'without-cert.test' },
          upstream: mtlsUpstream.url,
          credential: 'c',
          tls: { ca_file: ca.caFile },
        },
      ],
    });
    const ok = await call('with-cert');
    expect(ok.status, ok.text).toBe(200);
    expect(mtlsUpstream.requests.slice(before)).toHaveLength(1);
    const received = mtlsUpstream.requests.at(-1)!;
    expect(received.tokenValid).toBe(true);
    expect(received.clientCertSubject).toBe(subjectDn(routeCert.cert));
    expect(received.clientCertThumbprint).toBe(
      createHash('sha256').update(new X509Certificate(routeCert.cert).raw).digest('base64url'),
    );
    expect(received.headers.authorization).toBe(`Bearer ${auth.issuedTokens.at(-1)}`);

    const refused = await call('without-cert');
    expect(refused.status).toBe(502);
    // TLS 1.3: the upstream refuses the handshake after the proxy sent its request, so the
    // failure shows as a closed or reset socket rather than a handshake error.
    expect(refused.body['error'], refused.text).toBe('upstream_unreachable');
    expect(mtlsUpstream.requests.slice(before)).toHaveLength(1);
  });
});
