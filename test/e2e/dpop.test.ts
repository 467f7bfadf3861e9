// Issue 15, DPoP (RFC 9449): against the real authorization server (oidc-provider, DPoP on, with
// and without required nonces) and a resource server that verifies every proof, its `ath` and the
// token's `cnf.jkt`, the proxy's requests are all accepted; a replayed or missing proof is refused
// by that server; nonce challenges from either side are answered with exactly one retry.
import { createHash, generateKeyPairSync } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { calculateJwkThumbprint, decodeJwt, EmbeddedJWK, type JWK, jwtVerify } from 'jose';
import { request } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { type AuthServer, startAuthServer } from '../support/auth-server.js';
import { generateClientKey, privateKeyJwtClient, writeKeyFiles } from '../support/client-keys.js';
import { type DpopUpstream, startDpopUpstream } from '../support/dpop-upstream.js';
import { startInjector, type TestInjector } from '../support/injector.js';
import { watchSecret } from '../support/leak-watch.js';
import { credentialFor } from '../support/stack.js';
import { startWsUpstream } from '../support/ws-upstream.js';

const HOST = 'payments.test';

let auth: AuthServer | undefined;
let upstream: DpopUpstream | undefined;
let proxy: TestInjector | undefined;
let dir: string | undefined;

afterEach(async () => {
  await proxy?.close();
  for (const token of auth?.issuedTokens ?? []) watchSecret(token);
  await upstream?.close();
  await auth?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
  proxy = upstream = auth = dir = undefined;
});

async function start(opts: {
  serverNonce?: boolean;
  upstreamNonce?: boolean | 'always';
  dpop?: Record<string, unknown>;
  route?: Record<string, unknown>;
}): Promise<void> {
  auth = await startAuthServer({ dpop: { requireNonce: opts.serverNonce ?? false } });
  upstream = await startDpopUpstream({
    issuer: auth.issuer,
    jwksUri: auth.jwksUri,
    audience: auth.audience,
    requireNonce: opts.upstreamNonce !== undefined && opts.upstreamNonce !== false,
    ...(opts.upstreamNonce === 'always' ? { alwaysChallenge: true } : {}),
  });
  proxy = await startInjector({
    credentials: { payments: credentialFor(auth, undefined, { dpop: opts.dpop ?? {} }) },
    routes: [
      {
        name: 'payments',
        match: { host: HOST },
        upstream: upstream.url,
        credential: 'payments',
        ...opts.route,
      },
    ],
  });
}

async function call(path: string, init: { method?: string; body?: string } = {}) {
  const res = await request(`${proxy!.url}${path}`, {
    method: (init.method ?? 'GET') as 'GET',
    headers: { host: HOST, ...(init.body !== undefined ? { 'content-type': 'text/plain' } : {}) },
    ...(init.body !== undefined ? { body: init.body } : {}),
  });
  return { status: res.statusCode, text: await res.body.text() };
}

function tokenRequests() {
  return auth!.tokenRequests;
}

