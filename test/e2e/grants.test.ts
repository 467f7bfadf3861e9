/**
 * Every grant end to end: the real proxy, the real authorization server (oidc-provider with the test
 * grants) and an upstream that verifies the tokens it receives. Each test checks the exact form the
 * server received and the claims of the token the upstream accepted.
 */
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { decodeJwt, decodeProtectedHeader, jwtVerify, SignJWT } from 'jose';
import { request } from 'undici';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { nextArrival as arrival } from '../support/arrivals.js';
import {
  type AuthServer,
  BASIC_CLIENT,
  basicAuthorization,
  clientMetadata,
  GRANT_TYPES,
  POST_CLIENT,
  type RecordedTokenRequest,
  startAuthServer,
  TOKEN_TYPES,
} from '../support/auth-server.js';
import {
  CLIENT_ASSERTION_TYPE,
  type ClientKeyPair,
  generateClientKey,
  type KeyFiles,
  privateKeyJwtClient,
  writeKeyFiles,
} from '../support/client-keys.js';
import { startInjector, type TestInjector } from '../support/injector.js';
import { watchSecret } from '../support/leak-watch.js';
import { buildSamlAssertionXml, encodeSamlAssertion } from '../support/saml.js';
import { startTokenGate } from '../support/token-gate.js';
import {
  type EchoResponse,
  type ReceivedRequest,
  startUpstream,
  type Upstream,
} from '../support/upstream.js';

const ALL_GRANTS = Object.values(GRANT_TYPES);
const LEGACY = { username: 'svc-legacy', password: 'legacy-password-0123456789' };
/** The issuer of the assertions token-injector signs itself (source: sign). */
const PARTNER_ISSUER = 'https://partner.example.test';
/** The issuer of the end users' assertions apps send in a header (source: request_header). */
const USER_ISSUER = 'https://users.example.test';
const PKJWT_CLIENT = 'exchange-key-client';
/** A second resource server, reachable only with tokens exchanged for it (audience/resource). */
const DOWNSTREAM = 'https://downstream.test';
const DOWNSTREAM_API = 'https://downstream.test/api';
const BASE64URL = /^[A-Za-z0-9_-]+$/;

let auth: AuthServer;
let upstream: Upstream;
let downstream: Upstream;
let partnerKey: ClientKeyPair;
let partnerFiles: KeyFiles;
let userKey: ClientKeyPair;
let untrustedKey: ClientKeyPair;
let clientKey: ClientKeyPair;
let clientKeyFiles: KeyFiles;
let dir: string;
let proxy: TestInjector | undefined;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'token-injector-grants-'));
  [partnerKey, userKey, untrustedKey, clientKey] = await Promise.all([
    generateClientKey('ES256'),
    generateClientKey('ES256'),
    generateClientKey('ES256'),
    generateClientKey('ES256'),
  ]);
  [partnerFiles, clientKeyFiles] = await Promise.all([
    writeKeyFiles(partnerKey, { dir }),
    writeKeyFiles(clientKey, { dir }),
  ]);
  auth = await startAuthServer({
    users: [LEGACY],
    jwtBearerIssuers: [
      { issuer: PARTNER_ISSUER, publicKey: partnerKey.publicJwk },
      { issuer: USER_ISSUER, publicKey: userKey.publicJwk },
    ],
    exchangeAudiences: [DOWNSTREAM, DOWNSTREAM_API],
    clients: [
      clientMetadata(BASIC_CLIENT, { grant_types: ALL_GRANTS }),
      clientMetadata(POST_CLIENT, { grant_types: ALL_GRANTS }),
      await privateKeyJwtClient(PKJWT_CLIENT, clientKey, { grant_types: ALL_GRANTS }),
    ],
  });
  [upstream, downstream] = await Promise.all([
    startUpstream({ issuer: auth.issuer, jwksUri: auth.jwksUri, audience: auth.audience }),
    startUpstream({ issuer: auth.issuer, jwksUri: auth.jwksUri, audience: DOWNSTREAM }),
  ]);
});

afterEach(async () => {
  await proxy?.close();
  proxy = undefined;
  auth.setAccessTokenTtl(300);
});

