/**
 * Client credentials for the asymmetric and certificate-based client authentication methods of the test
 * authorization server: key pairs, the key files a token-injector configuration points at, and the
 * client metadata oidc-provider needs to register such clients.
 *
 * @example
 * const key = await generateClientKey('ES256');
 * const files = await writeKeyFiles(key);           // files.pkcs8, files.sec1, files.jwk, …
 * const as = await startAuthServer({ clients: [privateKeyJwtClient('svc', key)] });
 * const assertion = await clientAssertion({ clientId: 'svc', audience: as.tokenEndpoint, key });
 */
import {
  createPublicKey,
  generateKeyPair,
  type JsonWebKey,
  type KeyObject,
  randomBytes,
  X509Certificate,
} from 'node:crypto';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { calculateJwkThumbprint, type JWK, SignJWT } from 'jose';
import { type ClientMetadata, DEFAULT_SCOPE } from './auth-server.js';

const generateKeyPairAsync = promisify(generateKeyPair);

/** The client assertion algorithms the test server accepts with asymmetric keys. */
export type AsymmetricAlg = 'RS256' | 'PS256' | 'ES256' | 'ES384' | 'EdDSA' | 'Ed25519';

export interface ClientKeyPair {
  alg: AsymmetricAlg;
  /** RFC 7638 thumbprint of the public key, also set as `kid` on both JWKs. */
  kid: string;
  privateKey: KeyObject;
  publicKey: KeyObject;
  /** The public JWK with kid, alg and use: what goes into a client's `jwks`. */
  publicJwk: JWK;
  /** The private JWK with kid and alg: what a `private_key_jwt` JWK file holds. */
  privateJwk: JWK;
}

export const CLIENT_ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';

// RSA key generation takes 50-300 ms, so RS256 and PS256 share one key per process unless asked for a
// fresh one (a "wrong key" test should use a fresh key, or simply an EC one).
let cachedRsa: Promise<{ privateKey: KeyObject; publicKey: KeyObject }> | undefined;

function rsaKeyPair(fresh: boolean) {
  const make = () => generateKeyPairAsync('rsa', { modulusLength: 2048 });
  if (fresh) return make();
  cachedRsa ??= make();
  return cachedRsa;
}

function keyPairFor(alg: AsymmetricAlg, fresh: boolean) {
  switch (alg) {
    case 'RS256':
    case 'PS256':
      return rsaKeyPair(fresh);
    case 'ES256':
      return generateKeyPairAsync('ec', { namedCurve: 'P-256' });
    case 'ES384':
      return generateKeyPairAsync('ec', { namedCurve: 'P-384' });
    case 'EdDSA':
    case 'Ed25519':
      return generateKeyPairAsync('ed25519');
  }
}

/** A new key pair for `alg` (EC and Ed25519 always fresh; RSA cached per process unless `fresh`). */
export async function generateClientKey(
  alg: AsymmetricAlg,
  opts: { fresh?: boolean } = {},
): Promise<ClientKeyPair> {
  const { privateKey, publicKey } = await keyPairFor(alg, opts.fresh ?? false);
  return keyPairFromKeys(alg, privateKey, publicKey);
}

/** Wraps an existing key pair (e.g. a certificate's key read from disk) as a {@link ClientKeyPair}. */
export async function keyPairFromKeys(
  alg: AsymmetricAlg,
  privateKey: KeyObject,
  publicKey: KeyObject = createPublicKey(privateKey),
): Promise<ClientKeyPair> {
  const bare = publicKey.export({ format: 'jwk' }) as JWK;
  const kid = await calculateJwkThumbprint(bare);
  return {
    alg,
    kid,
    privateKey,
    publicKey,
    publicJwk: { ...bare, kid, alg, use: 'sig' },
    privateJwk: { ...(privateKey.export({ format: 'jwk' }) as JWK), kid, alg },
  };
}

export interface KeyFiles {
  dir: string;
  /** `-----BEGIN PRIVATE KEY-----` (every key type). */
  pkcs8: string;
  /** `-----BEGIN ENCRYPTED PRIVATE KEY-----`, only when a passphrase was given. */
  encryptedPkcs8?: string;
  /** `-----BEGIN RSA PRIVATE KEY-----`, RSA keys only. */
  pkcs1?: string;
  /** `-----BEGIN EC PRIVATE KEY-----`, EC keys only. */
  sec1?: string;
  /** The private JWK (with kid and alg) as JSON. */
  jwk: string;
  /** `-----BEGIN PUBLIC KEY-----` (SPKI). */
  publicPem: string;
}

/**
 * Writes the private key in every PEM form its type has, as a JWK JSON file, and the public key, into
 * `dir` (default: a new temporary directory). Files are mode 0600 as a real deployment's would be.
 */
