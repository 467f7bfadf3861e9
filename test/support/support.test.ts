import { createHash, X509Certificate } from 'node:crypto';
import { Readable } from 'node:stream';
import tls from 'node:tls';
import { decodeJwt, decodeProtectedHeader, generateKeyPair, SignJWT } from 'jose';
import { Agent, request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nextArrival } from './arrivals.js';
import {
  type AuthServer,
  BASIC_CLIENT,
  basicAuthorization,
  POST_CLIENT,
  SPECIAL_CLIENT,
  startAuthServer,
} from './auth-server.js';
import { startFakeTokenEndpoint } from './fake-token-endpoint.js';
import { createTestCa, type TestCa } from './test-ca.js';
import { type EchoResponse, patternSha256, startUpstream, type Upstream } from './upstream.js';

interface TokenResponse {
  access_token?: string;
  expires_in?: number;
  token_type?: string;
  scope?: string;
  error?: string;
}

const FORM = { 'content-type': 'application/x-www-form-urlencoded' };

async function postForm(url: string, form: Record<string, string>, headers: Record<string, string> = {}) {
  const res = await request(url, {
    method: 'POST',
    headers: { ...FORM, ...headers },
    body: new URLSearchParams(form).toString(),
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