afterAll(async () => {
  for (const token of [...(auth?.issuedTokens ?? []), ...(auth?.issuedRefreshTokens ?? [])])
    watchSecret(token);
  await upstream?.close();
  await downstream?.close();
  await auth?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

// ---------------------------------------------------------------------------------------------
// Helpers

/** A credential of the test server: BASIC_CLIENT (client_secret_basic) unless `extra` says otherwise. */
function credential(extra: Record<string, unknown>) {
  return {
    token_endpoint: auth.tokenEndpoint,
    client_id: BASIC_CLIENT.id,
    client_secret: BASIC_CLIENT.secret,
    ...extra,
  };
}

const postClient = {
  client_id: POST_CLIENT.id,
  client_secret: POST_CLIENT.secret,
  auth_method: 'client_secret_post',
};

/** A route for host `${name}.test`. */
function route(name: string, cred: string, extra: Record<string, unknown> = {}) {
  return { name, match: { host: `${name}.test` }, upstream: upstream.url, credential: cred, ...extra };
}

interface Answer {
  status: number;
  body: EchoResponse & Record<string, unknown>;
}

async function call(host: string, headers: Record<string, string> = {}): Promise<Answer> {
  const res = await request(`${proxy!.url}/v1/items`, { headers: { host, ...headers } });
  return { status: res.statusCode, body: (await res.body.json()) as Answer['body'] };
}

/** Token requests the server received since `start` (an earlier `auth.tokenRequests.length`). */
function since(start: number): RecordedTokenRequest[] {
  return auth.tokenRequests.slice(start);
}

/** The access token the server issued in answer to this (successful) token request. */
function issuedFor(record: RecordedTokenRequest): string {
  // Both arrays are pushed together, for every 200 answer of the token endpoint.
  const token = auth.issuedTokens[auth.tokenRequests.filter((r) => r.status === 200).indexOf(record)];
  if (!token) throw new Error('no token was issued for that token request');
  return token;
}

function bearer(received: ReceivedRequest | undefined): string | undefined {
  return received?.headers.authorization?.replace(/^Bearer /, '');
}

/** An end user's assertion as an app would send it, signed by the trusted user issuer. */
async function userAssertion(
  sub: string,
  opts: { key?: ClientKeyPair; expiresIn?: number } = {},
): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  const jwt = await new SignJWT({
    iss: USER_ISSUER,
    sub,
    aud: auth.tokenEndpoint,
    iat: now,
    exp: now + (opts.expiresIn ?? 300),
    jti: randomUUID(),
  })
    .setProtectedHeader({ alg: 'ES256', typ: 'JWT' })
    .sign((opts.key ?? userKey).privateKey);
  watchSecret(jwt);
  return jwt;
}

async function mintedToken(sub: string): Promise<string> {
  const token = await auth.mintAccessToken({ sub });
  watchSecret(token);
  return token;
}

function samlXml(subject: string, notOnOrAfter?: Date): string {
  const xml = buildSamlAssertionXml({
    subject,
    audience: auth.tokenEndpoint,
    ...(notOnOrAfter ? { notOnOrAfter } : {}),
  });
  watchSecret(xml);
  watchSecret(encodeSamlAssertion(xml));
  return xml;
}

async function writeSecretFile(name: string, content: string): Promise<string> {
  const path = join(dir, `${name}-${randomUUID()}`);
  await writeFile(path, content, { mode: 0o600 });
  return path;
}

/** Header names the upstream received, lower-case. */
function rawHeaderNames(received: ReceivedRequest): string[] {
  return received.rawHeaders.filter((_, i) => i % 2 === 0).map((h) => h.toLowerCase());
}

/** Rejects, naming `what`, if the promise has not settled within 10 s: no test hangs until its timeout. */
function within<T>(promise: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), 10_000);
  });
  const bounded = Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
  // Handled here too: a test that fails before awaiting it must not leave an unhandled rejection.
  bounded.catch(() => {});
  return bounded;
}

/** The next item pushed to `array` that matches (see {@link arrival}), within 10 s. */
function nextArrival<T>(array: T[], match: (item: T) => boolean, what: string): Promise<T> {
  return within(arrival(array, match), what);
}

/** Bounded polling, only where nothing observable is emitted (the proxy's own clock decides). */
async function waitFor(check: () => Promise<boolean>, what: string): Promise<void> {
  for (let i = 0; i < 500; i++) {
    if (await check()) return;
    await delay(10);
  }
  throw new Error(`timed out waiting until ${what}`);
}

/** Waits until /readyz reports this state for the credential, e.g. `expired`. */
function waitForTokenState(name: string, state: string): Promise<void> {
  return waitFor(async () => {
    const res = await request(`${proxy!.adminUrl}/readyz`);
    const body = (await res.body.json()) as { credentials: Record<string, string> };
    return body.credentials[name] === state;
  }, `credential ${name} is ${state}`);
}

/** The credential's token cache misses: requests that found no usable token and had to wait. */
async function cacheMisses(name: string): Promise<number> {
  const text = await (await request(`${proxy!.adminUrl}/metrics`)).body.text();
  const line = text
    .split('\n')
    .find((l) => l.startsWith(`token_injector_token_cache_misses_total{credential="${name}"}`));
  return line ? Number(line.split(' ').at(-1)) : 0;
}

// ---------------------------------------------------------------------------------------------

