/**
 * Protected-resource discovery (RFC 9728, as MCP clients do it) end to end: a route with
 * `resource_metadata: discover` whose credential names the real authorization server by `issuer`.
 * The resource server here refuses tokens not issued for it (aud = its own URL) with a 401 whose
 * challenge points at its metadata; the proxy discovers the resource, asks the real server for a
 * token with `resource` set to it (RFC 8707) and retries once.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createRemoteJWKSet, type JWTPayload, jwtVerify } from 'jose';
import { request } from 'undici';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type AuthServer, startAuthServer } from '../support/auth-server.js';
import { startInjector, type TestInjector } from '../support/injector.js';
import { watchSecret } from '../support/leak-watch.js';
import { credentialFor } from '../support/stack.js';

interface ResourceServer {
  /** http://127.0.0.1:PORT */
  readonly origin: string;
  /** The claims of every token it took, in order. */
  readonly accepted: JWTPayload[];
  /** Paths of the metadata requests it answered. */
  readonly metadataAsked: string[];
  /** The metadata served at a path; replaceable between tests. */
  metadata: Map<string, unknown>;
  /** Whether a 401 names the metadata URL in `resource_metadata` (else only the well-known URL has it). */
  challengeParam: boolean;
  close(): Promise<void>;
}

const resources: string[] = [];
let auth: AuthServer;
let rs: ResourceServer;
let proxy: TestInjector | undefined;

/** A resource server that takes only tokens whose `aud` is the resource a request went to. */
async function startResourceServer(): Promise<ResourceServer> {
  const jwks = createRemoteJWKSet(new URL(auth.jwksUri));
  const state: ResourceServer = {
    origin: '',
    accepted: [],
    metadataAsked: [],
    metadata: new Map(),
    challengeParam: true,
    close: async () => {},
  };
  const server = http.createServer((req, res) => {
    const path = req.url ?? '/';
    req.resume();
    if (path.startsWith('/.well-known/oauth-protected-resource')) {
      state.metadataAsked.push(path);
      const doc = state.metadata.get(path);
      if (doc === undefined) res.writeHead(404).end();
      else res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(doc));
      return;
    }
    // The resource is the origin plus the first path segment (`/mcp`), or the origin alone.
    const resource = path.startsWith('/mcp') ? `${state.origin}/mcp` : state.origin;
    const token = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1] ?? '';
    jwtVerify(token, jwks, { issuer: auth.issuer, audience: resource }).then(
      ({ payload }) => {
        state.accepted.push(payload);
        res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}');
      },
      () => {
        const suffix = path.startsWith('/mcp') ? '/mcp' : '';
        const challenge = state.challengeParam
          ? `Bearer resource_metadata="${state.origin}/.well-known/oauth-protected-resource${suffix}"`
          : 'Bearer';
        res.writeHead(401, { 'www-authenticate': challenge }).end();
      },
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  Object.assign(state, {
    origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  });
  return state;
}

beforeAll(async () => {
  auth = await startAuthServer({ resources });
  rs = await startResourceServer();
  resources.push(rs.origin, `${rs.origin}/mcp`);
});
afterEach(async () => {
  await proxy?.close();
  proxy = undefined;
  rs.metadata.clear();
  rs.metadataAsked.length = 0;
  rs.challengeParam = true;
});
afterAll(async () => {
  for (const token of auth.issuedTokens) watchSecret(token);
  await rs.close();
  await auth.close();
});

async function proxyTo(upstream: string): Promise<TestInjector> {
  const { token_endpoint: _, ...cred } = credentialFor(auth);
  proxy = await startInjector({
    credentials: { orders: { ...cred, issuer: auth.issuer } },
    routes: [
      {
        name: 'mcp',
        match: { host: 'mcp.test' },
        upstream,
        credential: 'orders',
        resource_metadata: 'discover',
      },
    ],
  });
  return proxy;
}

async function call(p: TestInjector, path = '/tools', body?: string) {
  const res = await request(`${p.url}${path}`, {
    method: body === undefined ? 'GET' : 'POST',
    headers: { host: 'mcp.test', ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    ...(body !== undefined ? { body } : {}),
  });
  const text = await res.body.text();
  return { status: res.statusCode, text, json: () => JSON.parse(text) as Record<string, unknown> };
}

describe('protected-resource discovery', () => {
  it('discovers the resource from the 401 challenge; the upstream gets a token whose audience is that resource', async () => {
    rs.metadata.set('/.well-known/oauth-protected-resource', {
      resource: rs.origin,
      authorization_servers: [auth.issuer],
    });
    const p = await proxyTo(rs.origin);
    const first = await call(p);
    expect(first.status).toBe(200);
    expect(rs.accepted.at(-1)!.aud).toBe(rs.origin);
    expect(auth.tokenRequests.at(-1)!.form['resource']).toBe(rs.origin);
    // Known from now on: no 401, no second metadata fetch.
    const before = rs.accepted.length;
    expect((await call(p)).status).toBe(200);
    expect(rs.accepted.length).toBe(before + 1);
    expect(rs.metadataAsked).toEqual(['/.well-known/oauth-protected-resource']);
    expect(p.logs.some((l) => l['event'] === 'resource_discovered' && l['resource'] === rs.origin)).toBe(
      true,
    );
  });

  it('without resource_metadata in the challenge, the well-known URL with the path inserted (RFC 9728 §3.1); a body is replayed', async () => {
    rs.challengeParam = false;
    rs.metadata.set('/.well-known/oauth-protected-resource/mcp', {
      resource: `${rs.origin}/mcp`,
      authorization_servers: ['https://other.example.com', auth.issuer],
    });
    const p = await proxyTo(`${rs.origin}/mcp`);
    const res = await call(p, '/tools', '{"jsonrpc":"2.0"}');
    expect(res.status).toBe(200);
    expect(rs.accepted.at(-1)!.aud).toBe(`${rs.origin}/mcp`);
    expect(rs.metadataAsked).toEqual(['/.well-known/oauth-protected-resource/mcp']);
  });

  it('metadata for another resource is refused: 502 resource_mismatch, no token for it', async () => {
    rs.metadata.set('/.well-known/oauth-protected-resource', {
      resource: 'https://elsewhere.example.com',
      authorization_servers: [auth.issuer],
    });
    const p = await proxyTo(rs.origin);
    const res = await call(p);
    expect(res.status).toBe(502);
    expect(res.json()).toMatchObject({ error: 'resource_mismatch', route: 'mcp' });
    expect(auth.tokenRequests.some((r) => r.form['resource'] === 'https://elsewhere.example.com')).toBe(
      false,
    );
  });

  it("a resource that does not list the credential's issuer: 502 authorization_server_not_listed", async () => {
    rs.metadata.set('/.well-known/oauth-protected-resource', {
      resource: rs.origin,
      authorization_servers: ['https://other.example.com'],
    });
    const p = await proxyTo(rs.origin);
    const res = await call(p);
    expect(res.status).toBe(502);
    expect(res.json()).toMatchObject({ error: 'authorization_server_not_listed' });
    expect(res.json()['detail']).toContain(auth.issuer);
  });
});
