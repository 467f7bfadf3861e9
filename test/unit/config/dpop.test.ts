import { describe, expect, it } from 'vitest';
import { generateKey } from '../fixtures.js';
import { problemsOf, sources, validConfig } from './helpers.js';

const RSA = generateKey('rsa');
const ED = generateKey('ed25519');
const FILES = {
  '/keys/rsa.pem': RSA.pkcs8,
  '/keys/ed.jwk': ED.jwk,
  '/keys/public.jwk': JSON.stringify(ED.publicKey.export({ format: 'jwk' })),
};

function yaml(dpop: string, route = ''): string {
  return `credentials:
  payments:
    token_endpoint: https://idp.example.com/token
    grant_type: client_credentials
    client_id: c
    client_secret: \${env:SECRET}
    dpop: ${dpop}
routes:
  - name: payments
    match: { host: payments.example.com }
    upstream: https://api.example.com
    credential: payments${route}
`;
}

const src = () => sources({ SECRET: 's' }, FILES);

describe('credentials.NAME.dpop', () => {
  it('defaults to ES256 with a key generated at start', () => {
    const config = validConfig(yaml('{}'), src());
    expect(config.credentials.get('payments')!.dpop).toEqual({ alg: 'ES256' });
  });

  it('reads key_file once at load and keeps alg', () => {
    const config = validConfig(yaml('{ key_file: /keys/ed.jwk, alg: EdDSA }'), src());
    expect(config.credentials.get('payments')!.dpop).toEqual({
      alg: 'EdDSA',
      key: { value: ED.jwk, file: '/keys/ed.jwk' },
    });
    expect(
      validConfig(yaml('{ key_file: /keys/rsa.pem, alg: PS256 }'), src()).credentials.get('payments')!.dpop
        ?.alg,
    ).toBe('PS256');
  });

  it('refuses an alg that is not a DPoP alg', () => {
    expect(problemsOf(yaml('{ alg: HS256 }'), src())).toEqual([
      'credentials.payments.dpop.alg: must be one of ES256, EdDSA, PS256, RS256, got "HS256"',
    ]);
    expect(problemsOf(yaml('{ alg: ES384 }'), src())).toHaveLength(1);
  });

  it('refuses a key file that cannot be read, a public key and a key of the wrong type for alg', () => {
    expect(problemsOf(yaml('{ key_file: /keys/missing.pem }'), src())).toEqual([
      'credentials.payments.dpop.key_file: cannot read file /keys/missing.pem (ENOENT)',
    ]);
    expect(problemsOf(yaml('{ key_file: /keys/public.jwk, alg: EdDSA }'), src())).toEqual([
      'credentials.payments.dpop.key_file: the JWK is a public key; a private key (with "d") is needed',
    ]);
    expect(problemsOf(yaml('{ key_file: /keys/rsa.pem }'), src())).toEqual([
      'credentials.payments.dpop.key_file: this rsa key cannot sign ES256 (it signs RS256, PS256; set alg)',
    ]);
    expect(problemsOf(yaml('{ key_file: /keys/ed.jwk, alg: RS256 }'), src())).toEqual([
      'credentials.payments.dpop.key_file: this ed25519 key cannot sign RS256 (it signs EdDSA; set alg)',
    ]);
  });

  it('refuses unknown keys under dpop', () => {
    expect(problemsOf(yaml('{ kid: x }'), src())[0]).toMatch(/^credentials\.payments\.dpop\.kid: /);
  });

  it("refuses a route's header or prefix: a DPoP token goes in Authorization with the DPoP scheme", () => {
    expect(problemsOf(yaml('{}', '\n    header: X-Token\n    prefix: "Token "'), src())).toEqual([
      'routes[0].header: cannot be set: credential "payments" has dpop, sent as Authorization: DPoP',
      'routes[0].prefix: cannot be set: credential "payments" has dpop, sent as Authorization: DPoP',
    ]);
  });
});