describe('password (RFC 6749 §4.3) with refresh tokens (§6)', () => {
  const passwordCredential = (extra: Record<string, unknown> = {}) =>
    credential({
      grant_type: 'password',
      username: LEGACY.username,
      password: LEGACY.password,
      scope: 'orders.read offline_access',
      ...extra,
    });
  const passwordForm = {
    grant_type: 'password',
    username: LEGACY.username,
    password: LEGACY.password,
    scope: 'orders.read offline_access',
  };

  it('password first, then the refresh token, then the rotated one; a revoked refresh token falls back to the password within the waiting app request', async () => {
    // In front of the real server: holds the background refresh that meets the revoked token (step 4).
    const gate = await startTokenGate(auth.tokenEndpoint);
    try {
      auth.setAccessTokenTtl(2);
      proxy = await startInjector({
        credentials: { legacy: passwordCredential({ token_endpoint: gate.url }) },
        routes: [route('legacy', 'legacy')],
      });
      const logs = proxy.logs;
      const start = auth.tokenRequests.length;
      const refreshTokensBefore = auth.issuedRefreshTokens.length;
      const firstRefresh = nextArrival(
        auth.tokenRequests,
        (r) => r.form['grant_type'] === 'refresh_token',
        'the first refresh',
      );
      const firstRefreshUsed = nextArrival(
        logs,
        (l) => l['event'] === 'token_fetched' && l['grant_type'] === 'refresh_token',
        'the first refreshed token',
      );

      // 1. The first token: the password grant, the client authenticated with Basic.
      const first = await call('legacy.test');
      expect(first.status).toBe(200);
      expect(since(start)).toHaveLength(1);
      const byPassword = since(start)[0]!;
      expect(byPassword.form).toEqual(passwordForm);
      expect(byPassword.headers.authorization).toBe(basicAuthorization(BASIC_CLIENT.id, BASIC_CLIENT.secret));
      expect(first.body.claims).toMatchObject({
        sub: LEGACY.username,
        client_id: BASIC_CLIENT.id,
        scope: 'orders.read offline_access',
      });
      expect(bearer(upstream.requests.at(-1))).toBe(issuedFor(byPassword));
      expect(auth.issuedRefreshTokens.length - refreshTokensBefore).toBe(1);
      const rt1 = auth.issuedRefreshTokens.at(-1)!;
      // Served from the cache, the token is in use: it is refreshed ahead (an idle one is not).
      expect((await call('legacy.test')).status).toBe(200);

      // 2. Refreshed ahead of expiry with the refresh token: no password in the form.
      const refresh1 = await firstRefresh;
      expect(refresh1.form).toEqual({ grant_type: 'refresh_token', refresh_token: rt1 });
      expect(refresh1.headers.authorization).toBe(basicAuthorization(BASIC_CLIENT.id, BASIC_CLIENT.secret));
      expect(refresh1.status).toBe(200);
      const rt2 = auth.issuedRefreshTokens.at(-1)!;
      expect(rt2).not.toBe(rt1);
      await firstRefreshUsed;
      const secondRefresh = nextArrival(
        auth.tokenRequests,
        (r) => r.form['grant_type'] === 'refresh_token',
        'the second refresh',
      );
      const secondRefreshUsed = nextArrival(
        logs,
        (l) => l['event'] === 'token_fetched' && l['grant_type'] === 'refresh_token',
        'the second refreshed token',
      );
      const second = await call('legacy.test');
      expect(second.status).toBe(200);
      expect(second.body.claims).toMatchObject({ sub: LEGACY.username, scope: 'orders.read offline_access' });
      expect(bearer(upstream.requests.at(-1))).toBe(issuedFor(refresh1));

      // 3. The next refresh uses the rotated refresh token.
      const refresh2 = await secondRefresh;
      expect(refresh2.form).toEqual({ grant_type: 'refresh_token', refresh_token: rt2 });
      expect(refresh2.status).toBe(200);
      const rt3 = auth.issuedRefreshTokens.at(-1)!;
      expect(new Set([rt1, rt2, rt3]).size).toBe(3);
      const thirdRefresh = within(
        gate.holdNext((form) => form['grant_type'] === 'refresh_token'),
        'the third refresh',
      );
      await secondRefreshUsed;
      const third = await call('legacy.test');
      expect(third.status).toBe(200);
      expect(bearer(upstream.requests.at(-1))).toBe(issuedFor(refresh2));

      // 4. A server-side logout revokes every refresh token. The background refresh (carrying the
      // revoked rt3) is held until the cached token can no longer be served, so an app request
      // now has to wait for that very fetch. Released, it is rejected (invalid_grant) and falls
      // back to the password inside the same fetch: the waiting app request gets 200.
      auth.revokeRefreshTokens();
      const held = await thirdRefresh;
      expect(held.form).toEqual({ grant_type: 'refresh_token', refresh_token: rt3 });
      await waitForTokenState('legacy', 'expired');
      const missesBefore = await cacheMisses('legacy');
      const upstreamBefore = upstream.requests.length;
      const pending = call('legacy.test');
      await waitFor(
        async () => (await cacheMisses('legacy')) > missesBefore,
        'the app request waits for a token',
      );
      expect(upstream.requests.length).toBe(upstreamBefore);
      const before = auth.tokenRequests.length;
      held.forward();
      const fourth = await pending;
      expect(fourth.status).toBe(200);
      const renewal = since(before);
      expect(renewal.map((r) => [r.form['grant_type'], r.status])).toEqual([
        ['refresh_token', 400],
        ['password', 200],
      ]);
      expect(renewal[0]!.form).toEqual({ grant_type: 'refresh_token', refresh_token: rt3 });
      expect(renewal[1]!.form).toEqual(passwordForm);
      expect(upstream.requests.length - upstreamBefore).toBe(1);
      expect(fourth.body.claims).toMatchObject({ sub: LEGACY.username, client_id: BASIC_CLIENT.id });
      expect(bearer(upstream.requests.at(-1))).toBe(issuedFor(renewal[1]!));
      expect(logs).toContainEqual(
        expect.objectContaining({
          event: 'token_failed',
          grant_type: 'refresh_token',
          oauth_error: 'invalid_grant',
          oauth_error_description: 'refresh token was revoked',
        }),
      );

      // Refresh tokens are secrets: never in any log line (also checked suite-wide).
      for (const rt of auth.issuedRefreshTokens) watchSecret(rt);
      const lines = logs.map((l) => JSON.stringify(l));
      for (const rt of auth.issuedRefreshTokens) {
        expect(lines.filter((line) => line.includes(rt))).toEqual([]);
      }
    } finally {
      await proxy?.close();
      proxy = undefined;
      await gate.close();
    }
  });

  it('a wrong password: 502 token_endpoint_rejected with invalid_grant, and no upstream call', async () => {
    proxy = await startInjector({
      credentials: { legacy: passwordCredential({ password: 'wrong-password-0123456789' }) },
      routes: [route('legacy', 'legacy')],
    });
    const start = auth.tokenRequests.length;
    const upstreamBefore = upstream.requests.length;
    const res = await call('legacy.test');
    expect(res.status).toBe(502);
    expect(res.body).toMatchObject({
      error: 'token_endpoint_rejected',
      credential: 'legacy',
      route: 'legacy',
    });
    expect(res.body['detail']).toContain('invalid_grant');
    expect(since(start).map((r) => [r.form['grant_type'], r.form['username'], r.status])).toEqual([
      ['password', LEGACY.username, 400],
    ]);
    expect(upstream.requests.length).toBe(upstreamBefore);
  });
});

