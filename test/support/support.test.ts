import { createHash, createPrivateKey, type KeyObject, X509Certificate } from 'node:crypto';
import { readFile, rm, stat } from 'node:fs/promises';
import { Readable } from 'node:stream';
import tls from 'node:tls';
import { decodeJwt, decodeProtectedHeader, generateKeyPair, SignJWT } from 'jose';
import { Agent, type Dispatcher, request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nextArrival } from './arrivals.js';
import {
  type AuthServer,
  BASIC_CLIENT,
  basicAuthorization,
  clientMetadata,
  DEFAULT_SAML_ISSUER,
  DEFAULT_SCOPE,
  GRANT_TYPES,
  POST_CLIENT,
  SPECIAL_CLIENT,
  startAuthServer,
  TOKEN_TYPES,
} from './auth-server.js';
import {
  CLIENT_ASSERTION_TYPE,
  type ClientKeyPair,
  clientAssertion,
  clientSecretJwtClient,
  generateClientKey,
  privateKeyJwtClient,
  publicClient,
  selfSignedTlsClient,
  tlsClientAuthClient,
  writeKeyFiles,
} from './client-keys.js';
import { startFakeTokenEndpoint } from './fake-token-endpoint.js';
import {
  buildSamlAssertionXml,
  encodeSamlAssertion,
  parseSamlAssertion,
  type SamlAssertionOptions,
  samlBearerAssertion,
} from './saml.js';
import { createTestCa, type IssuedCertificate, subjectDn, type TestCa } from './test-ca.js';
import { type EchoResponse, patternSha256, startUpstream, type Upstream } from './upstream.js';

interface TokenResponse {
  access_token?: string;
  expires_in?: number;
  token_type?: string;
  scope?: string;
  refresh_token?: string;
  issued_token_type?: string;
  error?: string;
  error_description?: string;
}

const FORM = { 'content-type': 'application/x-www-form-urlencoded' };

async function postForm(
  url: string,
  form: Record<string, string> | URLSearchParams,
  headers: Record<string, string> = {},
  dispatcher?: Dispatcher,
) {
  const res = await request(url, {
    method: 'POST',
    headers: { ...FORM, ...headers },
    body: new URLSearchParams(form).toString(),
    ...(dispatcher ? { dispatcher } : {}),
  });
  return { status: res.statusCode, headers: res.headers, json: (await res.body.json()) as TokenResponse };
}

function basicToken(as: AuthServer, scope?: string) {
  return postForm(
    as.tokenEndpoint,
    { grant_type: 'client_credentials', ...(scope ? { scope } : {}) },
    { authorization: basicAuthorization(BASIC_CLIENT.id, BASIC_CLIENT.secret) },
  );
}

describe('auth server (oidc-provider)', () => {
  let as: AuthServer;
  beforeAll(async () => {
    as = await startAuthServer();
  });
  afterAll(() => as.close());

  it('issues a JWT access token to a client_secret_basic client and records the request', async () => {
    const before = as.tokenRequests.length;
    const res = await basicToken(as, 'orders.read');
    expect(res.status).toBe(200);
    expect(res.json).toMatchObject({ token_type: 'Bearer', expires_in: 300, scope: 'orders.read' });
    const token = res.json.access_token!;
    expect(decodeProtectedHeader(token)).toMatchObject({ alg: 'ES256', typ: 'at+jwt' });
    const claims = decodeJwt(token);
    expect(claims).toMatchObject({
      iss: as.issuer,
      aud: as.audience,
      client_id: BASIC_CLIENT.id,
      scope: 'orders.read',
    });
    expect(claims.exp! - claims.iat!).toBe(300);
    expect(as.issuedTokens).toContain(token);

    expect(as.tokenRequests.length).toBe(before + 1);
    const recorded = as.tokenRequests.at(-1)!;
    expect(recorded.status).toBe(200);
    expect(recorded.form).toEqual({ grant_type: 'client_credentials', scope: 'orders.read' });
    expect(recorded.headers.authorization).toBe(basicAuthorization(BASIC_CLIENT.id, BASIC_CLIENT.secret));
  });

  it('issues a token to a client_secret_post client', async () => {
    const res = await postForm(as.tokenEndpoint, {
      grant_type: 'client_credentials',
      client_id: POST_CLIENT.id,
      client_secret: POST_CLIENT.secret,
    });
    expect(res.status).toBe(200);
    expect(decodeJwt(res.json.access_token!)).toMatchObject({ client_id: POST_CLIENT.id, aud: as.audience });
    expect(as.tokenRequests.at(-1)!.form).toMatchObject({
      client_id: POST_CLIENT.id,
      client_secret: POST_CLIENT.secret,
    });
    expect(as.tokenRequests.at(-1)!.headers.authorization).toBeUndefined();
  });

  it('accepts the special-character client only when its Basic credentials are form-urlencoded', async () => {
    const good = await postForm(
      as.tokenEndpoint,
      { grant_type: 'client_credentials' },
      { authorization: basicAuthorization(SPECIAL_CLIENT.id, SPECIAL_CLIENT.secret) },
    );
    expect(good.status).toBe(200);
    expect(decodeJwt(good.json.access_token!).client_id).toBe('svc:orders client');

    const raw = Buffer.from(`${SPECIAL_CLIENT.id}:${SPECIAL_CLIENT.secret}`).toString('base64');
    const bad = await postForm(
      as.tokenEndpoint,
      { grant_type: 'client_credentials' },
      { authorization: `Basic ${raw}` },
    );
    expect(bad.status).toBe(400);
    expect(bad.json.error).toBe('invalid_request');
    expect(as.tokenRequests.at(-1)!.status).toBe(400);
  });

  it('rejects a wrong secret with 401 invalid_client and issues nothing', async () => {
    const issued = as.issuedTokens.length;
    const res = await postForm(
      as.tokenEndpoint,
      { grant_type: 'client_credentials' },
      { authorization: basicAuthorization(BASIC_CLIENT.id, 'wrong') },
    );
    expect(res.status).toBe(401);
    expect(res.json.error).toBe('invalid_client');
    expect(as.tokenRequests.at(-1)!.status).toBe(401);
    expect(as.issuedTokens.length).toBe(issued);
  });

  it('does not enforce the registered basic-vs-post method (oidc-provider accepts either)', async () => {
    const res = await postForm(as.tokenEndpoint, {
      grant_type: 'client_credentials',
      client_id: BASIC_CLIENT.id,
      client_secret: BASIC_CLIENT.secret,
    });
    expect(res.status).toBe(200);
  });

  it('rejects an unknown resource and an unknown scope', async () => {
    const target = await postForm(
      as.tokenEndpoint,
      { grant_type: 'client_credentials', resource: 'https://elsewhere.test' },
      { authorization: basicAuthorization(BASIC_CLIENT.id, BASIC_CLIENT.secret) },
    );
    expect(target.status).toBe(400);
    expect(target.json.error).toBe('invalid_target');

    const scope = await basicToken(as, 'openid');
    expect(scope.status).toBe(400);
    expect(scope.json.error).toBe('invalid_scope');
  });

  it('applies a changed access token TTL to the next token', async () => {
    as.setAccessTokenTtl(42);
    try {
      const res = await basicToken(as);
      expect(res.json.expires_in).toBe(42);
      const claims = decodeJwt(res.json.access_token!);
      expect(claims.exp! - claims.iat!).toBe(42);
    } finally {
      as.setAccessTokenTtl(300);
    }
  });

  it('takes the initial TTL and custom clients from the options', async () => {
    const other = await startAuthServer({
      accessTokenTtlSeconds: 7,
      clients: [
        {
          client_id: 'only-one',
          client_secret: 'only-secret',
          grant_types: ['client_credentials'],
          response_types: [],
          scope: 'orders.read',
        },
      ],
    });
    try {
      const ok = await postForm(
        other.tokenEndpoint,
        { grant_type: 'client_credentials' },
        { authorization: basicAuthorization('only-one', 'only-secret') },
      );
      expect(ok.json.expires_in).toBe(7);
      const missing = await postForm(
        other.tokenEndpoint,
        { grant_type: 'client_credentials' },
        { authorization: basicAuthorization(BASIC_CLIENT.id, BASIC_CLIENT.secret) },
      );
      expect(missing.status).toBe(401);
    } finally {
      await other.close();
    }
  });

  it('serves its JWKS with public keys only', async () => {
    const res = await request(as.jwksUri);
    const jwks = (await res.body.json()) as { keys: Record<string, unknown>[] };
    expect(jwks.keys.length).toBeGreaterThan(0);
    for (const key of jwks.keys) expect(key['d']).toBeUndefined();
  });
});

