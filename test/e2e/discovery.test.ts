/**
 * Authorization-server discovery (RFC 8414, OpenID Connect Discovery) end to end: a credential
 * names its `issuer`, the real proxy finds the token endpoint in the issuer's metadata and injects
 * tokens from the real authorization server (oidc-provider) into requests to an upstream that
 * verifies them. Metadata the real server cannot produce (another issuer, an issuer with a path,
 * a narrower list of auth methods) comes from a small metadata server that points at the real
 * token endpoint.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { request } from 'undici';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { BASIC_CLIENT } from '../support/auth-server.js';
import { killAllCli, runCli, tempDir, writeConfig } from '../support/cli-process.js';
import { configFrom, startInjector, type TestInjector } from '../support/injector.js';
import { credentialFor, type Stack, startStack } from '../support/stack.js';

let stack: Stack;
let proxy: TestInjector | undefined;

beforeAll(async () => {
  stack = await startStack();
});
afterEach(async () => {
  await proxy?.close();
  proxy = undefined;
});
afterAll(async () => {
  await killAllCli();
  await stack.close();
});

/** A credential for the real server's BASIC_CLIENT that gives `issuer` instead of `token_endpoint`. */
function issuerCredential(issuer: string) {
  const { token_endpoint: _, ...rest } = credentialFor(stack.auth);
  return { ...rest, issuer };
}

async function proxyFor(issuer: string, extra: object = {}): Promise<TestInjector> {
  proxy = await startInjector({
    credentials: { orders: { ...issuerCredential(issuer), ...extra } },
    routes: [
      { name: 'orders', match: { host: 'orders.test' }, upstream: stack.upstream.url, credential: 'orders' },
    ],
  });
  return proxy;
}

async function call(p: TestInjector) {
  const res = await request(`${p.url}/v1/orders`, { headers: { host: 'orders.test' } });
  const text = await res.body.text();
  return { status: res.statusCode, text, json: () => JSON.parse(text) as Record<string, unknown> };
}

interface MetadataServer {
  /** http://127.0.0.1:PORT */
  readonly origin: string;
  /** Paths asked for, in order. */
  readonly asked: string[];
  /** The documents served, by path; anything else is 404. Changeable between requests. */
  readonly documents: Map<string, unknown>;
  close(): Promise<void>;
}