describe('jwt_bearer (RFC 7523 §2.1)', () => {
  it('source sign: the proxy signs the assertion with its key file; the token is for the configured subject', async () => {
    proxy = await startInjector({
      credentials: {
        partner: credential({
          grant_type: 'jwt_bearer',
          scope: 'orders.read',
          assertion: {
            source: 'sign',
            private_key_file: partnerFiles.pkcs8,
            key_id: 'partner-1',
            issuer: PARTNER_ISSUER,
            subject: 'batch@partner.test',
            lifetime: '2m',
            claims: { tenant: 'acme' },
          },
        }),
      },
      routes: [route('partner', 'partner')],
    });
    const start = auth.tokenRequests.length;
    const res = await call('partner.test');
    expect(res.status).toBe(200);
    expect(since(start)).toHaveLength(1);
    const sent = since(start)[0]!;
    const assertion = sent.form['assertion']!;
    watchSecret(assertion);
    expect(sent.form).toEqual({ grant_type: GRANT_TYPES.jwtBearer, assertion, scope: 'orders.read' });
    expect(sent.status).toBe(200);
    // Signed with the configured key; iss, sub and the default aud (the token endpoint URL).
    const { payload, protectedHeader } = await jwtVerify(assertion, partnerKey.publicKey, {
      issuer: PARTNER_ISSUER,
      subject: 'batch@partner.test',
      audience: auth.tokenEndpoint,
    });
    expect(protectedHeader).toMatchObject({ alg: 'ES256', kid: 'partner-1', typ: 'JWT' });
    expect(payload).toMatchObject({ tenant: 'acme', aud: auth.tokenEndpoint });
    expect(payload.jti).toEqual(expect.any(String));
    expect(payload.exp! - payload.iat!).toBe(120);
    expect(res.body.claims).toMatchObject({
      sub: 'batch@partner.test',
      client_id: BASIC_CLIENT.id,
      scope: 'orders.read',
      aud: auth.audience,
    });
    expect(bearer(upstream.requests.at(-1))).toBe(issuedFor(sent));
  });

  it('source file: the assertion file is re-read at each token request', async () => {
    const v1 = await userAssertion('file-user-1');
    const v2 = await userAssertion('file-user-2');
    const file = await writeSecretFile('assertion.jwt', `${v1}\n`);
    auth.setAccessTokenTtl(2);
    proxy = await startInjector({
      credentials: {
        filed: credential({ grant_type: 'jwt_bearer', assertion: { source: 'file', path: file } }),
      },
      routes: [route('filed', 'filed')],
    });
    const start = auth.tokenRequests.length;
    const first = await call('filed.test');
    expect(first.status).toBe(200);
    expect(since(start).map((r) => r.form)).toEqual([{ grant_type: GRANT_TYPES.jwtBearer, assertion: v1 }]);
    expect(first.body.claims).toMatchObject({ sub: 'file-user-1', client_id: BASIC_CLIENT.id });
    // Served from the cache, the token is in use: it is refreshed ahead (an idle one is not).
    expect((await call('filed.test')).status).toBe(200);

    // The file changes (as a kubelet rotates a projected token); the next refresh sends the new one.
    const withV2 = nextArrival(
      auth.tokenRequests,
      (r) => r.form['assertion'] === v2,
      'a token request with the new file content',
    );
    await writeFile(file, `${v2}\n`);
    const refreshed = await withV2;
    expect(refreshed.form).toEqual({ grant_type: GRANT_TYPES.jwtBearer, assertion: v2 });
    expect(refreshed.status).toBe(200);
    const used = nextArrival(proxy.logs, (l) => l['event'] === 'token_fetched', 'the new token');
    await used;
    const second = await call('filed.test');
    expect(second.status).toBe(200);
    expect(second.body.claims).toMatchObject({ sub: 'file-user-2' });
  });

  describe('source request_header', () => {
    const start = (extra: Record<string, unknown> = {}) =>
      startInjector({
        credentials: {
          obo: credential({
            grant_type: 'jwt_bearer',
            assertion: { source: 'request_header', header: 'X-User-Assertion', ...extra },
          }),
        },
        routes: [route('obo', 'obo')],
      });

    it("exchanges the app's assertion: one token per user, cached per assertion, the header never forwarded", async () => {
      proxy = await start();
      const alice = await userAssertion('alice');
      const bob = await userAssertion('bob');
      const before = auth.tokenRequests.length;
      const upstreamBefore = upstream.requests.length;
      const answers: Answer[] = [];
      for (const assertion of [alice, bob, alice]) {
        answers.push(await call('obo.test', { 'X-User-Assertion': assertion }));
      }
      expect(answers.map((a) => a.status)).toEqual([200, 200, 200]);
      const sent = since(before);
      expect(sent.map((r) => r.form)).toEqual([
        { grant_type: GRANT_TYPES.jwtBearer, assertion: alice },
        { grant_type: GRANT_TYPES.jwtBearer, assertion: bob },
      ]);
      expect(answers.map((a) => a.body.claims?.sub)).toEqual(['alice', 'bob', 'alice']);
      const received = upstream.requests.slice(upstreamBefore);
      expect(received.map(bearer)).toEqual([issuedFor(sent[0]!), issuedFor(sent[1]!), issuedFor(sent[0]!)]);
      for (const r of received) {
        expect(r.tokenValid).toBe(true);
        expect(r.headers['x-user-assertion']).toBeUndefined();
        expect(rawHeaderNames(r)).not.toContain('x-user-assertion');
      }

      // A new user's concurrent requests share one token request.
      const carol = await userAssertion('carol');
      const concurrent = auth.tokenRequests.length;
      const statuses = await Promise.all(
        Array.from({ length: 8 }, async () => (await call('obo.test', { 'X-User-Assertion': carol })).status),
      );
      expect(statuses).toEqual(Array(8).fill(200));
      expect(since(concurrent).map((r) => r.form['assertion'])).toEqual([carol]);
    });

    it('a request without the header: 401 assertion_missing, no token request, no upstream call', async () => {
      proxy = await start();
      const before = auth.tokenRequests.length;
      const upstreamBefore = upstream.requests.length;
      const res = await call('obo.test');
      expect(res.status).toBe(401);
      expect(res.body).toMatchObject({ error: 'assertion_missing', route: 'obo' });
      expect(since(before)).toEqual([]);
      expect(upstream.requests.length).toBe(upstreamBefore);
    });

    it('an expired assertion: 401 assertion_expired without a token request', async () => {
      proxy = await start();
      const expired = await userAssertion('late-user', { expiresIn: -60 });
      const before = auth.tokenRequests.length;
      const upstreamBefore = upstream.requests.length;
      const res = await call('obo.test', { 'X-User-Assertion': expired });
      expect(res.status).toBe(401);
      expect(res.body).toMatchObject({ error: 'assertion_expired', route: 'obo' });
      expect(since(before)).toEqual([]);
      expect(upstream.requests.length).toBe(upstreamBefore);
    });

    it('an assertion the server rejects (untrusted signing key): 502 with invalid_grant', async () => {
      proxy = await start();
      const forged = await userAssertion('mallory', { key: untrustedKey });
      const before = auth.tokenRequests.length;
      const upstreamBefore = upstream.requests.length;
      const res = await call('obo.test', { 'X-User-Assertion': forged });
      expect(res.status).toBe(502);
      expect(res.body).toMatchObject({ error: 'token_endpoint_rejected', credential: 'obo', route: 'obo' });
      expect(res.body['detail']).toContain('invalid_grant');
      expect(since(before).map((r) => [r.form['assertion'], r.status])).toEqual([[forged, 400]]);
      expect(upstream.requests.length).toBe(upstreamBefore);
    });

    it('max_entries bounds the cache (least recently used goes): with 2 entries and 3 users the first user is fetched again', async () => {
      proxy = await start({ max_entries: 2 });
      const [u1, u2, u3] = await Promise.all(['user-1', 'user-2', 'user-3'].map((u) => userAssertion(u)));
      const before = auth.tokenRequests.length;
      const sequence = [u1!, u2!, u3!, u1!, u3!, u2!, u3!];
      const subs: unknown[] = [];
      for (const assertion of sequence) {
        const res = await call('obo.test', { 'X-User-Assertion': assertion });
        expect(res.status).toBe(200);
        subs.push(res.body.claims?.sub);
      }
      expect(subs).toEqual(['user-1', 'user-2', 'user-3', 'user-1', 'user-3', 'user-2', 'user-3']);
      // u3 evicts u1, which is fetched again and evicts u2. Using u3 makes u1 the least recently
      // used, so u2 evicts u1 (not u3, the older entry) and u3 is still cached.
      expect(since(before).map((r) => r.form['assertion'])).toEqual([u1, u2, u3, u1, u2]);
    });
  });
});

