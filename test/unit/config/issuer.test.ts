import { describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { problemsOf, sources, validConfig } from './helpers.js';

const BASE = { grant_type: 'client_credentials', client_id: 'c', client_secret: 's' };
const yaml = (credential: object) => stringify({ credentials: { orders: credential } });

describe('credentials.<name>.issuer', () => {
  it('stands instead of token_endpoint, kept exactly as written', () => {
    const config = validConfig(yaml({ ...BASE, issuer: 'https://idp.example.com' }), sources());
    const cred = config.credentials.get('orders')!;
    expect(cred.issuer).toBe('https://idp.example.com');
    expect(cred.tokenEndpoint).toBeUndefined();
    const withPath = validConfig(
      yaml({ ...BASE, issuer: 'https://idp.example.com/realms/acme/' }),
      sources(),
    );
    expect(withPath.credentials.get('orders')!.issuer).toBe('https://idp.example.com/realms/acme/');
  });

  it('exactly one of token_endpoint and issuer', () => {
    expect(
      problemsOf(
        yaml({ ...BASE, issuer: 'https://idp.example.com', token_endpoint: 'https://idp.example.com/t' }),
      ),
    ).toEqual([
      'credentials.orders.issuer: use either token_endpoint or issuer (whose metadata names the token endpoint), not both',
    ]);
    expect(problemsOf(yaml(BASE))).toEqual([
      "credentials.orders.token_endpoint: is required, or issuer: the authorization server's issuer, whose metadata (RFC 8414) names it",
    ]);
  });

  it('an issuer is an http(s) URL without query or fragment (RFC 8414 §2)', () => {
    for (const issuer of [
      'idp.example.com',
      'https://idp.example.com?x=1',
      'https://idp.example.com#f',
      'ftp://idp',
    ]) {
      expect(problemsOf(yaml({ ...BASE, issuer }))).toEqual([
        'credentials.orders.issuer: must be an https:// URL without query, fragment or user info (RFC 8414 §2)',
      ]);
    }
  });

  it('http:// beyond loopback needs allow_insecure_http, as token_endpoint', () => {
    expect(problemsOf(yaml({ ...BASE, issuer: 'http://idp.example.com' }))[0]).toMatch(
      /^credentials\.orders\.issuer: http:\/\/ to idp\.example\.com would send/,
    );
    validConfig(yaml({ ...BASE, issuer: 'http://idp.example.com', allow_insecure_http: true }), sources());
    validConfig(yaml({ ...BASE, issuer: 'http://127.0.0.1:8080' }), sources());
  });

  it('mtls_token_endpoint comes from the metadata with issuer', () => {
    const problems = problemsOf(
      yaml({
        ...BASE,
        client_secret: undefined,
        auth_method: 'tls_client_auth',
        issuer: 'https://idp.example.com',
        mtls_token_endpoint: 'https://mtls.idp.example.com/token',
      }),
    );
    expect(problems).toContain(
      "credentials.orders.mtls_token_endpoint: comes from the issuer's metadata (mtls_endpoint_aliases, RFC 8705 §5) with issuer; remove it",
    );
  });
});

describe('routes[i].resource_metadata', () => {
  const config = (credential: object, route: object = {}) =>
    stringify({
      credentials: { orders: credential },
      routes: [
        {
          name: 'mcp',
          upstream: 'https://mcp.example.com/mcp',
          credential: 'orders',
          resource_metadata: 'discover',
          ...route,
        },
      ],
    });

  it('discover, with a credential that has issuer', () => {
    const c = validConfig(config({ ...BASE, issuer: 'https://idp.example.com' }), sources());
    expect(c.routes[0]!.discoverResource).toBe(true);
    const plain = validConfig(
      config({ ...BASE, issuer: 'https://idp.example.com' }, { resource_metadata: undefined }),
      sources(),
    );
    expect(plain.routes[0]!.discoverResource).toBe(false);
  });

  it('refused with a credential without issuer, beside resource, or with another value', () => {
    expect(problemsOf(config({ ...BASE, token_endpoint: 'https://idp.example.com/t' }))).toEqual([
      'routes[0].resource_metadata: needs a credential with issuer; "orders" has none',
    ]);
    expect(
      problemsOf(
        config({ ...BASE, issuer: 'https://idp.example.com' }, { resource: 'https://mcp.example.com/mcp' }),
      ),
    ).toEqual(['routes[0].resource: is discovered with resource_metadata: discover; remove one of them']);
    expect(
      problemsOf(config({ ...BASE, issuer: 'https://idp.example.com' }, { resource_metadata: 'yes' }))[0],
    ).toMatch(/^routes\[0\]\.resource_metadata: must be/);
  });
});