describe('DPoP against oidc-provider and a verifying resource server', () => {
  it('binds the token to the key and sends a fresh proof with every request, never as Bearer', async () => {
    await start({});
    const answers = [
      await call('/v1/payments?limit=5#ignored'),
      await call('/v1/payments', { method: 'POST', body: 'amount=10' }),
      await call('/v1/payments/42', { method: 'DELETE' }),
    ];
    expect(answers.map((a) => a.status)).toEqual([200, 200, 200]);
    expect(upstream!.requests.map((r) => r.verdict)).toEqual(['ok', 'ok', 'ok']);

    // One token request, with a proof for the token endpoint; the token came back bound to it.
    expect(tokenRequests()).toHaveLength(1);
    const tr = tokenRequests()[0]!;
    expect(tr.status).toBe(200);
    const tokenProof = decodeJwt(tr.headers['dpop'] as string);
    expect(tokenProof).toMatchObject({ htm: 'POST', htu: auth!.tokenEndpoint });
    expect(tokenProof['ath']).toBeUndefined();

    const [first, second, third] = upstream!.requests;
    const jkt = await calculateJwkThumbprint(first!.proof!.header['jwk'] as JWK);
    expect((first!.claims!['cnf'] as { jkt: string }).jkt).toBe(jkt);
    expect(first!.headers.authorization).toMatch(/^DPoP /);
    expect(first!.proof!.payload).toMatchObject({ htm: 'GET', htu: `${upstream!.url}/v1/payments` });
    expect(second!.proof!.payload).toMatchObject({ htm: 'POST', htu: `${upstream!.url}/v1/payments` });
    expect(third!.proof!.payload).toMatchObject({ htm: 'DELETE', htu: `${upstream!.url}/v1/payments/42` });
    expect(first!.proof!.header).toMatchObject({ typ: 'dpop+jwt', alg: 'ES256' });
    expect(new Set(upstream!.requests.map((r) => r.proof!.payload.jti)).size).toBe(3);
    // The proof key at the token endpoint is the one the upstream proofs use.
    await expect(decodeJwtHeaderJwkThumbprint(tr.headers['dpop'] as string)).resolves.toBe(jkt);
  });

  it("drops the app's own DPoP header and sends the proxy's proof alone", async () => {
    await start({});
    const res = await request(`${proxy!.url}/v1/payments`, {
      headers: { host: HOST, dpop: 'app.own.proof', authorization: 'Bearer app-token' },
    });
    await res.body.text();
    expect(res.statusCode).toBe(200);
    expect(upstream!.requests[0]!.verdict).toBe('ok');
    expect(upstream!.requests[0]!.headers.authorization).toMatch(/^DPoP /);
  });

  it('the resource server refuses a replayed proof, a missing proof and the token sent as Bearer', async () => {
    await start({});
    expect((await call('/v1/payments')).status).toBe(200);
    const sent = upstream!.requests[0]!;
    const authorization = sent.headers.authorization as string;
    const proof = sent.headers['dpop'] as string;
    const direct = async (headers: Record<string, string>) => {
      const res = await request(`${upstream!.url}/v1/payments`, { headers });
      await res.body.text();
      return res.statusCode;
    };
    expect(await direct({ authorization, dpop: proof })).toBe(401);
    expect(await direct({ authorization })).toBe(401);
    expect(await direct({ authorization: authorization.replace(/^DPoP/, 'Bearer'), dpop: proof })).toBe(401);
    expect(upstream!.requests.slice(1).map((r) => r.verdict)).toEqual([
      'replayed proof',
      'missing proof',
      'not the DPoP scheme',
    ]);
  });

  it("answers the token endpoint's use_dpop_nonce with exactly one retry carrying its nonce", async () => {
    await start({ serverNonce: true });
    expect((await call('/v1/payments')).status).toBe(200);
    const [challenged, retried] = tokenRequests();
    expect(tokenRequests()).toHaveLength(2);
    expect(challenged!.status).toBe(400);
    expect(decodeJwt(challenged!.headers['dpop'] as string)['nonce']).toBeUndefined();
    expect(retried!.status).toBe(200);
    expect(typeof decodeJwt(retried!.headers['dpop'] as string)['nonce']).toBe('string');
    expect(upstream!.requests.map((r) => r.verdict)).toEqual(['ok']);
  });

  it("answers the upstream's use_dpop_nonce with one retry, then sends its nonce from the start", async () => {
    await start({ upstreamNonce: true });
    expect((await call('/v1/payments', { method: 'POST', body: 'amount=10' })).status).toBe(200);
    expect(upstream!.requests.map((r) => r.verdict)).toEqual(['use_dpop_nonce', 'ok']);
    expect(upstream!.requests[1]!.bodyBytes).toBe('amount=10'.length);
    expect(upstream!.requests[1]!.proof!.payload['nonce']).toBe(upstream!.nonce);
    // The same token: a nonce challenge is not a refused token.
    expect(upstream!.requests[1]!.headers.authorization).toBe(upstream!.requests[0]!.headers.authorization);
    expect(tokenRequests()).toHaveLength(1);

    expect((await call('/v1/payments')).status).toBe(200);
    expect(upstream!.requests.map((r) => r.verdict)).toEqual(['use_dpop_nonce', 'ok', 'ok']);
  });

  it('takes a new nonce from any DPoP-Nonce header of the upstream', async () => {
    await start({ upstreamNonce: true });
    expect((await call('/v1/payments')).status).toBe(200);
    const rotated = upstream!.rotateNonce();
    // Answered with the new nonce in DPoP-Nonce; the next proof carries it without a challenge.
    expect((await call('/v1/payments')).status).toBe(200);
    expect((await call('/v1/payments')).status).toBe(200);
    expect(upstream!.requests.map((r) => r.verdict)).toEqual(['use_dpop_nonce', 'ok', 'ok', 'ok']);
    expect(upstream!.requests[3]!.proof!.payload['nonce']).toBe(rotated);
  });

  it('a second nonce challenge goes to the app as it is: one retry, never more', async () => {
    await start({ upstreamNonce: 'always' });
    const res = await call('/v1/payments');
    expect(res.status).toBe(401);
    expect(upstream!.requests.map((r) => r.verdict)).toEqual(['use_dpop_nonce', 'use_dpop_nonce']);
    // The retry carried the nonce of the first challenge.
    expect(upstream!.requests[1]!.proof!.payload['nonce']).toBeDefined();
    expect(tokenRequests()).toHaveLength(1);
  });

  it('with private_key_jwt, the nonce retry carries a new client assertion', async () => {
    const key = await generateClientKey('ES256');
    const files = await writeKeyFiles(key);
    dir = files.dir;
    auth = await startAuthServer({
      dpop: { requireNonce: true },
      clients: [await privateKeyJwtClient('payments-jwt', key)],
    });
    upstream = await startDpopUpstream({
      issuer: auth.issuer,
      jwksUri: auth.jwksUri,
      audience: auth.audience,
    });
    proxy = await startInjector({
      credentials: {
        payments: {
          token_endpoint: auth.tokenEndpoint,
          grant_type: 'client_credentials',
          client_id: 'payments-jwt',
          auth_method: 'private_key_jwt',
          private_key_file: files.pkcs8,
          dpop: {},
        },
      },
      routes: [{ name: 'payments', match: { host: HOST }, upstream: upstream.url, credential: 'payments' }],
    });
    expect((await call('/v1/payments')).status).toBe(200);
    const [challenged, retried] = tokenRequests();
    expect(tokenRequests().map((r) => r.status)).toEqual([400, 200]);
    expect(retried!.form['client_assertion']).not.toBe(challenged!.form['client_assertion']);
    expect(upstream.requests.map((r) => r.verdict)).toEqual(['ok']);
  });

  it('answers nonce challenges from both sides, one retry each', async () => {
    await start({ serverNonce: true, upstreamNonce: true });
    expect((await call('/v1/payments')).status).toBe(200);
    expect(tokenRequests().map((r) => r.status)).toEqual([400, 200]);
    expect(upstream!.requests.map((r) => r.verdict)).toEqual(['use_dpop_nonce', 'ok']);
  });

  it('a WebSocket handshake carries Authorization: DPoP and a proof for its GET', async () => {
    auth = await startAuthServer({ dpop: {} });
    const ws = await startWsUpstream({
      issuer: auth.issuer,
      jwksUri: auth.jwksUri,
      audience: auth.audience,
      // It verifies Bearer tokens only: the handshake is checked here instead.
      requireToken: false,
    });
    try {
      proxy = await startInjector({
        credentials: { payments: credentialFor(auth, undefined, { dpop: {} }) },
        routes: [{ name: 'live', match: { host: HOST }, upstream: ws.url, credential: 'payments' }],
      });
      const client = new WebSocket(`${proxy.url}/v1/live?x=1`, { headers: { host: HOST } });
      await once(client, 'open');
      client.close();
      const [handshake] = ws.handshakes;
      const token = /^DPoP (\S+)$/.exec(handshake!.headers.authorization ?? '')?.[1];
      expect(token).toBeDefined();
      const { payload, protectedHeader } = await jwtVerify(
        handshake!.headers['dpop'] as string,
        EmbeddedJWK,
        {
          typ: 'dpop+jwt',
        },
      );
      expect(payload).toMatchObject({
        htm: 'GET',
        htu: `${ws.url}/v1/live`,
        ath: createHash('sha256').update(token!).digest('base64url'),
      });
      const jkt = (decodeJwt(token!)['cnf'] as { jkt: string }).jkt;
      expect(jkt).toBe(await calculateJwkThumbprint(protectedHeader.jwk as JWK));
    } finally {
      await ws.close();
    }
  });

  describe('keys', () => {
    function keyFile(name: string, text: string): string {
      dir ??= mkdtempSync(join(tmpdir(), 'dpop-'));
      const path = join(dir, name);
      writeFileSync(path, text, { mode: 0o600 });
      return path;
    }

    it.each([
      ['EdDSA', 'a JWK file', () => jwkText(generateKeyPairSync('ed25519').privateKey)],
      [
        'PS256',
        'a PEM file',
        () =>
          generateKeyPairSync('rsa', { modulusLength: 2048 })
            .privateKey.export({ type: 'pkcs8', format: 'pem' })
            .toString(),
      ],
      [
        'ES256',
        'a SEC1 PEM file',
        () =>
          generateKeyPairSync('ec', { namedCurve: 'P-256' })
            .privateKey.export({ type: 'sec1', format: 'pem' })
            .toString(),
      ],
    ])('%s with %s: the token is bound to the configured key', async (alg, _what, make) => {
      const text = make();
      // The private key never reaches a log line (checked after the file by the leak watch).
      if (text.startsWith('{')) watchSecret((JSON.parse(text) as { d: string }).d);
      else watchSecret(text.split('\n')[1]);
      const path = keyFile(`key-${alg}`, text);
      await start({ dpop: { key_file: path, alg } });
      expect((await call('/v1/payments')).status).toBe(200);
      const got = upstream!.requests[0]!;
      expect(got.verdict).toBe('ok');
      expect(got.proof!.header['alg']).toBe(alg);
      const { createPrivateKey, createPublicKey } = await import('node:crypto');
      const configured = createPublicKey(
        createPrivateKey(text.startsWith('{') ? { key: JSON.parse(text), format: 'jwk' } : text),
      );
      const jkt = await calculateJwkThumbprint(configured.export({ format: 'jwk' }) as JWK);
      expect((got.claims!['cnf'] as { jkt: string }).jkt).toBe(jkt);
    });

    it('RS256 with a key generated at start', async () => {
      await start({ dpop: { alg: 'RS256' } });
      expect((await call('/v1/payments')).status).toBe(200);
      expect(upstream!.requests[0]!.verdict).toBe('ok');
      expect(upstream!.requests[0]!.proof!.header['alg']).toBe('RS256');
    });
  });
});

function jwkText(key: import('node:crypto').KeyObject): string {
  return JSON.stringify(key.export({ format: 'jwk' }));
}

async function decodeJwtHeaderJwkThumbprint(jwt: string): Promise<string> {
  const header = JSON.parse(Buffer.from(jwt.split('.')[0]!, 'base64url').toString()) as { jwk: JWK };
  return calculateJwkThumbprint(header.jwk);
}
