import { describe, expect, it } from 'vitest';
import {
  type AuthServerMetadata,
  DiscoveryFailure,
  parseMetadata,
  wellKnownUrls,
} from '../../../src/discovery/authorization-server.js';
import { discoveryError, IssuerMetadata } from '../../../src/discovery/issuer-metadata.js';
import { createLogger } from '../../../src/log/logger.js';

describe('wellKnownUrls', () => {
  it('inserts the RFC 8414 well-known segment before the path, and appends the OpenID one', () => {
    const [oauth, oidc] = wellKnownUrls('https://idp.example.com/realms/acme');
    expect(oauth.href).toBe('https://idp.example.com/.well-known/oauth-authorization-server/realms/acme');
    expect(oidc.href).toBe('https://idp.example.com/realms/acme/.well-known/openid-configuration');
  });

  it('drops a terminating slash first (RFC 8414 §3.1, OpenID Discovery §4)', () => {
    const [oauth, oidc] = wellKnownUrls('https://idp.example.com/tenant/');
    expect(oauth.href).toBe('https://idp.example.com/.well-known/oauth-authorization-server/tenant');
    expect(oidc.href).toBe('https://idp.example.com/tenant/.well-known/openid-configuration');
  });

  it('an issuer without a path', () => {
    expect(wellKnownUrls('https://idp.example.com').map((u) => u.href)).toEqual([
      'https://idp.example.com/.well-known/oauth-authorization-server',
      'https://idp.example.com/.well-known/openid-configuration',
    ]);
  });
});

describe('parseMetadata', () => {
  const from = new URL('https://idp.example.com/.well-known/oauth-authorization-server');
  const opts = { issuer: 'https://idp.example.com', allowInsecureHttp: false };
  const parse = (doc: unknown) => parseMetadata(JSON.stringify(doc), from, opts);
  const failure = (fn: () => unknown): DiscoveryFailure => {
    try {
      fn();
    } catch (err) {
      if (err instanceof DiscoveryFailure) return err;
      throw err;
    }
    throw new Error('expected a DiscoveryFailure');
  };

  it('takes the token endpoint, the mTLS alias and the supported lists', () => {
    const m = parse({
      issuer: 'https://idp.example.com',
      token_endpoint: 'https://idp.example.com/token',
      mtls_endpoint_aliases: { token_endpoint: 'https://mtls.idp.example.com/token' },
      token_endpoint_auth_methods_supported: ['private_key_jwt'],
      token_endpoint_auth_signing_alg_values_supported: ['ES256'],
    });
    expect(m.tokenEndpoint.href).toBe('https://idp.example.com/token');
    expect(m.mtlsTokenEndpoint?.href).toBe('https://mtls.idp.example.com/token');
    expect(m.authMethods).toEqual(['private_key_jwt']);
    expect(m.signingAlgs).toEqual(['ES256']);
  });

  it('refuses another issuer, even one that differs by a trailing slash (RFC 8414 §3.3)', () => {
    for (const issuer of ['https://evil.example.com', 'https://idp.example.com/', undefined]) {
      const f = failure(() => parse({ issuer, token_endpoint: 'https://idp.example.com/token' }));
      expect(f.kind).toBe('issuer_mismatch');
      const err = discoveryError('orders', f);
      expect(err.code).toBe('issuer_mismatch');
      expect(err.credential).toBe('orders');
    }
  });

  it('refuses metadata without a usable token endpoint', () => {
    expect(failure(() => parse({ issuer: opts.issuer })).kind).toBe('invalid');
    expect(failure(() => parse({ issuer: opts.issuer, token_endpoint: 'not a url' })).kind).toBe('invalid');
    expect(failure(() => parseMetadata('<html>', from, opts)).kind).toBe('invalid');
    expect(
      failure(() =>
        parse({ issuer: opts.issuer, token_endpoint: 'x', token_endpoint_auth_methods_supported: 'basic' }),
      ).kind,
    ).toBe('invalid');
  });

  it('an http:// token endpoint beyond loopback only with allow_insecure_http, as a configured one', () => {
    const doc = { issuer: opts.issuer, token_endpoint: 'http://idp.example.com/token' };
    const f = failure(() => parse(doc));
    expect(f.kind).toBe('invalid');
    expect(f.message).toContain('allow_insecure_http');
    expect(
      parseMetadata(JSON.stringify(doc), from, { ...opts, allowInsecureHttp: true }).tokenEndpoint.href,
    ).toBe('http://idp.example.com/token');
  });
});

describe('IssuerMetadata', () => {
  const ISSUER = 'https://idp.example.com';
  const good = (path: string): AuthServerMetadata => ({
    issuer: ISSUER,
    tokenEndpoint: new URL(`${ISSUER}${path}`),
  });
  /** A cache whose fetch answers from `answers` in order, on a clock the test moves. */
  function cache(answers: (AuthServerMetadata | DiscoveryFailure)[]) {
    let now = 1_000_000;
    let fetches = 0;
    const metadata = new IssuerMetadata({
      issuer: ISSUER,
      tls: {},
      timeoutMs: 1000,
      connectTimeoutMs: 1000,
      allowInsecureHttp: false,
      logger: createLogger('error'),
      refreshMs: 3_600_000,
      retryMs: 60_000,
      now: () => now,
      fetch: async () => {
        const answer = answers[fetches++];
        if (answer === undefined) throw new Error('no more answers');
        if (answer instanceof DiscoveryFailure) throw answer;
        return answer;
      },
    });
    return {
      metadata,
      advance: (ms: number) => {
        now += ms;
      },
      get fetches() {
        return fetches;
      },
    };
  }

  it('fetches once, then serves the copy for an hour, then fetches again', async () => {
    const c = cache([good('/token'), good('/token2')]);
    const [a, b] = await Promise.all([c.metadata.get(), c.metadata.get()]);
    expect(a).toBe(b);
    expect(c.fetches).toBe(1);
    c.advance(3_599_000);
    expect(c.metadata.get()).toBe(a);
    c.advance(2_000);
    expect((await c.metadata.get()).tokenEndpoint.pathname).toBe('/token2');
    expect(c.fetches).toBe(2);
    await c.metadata.close();
  });

  it('keeps the last good copy while the server is unreachable, and tries again a minute later', async () => {
    const down = new DiscoveryFailure('unavailable', 'unreachable');
    const c = cache([good('/token'), down, good('/token3')]);
    const first = await c.metadata.get();
    c.advance(3_600_001);
    expect(await c.metadata.get()).toBe(first);
    expect(c.fetches).toBe(2);
    c.advance(59_000);
    expect(c.metadata.get()).toBe(first);
    expect(c.fetches).toBe(2);
    c.advance(2_000);
    expect((await c.metadata.get()).tokenEndpoint.pathname).toBe('/token3');
    await c.metadata.close();
  });

  it('without a good copy, an unreachable server fails the request', async () => {
    const c = cache([new DiscoveryFailure('unavailable', 'unreachable'), good('/token')]);
    await expect(c.metadata.get()).rejects.toMatchObject({ kind: 'unavailable' });
    expect((await c.metadata.get()).tokenEndpoint.pathname).toBe('/token');
    await c.metadata.close();
  });

  it('metadata that now names another issuer replaces the good copy: it is not kept', async () => {
    const c = cache([good('/token'), new DiscoveryFailure('issuer_mismatch', 'other issuer')]);
    await c.metadata.get();
    c.advance(3_600_001);
    await expect(c.metadata.get()).rejects.toMatchObject({ kind: 'issuer_mismatch' });
    await c.metadata.close();
  });
});