/** Serves metadata documents by path: the cases a real authorization server does not produce. */
async function startMetadataServer(): Promise<MetadataServer> {
  const asked: string[] = [];
  const documents = new Map<string, unknown>();
  const server = http.createServer((req, res) => {
    const path = req.url ?? '/';
    asked.push(path);
    const doc = documents.get(path);
    if (doc === undefined) res.writeHead(404).end();
    else res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(doc));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    origin,
    asked,
    documents,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

describe('authorization-server discovery', () => {
  it('finds the token endpoint from the issuer of the real server (OpenID configuration) and tokens work', async () => {
    const before = stack.auth.tokenRequests.length;
    const p = await proxyFor(stack.auth.issuer);
    const res = await call(p);
    expect(res.status).toBe(200);
    // The upstream verified the token: issued by that server for BASIC_CLIENT.
    const seen = stack.upstream.requests.at(-1)!;
    expect(seen.tokenValid).toBe(true);
    expect(seen.claims?.['client_id']).toBe(BASIC_CLIENT.id);
    expect(stack.auth.tokenRequests.length).toBe(before + 1);
    expect(
      p.logs.some(
        (l) => l['event'] === 'metadata_fetched' && l['token_endpoint'] === stack.auth.tokenEndpoint,
      ),
    ).toBe(true);
  });

  it('`token NAME` prints a token for a credential with issuer', async () => {
    const { dir, remove } = tempDir();
    try {
      const path = writeConfig(dir, 'discovery.yaml', {
        credentials: { orders: issuerCredential(stack.auth.issuer) },
        routes: [],
      });
      const res = await runCli(['token', 'orders', '--config', path], { recordStdout: false });
      expect(res.code).toBe(0);
      expect(stack.auth.issuedTokens).toContain(res.stdout.trim());
    } finally {
      remove();
    }
  });

  describe('against a metadata server', () => {
    let meta: MetadataServer;
    beforeAll(async () => {
      meta = await startMetadataServer();
    });
    afterEach(() => {
      meta.documents.clear();
      meta.asked.length = 0;
    });
    afterAll(async () => {
      await meta.close();
    });

    it('inserts the RFC 8414 well-known segment before the issuer path, and uses the token endpoint it names', async () => {
      const issuer = `${meta.origin}/tenants/acme`;
      meta.documents.set('/.well-known/oauth-authorization-server/tenants/acme', {
        issuer,
        token_endpoint: stack.auth.tokenEndpoint,
        token_endpoint_auth_methods_supported: ['client_secret_basic', 'private_key_jwt'],
      });
      const p = await proxyFor(issuer);
      const res = await call(p);
      expect(res.status).toBe(200);
      expect(stack.upstream.requests.at(-1)!.tokenValid).toBe(true);
      // Found at the RFC 8414 URL: the OpenID one was not needed.
      expect(meta.asked).toEqual(['/.well-known/oauth-authorization-server/tenants/acme']);
    });

    it('falls back to the OpenID configuration appended to the issuer', async () => {
      const issuer = `${meta.origin}/tenants/acme`;
      meta.documents.set('/tenants/acme/.well-known/openid-configuration', {
        issuer,
        token_endpoint: stack.auth.tokenEndpoint,
      });
      const p = await proxyFor(issuer);
      expect((await call(p)).status).toBe(200);
      expect(meta.asked).toEqual([
        '/.well-known/oauth-authorization-server/tenants/acme',
        '/tenants/acme/.well-known/openid-configuration',
      ]);
    });

    it('refuses metadata that names another issuer: 502 issuer_mismatch, no token request', async () => {
      const before = stack.auth.tokenRequests.length;
      meta.documents.set('/.well-known/oauth-authorization-server', {
        issuer: stack.auth.issuer,
        token_endpoint: stack.auth.tokenEndpoint,
      });
      const p = await proxyFor(meta.origin);
      const res = await call(p);
      expect(res.status).toBe(502);
      expect(res.json()).toMatchObject({ error: 'issuer_mismatch', credential: 'orders' });
      expect(res.json()['detail']).toContain(stack.auth.issuer);
      expect(stack.auth.tokenRequests.length).toBe(before);
      expect(p.logs.some((l) => l['event'] === 'token_failed' && l['error'] === 'issuer_mismatch')).toBe(
        true,
      );
    });

    it('an auth_method the server does not list is refused by name', async () => {
      meta.documents.set('/.well-known/oauth-authorization-server', {
        issuer: meta.origin,
        token_endpoint: stack.auth.tokenEndpoint,
        token_endpoint_auth_methods_supported: ['private_key_jwt', 'tls_client_auth'],
      });
      const p = await proxyFor(meta.origin);
      const res = await call(p);
      expect(res.status).toBe(502);
      expect(res.json()).toMatchObject({ error: 'auth_method_unsupported' });
      expect(res.json()['detail']).toContain('client_secret_basic');
    });

    it('a signing alg the server does not list is refused by name (client_secret_jwt signs HS256)', async () => {
      meta.documents.set('/.well-known/oauth-authorization-server', {
        issuer: meta.origin,
        token_endpoint: stack.auth.tokenEndpoint,
        token_endpoint_auth_methods_supported: ['client_secret_jwt', 'private_key_jwt'],
        token_endpoint_auth_signing_alg_values_supported: ['RS256', 'ES256'],
      });
      const p = await proxyFor(meta.origin, { auth_method: 'client_secret_jwt' });
      const res = await call(p);
      expect(res.status).toBe(502);
      expect(res.json()).toMatchObject({ error: 'auth_method_unsupported' });
      expect(res.json()['detail']).toContain('HS256');
    });

    it('a reload that changes the credential but not its issuer keeps the metadata: no refetch', async () => {
      meta.documents.set('/.well-known/oauth-authorization-server', {
        issuer: meta.origin,
        token_endpoint: stack.auth.tokenEndpoint,
      });
      const p = await proxyFor(meta.origin);
      expect((await call(p)).status).toBe(200);
      expect(meta.asked).toHaveLength(1);
      const next = configFrom({
        credentials: { orders: { ...issuerCredential(meta.origin), scope: ['orders.read'] } },
        routes: [
          {
            name: 'orders',
            match: { host: 'orders.test' },
            upstream: stack.upstream.url,
            credential: 'orders',
          },
        ],
      });
      p.injector.credentials.reconfigure(next, new Set());
      const token = await p.injector.credentials.source('orders').get();
      expect(stack.auth.issuedTokens).toContain(token.accessToken);
      expect(meta.asked).toHaveLength(1);
    });

    it('no metadata at either URL: 502 metadata_invalid naming both', async () => {
      const p = await proxyFor(`${meta.origin}/nothing`);
      const res = await call(p);
      expect(res.status).toBe(502);
      expect(res.json()).toMatchObject({ error: 'metadata_invalid' });
      expect(meta.asked).toEqual([
        '/.well-known/oauth-authorization-server/nothing',
        '/nothing/.well-known/openid-configuration',
      ]);
    });
  });

  it('an unreachable issuer is 503 metadata_unavailable', async () => {
    // A port nobody listens on: a server just closed.
    const meta = await startMetadataServer();
    await meta.close();
    const p = await proxyFor(meta.origin, { timeout: '300ms', connect_timeout: '300ms' });
    const res = await call(p);
    expect(res.status).toBe(503);
    expect(res.json()).toMatchObject({ error: 'metadata_unavailable' });
  });
});
