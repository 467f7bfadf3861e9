/**
 * Builders shared by the unit tests: credential configurations in the shape `validateConfig`
 * produces, grant contexts, and key material written to a temporary directory.
 */
import { execFileSync } from 'node:child_process';
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { CredentialConfig, RouteConfig, RouteMatch, TokenScope } from '../../src/config/types.js';
import type { GrantContext } from '../../src/grants/grant.js';
import type { Token } from '../../src/token-endpoint/token.js';

export const TOKEN_ENDPOINT = 'https://idp.example.com/oauth2/token';

/** A valid client_credentials + client_secret_basic credential; `extra` replaces any field. */
export function credentialConfig(extra: Partial<CredentialConfig> = {}): CredentialConfig {
  return {
    name: 'orders',
    tokenEndpoint: new URL(TOKEN_ENDPOINT),
    grant: { type: 'client_credentials' },
    clientId: 'id',
    clientAuth: { method: 'client_secret_basic', secret: { value: 'secret' } },
    params: {},
    prefetch: false,
    timeoutMs: 10_000,
    refreshAhead: 0.8,
    tls: {},
    connectTimeoutMs: 5_000,
    maxResponseBytes: 64 * 1024,
    defaultLifetimeMs: 300_000,
    maxLifetimeMs: 86_400_000,
    tokenTypes: ['bearer'],
    initialBackoffMs: 250,
    maxBackoffMs: 30_000,
    allowInsecureHttp: false,
    ...extra,
  };
}

/** A grant context for one token request; `credentialToken` fails unless given. */
export function grantContext(extra: Partial<GrantContext> = {}): GrantContext {
  return {
    tokenScope: {},
    endpoint: new URL(TOKEN_ENDPOINT),
    credentialToken: async (name) => {
      throw new Error(`no token for credential ${name} in this test`);
    },
    ...extra,
  };
}

export function scoped(tokenScope: TokenScope): GrantContext {
  return grantContext({ tokenScope });
}

export function token(accessToken: string, extra: Partial<Token> = {}): Token {
  const issuedAt = Date.now();
  return { accessToken, tokenType: 'Bearer', issuedAt, expiresAt: issuedAt + 3_600_000, ...extra };
}

/** A temporary directory, removed by `remove()`. */
export class TempDir {
  readonly path = mkdtempSync(join(tmpdir(), 'ti-unit-'));

  file(name: string, content: string): string {
    const path = join(this.path, name);
    writeFileSync(path, content);
    return path;
  }

  remove(): void {
    rmSync(this.path, { recursive: true, force: true });
  }
}

export type KeyKind = 'rsa' | 'p256' | 'p384' | 'p521' | 'ed25519';

export interface TestKey {
  readonly privateKey: KeyObject;
  readonly publicKey: KeyObject;
  /** PKCS#8 PEM. */
  readonly pkcs8: string;
  /** PKCS#1 (RSA) or SEC1 (EC) PEM; undefined for Ed25519, which has only PKCS#8. */
  readonly traditional?: string;
  /** Private JWK as JSON text. */
  readonly jwk: string;
}

const CURVES = { p256: 'P-256', p384: 'P-384', p521: 'P-521' } as const;

export function generateKey(kind: KeyKind): TestKey {
  const { privateKey, publicKey } =
    kind === 'rsa'
      ? generateKeyPairSync('rsa', { modulusLength: 2048 })
      : kind === 'ed25519'
        ? generateKeyPairSync('ed25519')
        : generateKeyPairSync('ec', { namedCurve: CURVES[kind] });
  const pkcs8 = privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
  const traditional =
    kind === 'rsa'
      ? privateKey.export({ format: 'pem', type: 'pkcs1' }).toString()
      : kind === 'ed25519'
        ? undefined
        : privateKey.export({ format: 'pem', type: 'sec1' }).toString();
  const jwk = JSON.stringify(privateKey.export({ format: 'jwk' }));
  return { privateKey, publicKey, pkcs8, ...(traditional !== undefined ? { traditional } : {}), jwk };
}

/** A self-signed certificate for the private key in `keyFile` (PEM), made by `openssl req -x509`. */
export function selfSignedCertificate(keyFile: string, certFile: string, cn = 'token-injector-test'): string {
  execFileSync(
    'openssl',
    ['req', '-x509', '-key', keyFile, '-out', certFile, '-days', '1', '-subj', `/CN=${cn}`],
    { stdio: 'ignore' },
  );
  return certFile;
}

/** A route in the shape `validateConfig` produces, with the defaults; `extra` replaces any field. */
export function routeConfig(
  name: string,
  match: RouteMatch = {},
  extra: Partial<RouteConfig> = {},
): RouteConfig {
  return {
    name,
    match,
    upstream: new URL('https://upstream.example.com'),
    stripPrefix: false,
    credential: 'orders',
    header: 'Authorization',
    prefix: 'Bearer ',
    tokenScope: {},
    tls: {},
    retryOn401: false,
    discoverResource: false,
    replayBufferBytes: 64 * 1024,
    connectTimeoutMs: 5_000,
    responseTimeoutMs: 30_000,
    upstreamMaxConnections: 256,
    allowInsecureHttp: false,
    strictPath: true,
    upstreamProtocol: 'http1',
    ...extra,
  };
}