describe('upstream', () => {
  let as: AuthServer;
  let upstream: Upstream;
  beforeAll(async () => {
    as = await startAuthServer();
    upstream = await startUpstream({ issuer: as.issuer, jwksUri: as.jwksUri, audience: as.audience });
  });
  afterAll(async () => {
    await upstream.close();
    await as.close();
  });

  async function validToken(): Promise<string> {
    return (await basicToken(as)).json.access_token!;
  }

  it('accepts a real token and echoes the request, hashing the streamed body', async () => {
    const token = await validToken();
    const payload = Buffer.alloc(3 * 1024 * 1024 + 17, 'x');
    const res = await request(`${upstream.url}/orders/42?x=1`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'x-custom': 'kept' },
      body: Readable.from([payload.subarray(0, 1000), payload.subarray(1000)]),
    });
    expect(res.statusCode).toBe(200);
    const echo = (await res.body.json()) as EchoResponse;
    const sha = createHash('sha256').update(payload).digest('hex');
    expect(echo).toMatchObject({
      method: 'POST',
      path: '/orders/42?x=1',
      bodyBytes: payload.length,
      bodySha256: sha,
    });
    expect(echo.headers['x-custom']).toBe('kept');
    expect(echo.claims).toMatchObject({ client_id: BASIC_CLIENT.id, aud: as.audience });

    const recorded = upstream.requests.at(-1)!;
    expect(recorded).toMatchObject({ tokenValid: true, bodyBytes: payload.length, bodySha256: sha });
    expect(recorded.rawHeaders).toContain('x-custom');
  });

  it('rejects a forged token signed with another key under the real kid, and a missing token', async () => {
    const real = await validToken();
    const header = decodeProtectedHeader(real);
    const { privateKey } = await generateKeyPair(header.alg!);
    const forged = await new SignJWT(decodeJwt(real))
      .setProtectedHeader({ ...header, alg: header.alg! })
      .sign(privateKey);

    for (const authorization of [`Bearer ${forged}`, undefined]) {
      const res = await request(`${upstream.url}/orders`, {
        headers: authorization ? { authorization } : {},
      });
      expect(res.statusCode).toBe(401);
      expect(res.headers['www-authenticate']).toBe('Bearer error="invalid_token"');
      await res.body.dump();
      expect(upstream.requests.at(-1)).toMatchObject({ path: '/orders', tokenValid: false });
      expect(upstream.requests.at(-1)!.claims).toBeUndefined();
    }
  });

  it('rejects a validly signed token for another audience', async () => {
    const other = await startAuthServer({ audience: 'https://payments.test' });
    try {
      const token = (await basicToken(other)).json.access_token!;
      const res = await request(`${upstream.url}/`, { headers: { authorization: `Bearer ${token}` } });
      expect(res.statusCode).toBe(401);
      await res.body.dump();
    } finally {
      await other.close();
    }
  });

  it('streams /download chunked by default and with content-length on request', async () => {
    const token = await validToken();
    const bytes = 5 * 1024 * 1024 + 3;
    for (const length of [false, true]) {
      const res = await request(`${upstream.url}/download?bytes=${bytes}${length ? '&length=1' : ''}`, {
        headers: { authorization: `Bearer ${token}` },
      });
      expect(res.statusCode).toBe(200);
      expect(res.headers['content-type']).toBe('application/octet-stream');
      if (length) {
        expect(res.headers['content-length']).toBe(String(bytes));
      } else {
        expect(res.headers['content-length']).toBeUndefined();
        expect(res.headers['transfer-encoding']).toBe('chunked');
      }
      const hash = createHash('sha256');
      let received = 0;
      for await (const chunk of res.body) {
        received += (chunk as Buffer).length;
        hash.update(chunk as Buffer);
      }
      expect(received).toBe(bytes);
      expect(hash.digest('hex')).toBe(patternSha256(bytes));
    }
  });

  it('reports when the client of /hang gives up', async () => {
    const token = await validToken();
    const aborted = upstream.nextAbort();
    const arrived = nextArrival(upstream.requests, (r) => r.path === '/hang');
    const controller = new AbortController();
    const pending = request(`${upstream.url}/hang`, {
      headers: { authorization: `Bearer ${token}` },
      signal: controller.signal,
    });
    expect(await arrived).toMatchObject({ path: '/hang', tokenValid: true });
    controller.abort();
    await expect(pending).rejects.toThrow();
    await aborted;
  });

  it('verifies 200 requests quickly thanks to the cached JWKS', async () => {
    const token = await validToken();
    const agent = new Agent({ connections: 20 });
    try {
      const statuses = await Promise.all(
        Array.from({ length: 200 }, async (_, i) => {
          const res = await request(`${upstream.url}/n/${i}`, {
            dispatcher: agent,
            headers: { authorization: `Bearer ${token}` },
          });
          await res.body.dump();
          return res.statusCode;
        }),
      );
      expect(statuses.every((s) => s === 200)).toBe(true);
    } finally {
      await agent.close();
    }
  });

  it('serves tokenless requests when requireToken is false', async () => {
    const open = await startUpstream({
      issuer: as.issuer,
      jwksUri: as.jwksUri,
      audience: as.audience,
      requireToken: false,
    });
    try {
      const res = await request(`${open.url}/public`);
      expect(res.statusCode).toBe(200);
      const echo = (await res.body.json()) as EchoResponse;
      expect(echo.claims).toBeUndefined();
      expect(open.requests[0]).toMatchObject({ path: '/public', tokenValid: false, bodyBytes: 0 });
    } finally {
      await open.close();
    }
  });
});

