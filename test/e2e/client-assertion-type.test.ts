/**
 * `client_assertion_type` beside `client_assertion_file`, end to end through the real proxy.
 *
 * The real authorization server of the suite (oidc-provider) knows RFC 7523's jwt-bearer only: it
 * takes a ready assertion whose type is configured explicitly as jwt-bearer, and it refuses the
 * SPIFFE type (draft-ietf-oauth-spiffe-client-auth) by name, which shows the configured type is
 * what reaches the server. No server at hand verifies JWT-SVIDs, so the SPIFFE request itself is
 * checked field by field at a recording token endpoint, the one fake the suite allows.
 */
import { mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type AuthServer, startAuthServer } from '../support/auth-server.js';
import {
  CLIENT_ASSERTION_TYPE,
  type ClientKeyPair,
  clientAssertion,
  generateClientKey,
  privateKeyJwtClient,
} from '../support/client-keys.js';
import { type FakeTokenEndpoint, startFakeTokenEndpoint } from '../support/fake-token-endpoint.js';
import { startInjector, type TestInjector } from '../support/injector.js';
import { watchSecret } from '../support/leak-watch.js';
import { startUpstream, type Upstream } from '../support/upstream.js';

const JWT_SPIFFE = 'urn:ietf:params:oauth:client-assertion-type:jwt-spiffe';
const SPIFFE_ID = 'spiffe://example.org/ns/orders/sa/orders';
const CLIENT = 'svid-file-client';

let auth: AuthServer;
let upstream: Upstream;
let key: ClientKeyPair;
let dir: string;
let proxy: TestInjector | undefined;
let fake: FakeTokenEndpoint | undefined;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'token-injector-assertion-type-'));
  key = await generateClientKey('ES256');
  watchSecret(key.privateJwk.d);
  auth = await startAuthServer({ clients: [await privateKeyJwtClient(CLIENT, key)] });
  // Serves requests whatever their token, recording whether it verified: the fake's tokens do not.
  upstream = await startUpstream({
    issuer: auth.issuer,
    jwksUri: auth.jwksUri,
    audience: auth.audience,
    requireToken: false,
  });
});

afterEach(async () => {
  await proxy?.close();
  proxy = undefined;
  for (const token of fake?.issuedTokens ?? []) watchSecret(token);
  await fake?.close();
  fake = undefined;
});