describe('saml2_bearer (RFC 7522)', () => {
  it('source file: XML, or line-wrapped base64 as the base64 tool writes it, arrives as unpadded base64url', async () => {
    const xml = samlXml('saml-file-user@example.test');
    const wrappedXml = samlXml('saml-wrapped-user@example.test');
    // 76-column lines with padding, like `base64` or a MIME encoder produce.
    const wrapped = Buffer.from(wrappedXml).toString('base64').replace(/.{76}/g, '$&\n');
    watchSecret(wrapped);
    const [xmlFile, wrappedFile] = await Promise.all([
      writeSecretFile('assertion.xml', `${xml}\n`),
      writeSecretFile('assertion.b64', `${wrapped}\n`),
    ]);
    proxy = await startInjector({
      credentials: {
        saml: credential({ grant_type: 'saml2_bearer', assertion: { source: 'file', path: xmlFile } }),
        wrapped: credential({ grant_type: 'saml2_bearer', assertion: { source: 'file', path: wrappedFile } }),
      },
      routes: [route('saml', 'saml'), route('wrapped', 'wrapped')],
    });
    const before = auth.tokenRequests.length;
    const res = await call('saml.test');
    expect(res.status).toBe(200);
    expect(bearer(upstream.requests.at(-1))).toBe(issuedFor(since(before)[0]!));
    const wrappedRes = await call('wrapped.test');
    expect(wrappedRes.status).toBe(200);
    const sent = since(before);
    expect(sent.map((r) => r.form)).toEqual([
      { grant_type: GRANT_TYPES.saml2Bearer, assertion: encodeSamlAssertion(xml) },
      { grant_type: GRANT_TYPES.saml2Bearer, assertion: encodeSamlAssertion(wrappedXml) },
    ]);
    for (const r of sent) expect(r.form['assertion']).toMatch(BASE64URL);
    expect(res.body.claims).toMatchObject({ sub: 'saml-file-user@example.test', client_id: BASIC_CLIENT.id });
    expect(wrappedRes.body.claims).toMatchObject({ sub: 'saml-wrapped-user@example.test' });
    expect(bearer(upstream.requests.at(-1))).toBe(issuedFor(sent[1]!));
  });

  it('source request_header: XML, base64 and base64url (padded or not) all arrive as unpadded base64url', async () => {
    proxy = await startInjector({
      credentials: {
        saml: credential({
          grant_type: 'saml2_bearer',
          assertion: { source: 'request_header', header: 'X-Saml-Assertion' },
        }),
      },
      routes: [route('saml', 'saml')],
    });
    // Standard base64 that really differs from base64url: with + or / and with padding.
    let b64Xml = samlXml('saml-base64-user');
    for (let i = 0; !/[+/]/.test(Buffer.from(b64Xml).toString('base64')) || b64Xml.length % 3 === 0; i++) {
      b64Xml = samlXml(`saml-base64-user-${i}`);
    }
    let paddedXml = samlXml('saml-padded-user');
    for (let i = 0; paddedXml.length % 3 === 0; i++) paddedXml = samlXml(`saml-padded-user-${i}`);
    const xmlXml = samlXml('saml-xml-user');
    const urlXml = samlXml('saml-url-user');
    const cases: [string, string][] = [
      [xmlXml, xmlXml],
      [b64Xml, Buffer.from(b64Xml).toString('base64')],
      [urlXml, Buffer.from(urlXml).toString('base64url')],
      [paddedXml, `${Buffer.from(paddedXml).toString('base64url')}${'='.repeat(3 - (paddedXml.length % 3))}`],
    ];
    for (const [, value] of cases) watchSecret(value);
    expect(cases[1]![1]).toMatch(/[+/].*=$/);
    expect(cases[3]![1]).toMatch(/=$/);

    const before = auth.tokenRequests.length;
    const upstreamBefore = upstream.requests.length;
    for (const [xml, value] of cases) {
      const res = await call('saml.test', { 'X-Saml-Assertion': value });
      expect(res.status, value.slice(0, 20)).toBe(200);
      expect(res.body.claims?.sub).toBe(/<saml:NameID[^>]*>([^<]+)</.exec(xml)![1]);
    }
    const sent = since(before);
    expect(sent.map((r) => r.form)).toEqual(
      cases.map(([xml]) => ({ grant_type: GRANT_TYPES.saml2Bearer, assertion: encodeSamlAssertion(xml) })),
    );
    for (const r of sent) {
      expect(r.form['assertion']).toMatch(BASE64URL);
      expect(r.status).toBe(200);
    }
    for (const r of upstream.requests.slice(upstreamBefore)) {
      expect(r.tokenValid).toBe(true);
      expect(rawHeaderNames(r)).not.toContain('x-saml-assertion');
    }
  });

  it('an assertion whose NotOnOrAfter has passed: 401 assertion_expired without a token request', async () => {
    proxy = await startInjector({
      credentials: {
        saml: credential({
          grant_type: 'saml2_bearer',
          assertion: { source: 'request_header', header: 'X-Saml-Assertion' },
        }),
      },
      routes: [route('saml', 'saml')],
    });
    const stale = encodeSamlAssertion(samlXml('saml-late-user', new Date(Date.now() - 60_000)));
    const before = auth.tokenRequests.length;
    const upstreamBefore = upstream.requests.length;
    const res = await call('saml.test', { 'X-Saml-Assertion': stale });
    expect(res.status).toBe(401);
    expect(res.body).toMatchObject({ error: 'assertion_expired', route: 'saml' });
    expect(since(before)).toEqual([]);
    expect(upstream.requests.length).toBe(upstreamBefore);
  });

  it('a value that is neither XML nor base64 XML: 400 assertion_invalid each time, no token request', async () => {
    proxy = await startInjector({
      credentials: {
        saml: credential({
          grant_type: 'saml2_bearer',
          assertion: { source: 'request_header', header: 'X-Saml-Assertion' },
        }),
      },
      routes: [route('saml', 'saml')],
    });
    const before = auth.tokenRequests.length;
    const upstreamBefore = upstream.requests.length;
    // The app's mistake, not the token endpoint's: the same answer however often it is repeated.
    for (let i = 0; i < 2; i++) {
      const res = await call('saml.test', { 'X-Saml-Assertion': 'not-a-saml-assertion' });
      expect([res.status, res.body['error']], `attempt ${i + 1}`).toEqual([400, 'assertion_invalid']);
    }
    expect(since(before)).toEqual([]);
    expect(upstream.requests.length).toBe(upstreamBefore);
  });
});