describe('test CA', () => {
  let ca: TestCa;
  beforeAll(async () => {
    ca = await createTestCa();
  });
  afterAll(() => ca.cleanup());

  it('serves an https upstream that trusts only what the CA signed', async () => {
    const as = await startAuthServer();
    const server = await ca.issue(['localhost', '127.0.0.1']);
    const upstream = await startUpstream({
      issuer: as.issuer,
      jwksUri: as.jwksUri,
      audience: as.audience,
      tls: { cert: server.cert, key: server.key },
    });
    const trusting = new Agent({ connect: { ca: ca.caPem } });
    try {
      expect(upstream.url).toBe(`https://localhost:${upstream.port}`);
      const token = (await basicToken(as)).json.access_token!;
      const res = await request(`${upstream.url}/secure`, {
        dispatcher: trusting,
        headers: { authorization: `Bearer ${token}` },
      });
      expect(res.statusCode).toBe(200);
      expect(((await res.body.json()) as EchoResponse).claims?.['client_id']).toBe(BASIC_CLIENT.id);

      await expect(request(`${upstream.url}/secure`)).rejects.toMatchObject({
        code: expect.stringMatching(/UNABLE_TO_VERIFY_LEAF_SIGNATURE|SELF_SIGNED_CERT_IN_CHAIN/),
      });
    } finally {
      await trusting.close();
      await upstream.close();
      await as.close();
    }
  });

  it('issues server and client certificates with the right names and usages', async () => {
    const server = new X509Certificate((await ca.issue(['localhost', '127.0.0.1'])).cert);
    const client = new X509Certificate((await ca.issue(['orders-client'], { client: true })).cert);
    const caCert = new X509Certificate(ca.caPem);
    expect(caCert.ca).toBe(true);
    expect(server.checkIssued(caCert) && server.verify(caCert.publicKey)).toBe(true);
    expect(client.checkIssued(caCert) && client.verify(caCert.publicKey)).toBe(true);
    expect(server.ca).toBe(false);
    expect(server.subjectAltName).toBe('DNS:localhost, IP Address:127.0.0.1');
    expect(server.checkHost('localhost')).toBe('localhost');
    expect(server.checkIP('127.0.0.1')).toBe('127.0.0.1');
    expect(server.keyUsage).toEqual(['1.3.6.1.5.5.7.3.1']);
    expect(client.keyUsage).toEqual(['1.3.6.1.5.5.7.3.2']);
    expect(client.subject).toBe('CN=orders-client');
    expect(server.publicKey.asymmetricKeyDetails?.namedCurve).toBe('prime256v1');
  });

  it('completes a mutual TLS handshake with a CA-issued client certificate', async () => {
    const serverCert = await ca.issue(['localhost', '127.0.0.1']);
    const clientCert = await ca.issue(['orders-client'], { client: true });
    const server = tls.createServer(
      {
        cert: serverCert.cert,
        key: serverCert.key,
        ca: ca.caPem,
        requestCert: true,
        rejectUnauthorized: true,
      },
      (socket) => socket.end(String(socket.getPeerCertificate().subject.CN)),
    );
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const { port } = server.address() as { port: number };
      const peer = await new Promise<string>((resolve, reject) => {
        const socket = tls.connect({
          host: '127.0.0.1',
          port,
          servername: 'localhost',
          ca: ca.caPem,
          cert: clientCert.cert,
          key: clientCert.key,
        });
        let data = '';
        socket.setEncoding('utf8');
        socket.on('data', (d: string) => {
          data += d;
        });
        socket.on('end', () => resolve(data));
        socket.on('error', reject);
      });
      expect(peer).toBe('orders-client');
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});

describe('fake token endpoint', () => {
  it('issues a fresh token per request by default and records the form', async () => {
    const fake = await startFakeTokenEndpoint();
    try {
      expect(fake.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/oauth2\/v1\/token$/);
      const a = await postForm(fake.url, { grant_type: 'client_credentials', scope: 'a b' });
      const b = await postForm(fake.url, { grant_type: 'client_credentials' });
      expect(a.status).toBe(200);
      expect(a.json).toMatchObject({ token_type: 'Bearer', expires_in: 300 });
      expect(a.json.access_token).toMatch(/^fake-1-/);
      expect(b.json.access_token).toMatch(/^fake-2-/);
      expect(fake.issuedTokens).toEqual([a.json.access_token, b.json.access_token]);
      expect(fake.requests[0]).toMatchObject({
        form: { grant_type: 'client_credentials', scope: 'a b' },
        status: 200,
      });
    } finally {
      await fake.close();
    }
  });

  it('answers with a fixed token, string expires_in and extra fields', async () => {
    const fake = await startFakeTokenEndpoint({
      kind: 'token',
      accessToken: 'fixed',
      expiresIn: '3600',
      tokenType: 'bearer',
      extra: { scope: 'orders.read' },
    });
    try {
      const res = await postForm(fake.url, { grant_type: 'client_credentials' });
      expect(res.json).toEqual({
        access_token: 'fixed',
        token_type: 'bearer',
        expires_in: '3600',
        scope: 'orders.read',
      });
    } finally {
      await fake.close();
    }
  });

  it('answers with arbitrary JSON and raw bodies', async () => {
    const fake = await startFakeTokenEndpoint({
      kind: 'json',
      status: 503,
      body: { error: 'temporarily_unavailable' },
      headers: { 'retry-after': '1' },
    });
    try {
      const json = await postForm(fake.url, {});
      expect(json.status).toBe(503);
      expect(json.headers['retry-after']).toBe('1');
      expect(json.json).toEqual({ error: 'temporarily_unavailable' });

      fake.setBehavior({ kind: 'raw', status: 200, body: '<html>login</html>', contentType: 'text/html' });
      const raw = await request(fake.url, { method: 'POST', headers: FORM, body: 'grant_type=x' });
      expect(raw.statusCode).toBe(200);
      expect(raw.headers['content-type']).toBe('text/html');
      expect(await raw.body.text()).toBe('<html>login</html>');
      expect(fake.requests.map((r) => r.status)).toEqual([503, 200]);
      expect(fake.issuedTokens).toEqual([]);
    } finally {
      await fake.close();
    }
  });

  it('hangs until the client gives up, and still closes with a request in flight', async () => {
    const fake = await startFakeTokenEndpoint({ kind: 'hang' });
    const send = (signal?: AbortSignal) =>
      request(fake.url, { method: 'POST', headers: FORM, body: 'grant_type=client_credentials', signal });

    const arrivedA = nextArrival(fake.requests);
    const controller = new AbortController();
    const abandoned = send(controller.signal);
    await arrivedA;
    controller.abort();
    await expect(abandoned).rejects.toThrow();

    const arrivedB = nextArrival(fake.requests);
    const inFlight = send().then(
      () => 'answered',
      (err: { code?: string }) => err.code ?? 'error',
    );
    await arrivedB;
    expect(fake.requests.map((r) => r.status)).toEqual([0, 0]);
    // close() must tear the hanging request down rather than wait for it.
    await fake.close();
    expect(await inFlight).toBe('UND_ERR_SOCKET');
  });

  it('resets the connection without an answer', async () => {
    const fake = await startFakeTokenEndpoint({ kind: 'reset' });
    try {
      await expect(
        request(fake.url, { method: 'POST', headers: FORM, body: 'grant_type=client_credentials' }),
      ).rejects.toMatchObject({ code: expect.stringMatching(/ECONNRESET|UND_ERR_SOCKET/) });
      expect(fake.requests).toHaveLength(1);
      expect(fake.requests[0]).toMatchObject({ form: { grant_type: 'client_credentials' }, status: 0 });
    } finally {
      await fake.close();
    }
  });
});

// ---------------------------------------------------------------------------------------------------
// Client authentication methods and grants beyond client_credentials
// ---------------------------------------------------------------------------------------------------

const ALL_GRANTS = Object.values(GRANT_TYPES);
const ALICE = { username: 'alice', password: 'alice-password-0123' };

function decodeClaims(token: string | undefined) {
  expect(token).toBeTypeOf('string');
  return decodeJwt(token!);
}

async function upstreamAccepts(upstream: Upstream, token: string, dispatcher?: Dispatcher) {
  const res = await request(`${upstream.url}/check`, {
    headers: { authorization: `Bearer ${token}` },
    ...(dispatcher ? { dispatcher } : {}),
  });
  await res.body.dump();
  return res.statusCode === 200;
}

function assertionForm(assertion: string): Record<string, string> {
  return { client_assertion_type: CLIENT_ASSERTION_TYPE, client_assertion: assertion };
}

describe('auth server: client authentication methods', () => {
  const SECRET_JWT = { id: 'svc-secret-jwt', secret: 'hmac-secret-0123456789-abcdefghij' };
  let as: AuthServer;
  let upstream: Upstream;
  let ca: TestCa;
  let otherCa: TestCa;
  let es: ClientKeyPair;
  let rsa: ClientKeyPair;
  let ed: ClientKeyPair;
  let wrong: ClientKeyPair;
  let dnCert: IssuedCertificate;
  let sanCert: IssuedCertificate;
  let selfCert: IssuedCertificate;
  const agents: Agent[] = [];
  const agentFor = (cert?: IssuedCertificate) => {
    const agent = new Agent({
      connect: { ca: ca.caPem, ...(cert ? { cert: cert.cert, key: cert.key } : {}) },
    });
    agents.push(agent);
    return agent;
  };

  beforeAll(async () => {
    ca = await createTestCa();
    otherCa = await createTestCa();
    [es, rsa, ed, wrong] = await Promise.all([
      generateClientKey('ES256'),
      generateClientKey('RS256'),
      generateClientKey('EdDSA'),
      generateClientKey('ES256'),
    ]);
    [dnCert, sanCert, selfCert] = await Promise.all([
      ca.issue(['orders-dn'], { client: true, subject: { C: 'DE', O: 'Example, Inc.', CN: 'orders-dn' } }),
      ca.issue(['orders-san.example.test'], { client: true }),
      ca.selfSigned(['orders-self']),
    ]);
    as = await startAuthServer({
      mtls: { ca },
      users: [ALICE],
      clients: [
        clientSecretJwtClient(SECRET_JWT.id, SECRET_JWT.secret),
        await privateKeyJwtClient('svc-key-jwt', [es, rsa, ed]),
        await privateKeyJwtClient('svc-ps256-only', { key: rsa.publicKey, alg: 'PS256' }),
        tlsClientAuthClient('svc-tls-dn', { subjectDn: 'CN=orders-dn, O=Example\\, Inc., C=DE' }),
        tlsClientAuthClient('svc-tls-san', { sanDns: 'orders-san.example.test' }),
        await selfSignedTlsClient('svc-self-signed', selfCert.cert),
        publicClient('svc-public'),
        tlsClientAuthClient(
          'svc-bound',
          { sanDns: 'orders-san.example.test' },
          { tls_client_certificate_bound_access_tokens: true, grant_types: ALL_GRANTS },
        ),
      ],
    });
    upstream = await startUpstream({ issuer: as.issuer, jwksUri: as.jwksUri, audience: as.audience });
  });
  afterAll(async () => {
    await Promise.all(agents.map((a) => a.close()));
    await upstream.close();
    await as.close();
    await otherCa.cleanup();
    await ca.cleanup();
  });

  const cc = { grant_type: 'client_credentials' };

  it('publishes the mTLS alias and every auth method in discovery', async () => {
    const res = await request(as.discoveryUrl);
    const doc = (await res.body.json()) as Record<string, unknown>;
    expect(as.mtlsTokenEndpoint).toMatch(/^https:\/\/127\.0\.0\.1:\d+\/token$/);
    expect(doc['mtls_endpoint_aliases']).toEqual({ token_endpoint: as.mtlsTokenEndpoint });
    expect(doc['token_endpoint_auth_methods_supported']).toEqual(
      expect.arrayContaining([
        'client_secret_jwt',
        'private_key_jwt',
        'tls_client_auth',
        'self_signed_tls_client_auth',
        'none',
      ]),
    );
    expect(doc['grant_types_supported']).toEqual(expect.arrayContaining(ALL_GRANTS));
    expect(doc['tls_client_certificate_bound_access_tokens']).toBe(true);
  });

  it('mtls: true creates its own CA for the listener and removes it on close', async () => {
    const own = await startAuthServer({ mtls: true });
    const dir = own.mtlsCa!.dir;
    const agent = new Agent({ connect: { ca: own.mtlsCa!.caPem } });
    try {
      const res = await postForm(
        own.mtlsTokenEndpoint!,
        { ...cc },
        { authorization: basicAuthorization(BASIC_CLIENT.id, BASIC_CLIENT.secret) },
        agent,
      );
      expect(res.status).toBe(200);
      expect(own.tokenRequests.at(-1)).toMatchObject({ mtls: true, status: 200 });
      expect(own.tokenRequests.at(-1)!.clientCertSubject).toBeUndefined();
    } finally {
      await agent.close();
      await own.close();
    }
    await expect(stat(dir)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('client_secret_jwt: accepts HS256/HS512 with aud = token endpoint or issuer', async () => {
    const cases: [string, string | string[]][] = [
      ['HS256', as.tokenEndpoint],
      ['HS256', as.issuer],
      ['HS512', [as.tokenEndpoint, 'https://someone-else.test']],
    ];
    for (const [alg, audience] of cases) {
      const assertion = await clientAssertion({
        clientId: SECRET_JWT.id,
        audience,
        key: { secret: SECRET_JWT.secret },
        alg,
      });
      const res = await postForm(as.tokenEndpoint, { ...cc, ...assertionForm(assertion) });
      expect(res.status, `${alg} ${String(audience)}`).toBe(200);
      expect(decodeClaims(res.json.access_token)).toMatchObject({
        client_id: SECRET_JWT.id,
        sub: SECRET_JWT.id,
      });
      expect(await upstreamAccepts(upstream, res.json.access_token!)).toBe(true);
    }
  });

  it('client_secret_jwt: rejects a wrong secret, a foreign aud, an expired or replayed assertion', async () => {
    const make = (o: Partial<Parameters<typeof clientAssertion>[0]> = {}) =>
      clientAssertion({
        clientId: SECRET_JWT.id,
        audience: as.tokenEndpoint,
        key: { secret: SECRET_JWT.secret },
        ...o,
      });
    const replayed = await make();
    expect((await postForm(as.tokenEndpoint, { ...cc, ...assertionForm(replayed) })).status).toBe(200);
    for (const assertion of [
      await make({ key: { secret: 'not-the-secret-0123456789-abcdefghij' } }),
      await make({ audience: 'https://elsewhere.test/token' }),
      await make({ expiresIn: -60 }),
      // oidc-provider only accepts the mTLS alias as aud on the alias itself, not on the plain endpoint.
      await make({ audience: as.mtlsTokenEndpoint! }),
      replayed,
    ]) {
      const res = await postForm(as.tokenEndpoint, { ...cc, ...assertionForm(assertion) });
      expect(res.status).toBe(401);
      expect(res.json.error).toBe('invalid_client');
    }
  });

  it.each(['RS256', 'PS256', 'ES256', 'EdDSA', 'Ed25519'] as const)(
    'private_key_jwt: accepts %s and the token passes the upstream',
    async (alg) => {
      const key = alg.startsWith('RS') || alg.startsWith('PS') ? rsa : alg === 'ES256' ? es : ed;
      const assertion = await clientAssertion({
        clientId: 'svc-key-jwt',
        audience: as.tokenEndpoint,
        key,
        alg,
      });
      const res = await postForm(as.tokenEndpoint, { ...cc, ...assertionForm(assertion) });
      expect(res.status).toBe(200);
      expect(decodeClaims(res.json.access_token).client_id).toBe('svc-key-jwt');
      expect(await upstreamAccepts(upstream, res.json.access_token!)).toBe(true);
      expect(as.tokenRequests.at(-1)!.form['client_assertion']).toBe(assertion);
    },
  );

  it('private_key_jwt: rejects an unregistered key (even under a registered kid), a wrong iss, a pinned alg mismatch', async () => {
    const cases = [
      await clientAssertion({ clientId: 'svc-key-jwt', audience: as.tokenEndpoint, key: wrong }),
      await clientAssertion({ clientId: 'svc-key-jwt', audience: as.tokenEndpoint, key: wrong, kid: es.kid }),
      await clientAssertion({
        clientId: 'svc-key-jwt',
        audience: as.tokenEndpoint,
        key: es,
        claims: { iss: 'someone-else' },
      }),
      // The key is registered with alg PS256, so the same key signing RS256 is refused.
      await clientAssertion({
        clientId: 'svc-ps256-only',
        audience: as.tokenEndpoint,
        key: rsa,
        alg: 'RS256',
      }),
    ];
    for (const assertion of cases) {
      const res = await postForm(as.tokenEndpoint, { ...cc, ...assertionForm(assertion) });
      expect(res.status).toBe(401);
      expect(res.json.error).toBe('invalid_client');
    }
    const pinned = await clientAssertion({
      clientId: 'svc-ps256-only',
      audience: as.tokenEndpoint,
      key: rsa,
      alg: 'PS256',
    });
    expect((await postForm(as.tokenEndpoint, { ...cc, ...assertionForm(pinned) })).status).toBe(200);
  });

  it('private_key_jwt: an assertion without kid is matched by trying the registered keys', async () => {
    const assertion = await clientAssertion({
      clientId: 'svc-key-jwt',
      audience: as.issuer,
      key: ed,
      kid: null,
    });
    expect((await postForm(as.tokenEndpoint, { ...cc, ...assertionForm(assertion) })).status).toBe(200);
  });

  it('writes key files in every format that sign accepted assertions', async () => {
    const files = await Promise.all([
      writeKeyFiles(rsa, { passphrase: 'file-passphrase' }),
      writeKeyFiles(es),
      writeKeyFiles(ed),
    ]);
    try {
      const [rsaFiles, esFiles, edFiles] = files;
      expect(await readFile(rsaFiles!.pkcs1!, 'utf8')).toMatch(/^-----BEGIN RSA PRIVATE KEY-----/);
      expect(await readFile(rsaFiles!.encryptedPkcs8!, 'utf8')).toMatch(
        /^-----BEGIN ENCRYPTED PRIVATE KEY-----/,
      );
      expect(await readFile(esFiles!.sec1!, 'utf8')).toMatch(/^-----BEGIN EC PRIVATE KEY-----/);
      expect(await readFile(edFiles!.pkcs8, 'utf8')).toMatch(/^-----BEGIN PRIVATE KEY-----/);
      expect(edFiles!.sec1).toBeUndefined();
      expect(edFiles!.pkcs1).toBeUndefined();
      expect(JSON.parse(await readFile(esFiles!.jwk, 'utf8'))).toMatchObject({
        kty: 'EC',
        kid: es.kid,
        alg: 'ES256',
      });
      expect((await stat(esFiles!.pkcs8)).mode & 0o777).toBe(0o600);

      const loaded: [ClientKeyPair, KeyObject][] = [
        [rsa, createPrivateKey(await readFile(rsaFiles!.pkcs1!))],
        [
          rsa,
          createPrivateKey({ key: await readFile(rsaFiles!.encryptedPkcs8!), passphrase: 'file-passphrase' }),
        ],
        [rsa, createPrivateKey({ key: JSON.parse(await readFile(rsaFiles!.jwk, 'utf8')), format: 'jwk' })],
        [es, createPrivateKey(await readFile(esFiles!.sec1!))],
        [ed, createPrivateKey(await readFile(edFiles!.pkcs8))],
      ];
      for (const [pair, privateKey] of loaded) {
        const assertion = await clientAssertion({
          clientId: 'svc-key-jwt',
          audience: as.tokenEndpoint,
          key: privateKey,
          alg: pair.alg,
          kid: pair.kid,
        });
        expect((await postForm(as.tokenEndpoint, { ...cc, ...assertionForm(assertion) })).status).toBe(200);
      }
    } finally {
      await Promise.all(files.map((f) => rm(f.dir, { recursive: true, force: true })));
    }
  });

  it('private_key_jwt: registers a client by certificate (x5c) and accepts an x5t#S256 header without kid', async () => {
    const certified = await ca.issue(['svc-cert-jwt'], { client: true });
    const other = await startAuthServer({
      clients: [await privateKeyJwtClient('svc-cert-jwt', { key: certified.cert })],
    });
    try {
      const key = createPrivateKey(certified.key);
      const x5t = createHash('sha256').update(new X509Certificate(certified.cert).raw).digest('base64url');
      const assertion = await clientAssertion({
        clientId: 'svc-cert-jwt',
        audience: other.tokenEndpoint,
        key,
        alg: 'ES256',
        header: { 'x5t#S256': x5t },
      });
      expect(decodeProtectedHeader(assertion).kid).toBeUndefined();
      expect((await postForm(other.tokenEndpoint, { ...cc, ...assertionForm(assertion) })).status).toBe(200);
    } finally {
      await other.close();
    }
  });

  it('tls_client_auth: matches the RFC 4514 subject DN on the mTLS endpoint and records the certificate', async () => {
    const res = await postForm(
      as.mtlsTokenEndpoint!,
      { ...cc, client_id: 'svc-tls-dn' },
      {},
      agentFor(dnCert),
    );
    expect(res.status).toBe(200);
    expect(decodeClaims(res.json.access_token)).toMatchObject({ client_id: 'svc-tls-dn', iss: as.issuer });
    expect(await upstreamAccepts(upstream, res.json.access_token!)).toBe(true);
    const recorded = as.tokenRequests.at(-1)!;
    expect(recorded).toMatchObject({
      mtls: true,
      status: 200,
      clientCertSubject: 'CN=orders-dn,O=Example\\, Inc.,C=DE',
    });
    expect(recorded.clientCertThumbprint).toBe(
      createHash('sha256').update(new X509Certificate(dnCert.cert).raw).digest('base64url'),
    );
    expect(subjectDn(dnCert.cert)).toBe(recorded.clientCertSubject);
  });

  it('tls_client_auth: matches a DNS SAN', async () => {
    const res = await postForm(
      as.mtlsTokenEndpoint!,
      { ...cc, client_id: 'svc-tls-san' },
      {},
      agentFor(sanCert),
    );
    expect(res.status).toBe(200);
  });

  it('tls_client_auth: rejects no certificate, the plain endpoint, another subject, another CA, a self-signed twin', async () => {
    const sameDnOtherCa = await otherCa.issue(['orders-dn'], {
      client: true,
      subject: { C: 'DE', O: 'Example, Inc.', CN: 'orders-dn' },
    });
    const selfTwin = await ca.selfSigned(['orders-dn'], {
      subject: { C: 'DE', O: 'Example, Inc.', CN: 'orders-dn' },
    });
    const attempts: [string, Dispatcher | undefined][] = [
      [as.mtlsTokenEndpoint!, agentFor()],
      [as.tokenEndpoint, undefined],
      [as.mtlsTokenEndpoint!, agentFor(sanCert)],
      [as.mtlsTokenEndpoint!, agentFor(sameDnOtherCa)],
      [as.mtlsTokenEndpoint!, agentFor(selfTwin)],
    ];
    for (const [url, dispatcher] of attempts) {
      const res = await postForm(url, { ...cc, client_id: 'svc-tls-dn' }, {}, dispatcher);
      expect(res.status).toBe(401);
      expect(res.json.error).toBe('invalid_client');
    }
    expect(as.tokenRequests.at(-2)!.clientCertSubject).toBe('CN=orders-dn,O=Example\\, Inc.,C=DE');
  });

  it('self_signed_tls_client_auth: accepts the registered certificate only', async () => {
    const ok = await postForm(
      as.mtlsTokenEndpoint!,
      { ...cc, client_id: 'svc-self-signed' },
      {},
      agentFor(selfCert),
    );
    expect(ok.status).toBe(200);
    expect(await upstreamAccepts(upstream, ok.json.access_token!)).toBe(true);
    const another = await ca.selfSigned(['orders-self']);
    for (const cert of [another, dnCert]) {
      const res = await postForm(
        as.mtlsTokenEndpoint!,
        { ...cc, client_id: 'svc-self-signed' },
        {},
        agentFor(cert),
      );
      expect(res.status).toBe(401);
      expect(res.json.error).toBe('invalid_client');
    }
  });

  it('private_key_jwt on the mTLS alias: aud must be the alias URL or the issuer', async () => {
    const agent = agentFor();
    for (const [audience, status] of [
      [as.mtlsTokenEndpoint!, 200],
      [as.issuer, 200],
      [as.tokenEndpoint, 401],
    ] as const) {
      const assertion = await clientAssertion({ clientId: 'svc-key-jwt', audience, key: es });
      const res = await postForm(as.mtlsTokenEndpoint!, { ...cc, ...assertionForm(assertion) }, {}, agent);
      expect(res.status, audience).toBe(status);
    }
  });

  it('none: a public client gets client_credentials tokens with its client_id alone (oidc-provider allows it)', async () => {
    const res = await postForm(as.tokenEndpoint, { ...cc, client_id: 'svc-public' });
    expect(res.status).toBe(200);
    expect(decodeClaims(res.json.access_token).client_id).toBe('svc-public');
    const withSecret = await postForm(as.tokenEndpoint, {
      ...cc,
      client_id: 'svc-public',
      client_secret: 'x',
    });
    expect(withSecret.status).toBe(401);
    expect(withSecret.json.error).toBe('invalid_client');
  });

  it('binds tokens of a tls_client_certificate_bound_access_tokens client to its certificate (cnf)', async () => {
    const agent = agentFor(sanCert);
    const thumbprint = createHash('sha256').update(new X509Certificate(sanCert.cert).raw).digest('base64url');
    const viaProvider = await postForm(as.mtlsTokenEndpoint!, { ...cc, client_id: 'svc-bound' }, {}, agent);
    const viaCustomGrant = await postForm(
      as.mtlsTokenEndpoint!,
      { grant_type: 'password', client_id: 'svc-bound', ...ALICE },
      {},
      agent,
    );
    for (const res of [viaProvider, viaCustomGrant]) {
      expect(res.status).toBe(200);
      expect(decodeClaims(res.json.access_token).cnf).toEqual({ 'x5t#S256': thumbprint });
    }
  });
});

describe('upstream with mTLS (certificate-bound tokens)', () => {
  let ca: TestCa;
  let as: AuthServer;
  let upstream: Upstream;
  let clientCert: IssuedCertificate;
  let otherCert: IssuedCertificate;
  beforeAll(async () => {
    ca = await createTestCa();
    [clientCert, otherCert] = await Promise.all([
      ca.issue(['bound-client'], { client: true }),
      ca.issue(['other-client'], { client: true }),
    ]);
    as = await startAuthServer({
      mtls: { ca },
      clients: [
        tlsClientAuthClient(
          'bound',
          { sanDns: 'bound-client' },
          { tls_client_certificate_bound_access_tokens: true },
        ),
      ],
    });
    const serverCert = await ca.issue(['localhost', '127.0.0.1']);
    upstream = await startUpstream({
      issuer: as.issuer,
      jwksUri: as.jwksUri,
      audience: as.audience,
      tls: { cert: serverCert.cert, key: serverCert.key, clientCa: ca.caPem },
    });
  });
  afterAll(async () => {
    await upstream.close();
    await as.close();
    await ca.cleanup();
  });

  it('accepts a bound token only with the certificate it is bound to, and requires a client certificate', async () => {
    const withCert = new Agent({ connect: { ca: ca.caPem, cert: clientCert.cert, key: clientCert.key } });
    const withOther = new Agent({ connect: { ca: ca.caPem, cert: otherCert.cert, key: otherCert.key } });
    const withoutCert = new Agent({ connect: { ca: ca.caPem } });
    try {
      const res = await postForm(
        as.mtlsTokenEndpoint!,
        { grant_type: 'client_credentials', client_id: 'bound' },
        {},
        withCert,
      );
      expect(res.status).toBe(200);
      const token = res.json.access_token!;

      expect(await upstreamAccepts(upstream, token, withCert)).toBe(true);
      expect(upstream.requests.at(-1)).toMatchObject({
        tokenValid: true,
        clientCertSubject: 'CN=bound-client',
      });

      expect(await upstreamAccepts(upstream, token, withOther)).toBe(false);
      expect(upstream.requests.at(-1)).toMatchObject({
        tokenValid: false,
        clientCertSubject: 'CN=other-client',
        tokenError: expect.stringContaining('certificate-bound'),
      });

      await expect(upstreamAccepts(upstream, token, withoutCert)).rejects.toThrow();
    } finally {
      await Promise.all([withCert.close(), withOther.close(), withoutCert.close()]);
    }
  });
});

/** How each client authenticates, for the every-method-with-every-grant matrix. */
interface AuthVariant {
  name: string;
  clientId: string;
  /** Fresh per request: assertions are single-use. */
  prepare(): Promise<{
    url: string;
    form: Record<string, string>;
    headers: Record<string, string>;
    dispatcher?: Dispatcher;
  }>;
}

describe('auth server: grants', () => {
  let as: AuthServer;
  let upstream: Upstream;
  let ca: TestCa;
  let assertionIssuerKey: ClientKeyPair;
  let es: ClientKeyPair;
  let tlsCert: IssuedCertificate;
  let selfCert: IssuedCertificate;
  const agents: Agent[] = [];
  const ASSERTION_ISSUER = 'https://assertions.example.test';
  const OPAQUE = { token: 'opaque-partner-token-0123456789', sub: 'partner-user' };
  const CLIENT = { id: 'grants-client', secret: 'grants-secret-0123456789' };
  const auth = () => ({ authorization: basicAuthorization(CLIENT.id, CLIENT.secret) });

  beforeAll(async () => {
    ca = await createTestCa();
    [assertionIssuerKey, es] = await Promise.all([generateClientKey('ES256'), generateClientKey('ES256')]);
    [tlsCert, selfCert] = await Promise.all([
      ca.issue(['grants-tls'], { client: true }),
      ca.selfSigned(['grants-self']),
    ]);
    const all = { grant_types: ALL_GRANTS };
    as = await startAuthServer({
      mtls: { ca },
      users: [ALICE, { username: 'bob', password: 'bob-password-0123' }],
      jwtBearerIssuers: [{ issuer: ASSERTION_ISSUER, publicKey: assertionIssuerKey.publicJwk }],
      exchangeTokens: [OPAQUE],
      clients: [
        {
          client_id: CLIENT.id,
          client_secret: CLIENT.secret,
          grant_types: ALL_GRANTS,
          response_types: [],
          scope: DEFAULT_SCOPE,
        },
        { ...clientMetadata(POST_CLIENT), ...all },
        clientSecretJwtClient('m-secret-jwt', 'matrix-hmac-secret-0123456789abcdef', all),
        await privateKeyJwtClient('m-key-jwt', es, all),
        tlsClientAuthClient('m-tls', { sanDns: 'grants-tls' }, all),
        await selfSignedTlsClient('m-self', selfCert.cert, all),
        publicClient('m-public', all),
        { ...clientMetadata(BASIC_CLIENT) },
      ],
    });
    upstream = await startUpstream({ issuer: as.issuer, jwksUri: as.jwksUri, audience: as.audience });
  });
  afterAll(async () => {
    await Promise.all(agents.map((a) => a.close()));
    await upstream.close();
    await as.close();
    await ca.cleanup();
  });

  const token = (form: Record<string, string> | URLSearchParams) => postForm(as.tokenEndpoint, form, auth());
  const password = (extra: Record<string, string> = {}) =>
    token({ grant_type: 'password', ...ALICE, ...extra });
  // Overrides last (jose's setters would silently win over them), so a test can break any claim.
  const bearerAssertion = (claims: Record<string, unknown> = {}, key = assertionIssuerKey) => {
    const now = Math.floor(Date.now() / 1000);
    return new SignJWT({
      iss: ASSERTION_ISSUER,
      sub: 'assertion-user',
      aud: as.tokenEndpoint,
      iat: now,
      exp: now + 120,
      ...claims,
    })
      .setProtectedHeader({ alg: 'ES256' })
      .sign(key.privateKey);
  };

  describe('password (RFC 6749 §4.3)', () => {
    it('issues a JWT for the user that the upstream accepts', async () => {
      const res = await password({ scope: 'orders.read' });
      expect(res.status).toBe(200);
      expect(res.json).toMatchObject({ token_type: 'Bearer', expires_in: 300, scope: 'orders.read' });
      expect(res.json.refresh_token).toBeUndefined();
      const token = res.json.access_token!;
      expect(decodeProtectedHeader(token)).toMatchObject({ alg: 'ES256', typ: 'at+jwt' });
      const claims = decodeClaims(token);
      expect(claims).toMatchObject({
        iss: as.issuer,
        aud: as.audience,
        sub: 'alice',
        client_id: CLIENT.id,
        scope: 'orders.read',
      });
      expect(claims.jti).toBeTypeOf('string');
      expect(claims.exp! - claims.iat!).toBe(300);
      expect(as.issuedTokens).toContain(token);
      expect(await upstreamAccepts(upstream, token)).toBe(true);
      expect(as.tokenRequests.at(-1)!.form).toMatchObject({ grant_type: 'password', username: 'alice' });
    });

    it('follows the configured TTL', async () => {
      as.setAccessTokenTtl(33);
      try {
        const claims = decodeClaims((await password()).json.access_token);
        expect(claims.exp! - claims.iat!).toBe(33);
      } finally {
        as.setAccessTokenTtl(300);
      }
    });

    it('refuses wrong credentials, missing parameters, a foreign scope or resource', async () => {
      const cases: [Record<string, string>, number, string][] = [
        [{ grant_type: 'password', username: 'alice', password: 'wrong' }, 400, 'invalid_grant'],
        [{ grant_type: 'password', username: 'mallory', password: ALICE.password }, 400, 'invalid_grant'],
        [{ grant_type: 'password', password: ALICE.password }, 400, 'invalid_request'],
        [{ grant_type: 'password', username: 'alice' }, 400, 'invalid_request'],
        [{ grant_type: 'password', ...ALICE, scope: 'payments.write' }, 400, 'invalid_scope'],
        [{ grant_type: 'password', ...ALICE, resource: 'https://payments.test' }, 400, 'invalid_target'],
      ];
      for (const [form, status, error] of cases) {
        const res = await token(form);
        expect(res.status, JSON.stringify(form)).toBe(status);
        expect(res.json.error).toBe(error);
      }
      expect(
        (await token({ grant_type: 'password', username: 'alice', password: 'wrong' })).json
          .error_description,
      ).toBe('invalid resource owner credentials');
    });

    it('refuses a client whose grant_types lack the grant (oidc-provider: invalid_request, not unauthorized_client)', async () => {
      const res = await postForm(
        as.tokenEndpoint,
        { grant_type: 'password', ...ALICE },
        { authorization: basicAuthorization(BASIC_CLIENT.id, BASIC_CLIENT.secret) },
      );
      expect(res.status).toBe(400);
      expect(res.json.error).toBe('invalid_request');
      expect(res.json.error_description).toBe('requested grant type is not allowed for this client');
    });

    it('authenticates the client first: a wrong client secret is invalid_client even with good user credentials', async () => {
      const res = await postForm(
        as.tokenEndpoint,
        { grant_type: 'password', ...ALICE },
        { authorization: basicAuthorization(CLIENT.id, 'wrong') },
      );
      expect(res.status).toBe(401);
      expect(res.json.error).toBe('invalid_client');
    });

    it('sees a changed password at once (users is the live array)', async () => {
      const user = { username: 'carol', password: 'first-password-0123' };
      as.users.push(user);
      expect((await token({ grant_type: 'password', ...user })).status).toBe(200);
      user.password = 'second-password-0123';
      expect(
        (await token({ grant_type: 'password', username: 'carol', password: 'first-password-0123' })).status,
      ).toBe(400);
      expect((await token({ grant_type: 'password', ...user })).status).toBe(200);
    });
  });

  describe('refresh_token (RFC 6749 §6)', () => {
    it('issues a refresh token with offline_access, rotates it, and refuses reuse', async () => {
      const first = await password({ scope: 'orders.read orders.write offline_access' });
      expect(first.status).toBe(200);
      const rt1 = first.json.refresh_token!;
      expect(rt1).toMatch(/^rt-/);
      expect(as.issuedRefreshTokens).toContain(rt1);

      const second = await token({ grant_type: 'refresh_token', refresh_token: rt1 });
      expect(second.status).toBe(200);
      const rt2 = second.json.refresh_token!;
      expect(rt2).not.toBe(rt1);
      expect(decodeClaims(second.json.access_token)).toMatchObject({ sub: 'alice', client_id: CLIENT.id });
      expect(second.json.scope).toBe('orders.read orders.write offline_access');
      expect(await upstreamAccepts(upstream, second.json.access_token!)).toBe(true);

      const reused = await token({ grant_type: 'refresh_token', refresh_token: rt1 });
      expect(reused.status).toBe(400);
      expect(reused.json).toMatchObject({
        error: 'invalid_grant',
        error_description: 'refresh token was already used',
      });

      // A narrower scope is fine, a wider one is not; the rotated token keeps the original scope.
      const narrow = await token({ grant_type: 'refresh_token', refresh_token: rt2, scope: 'orders.read' });
      expect(narrow.status).toBe(200);
      expect(decodeClaims(narrow.json.access_token).scope).toBe('orders.read');
      const wide = await token({
        grant_type: 'refresh_token',
        refresh_token: narrow.json.refresh_token!,
        scope: 'openid',
      });
      expect(wide.json.error).toBe('invalid_scope');
      const stillWide = await token({
        grant_type: 'refresh_token',
        refresh_token: narrow.json.refresh_token!,
      });
      expect(stillWide.json.scope).toBe('orders.read orders.write offline_access');
    });

    it('refuses an unknown token, another client’s token, a missing parameter, and revoked tokens', async () => {
      const rt = (await password({ scope: 'offline_access' })).json.refresh_token!;
      const cases: [Record<string, string>, Record<string, string>, string, string][] = [
        [{ refresh_token: 'rt-unknown' }, auth(), 'invalid_grant', 'refresh token is invalid or unknown'],
        [{}, auth(), 'invalid_request', "missing required parameter 'refresh_token'"],
        [
          { refresh_token: rt, client_id: POST_CLIENT.id, client_secret: POST_CLIENT.secret },
          {},
          'invalid_grant',
          'refresh token was issued to another client',
        ],
      ];
      for (const [form, headers, error, description] of cases) {
        const res = await postForm(as.tokenEndpoint, { grant_type: 'refresh_token', ...form }, headers);
        expect(res.status).toBe(400);
        expect(res.json).toMatchObject({ error, error_description: description });
      }
      as.revokeRefreshTokens();
      const revoked = await token({ grant_type: 'refresh_token', refresh_token: rt });
      expect(revoked.json).toMatchObject({
        error: 'invalid_grant',
        error_description: 'refresh token was revoked',
      });
      // The fallback a client takes after that: the password grant still works and starts a new chain.
      const again = await password({ scope: 'offline_access' });
      expect(
        (await token({ grant_type: 'refresh_token', refresh_token: again.json.refresh_token! })).status,
      ).toBe(200);
    });

    it('can issue refresh tokens always, without rotation, and expire them', async () => {
      const other = await startAuthServer({
        users: [ALICE],
        refreshTokens: { issue: 'always', rotate: false, ttlSeconds: 1 },
        clients: [{ ...clientMetadata(BASIC_CLIENT), grant_types: ALL_GRANTS }],
      });
      try {
        const basic = { authorization: basicAuthorization(BASIC_CLIENT.id, BASIC_CLIENT.secret) };
        const first = await postForm(other.tokenEndpoint, { grant_type: 'password', ...ALICE }, basic);
        const rt = first.json.refresh_token!;
        expect(rt).toBeTypeOf('string');
        for (let i = 0; i < 2; i++) {
          const res = await postForm(
            other.tokenEndpoint,
            { grant_type: 'refresh_token', refresh_token: rt },
            basic,
          );
          expect(res.status).toBe(200);
          expect(res.json.refresh_token).toBeUndefined();
        }
        await new Promise((resolve) => setTimeout(resolve, 1100));
        const expired = await postForm(
          other.tokenEndpoint,
          { grant_type: 'refresh_token', refresh_token: rt },
          basic,
        );
        expect(expired.json).toMatchObject({
          error: 'invalid_grant',
          error_description: 'refresh token is expired',
        });
      } finally {
        await other.close();
      }
    });
  });

  describe('jwt-bearer (RFC 7523 §2.1)', () => {
    const grant = (assertion: string, extra: Record<string, string> = {}) =>
      token({ grant_type: GRANT_TYPES.jwtBearer, assertion, ...extra });

    it('issues a token for the assertion subject; aud may be the token endpoint or the issuer', async () => {
      for (const aud of [as.tokenEndpoint, as.issuer, [as.issuer, 'https://other.test']]) {
        const res = await grant(await bearerAssertion({ aud }), { scope: 'orders.write' });
        expect(res.status).toBe(200);
        expect(decodeClaims(res.json.access_token)).toMatchObject({
          sub: 'assertion-user',
          client_id: CLIENT.id,
          scope: 'orders.write',
          aud: as.audience,
        });
        expect(await upstreamAccepts(upstream, res.json.access_token!)).toBe(true);
      }
    });

    it('refuses a bad signature, foreign aud, expiry, missing sub, an untrusted issuer, a non-JWT', async () => {
      const untrusted = await new SignJWT({ sub: 'x' })
        .setProtectedHeader({ alg: 'ES256' })
        .setIssuer('https://untrusted.test')
        .setAudience(as.tokenEndpoint)
        .setExpirationTime('2m')
        .sign(es.privateKey);
      const cases: [string, RegExp][] = [
        [await bearerAssertion({}, es), /signature verification failed/],
        [await bearerAssertion({ aud: 'https://elsewhere.test/token' }), /"aud" claim/],
        [await bearerAssertion({ exp: Math.floor(Date.now() / 1000) - 60 }), /"exp" claim/],
        [await bearerAssertion({ sub: undefined }), /"sub" claim/],
        [untrusted, /not trusted/],
        ['not-a-jwt', /not a JWT/],
      ];
      for (const [assertion, description] of cases) {
        const res = await grant(assertion);
        expect(res.status).toBe(400);
        expect(res.json.error).toBe('invalid_grant');
        expect(res.json.error_description).toMatch(description);
      }
      const missing = await token({ grant_type: GRANT_TYPES.jwtBearer });
      expect(missing.json.error).toBe('invalid_request');
    });
  });

  describe('saml2-bearer (RFC 7522)', () => {
    const grant = (assertion: string) => token({ grant_type: GRANT_TYPES.saml2Bearer, assertion });
    const saml = (o: Partial<SamlAssertionOptions> = {}) =>
      samlBearerAssertion({ subject: 'saml-user@example.test', audience: as.tokenEndpoint, ...o });

    it('issues a token for the NameID; Audience may be the token endpoint or the issuer', async () => {
      for (const audience of [as.tokenEndpoint, as.issuer]) {
        const assertion = saml({ audience });
        expect(assertion).toMatch(/^[A-Za-z0-9_-]+$/);
        const res = await grant(assertion);
        expect(res.status).toBe(200);
        expect(decodeClaims(res.json.access_token)).toMatchObject({
          sub: 'saml-user@example.test',
          client_id: CLIENT.id,
        });
        expect(await upstreamAccepts(upstream, res.json.access_token!)).toBe(true);
      }
      const unprefixed = await grant(saml({ prefix: '', subject: 'a&b' }));
      expect(decodeClaims(unprefixed.json.access_token).sub).toBe('a&b');
    });

    it('refuses standard base64 (padding, + or /), expiry, a foreign Audience or Issuer, non-bearer, non-SAML', async () => {
      const xml = buildSamlAssertionXml({ subject: 'saml-user', audience: as.tokenEndpoint });
      // Pad the document until its standard base64 has '=' padding and contains '+' or '/'.
      let padded = xml;
      while (!/[+/]/.test(Buffer.from(padded).toString('base64')) || Buffer.from(padded).length % 3 === 0)
        padded += ' ';
      const standard = Buffer.from(padded).toString('base64');
      expect(standard).toMatch(/[+/].*=$/);
      const unpadded = encodeSamlAssertion(padded);
      const urlSafeButPadded = unpadded + '='.repeat((4 - (unpadded.length % 4)) % 4);
      expect(urlSafeButPadded).toMatch(/=$/);
      const cases: [string, RegExp][] = [
        [standard, /base64url/],
        [urlSafeButPadded, /base64url/],
        [`${unpadded.slice(0, 40)}\n${unpadded.slice(40)}`, /base64url/],
        [saml({ notOnOrAfter: new Date(Date.now() - 1000) }), /expired/],
        [saml({ audience: 'https://elsewhere.test' }), /Audience/],
        [saml({ issuer: 'https://untrusted-idp.test' }), /not trusted/],
        [saml({ confirmationMethod: 'urn:oasis:names:tc:SAML:2.0:cm:holder-of-key' }), /bearer/],
        [encodeSamlAssertion('<html>no</html>'), /not a SAML 2.0 Assertion/],
      ];
      for (const [assertion, description] of cases) {
        const res = await grant(assertion);
        expect(res.status, assertion.slice(0, 20)).toBe(400);
        expect(res.json.error).toBe('invalid_grant');
        expect(res.json.error_description).toMatch(description);
      }
    });

    it('builds XML a reader can take apart', () => {
      const parsed = parseSamlAssertion(
        buildSamlAssertionXml({
          issuer: 'https://idp.test',
          subject: 'u',
          audience: 'https://as.test/token',
        }),
      );
      expect(parsed).toMatchObject({
        issuer: 'https://idp.test',
        nameId: 'u',
        audiences: ['https://as.test/token'],
        recipients: ['https://as.test/token'],
        confirmationMethods: ['urn:oasis:names:tc:SAML:2.0:cm:bearer'],
      });
      expect(parsed.notOnOrAfter!.getTime()).toBeGreaterThan(Date.now());
      expect(DEFAULT_SAML_ISSUER).toBe('https://idp.saml.test');
    });
  });

  describe('token-exchange (RFC 8693)', () => {
    const exchange = (form: Record<string, string> | URLSearchParams) =>
      token(
        new URLSearchParams({
          grant_type: GRANT_TYPES.tokenExchange,
          ...Object.fromEntries(new URLSearchParams(form)),
        }),
      );

    it('exchanges this server’s access token, keeping the subject, and echoes the issued type', async () => {
      const subjectToken = (await password()).json.access_token!;
      for (const [requested, issued] of [
        [undefined, TOKEN_TYPES.accessToken],
        [TOKEN_TYPES.jwt, TOKEN_TYPES.jwt],
      ] as const) {
        const res = await exchange({
          subject_token: subjectToken,
          subject_token_type: TOKEN_TYPES.accessToken,
          audience: as.audience,
          scope: 'orders.read',
          ...(requested ? { requested_token_type: requested } : {}),
        });
        expect(res.status).toBe(200);
        expect(res.json).toMatchObject({
          issued_token_type: issued,
          token_type: 'Bearer',
          expires_in: 300,
          scope: 'orders.read',
        });
        const claims = decodeClaims(res.json.access_token);
        expect(claims).toMatchObject({
          sub: 'alice',
          client_id: CLIENT.id,
          aud: as.audience,
          iss: as.issuer,
        });
        expect(claims.act).toBeUndefined();
        expect(await upstreamAccepts(upstream, res.json.access_token!)).toBe(true);
      }
    });

    it('adds act for an actor token, nesting prior delegation', async () => {
      const subjectToken = await as.mintAccessToken({ sub: 'alice' });
      const actorToken = await as.mintAccessToken({ sub: 'robot' });
      const res = await exchange({
        subject_token: subjectToken,
        subject_token_type: TOKEN_TYPES.jwt,
        actor_token: actorToken,
        actor_token_type: TOKEN_TYPES.accessToken,
      });
      expect(res.status).toBe(200);
      expect(decodeClaims(res.json.access_token)).toMatchObject({ sub: 'alice', act: { sub: 'robot' } });

      const again = await exchange({
        subject_token: res.json.access_token!,
        subject_token_type: TOKEN_TYPES.accessToken,
        actor_token: OPAQUE.token,
        actor_token_type: TOKEN_TYPES.accessToken,
      });
      expect(decodeClaims(again.json.access_token)).toMatchObject({
        sub: 'alice',
        act: { sub: OPAQUE.sub, act: { sub: 'robot' } },
      });
    });

    it('accepts listed opaque tokens and trusted issuers’ JWTs; several audience/resource values', async () => {
      const opaque = await exchange({
        subject_token: OPAQUE.token,
        subject_token_type: TOKEN_TYPES.accessToken,
      });
      expect(decodeClaims(opaque.json.access_token).sub).toBe(OPAQUE.sub);

      const external = await exchange({
        subject_token: await bearerAssertion({ sub: 'federated-user' }),
        subject_token_type: TOKEN_TYPES.idToken,
      });
      expect(decodeClaims(external.json.access_token).sub).toBe('federated-user');

      const form = new URLSearchParams({
        subject_token: OPAQUE.token,
        subject_token_type: TOKEN_TYPES.accessToken,
      });
      form.append('resource', as.audience);
      form.append('audience', as.audience);
      const repeated = await exchange(form);
      expect(repeated.status).toBe(200);
      expect(decodeClaims(repeated.json.access_token).aud).toBe(as.audience);
    });

    it('answers invalid_request, invalid_grant and invalid_target as RFC 8693 §2.2.2 says', async () => {
      const good = await as.mintAccessToken({ sub: 'alice' });
      const [h, p, sig] = good.split('.') as [string, string, string];
      const tampered = `${h}.${Buffer.from(JSON.stringify({ ...decodeJwt(good), sub: 'admin' })).toString('base64url')}.${sig}`;
      expect(p).not.toBe(tampered.split('.')[1]);
      const expired = await as.mintAccessToken({
        sub: 'alice',
        claims: { exp: Math.floor(Date.now() / 1000) - 10 },
      });
      const at = TOKEN_TYPES.accessToken;
      const cases: [Record<string, string>, string, RegExp][] = [
        [{ subject_token_type: at }, 'invalid_request', /subject_token/],
        [{ subject_token: good }, 'invalid_request', /subject_token_type/],
        [
          { subject_token: good, subject_token_type: 'urn:example:custom' },
          'invalid_request',
          /unsupported subject_token_type/,
        ],
        [
          { subject_token: good, subject_token_type: at, actor_token: good },
          'invalid_request',
          /actor_token_type/,
        ],
        [
          { subject_token: good, subject_token_type: at, actor_token_type: at },
          'invalid_request',
          /without actor_token/,
        ],
        [
          { subject_token: good, subject_token_type: at, requested_token_type: TOKEN_TYPES.saml2 },
          'invalid_request',
          /requested_token_type/,
        ],
        [{ subject_token: tampered, subject_token_type: at }, 'invalid_grant', /signature/],
        [{ subject_token: expired, subject_token_type: at }, 'invalid_grant', /"exp" claim/],
        [{ subject_token: 'opaque-but-unlisted', subject_token_type: at }, 'invalid_grant', /unknown/],
        [
          { subject_token: good, subject_token_type: at, audience: 'https://payments.test' },
          'invalid_target',
          /payments/,
        ],
        [
          { subject_token: good, subject_token_type: at, resource: 'https://payments.test' },
          'invalid_target',
          /payments/,
        ],
        [{ subject_token: good, subject_token_type: at, scope: 'admin' }, 'invalid_scope', /admin/],
      ];
      for (const [form, error, description] of cases) {
        const res = await exchange(form);
        expect(res.status, JSON.stringify(form)).toBe(400);
        expect(res.json.error, JSON.stringify(form)).toBe(error);
        expect(res.json.error_description).toMatch(description);
      }
    });
  });

  describe('every client authentication method with every grant', () => {
    const variants: AuthVariant[] = [
      {
        name: 'client_secret_basic',
        clientId: CLIENT.id,
        prepare: async () => ({ url: as.tokenEndpoint, form: {}, headers: auth() }),
      },
      {
        name: 'client_secret_post',
        clientId: POST_CLIENT.id,
        prepare: async () => ({
          url: as.tokenEndpoint,
          form: { client_id: POST_CLIENT.id, client_secret: POST_CLIENT.secret },
          headers: {},
        }),
      },
      {
        name: 'client_secret_jwt',
        clientId: 'm-secret-jwt',
        prepare: async () => ({
          url: as.tokenEndpoint,
          form: assertionForm(
            await clientAssertion({
              clientId: 'm-secret-jwt',
              audience: as.tokenEndpoint,
              key: { secret: 'matrix-hmac-secret-0123456789abcdef' },
            }),
          ),
          headers: {},
        }),
      },
      {
        name: 'private_key_jwt',
        clientId: 'm-key-jwt',
        prepare: async () => ({
          url: as.tokenEndpoint,
          form: assertionForm(await clientAssertion({ clientId: 'm-key-jwt', audience: as.issuer, key: es })),
          headers: {},
        }),
      },
      {
        name: 'tls_client_auth',
        clientId: 'm-tls',
        prepare: async () => ({
          url: as.mtlsTokenEndpoint!,
          form: { client_id: 'm-tls' },
          headers: {},
          dispatcher: tlsAgent(),
        }),
      },
      {
        name: 'self_signed_tls_client_auth',
        clientId: 'm-self',
        prepare: async () => ({
          url: as.mtlsTokenEndpoint!,
          form: { client_id: 'm-self' },
          headers: {},
          dispatcher: selfAgent(),
        }),
      },
      {
        name: 'none',
        clientId: 'm-public',
        prepare: async () => ({ url: as.tokenEndpoint, form: { client_id: 'm-public' }, headers: {} }),
      },
    ];
    let tls: Agent | undefined;
    let self: Agent | undefined;
    function tlsAgent() {
      tls ??= new Agent({ connect: { ca: ca.caPem, cert: tlsCert.cert, key: tlsCert.key } });
      if (!agents.includes(tls)) agents.push(tls);
      return tls;
    }
    function selfAgent() {
      self ??= new Agent({ connect: { ca: ca.caPem, cert: selfCert.cert, key: selfCert.key } });
      if (!agents.includes(self)) agents.push(self);
      return self;
    }

    it.each(variants.map((v) => [v.name, v] as const))('%s', async (_name, variant) => {
      const grants: [string, () => Promise<Record<string, string>>, string][] = [
        ['client_credentials', async () => ({ grant_type: 'client_credentials' }), variant.clientId],
        [
          'password',
          async () => ({ grant_type: 'password', ...ALICE, scope: 'orders.read offline_access' }),
          'alice',
        ],
        [
          GRANT_TYPES.jwtBearer,
          async () => ({ grant_type: GRANT_TYPES.jwtBearer, assertion: await bearerAssertion() }),
          'assertion-user',
        ],
        [
          GRANT_TYPES.saml2Bearer,
          async () => ({
            grant_type: GRANT_TYPES.saml2Bearer,
            assertion: samlBearerAssertion({ subject: 'saml-user', audience: as.issuer }),
          }),
          'saml-user',
        ],
        [
          GRANT_TYPES.tokenExchange,
          async () => ({
            grant_type: GRANT_TYPES.tokenExchange,
            subject_token: await as.mintAccessToken({ sub: 'exchanged-user' }),
            subject_token_type: TOKEN_TYPES.accessToken,
          }),
          'exchanged-user',
        ],
      ];
      let refreshToken: string | undefined;
      for (const [name, form, sub] of grants) {
        const { url, form: authForm, headers, dispatcher } = await variant.prepare();
        const res = await postForm(url, { ...(await form()), ...authForm }, headers, dispatcher);
        expect(res.status, `${variant.name} ${name}: ${JSON.stringify(res.json)}`).toBe(200);
        expect(decodeClaims(res.json.access_token)).toMatchObject({ sub, client_id: variant.clientId });
        expect(await upstreamAccepts(upstream, res.json.access_token!)).toBe(true);
        if (name === 'password') refreshToken = res.json.refresh_token;
      }
      const { url, form: authForm, headers, dispatcher } = await variant.prepare();
      const refreshed = await postForm(
        url,
        { grant_type: 'refresh_token', refresh_token: refreshToken!, ...authForm },
        headers,
        dispatcher,
      );
      expect(refreshed.status, JSON.stringify(refreshed.json)).toBe(200);
      expect(decodeClaims(refreshed.json.access_token)).toMatchObject({
        sub: 'alice',
        client_id: variant.clientId,
      });
    });
  });
});

describe('test CA: subjects, SAN kinds, self-signed and RSA certificates', () => {
  let ca: TestCa;
  beforeAll(async () => {
    ca = await createTestCa();
  });
  afterAll(() => ca.cleanup());

  it('issues an explicit subject with RFC 4514 specials and email/URI/IP SANs', async () => {
    const issued = await ca.issue(
      ['svc.example.test', 'ops@example.test', 'spiffe://example.test/svc', '10.0.0.1'],
      {
        client: true,
        subject: { C: 'DE', O: 'Example, Inc. + Co', OU: 'a=b', CN: 'svc' },
      },
    );
    const cert = new X509Certificate(issued.cert);
    // RFC 4514 escapes , + " \\ < > ; but not = inside a value.
    expect(subjectDn(cert)).toBe('CN=svc,OU=a=b,O=Example\\, Inc. \\+ Co,C=DE');
    expect(cert.subjectAltName).toBe(
      'DNS:svc.example.test, email:ops@example.test, URI:spiffe://example.test/svc, IP Address:10.0.0.1',
    );
    expect(cert.checkIssued(new X509Certificate(ca.caPem))).toBe(true);
  });

  it('makes self-signed client certificates and RSA keys', async () => {
    const self = new X509Certificate((await ca.selfSigned(['self-client'])).cert);
    expect(self.subject).toBe('CN=self-client');
    expect(self.issuer).toBe('CN=self-client');
    expect(self.ca).toBe(false);
    expect(self.keyUsage).toEqual(['1.3.6.1.5.5.7.3.2']);
    expect(self.verify(self.publicKey)).toBe(true);
    expect(self.checkIssued(new X509Certificate(ca.caPem))).toBe(false);

    const rsaCert = await ca.issue(['rsa-client'], { client: true, keyType: 'rsa' });
    expect(new X509Certificate(rsaCert.cert).publicKey.asymmetricKeyType).toBe('rsa');
    expect(createPrivateKey(rsaCert.key).asymmetricKeyType).toBe('rsa');
  });
});