export async function writeKeyFiles(
  key: ClientKeyPair,
  opts: { dir?: string; passphrase?: string; name?: string } = {},
): Promise<KeyFiles> {
  const dir = opts.dir ?? (await mkdtemp(join(tmpdir(), 'token-injector-keys-')));
  const name = opts.name ?? `${key.alg.toLowerCase()}-${randomBytes(3).toString('hex')}`;
  const write = async (suffix: string, data: string) => {
    const file = join(dir, `${name}${suffix}`);
    await writeFile(file, data, { mode: 0o600 });
    return file;
  };
  const type = key.privateKey.asymmetricKeyType;
  const files: KeyFiles = {
    dir,
    pkcs8: await write('.pkcs8.pem', key.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string),
    jwk: await write('.jwk.json', JSON.stringify(key.privateJwk)),
    publicPem: await write('.pub.pem', key.publicKey.export({ type: 'spki', format: 'pem' }) as string),
  };
  if (type === 'rsa') {
    files.pkcs1 = await write(
      '.pkcs1.pem',
      key.privateKey.export({ type: 'pkcs1', format: 'pem' }) as string,
    );
  }
  if (type === 'ec') {
    files.sec1 = await write('.sec1.pem', key.privateKey.export({ type: 'sec1', format: 'pem' }) as string);
  }
  if (opts.passphrase !== undefined) {
    const encrypted = key.privateKey.export({
      type: 'pkcs8',
      format: 'pem',
      cipher: 'aes-256-cbc',
      passphrase: opts.passphrase,
    }) as string;
    files.encryptedPkcs8 = await write('.pkcs8.enc.pem', encrypted);
  }
  return files;
}

/** The base64 DER of each certificate in a PEM bundle, leaf first: a JWK's `x5c`. */
export function x5cOf(certPem: string): string[] {
  const blocks = certPem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  return blocks.map((block) => new X509Certificate(block).raw.toString('base64'));
}

function baseClient(clientId: string, extra: Partial<ClientMetadata>): ClientMetadata {
  return {
    client_id: clientId,
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    scope: DEFAULT_SCOPE,
    ...extra,
  };
}

export interface PublicKeyInput {
  /** A KeyObject, a public JWK, an SPKI PEM, or a certificate PEM (then `x5c` is registered too). */
  key: KeyObject | JWK | string;
  /** Registered as the JWK's `alg`; oidc-provider then only accepts that algorithm for the key. */
  alg?: string;
  /** Default: the RFC 7638 thumbprint, or the `kid` the JWK already has. */
  kid?: string;
}

async function publicJwkOf(input: PublicKeyInput): Promise<JWK> {
  const { key } = input;
  let jwk: JWK;
  let x5c: string[] | undefined;
  if (typeof key === 'string' && key.includes('BEGIN CERTIFICATE')) {
    x5c = x5cOf(key);
    jwk = new X509Certificate(key).publicKey.export({ format: 'jwk' }) as JWK;
  } else if (typeof key === 'string') {
    jwk = createPublicKey(key).export({ format: 'jwk' }) as JWK;
  } else if ('kty' in key) {
    // Whatever the caller passed, only the public part may reach oidc-provider (it rejects private JWKs).
    jwk = createPublicKey({ key: key as JsonWebKey, format: 'jwk' }).export({ format: 'jwk' }) as JWK;
    if (key.kid) jwk.kid = key.kid;
  } else {
    // Node 20's createPublicKey refuses a KeyObject that is already public.
    const keyObject = key as KeyObject;
    const pub = keyObject.type === 'public' ? keyObject : createPublicKey(keyObject);
    jwk = pub.export({ format: 'jwk' }) as JWK;
  }
  const kid = input.kid ?? jwk.kid ?? (await calculateJwkThumbprint(jwk));
  return { ...jwk, kid, use: 'sig', ...(input.alg ? { alg: input.alg } : {}), ...(x5c ? { x5c } : {}) };
}

function isKeyPair(value: unknown): value is ClientKeyPair {
  return typeof value === 'object' && value !== null && 'publicJwk' in value && 'privateKey' in value;
}

/**
 * A `private_key_jwt` client whose `jwks` holds the given public key(s). A {@link ClientKeyPair} is
 * registered without `alg`, so the same RSA key works for RS256 and PS256 (pass `{ key, alg }` to pin).
 */
export async function privateKeyJwtClient(
  clientId: string,
  keys: ClientKeyPair | PublicKeyInput | (ClientKeyPair | PublicKeyInput)[],
  extra: Partial<ClientMetadata> = {},
): Promise<ClientMetadata> {
  const list = Array.isArray(keys) ? keys : [keys];
  const jwks = await Promise.all(
    list.map((k) => publicJwkOf(isKeyPair(k) ? { key: k.publicKey, kid: k.kid } : k)),
  );
  return baseClient(clientId, {
    token_endpoint_auth_method: 'private_key_jwt',
    jwks: { keys: jwks },
    ...extra,
  });
}