describe('token_exchange (RFC 8693)', () => {
  it("subject_token from another credential: a client_credentials credential's token is the subject", async () => {
    proxy = await startInjector({
      credentials: {
        service: credential({ grant_type: 'client_credentials', scope: 'orders.read' }),
        exchange: credential({
          ...postClient,
          grant_type: 'token_exchange',
          subject_token: { source: 'credential', credential: 'service', type: 'access_token' },
        }),
      },
      routes: [route('exchange', 'exchange')],
    });
    const before = auth.tokenRequests.length;
    const res = await call('exchange.test');
    expect(res.status).toBe(200);
    const sent = since(before);
    expect(sent).toHaveLength(2);
    const [subjectRequest, exchangeRequest] = sent as [RecordedTokenRequest, RecordedTokenRequest];
    expect(subjectRequest.form).toEqual({ grant_type: 'client_credentials', scope: 'orders.read' });
    const subjectToken = issuedFor(subjectRequest);
    expect(exchangeRequest.form).toEqual({
      grant_type: GRANT_TYPES.tokenExchange,
      subject_token: subjectToken,
      subject_token_type: TOKEN_TYPES.accessToken,
      client_id: POST_CLIENT.id,
      client_secret: POST_CLIENT.secret,
    });
    // The subject of a client_credentials token is that client; the new token is about it, for us.
    expect(decodeJwt(subjectToken).sub).toBe(BASIC_CLIENT.id);
    expect(res.body.claims).toMatchObject({ sub: BASIC_CLIENT.id, client_id: POST_CLIENT.id });
    expect(bearer(upstream.requests.at(-1))).toBe(issuedFor(exchangeRequest));

    // The exchanged token is cached: the next app request needs no token request at all.
    const again = auth.tokenRequests.length;
    expect((await call('exchange.test')).status).toBe(200);
    expect(since(again)).toEqual([]);
  });

  it('subject and actor tokens from files, with requested_token_type, audience and resource', async () => {
    const subjectToken = await mintedToken('file-subject');
    const actorToken = await mintedToken('actor-service');
    const [subjectFile, actorFile] = await Promise.all([
      writeSecretFile('subject-token', `${subjectToken}\n`),
      writeSecretFile('actor-token', actorToken),
    ]);
    proxy = await startInjector({
      credentials: {
        exchange: credential({
          grant_type: 'token_exchange',
          subject_token: { source: 'file', path: subjectFile, type: 'access_token' },
          actor_token: { source: 'file', path: actorFile, type: 'jwt' },
          requested_token_type: 'access_token',
          audience: DOWNSTREAM,
          resource: DOWNSTREAM_API,
        }),
      },
      routes: [{ ...route('downstream', 'exchange'), upstream: downstream.url }],
    });
    const before = auth.tokenRequests.length;
    const res = await call('downstream.test');
    expect(res.status).toBe(200);
    const sent = since(before);
    expect(sent.map((r) => r.form)).toEqual([
      {
        grant_type: GRANT_TYPES.tokenExchange,
        subject_token: subjectToken,
        subject_token_type: TOKEN_TYPES.accessToken,
        actor_token: actorToken,
        actor_token_type: TOKEN_TYPES.jwt,
        requested_token_type: TOKEN_TYPES.accessToken,
        audience: DOWNSTREAM,
        resource: DOWNSTREAM_API,
      },
    ]);
    // Accepted by the downstream resource server, which only takes tokens for its audience.
    expect(res.body.claims).toMatchObject({
      sub: 'file-subject',
      act: { sub: 'actor-service' },
      aud: [DOWNSTREAM, DOWNSTREAM_API],
      client_id: BASIC_CLIENT.id,
    });
    expect(bearer(downstream.requests.at(-1))).toBe(issuedFor(sent[0]!));
  });

  it('subject_token from a request header: one exchange per subject token, the header never forwarded', async () => {
    proxy = await startInjector({
      credentials: {
        exchange: credential({
          grant_type: 'token_exchange',
          subject_token: { source: 'request_header', header: 'X-Subject-Token', type: 'access_token' },
        }),
      },
      routes: [route('exchange', 'exchange')],
    });
    const first = await mintedToken('header-user-1');
    const second = await mintedToken('header-user-2');
    const before = auth.tokenRequests.length;
    const upstreamBefore = upstream.requests.length;
    const answers: Answer[] = [];
    for (const token of [first, second, first]) {
      answers.push(await call('exchange.test', { 'X-Subject-Token': token }));
    }
    expect(answers.map((a) => a.status)).toEqual([200, 200, 200]);
    expect(since(before).map((r) => r.form)).toEqual(
      [first, second].map((token) => ({
        grant_type: GRANT_TYPES.tokenExchange,
        subject_token: token,
        subject_token_type: TOKEN_TYPES.accessToken,
      })),
    );
    expect(answers.map((a) => a.body.claims?.sub)).toEqual([
      'header-user-1',
      'header-user-2',
      'header-user-1',
    ]);
    for (const r of upstream.requests.slice(upstreamBefore)) {
      expect(r.tokenValid).toBe(true);
      // The app's own token went to the token endpoint only; the upstream got the exchanged one.
      expect(rawHeaderNames(r)).not.toContain('x-subject-token');
      expect([first, second]).not.toContain(bearer(r));
    }
  });
});