afterAll(async () => {
  for (const token of auth?.issuedTokens ?? []) watchSecret(token);
  await upstream?.close();
  await auth?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** Writes a sibling and renames it over `path`, as spiffe-helper and the kubelet replace files. */
async function replaceFile(path: string, content: string): Promise<void> {
  await writeFile(`${path}.tmp`, content, { mode: 0o600 });
  await rename(`${path}.tmp`, path);
}

/** A JWT-SVID as a SPIRE agent issues it (sub = SPIFFE ID, aud = the server's issuer, no jti). */
async function svid(audience: string, expiresIn = 300): Promise<string> {
  const token = await clientAssertion({
    clientId: SPIFFE_ID,
    audience,
    key,
    expiresIn,
    claims: { iss: undefined, jti: undefined },
  });
  watchSecret(token);
  return token;
}

/** Two routes over one credential with different scopes, so each makes its own token request. */
async function start(credential: Record<string, unknown>): Promise<TestInjector> {
  proxy = await startInjector({
    credentials: { c: { grant_type: 'client_credentials', auth_method: 'private_key_jwt', ...credential } },
    routes: [
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

async function call(route: string) {
  const res = await request(`${proxy!.url}/v1/orders`, { headers: { host: `${route}.test` } });
  const text = await res.body.text();
  return { status: res.statusCode, text, body: JSON.parse(text) as Record<string, unknown> };
}

describe('client_assertion_type against the real authorization server', () => {
  it('jwt-bearer written out is the default: the ready assertion is accepted and the token verifies', async () => {
    const path = join(dir, 'bearer.jwt');
    const assertion = await clientAssertion({
      clientId: CLIENT,
      audience: auth.tokenEndpoint,
      key,
      expiresIn: 600,
    });
    watchSecret(assertion);
    await writeFile(path, `${assertion}\n`, { mode: 0o600 });
    await start({
      token_endpoint: auth.tokenEndpoint,
      client_id: CLIENT,
      client_assertion_file: path,
      client_assertion_type: CLIENT_ASSERTION_TYPE,
    });
    const before = auth.tokenRequests.length;
    const res = await call('read');
    expect(res.status, res.text).toBe(200);
    const sent = auth.tokenRequests.slice(before);
    expect(sent).toHaveLength(1);
    expect(sent[0]!.status).toBe(200);
    expect(sent[0]!.form).toEqual({
      grant_type: 'client_credentials',
      scope: 'orders.read',
      client_id: CLIENT,
      client_assertion_type: CLIENT_ASSERTION_TYPE,
      client_assertion: assertion,
    });
    const received = upstream.requests.at(-1)!;
    expect(received.tokenValid).toBe(true);
    expect(received.headers.authorization).toBe(`Bearer ${auth.issuedTokens.at(-1)}`);
    expect(received.claims?.['client_id']).toBe(CLIENT);
  });

  it('jwt-spiffe reaches the server as configured; a server without SPIFFE support refuses it by name', async () => {
    const path = join(dir, 'refused-svid.token');
    await writeFile(path, await svid(auth.issuer), { mode: 0o600 });
    await start({
      token_endpoint: auth.tokenEndpoint,
      client_id: CLIENT,
      client_assertion_file: path,
      client_assertion_type: JWT_SPIFFE,
    });
    const tokensBefore = auth.tokenRequests.length;
    const upstreamBefore = upstream.requests.length;
    const res = await call('read');
    expect(res.status).toBe(502);
    expect(res.body).toMatchObject({ error: 'token_endpoint_rejected', credential: 'c', route: 'read' });
    const sent = auth.tokenRequests.slice(tokensBefore);
    expect(sent.length).toBeGreaterThan(0);
    for (const s of sent) {
      expect(s.status).toBe(400);
      expect(s.form['client_assertion_type']).toBe(JWT_SPIFFE);
    }
    expect(proxy!.logs.filter((l) => l['event'] === 'token_failed').at(-1)).toMatchObject({
      error: 'token_endpoint_rejected',
      status: 400,
      oauth_error: 'invalid_request',
    });
    expect(upstream.requests.length).toBe(upstreamBefore);
  });
});

describe('a SPIFFE JWT-SVID as client assertion (draft-ietf-oauth-spiffe-client-auth §3.1)', () => {
  it('sends the SVID spiffe-helper wrote, as it is, under jwt-spiffe, and the next one after rotation', async () => {
    fake = await startFakeTokenEndpoint();
    const audience = 'https://sso.example.com/realms/acme';
    const path = join(dir, 'jwt_svid.token');
    const first = await svid(audience);
    // spiffe-helper writes the token without a trailing newline.
    await writeFile(path, first, { mode: 0o600 });
    await start({
      token_endpoint: fake.url,
      client_id: SPIFFE_ID,
      client_assertion_file: path,
      client_assertion_type: JWT_SPIFFE,
    });

    const read = await call('read');
    expect(read.status, read.text).toBe(200);
    expect(fake.requests).toHaveLength(1);
    const [sent] = fake.requests;
    expect(sent!.form).toEqual({
      grant_type: 'client_credentials',
      scope: 'orders.read',
      client_id: SPIFFE_ID,
      client_assertion_type: JWT_SPIFFE,
      client_assertion: first,
    });
    // No other client credential travels with it.
    expect(sent!.headers['authorization']).toBeUndefined();
    expect(sent!.headers['content-type']).toBe('application/x-www-form-urlencoded');
    expect(upstream.requests.at(-1)!.headers.authorization).toBe(`Bearer ${fake.issuedTokens[0]}`);

    // Renewed later, so it expires later: a different token.
    const second = await svid(audience, 600);
    expect(second).not.toBe(first);
    await replaceFile(path, second);
    const write = await call('write');
    expect(write.status, write.text).toBe(200);
    expect(fake.requests).toHaveLength(2);
    expect(fake.requests[1]!.form).toMatchObject({
      scope: 'orders.write',
      client_assertion_type: JWT_SPIFFE,
      client_assertion: second,
    });
    expect(upstream.requests.at(-1)!.headers.authorization).toBe(`Bearer ${fake.issuedTokens[1]}`);
  });
});