/** A `client_secret_jwt` client: the assertion is an HMAC (HS256 by default) keyed with the secret. */
export function clientSecretJwtClient(
  clientId: string,
  secret: string,
  extra: Partial<ClientMetadata> = {},
): ClientMetadata {
  return baseClient(clientId, {
    client_secret: secret,
    token_endpoint_auth_method: 'client_secret_jwt',
    ...extra,
  });
}

/** Exactly one of these is registered for an RFC 8705 §2.1 `tls_client_auth` client. */
export type TlsClientAuthSubject =
  | { subjectDn: string }
  | { sanDns: string }
  | { sanUri: string }
  | { sanIp: string }
  | { sanEmail: string };

/** An RFC 8705 §2.1 PKI client: its CA-issued certificate must carry the registered subject value. */
export function tlsClientAuthClient(
  clientId: string,
  subject: TlsClientAuthSubject,
  extra: Partial<ClientMetadata> = {},
): ClientMetadata {
  const [[which, value]] = Object.entries(subject) as [[string, string]];
  const property = {
    subjectDn: 'tls_client_auth_subject_dn',
    sanDns: 'tls_client_auth_san_dns',
    sanUri: 'tls_client_auth_san_uri',
    sanIp: 'tls_client_auth_san_ip',
    sanEmail: 'tls_client_auth_san_email',
  }[which];
  if (!property) throw new Error(`unknown tls_client_auth subject ${which}`);
  return baseClient(clientId, { token_endpoint_auth_method: 'tls_client_auth', [property]: value, ...extra });
}

/** An RFC 8705 §2.2 client: the self-signed certificate itself is registered, as `x5c` in `jwks`. */
export async function selfSignedTlsClient(
  clientId: string,
  certPem: string | string[],
  extra: Partial<ClientMetadata> = {},
): Promise<ClientMetadata> {
  const certs = Array.isArray(certPem) ? certPem : [certPem];
  const keys = await Promise.all(certs.map((cert) => publicJwkOf({ key: cert })));
  return baseClient(clientId, {
    token_endpoint_auth_method: 'self_signed_tls_client_auth',
    jwks: { keys },
    ...extra,
  });
}

/** A public client (`token_endpoint_auth_method: none`): it only sends `client_id`. */
export function publicClient(clientId: string, extra: Partial<ClientMetadata> = {}): ClientMetadata {
  return baseClient(clientId, { token_endpoint_auth_method: 'none', ...extra });
}

export interface ClientAssertionOptions {
  clientId: string;
  /** The `aud` claim: oidc-provider accepts its issuer or the token endpoint URL the request was sent to. */
  audience: string | string[];
  /** A private key (private_key_jwt) or the client secret (client_secret_jwt). */
  key: ClientKeyPair | KeyObject | { secret: string };
  /** Default: the key pair's alg, or HS256 for a secret. */
  alg?: string;
  /** Default: the key pair's kid; `null` leaves it out. */
  kid?: string | null;
  /** Seconds from now; negative for an expired assertion. Default 60. */
  expiresIn?: number;
  /** Default: random. oidc-provider rejects a jti it has seen before. */
  jti?: string;
  /** Extra header parameters, e.g. `{ x5t: … }` instead of a kid. */
  header?: Record<string, unknown>;
  /** Extra or overriding claims. */
  claims?: Record<string, unknown>;
}

/** An RFC 7523 §2.2 client assertion (iss = sub = client_id, aud, exp, iat, jti). */
export async function clientAssertion(opts: ClientAssertionOptions): Promise<string> {
  const { key } = opts;
  let signingKey: KeyObject | Uint8Array;
  let alg = opts.alg;
  let kid: string | undefined;
  if ('secret' in key) {
    signingKey = new TextEncoder().encode(key.secret);
    alg ??= 'HS256';
  } else if (isKeyPair(key)) {
    signingKey = key.privateKey;
    alg ??= key.alg;
    kid = key.kid;
  } else {
    signingKey = key;
  }
  if (!alg) throw new Error('clientAssertion needs an alg for a bare KeyObject');
  if (opts.kid !== undefined) kid = opts.kid ?? undefined;
  const now = Math.floor(Date.now() / 1000);
  // Claims last so a test can override any standard one (a wrong iss, a missing jti, …).
  return new SignJWT({
    iss: opts.clientId,
    sub: opts.clientId,
    aud: opts.audience,
    iat: now,
    exp: now + (opts.expiresIn ?? 60),
    jti: opts.jti ?? randomBytes(12).toString('hex'),
    ...opts.claims,
  })
    .setProtectedHeader({ alg, typ: 'JWT', ...(kid ? { kid } : {}), ...opts.header })
    .sign(signingKey);
}