describe('per-route scope overrides', () => {
  it('different scopes get their own tokens; the same scope shares one', async () => {
    proxy = await startInjector({
      credentials: {
        shared: credential({ grant_type: 'client_credentials', scope: ['orders.read', 'orders.write'] }),
      },
      routes: [
        route('reader', 'shared', { scope: 'orders.read' }),
        route('writer', 'shared', { scope: 'orders.write' }),
        route('reader2', 'shared', { scope: 'orders.read' }),
        route('default', 'shared'),
      ],
    });
    const before = auth.tokenRequests.length;
    const upstreamBefore = upstream.requests.length;
    const hosts = ['reader', 'writer', 'reader2', 'default', 'reader', 'writer'];
    const answers: Answer[] = [];
    for (const host of hosts) answers.push(await call(`${host}.test`));
    expect(answers.map((a) => a.status)).toEqual(hosts.map(() => 200));
    const sent = since(before);
    expect(sent.map((r) => r.form)).toEqual([
      { grant_type: 'client_credentials', scope: 'orders.read' },
      { grant_type: 'client_credentials', scope: 'orders.write' },
      { grant_type: 'client_credentials', scope: 'orders.read orders.write' },
    ]);
    expect(answers.map((a) => a.body.claims?.scope)).toEqual([
      'orders.read',
      'orders.write',
      'orders.read',
      'orders.read orders.write',
      'orders.read',
      'orders.write',
    ]);
    const [read, write, full] = sent.map(issuedFor);
    expect(upstream.requests.slice(upstreamBefore).map(bearer)).toEqual([
      read,
      write,
      read,
      full,
      read,
      write,
    ]);
  });

  it('a request_header credential: the same assertion on two routes with different scopes, two tokens', async () => {
    proxy = await startInjector({
      credentials: {
        obo: credential({
          grant_type: 'jwt_bearer',
          assertion: { source: 'request_header', header: 'X-User-Assertion' },
        }),
      },
      routes: [
        route('obo-read', 'obo', { scope: 'orders.read' }),
        route('obo-write', 'obo', { scope: 'orders.write' }),
      ],
    });
    const carol = await userAssertion('carol');
    const before = auth.tokenRequests.length;
    const answers: Answer[] = [];
    for (const host of ['obo-read', 'obo-write', 'obo-read', 'obo-write']) {
      answers.push(await call(`${host}.test`, { 'X-User-Assertion': carol }));
    }
    expect(answers.map((a) => [a.status, a.body.claims?.sub, a.body.claims?.scope])).toEqual([
      [200, 'carol', 'orders.read'],
      [200, 'carol', 'orders.write'],
      [200, 'carol', 'orders.read'],
      [200, 'carol', 'orders.write'],
    ]);
    expect(since(before).map((r) => r.form)).toEqual([
      { grant_type: GRANT_TYPES.jwtBearer, assertion: carol, scope: 'orders.read' },
      { grant_type: GRANT_TYPES.jwtBearer, assertion: carol, scope: 'orders.write' },
    ]);
  });
});

describe('assertion grants with client authentication other than Basic', () => {
  it('jwt_bearer from a request header with client_secret_post: the client is authenticated in the form', async () => {
    proxy = await startInjector({
      credentials: {
        obo: credential({
          ...postClient,
          grant_type: 'jwt_bearer',
          assertion: { source: 'request_header', header: 'X-User-Assertion' },
        }),
      },
      routes: [route('obo', 'obo')],
    });
    const dave = await userAssertion('dave');
    const before = auth.tokenRequests.length;
    const res = await call('obo.test', { 'X-User-Assertion': dave });
    expect(res.status).toBe(200);
    const sent = since(before);
    expect(sent.map((r) => r.form)).toEqual([
      {
        grant_type: GRANT_TYPES.jwtBearer,
        assertion: dave,
        client_id: POST_CLIENT.id,
        client_secret: POST_CLIENT.secret,
      },
    ]);
    expect(sent[0]!.headers.authorization).toBeUndefined();
    expect(res.body.claims).toMatchObject({ sub: 'dave', client_id: POST_CLIENT.id });
  });

  it('saml2_bearer with client_secret_post', async () => {
    const xml = samlXml('saml-post-user');
    const file = await writeSecretFile('assertion.xml', xml);
    proxy = await startInjector({
      credentials: {
        saml: credential({
          ...postClient,
          grant_type: 'saml2_bearer',
          assertion: { source: 'file', path: file },
        }),
      },
      routes: [route('saml', 'saml')],
    });
    const before = auth.tokenRequests.length;
    const res = await call('saml.test');
    expect(res.status).toBe(200);
    const sent = since(before);
    expect(sent.map((r) => r.form)).toEqual([
      {
        grant_type: GRANT_TYPES.saml2Bearer,
        assertion: encodeSamlAssertion(xml),
        client_id: POST_CLIENT.id,
        client_secret: POST_CLIENT.secret,
      },
    ]);
    expect(sent[0]!.headers.authorization).toBeUndefined();
    expect(res.body.claims).toMatchObject({ sub: 'saml-post-user', client_id: POST_CLIENT.id });
  });

  it('token_exchange with private_key_jwt: a signed client assertion beside the subject token', async () => {
    proxy = await startInjector({
      credentials: {
        exchange: {
          token_endpoint: auth.tokenEndpoint,
          client_id: PKJWT_CLIENT,
          auth_method: 'private_key_jwt',
          private_key_file: clientKeyFiles.pkcs8,
          grant_type: 'token_exchange',
          subject_token: { source: 'request_header', header: 'X-Subject-Token', type: 'access_token' },
        },
      },
      routes: [route('exchange', 'exchange')],
    });
    const subject = await mintedToken('erin');
    const before = auth.tokenRequests.length;
    const res = await call('exchange.test', { 'X-Subject-Token': subject });
    expect(res.status).toBe(200);
    const sent = since(before);
    expect(sent).toHaveLength(1);
    const clientAssertion = sent[0]!.form['client_assertion']!;
    watchSecret(clientAssertion);
    expect(sent[0]!.form).toEqual({
      grant_type: GRANT_TYPES.tokenExchange,
      subject_token: subject,
      subject_token_type: TOKEN_TYPES.accessToken,
      client_id: PKJWT_CLIENT,
      client_assertion_type: CLIENT_ASSERTION_TYPE,
      client_assertion: clientAssertion,
    });
    expect(sent[0]!.headers.authorization).toBeUndefined();
    const { payload } = await jwtVerify(clientAssertion, clientKey.publicKey, {
      issuer: PKJWT_CLIENT,
      subject: PKJWT_CLIENT,
      audience: auth.tokenEndpoint,
    });
    expect(payload.jti).toEqual(expect.any(String));
    expect(decodeProtectedHeader(clientAssertion).alg).toBe('ES256');
    expect(res.body.claims).toMatchObject({ sub: 'erin', client_id: PKJWT_CLIENT });
  });
});
