/**
 * A real OAuth 2.0 authorization server for integration tests, the demo and the benchmark.
 *
 * It is `oidc-provider` (not a fake), configured for the client credentials grant with JWT access tokens
 * scoped to a single resource server (`audience`). A plain `node:http` front server sits in front of the
 * provider so that every token request can be recorded verbatim (headers, urlencoded form, status) and
 * every issued access token collected, without interfering with the provider's own body parsing.
 *
 * Client authentication: client_secret_basic/post, client_secret_jwt, private_key_jwt and none natively;
 * tls_client_auth and self_signed_tls_client_auth (RFC 8705) through an optional HTTPS listener that asks
 * for client certificates (`mtls` option, `mtlsTokenEndpoint`). Grants: client_credentials natively;
 * password, refresh_token, jwt-bearer, saml2-bearer and token-exchange from `grants.ts` (always
 * registered, but a client can only use those listed in its `grant_types`).
 *
 * @example
 * const as = await startAuthServer();
 * // POST as.tokenEndpoint with grant_type=client_credentials and BASIC_CLIENT credentials
 * await as.close();
 */
import {
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  type JsonWebKey,
  randomBytes,
  randomUUID,
  type X509Certificate,
} from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { TLSSocket } from 'node:tls';
import { type JWTPayload, jwtVerify, SignJWT } from 'jose';
import {
  certificateThumbprint,
  type ExchangeableToken,
  type GrantEnv,
  type IssueAccessToken,
  type JwtBearerIssuer,
  type RefreshTokenIssuance,
  registerTestGrants,
  type TestUser,
} from './grants.js';
import { DEFAULT_SAML_ISSUER } from './saml.js';
import { createTestCa, subjectDn, type TestCa } from './test-ca.js';

export {
  certificateThumbprint,
  type ExchangeableToken,
  GRANT_TYPES,
  type JwtBearerIssuer,
  type RefreshTokenIssuance,
  type TestUser,
  TOKEN_TYPES,
} from './grants.js';
export { DEFAULT_SAML_ISSUER } from './saml.js';

export interface ClientMetadata {
  client_id: string;
  client_secret?: string;
  token_endpoint_auth_method?: string;
  grant_types?: string[];
  response_types?: string[];
  redirect_uris?: string[];
  scope?: string;
  [key: string]: unknown;
}

export interface RecordedTokenRequest {
  headers: Record<string, string | string[] | undefined>;
  /** The urlencoded body fields exactly as the client sent them (last value wins on duplicates). */
  form: Record<string, string>;
  status: number;
  /** True when the request came through the mTLS listener ({@link AuthServer.mtlsTokenEndpoint}). */
  mtls?: boolean;
  /** The RFC 4514 subject of the client certificate presented on the mTLS listener, if any. */
  clientCertSubject?: string;
  /** Its SHA-256 thumbprint, base64url (the `x5t#S256` of RFC 8705 §3.1). */
  clientCertThumbprint?: string;
}

/** A grant handler as oidc-provider calls it: it receives the Koa context and sets `ctx.body`. */
export type GrantHandler = (ctx: OidcContext) => Promise<void> | void;

export interface ExtraGrant {
  /** The grant_type value, e.g. 'urn:ietf:params:oauth:grant-type:token-exchange'. */
  name: string;
  handler: GrantHandler;
  /** Form parameters (besides grant_type) the provider must pass through to the handler. */
  params?: string[];
}

export interface AuthServerOptions {
  accessTokenTtlSeconds?: number;
  /** Replaces the default clients (BASIC_CLIENT, POST_CLIENT, SPECIAL_CLIENT). */
  clients?: ClientMetadata[];
  /** The resource indicator every token is issued for (the `aud` claim). */
  audience?: string;
  /**
   * More resource indicators (RFC 8707) a token may be asked for, each then its `aud`; read on
   * every request, so a test may add one once its resource server listens.
   */
  resources?: string[];
  /** Registered with provider.registerGrantType; list the grant name in the clients' grant_types too. */
  extraGrants?: ExtraGrant[];
  /** Resource owners for the password grant. The array is read on every request, so it may be changed. */
  users?: TestUser[];
  refreshTokens?: {
    /** When the password grant issues a refresh token. Default 'offline_access' (when that scope is asked). */
    issue?: RefreshTokenIssuance;
    /** Issue a new refresh token on every refresh and invalidate the old one. Default true. */
    rotate?: boolean;
    /** Default 3600. */
    ttlSeconds?: number;
  };
  /** Issuers whose JWTs the jwt-bearer grant accepts (and token-exchange verifies as subject/actor). */
  jwtBearerIssuers?: JwtBearerIssuer[];
  /** SAML Issuer values the saml2-bearer grant accepts. Default [DEFAULT_SAML_ISSUER]. */
  samlIssuers?: string[];
  /** Tokens token-exchange accepts as subject/actor tokens without verifying them (opaque tokens). */
  exchangeTokens?: ExchangeableToken[];
  /** audience/resource values token-exchange may issue for besides `audience` (default none). */
  exchangeAudiences?: string[];
  /**
   * Adds an HTTPS listener that requests (but does not require) a client certificate, the RFC 8705 mTLS
   * endpoint alias, and enables tls_client_auth, self_signed_tls_client_auth and certificate-bound tokens.
   */
  mtls?: true | MtlsOptions;
  /**
   * DPoP (RFC 9449) is always on (oidc-provider's default: a request with a proof gets a bound
   * token); this adds nonces (§8) and the RSA proof algs. `requireNonce`: proofs without one are
   * answered `use_dpop_nonce`.
   */
  dpop?: { requireNonce?: boolean };
}

export interface MtlsOptions {
  /**
   * Issues the listener's certificate (for localhost and 127.0.0.1) and is trusted for tls_client_auth
   * client certificates. Default: a new test CA, removed on close(); either way it is {@link AuthServer.mtlsCa}.
   */
  ca?: TestCa;
  /** More CA certificates (PEM) whose client certificates count as verified for tls_client_auth. */
  clientCa?: string | string[];
}

export interface AuthServer {
  issuer: string;
  tokenEndpoint: string;
  jwksUri: string;
  /** `${issuer}/.well-known/openid-configuration`; lists mtls_endpoint_aliases with the mtls option. */
  discoveryUrl: string;
  audience: string;
  /** With the mtls option: `https://127.0.0.1:PORT/token`, the RFC 8705 §5 alias (same provider). */
  mtlsTokenEndpoint?: string;
  /** With the mtls option: the CA of the mTLS listener's certificate (trust its caPem) and of tls_client_auth clients. */
  mtlsCa?: TestCa;
  tokenRequests: RecordedTokenRequest[];
  issuedTokens: string[];
  /** Every refresh token the server issued (password and refresh_token grants), in order. */
  issuedRefreshTokens: string[];
  /** The password grant's users: the live array, so tests can add users or change passwords. */
  users: TestUser[];
  setAccessTokenTtl(seconds: number): void;
  /** Makes every refresh token issued so far fail with invalid_grant ("refresh token was revoked"). */
  revokeRefreshTokens(): void;
  /**
   * Signs an access token exactly as the custom grants do (iss, aud default `audience`, iat, exp from the
   * current TTL, jti, client_id): e.g. a subject_token for token exchange without running a grant.
   */
  mintAccessToken(token: {
    sub: string;
    clientId?: string;
    aud?: string | string[];
    scope?: string;
    claims?: JWTPayload;
  }): Promise<string>;
  /** Escape hatch for tests that need more of the provider (events, extra grants, …). */
  provider: OidcProvider;
  close(): Promise<void>;
}

/** The minimal slice of oidc-provider's untyped API this module relies on. */
export interface OidcProvider {
  issuer: string;
  callback(): (req: http.IncomingMessage, res: http.ServerResponse) => void;
  use(middleware: (ctx: OidcContext, next: () => Promise<void>) => Promise<void>): void;
  registerGrantType(name: string, handler: GrantHandler, params?: string[], dupes?: string[]): void;
  on(event: string, listener: (...args: unknown[]) => void): void;
  Client: { find(id: string): Promise<unknown> };
}

export interface OidcContext {
  path: string;
  method: string;
  status: number;
  body: unknown;
  req: http.IncomingMessage;
  oidc?: {
    params?: Record<string, unknown>;
    client?: {
      clientId: string;
      scope?: string;
      clientAuthMethod?: string;
      tlsClientCertificateBoundAccessTokens?: boolean;
    };
  };
}

interface OidcProviderModule {
  default: new (issuer: string, configuration: Record<string, unknown>) => OidcProvider;
  errors: Record<string, new (...args: never[]) => Error>;
}

export const DEFAULT_AUDIENCE = 'https://orders.test';
export const DEFAULT_SCOPE = 'orders.read orders.write';
export const DEFAULT_ACCESS_TOKEN_TTL_SECONDS = 300;
/** The access tokens' JWS algorithm. */
export const SIGNING_ALG = 'ES256';

export interface TestClient {
  id: string;
  secret: string;
  authMethod: 'client_secret_basic' | 'client_secret_post';
}

export const BASIC_CLIENT: TestClient = {
  id: 'orders-basic',
  secret: 'basic-secret-0123456789',
  authMethod: 'client_secret_basic',
};

export const POST_CLIENT: TestClient = {
  id: 'orders-post',
  secret: 'post-secret-0123456789',
  authMethod: 'client_secret_post',
};

/**
 * Its id and secret only authenticate if the client form-urlencodes them before base64 in the Basic
 * header (RFC 6749 §2.3.1): `%rd` is not valid percent-encoding and `+` would turn into a space.
 */
export const SPECIAL_CLIENT: TestClient = {
  id: 'svc:orders client',
  secret: 'p@ss:w%rd+/=',
  authMethod: 'client_secret_basic',
};

export function clientMetadata(client: TestClient, extra: Partial<ClientMetadata> = {}): ClientMetadata {
  return {
    client_id: client.id,
    client_secret: client.secret,
    token_endpoint_auth_method: client.authMethod,
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    scope: DEFAULT_SCOPE,
    ...extra,
  };
}

export const DEFAULT_CLIENTS: readonly ClientMetadata[] = [BASIC_CLIENT, POST_CLIENT, SPECIAL_CLIENT].map(
  (c) => clientMetadata(c),
);

/** RFC 6749 §2.3.1 Basic credentials: each part form-urlencoded, then base64. */
export function basicAuthorization(id: string, secret: string): string {
  const encode = (s: string) => new URLSearchParams({ s }).toString().slice(2);
  return 'Basic ' + Buffer.from(`${encode(id)}:${encode(secret)}`).toString('base64');
}

let providerModule: Promise<OidcProviderModule> | undefined;

function loadProvider(): Promise<OidcProviderModule> {
  providerModule ??= (async () => {
    // oidc-provider 9 targets Node 22+ and warns on import under Node 20, though everything it uses
    // (crypto.hash, URL.parse) exists in Node >= 20.18. Only that one line is dropped.
    const original = console.warn;
    console.warn = (...args: unknown[]) => {
      if (typeof args[0] === 'string' && args[0].includes('Unsupported runtime')) return;
      original.apply(console, args);
    };
    try {
      // A non-literal specifier because the package ships no type declarations.
      const specifier: string = 'oidc-provider';
      return (await import(specifier)) as OidcProviderModule;
    } finally {
      console.warn = original;
    }
  })();
  return providerModule;
}

/**
 * A small in-memory adapter: passing our own keeps oidc-provider from printing its "development-only
 * adapter" warning. Client credentials JWTs are not stored anyway; this only backs incidental models.
 */
function memoryAdapterFactory(): (model: string) => unknown {
  const store = new Map<string, { payload: Record<string, unknown>; expiresAt: number }>();
  const live = (key: string) => {
    const entry = store.get(key);
    if (entry && entry.expiresAt <= Date.now()) {
      store.delete(key);
      return undefined;
    }
    return entry?.payload;
  };
  return (model: string) => ({
    async upsert(id: string, payload: Record<string, unknown>, expiresIn?: number) {
      const expiresAt =
        typeof expiresIn === 'number' ? Date.now() + expiresIn * 1000 : Number.POSITIVE_INFINITY;
      store.set(`${model}:${id}`, { payload, expiresAt });
    },
    async find(id: string) {
      return live(`${model}:${id}`);
    },
    async findByUid(uid: string) {
      for (const [key, { payload }] of store) {
        if (key.startsWith(`${model}:`) && payload['uid'] === uid) return live(key);
      }
      return undefined;
    },
    async findByUserCode(userCode: string) {
      for (const [key, { payload }] of store) {
        if (key.startsWith(`${model}:`) && payload['userCode'] === userCode) return live(key);
      }
      return undefined;
    },
    async consume(id: string) {
      const payload = live(`${model}:${id}`);
      if (payload) payload['consumed'] = Math.floor(Date.now() / 1000);
    },
    async destroy(id: string) {
      store.delete(`${model}:${id}`);
    },
    async revokeByGrantId(grantId: string) {
      for (const [key, { payload }] of store) {
        if (payload['grantId'] === grantId) store.delete(key);
      }
    },
  });
}

/** All signing algorithms oidc-provider knows for client assertions (its default omits the 384/512 ones). */
export const CLIENT_AUTH_SIGNING_ALGS = [
  'HS256',
  'HS384',
  'HS512',
  'RS256',
  'RS384',
  'RS512',
  'PS256',
  'PS384',
  'PS512',
  'ES256',
  'ES384',
  'ES512',
  'Ed25519',
  'EdDSA',
];

// ES256 rather than RS256: generating a fresh P-256 key per server is instant, an RSA one takes ~200 ms.
function signingJwk(): Record<string, unknown> {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const jwk = privateKey.export({ format: 'jwk' }) as Record<string, unknown>;
  return { ...jwk, kid: `test-${randomBytes(6).toString('hex')}`, alg: SIGNING_ALG, use: 'sig' };
}

function readBody(req: http.IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

/**
 * A stand-in for the already-consumed IncomingMessage carrying the same metadata, so the provider (Koa)
 * can read the body a second time. Koa reads headers, url, method and socket; the provider streams the body.
 */
function replayRequest(req: http.IncomingMessage, body: Buffer): http.IncomingMessage {
  const replay = new Readable({ read() {} });
  replay.push(body);
  replay.push(null);
  return Object.assign(replay, {
    headers: req.headers,
    rawHeaders: req.rawHeaders,
    trailers: {},
    rawTrailers: [],
    method: req.method,
    url: req.url,
    httpVersion: req.httpVersion,
    httpVersionMajor: req.httpVersionMajor,
    httpVersionMinor: req.httpVersionMinor,
    socket: req.socket,
    connection: req.socket,
    complete: true,
    aborted: false,
  }) as unknown as http.IncomingMessage;
}

function parseForm(body: Buffer): Record<string, string> {
  const form: Record<string, string> = {};
  for (const [k, v] of new URLSearchParams(body.toString('utf8'))) form[k] = v;
  return form;
}

function closeServer(server: http.Server): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    server.close((err) => (err ? reject(err) : resolve()));
    // Keep-alive sockets from clients would otherwise hold close() open.
    server.closeAllConnections();
  });
}

function listen(server: http.Server): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port));
  });
}

/** The client certificate of a request that arrived on the mTLS listener, if one was presented. */
function peerCertificate(req: http.IncomingMessage): X509Certificate | undefined {
  const socket = req.socket;
  return socket instanceof TLSSocket ? socket.getPeerX509Certificate() : undefined;
}

/** RFC 4514 DN → comparable RDN list: split on unescaped commas, trim, attribute types upper-cased. */
function normalizeDn(dn: string): string[] {
  const rdns: string[] = [];
  let current = '';
  for (let i = 0; i < dn.length; i++) {
    const c = dn[i]!;
    if (c === '\\' && i + 1 < dn.length) {
      current += c + dn[++i];
    } else if (c === ',' || c === ';') {
      rdns.push(current);
      current = '';
    } else {
      current += c;
    }
  }
  rdns.push(current);
  return rdns.map((rdn) => {
    const trimmed = rdn.trim();
    const eq = trimmed.indexOf('=');
    return eq < 0 ? trimmed : `${trimmed.slice(0, eq).trim().toUpperCase()}=${trimmed.slice(eq + 1).trim()}`;
  });
}

/** The SAN values of one kind ('DNS', 'IP Address', 'email', 'URI'); Node quotes values with specials. */
function sanValues(cert: X509Certificate, kind: string): string[] {
  const values: string[] = [];
  for (const m of (cert.subjectAltName ?? '').matchAll(/([A-Za-z ]+):("(?:[^"\\]|\\.)*"|[^,]*)(?:, |$)/g)) {
    if (m[1] !== kind) continue;
    const raw = m[2] ?? '';
    values.push(raw.startsWith('"') ? (JSON.parse(raw) as string) : raw);
  }
  return values;
}

/** features.mTLS.certificateSubjectMatches: RFC 8705 §2.1.2 tls_client_auth_* metadata vs the certificate. */
function certificateSubjectMatches(cert: X509Certificate, property: string, expected: string): boolean {
  switch (property) {
    case 'tls_client_auth_subject_dn':
      return normalizeDn(subjectDn(cert)).join(',') === normalizeDn(expected).join(',');
    case 'tls_client_auth_san_dns':
      return sanValues(cert, 'DNS').some((v) => v.toLowerCase() === expected.toLowerCase());
    case 'tls_client_auth_san_uri':
      return sanValues(cert, 'URI').includes(expected);
    case 'tls_client_auth_san_ip':
      return sanValues(cert, 'IP Address').includes(expected);
    case 'tls_client_auth_san_email':
      return sanValues(cert, 'email').includes(expected);
    default:
      return false;
  }
}

const DEFAULT_CLIENT_AUTH_METHODS = [
  'client_secret_basic',
  'client_secret_jwt',
  'client_secret_post',
  'private_key_jwt',
  'none',
];

export async function startAuthServer(options: AuthServerOptions = {}): Promise<AuthServer> {
  const { default: Provider, errors } = await loadProvider();
  let ttl = options.accessTokenTtlSeconds ?? DEFAULT_ACCESS_TOKEN_TTL_SECONDS;
  const audience = options.audience ?? DEFAULT_AUDIENCE;
  const tokenRequests: RecordedTokenRequest[] = [];
  const issuedTokens: string[] = [];
  const clients = options.clients ?? [...DEFAULT_CLIENTS];
  const pending = new WeakMap<http.IncomingMessage, RecordedTokenRequest>();
  const mtlsOptions = options.mtls === true ? {} : options.mtls;

  let handler: ((req: http.IncomingMessage, res: http.ServerResponse) => void) | undefined;
  const listener = (req: http.IncomingMessage, res: http.ServerResponse) => {
    if (!handler) {
      res.writeHead(503).end();
      return;
    }
    const dispatch = handler;
    if (req.method === 'POST' && new URL(req.url ?? '/', 'http://x').pathname === '/token') {
      readBody(req).then(
        (body) => {
          const replay = replayRequest(req, body);
          const record: RecordedTokenRequest = {
            headers: { ...req.headers },
            form: parseForm(body),
            status: 0,
          };
          if (req.socket instanceof TLSSocket) {
            record.mtls = true;
            const cert = peerCertificate(req);
            if (cert) {
              record.clientCertSubject = subjectDn(cert);
              record.clientCertThumbprint = certificateThumbprint(cert);
            }
          }
          pending.set(replay, record);
          dispatch(replay, res);
        },
        () => res.destroy(),
      );
      return;
    }
    dispatch(req, res);
  };

  const servers: http.Server[] = [];
  let ownCa: TestCa | undefined;
  const cleanup = async () => {
    // A server whose listen() failed would make close() reject and hide the original error.
    await Promise.all(servers.filter((s) => s.listening).map(closeServer));
    await ownCa?.cleanup();
  };

  let provider: OidcProvider;
  let issuer: string;
  let mtlsTokenEndpoint: string | undefined;
  let mtlsCa: TestCa | undefined;
  let refreshTokens: ReturnType<typeof registerTestGrants>;
  const users = options.users ?? [];
  const signing = signingJwk();
  const signingKey = createPrivateKey({ key: signing as JsonWebKey, format: 'jwk' });
  const verifyKey = createPublicKey(signingKey);

  try {
    const server = http.createServer(listener);
    servers.push(server);
    const port = await listen(server);
    issuer = `http://127.0.0.1:${port}`;

    if (mtlsOptions) {
      if (!mtlsOptions.ca) ownCa = await createTestCa();
      mtlsCa = mtlsOptions.ca ?? ownCa!;
      const serverCert = await mtlsCa.issue(['localhost', '127.0.0.1']);
      const extraCas = mtlsOptions.clientCa === undefined ? [] : [mtlsOptions.clientCa].flat();
      // requestCert without rejectUnauthorized: self-signed client certificates must get through to
      // oidc-provider (self_signed_tls_client_auth), which then checks socket.authorized itself for
      // tls_client_auth. Clients without a certificate get through too (they fail client auth there).
      const mtlsServer = https.createServer(
        {
          cert: serverCert.cert,
          key: serverCert.key,
          ca: [mtlsCa.caPem, ...extraCas],
          requestCert: true,
          rejectUnauthorized: false,
        },
        listener,
      );
      servers.push(mtlsServer);
      // 127.0.0.1 rather than localhost: no dependence on how localhost resolves; the certificate has an IP SAN.
      mtlsTokenEndpoint = `https://127.0.0.1:${await listen(mtlsServer)}/token`;
    }
    const tokenEndpoint = `${issuer}/token`;

    const mint = async (token: IssueAccessToken): Promise<string> => {
      const now = Math.floor(Date.now() / 1000);
      // Extra claims last, so mintAccessToken can also make expired or otherwise odd tokens.
      return new SignJWT({
        iss: issuer,
        sub: token.sub,
        aud: token.aud,
        iat: now,
        exp: now + ttl,
        client_id: token.clientId,
        ...(token.scope ? { scope: token.scope } : {}),
        jti: randomUUID(),
        ...token.claims,
      })
        .setProtectedHeader({ alg: SIGNING_ALG, typ: 'at+jwt', kid: signing['kid'] as string })
        .sign(signingKey);
    };

    const mtlsFeature = mtlsOptions
      ? {
          enabled: true,
          certificateBoundAccessTokens: true,
          tlsClientAuth: true,
          selfSignedTlsClientAuth: true,
          // oidc-provider accepts a PEM string or an X509Certificate; PEM is what its docs promise.
          getCertificate: (ctx: OidcContext) => peerCertificate(ctx.req)?.toString(),
          // Chain verified against the listener's `ca` by Node; rejectUnauthorized is off, so check here.
          certificateAuthorized: (ctx: OidcContext) =>
            ctx.req.socket instanceof TLSSocket && ctx.req.socket.authorized,
          certificateSubjectMatches: (ctx: OidcContext, property: string, expected: string) => {
            const cert = peerCertificate(ctx.req);
            return cert !== undefined && certificateSubjectMatches(cert, property, expected);
          },
        }
      : { enabled: false };

    provider = new Provider(issuer, {
      adapter: memoryAdapterFactory(),
      clients: clients.map((c) => ({ ...c })),
      jwks: { keys: [signing] },
      cookies: { keys: [randomBytes(32).toString('hex')] },
      // The provider validates clients lazily against these; its RS256 default would need an RSA key.
      clientDefaults: {
        grant_types: ['client_credentials'],
        response_types: [],
        token_endpoint_auth_method: 'client_secret_basic',
        id_token_signed_response_alg: SIGNING_ALG,
      },
      clientAuthMethods: mtlsOptions
        ? [...DEFAULT_CLIENT_AUTH_METHODS, 'tls_client_auth', 'self_signed_tls_client_auth']
        : DEFAULT_CLIENT_AUTH_METHODS,
      enabledJWA: {
        clientAuthSigningAlgValues: CLIENT_AUTH_SIGNING_ALGS,
        ...(options.dpop ? { dPoPSigningAlgValues: ['ES256', 'EdDSA', 'PS256', 'RS256'] } : {}),
      },
      scopes: ['openid', 'offline_access', ...DEFAULT_SCOPE.split(' ')],
      // oidc-provider 9 has no mtls_endpoint_aliases of its own, but merges this object into discovery.
      discovery: mtlsTokenEndpoint ? { mtls_endpoint_aliases: { token_endpoint: mtlsTokenEndpoint } } : {},
      features: {
        devInteractions: { enabled: false },
        clientCredentials: { enabled: true },
        mTLS: mtlsFeature,
        ...(options.dpop
          ? {
              dPoP: {
                enabled: true,
                nonceSecret: randomBytes(32),
                requireNonce: () => options.dpop?.requireNonce === true,
              },
            }
          : {}),
        resourceIndicators: {
          enabled: true,
          defaultResource: async () => audience,
          useGrantedResource: async () => true,
          getResourceServerInfo: async (_ctx: unknown, resource: string) => {
            if (options.resources?.includes(resource)) {
              return {
                scope: DEFAULT_SCOPE,
                audience: resource,
                accessTokenTTL: ttl,
                accessTokenFormat: 'jwt',
                jwt: { sign: { alg: SIGNING_ALG } },
              };
            }
            if (resource !== audience) {
              const InvalidTarget = errors['InvalidTarget'] as unknown as new () => Error;
              throw new InvalidTarget();
            }
            return {
              scope: DEFAULT_SCOPE,
              audience,
              accessTokenTTL: ttl,
              accessTokenFormat: 'jwt',
              jwt: { sign: { alg: SIGNING_ALG } },
            };
          },
        },
      },
      ttl: {
        // Defaults are fine but the provider logs a notice when its default TTL functions run.
        AccessToken: () => ttl,
        ClientCredentials: () => ttl,
      },
      clientBasedCORS: () => false,
    });

    provider.use(async (ctx, next) => {
      const record = pending.get(ctx.req);
      try {
        await next();
      } finally {
        if (record) {
          // Recorded before Koa writes the response, so a client that saw the response sees the record.
          record.status = ctx.status;
          const body = ctx.body as { access_token?: unknown } | undefined;
          if (ctx.status === 200 && typeof body?.access_token === 'string')
            issuedTokens.push(body.access_token);
          tokenRequests.push(record);
        }
      }
    });

    const env: GrantEnv = {
      issuer,
      audience,
      errors,
      scopes: DEFAULT_SCOPE.split(' '),
      // The same set oidc-provider accepts for client assertions, plus the mTLS alias.
      assertionAudiences: () => [issuer, tokenEndpoint, ...(mtlsTokenEndpoint ? [mtlsTokenEndpoint] : [])],
      accessTokenTtl: () => ttl,
      signAccessToken: mint,
      verifyOwnToken: async (token) =>
        (await jwtVerify(token, verifyKey, { issuer, algorithms: [SIGNING_ALG] })).payload,
      peerCertificate: (ctx) => peerCertificate(ctx.req),
      users,
      refreshTokens: {
        issue: options.refreshTokens?.issue ?? 'offline_access',
        rotate: options.refreshTokens?.rotate ?? true,
        ttlSeconds: options.refreshTokens?.ttlSeconds ?? 3600,
      },
      jwtBearerIssuers: options.jwtBearerIssuers ?? [],
      samlIssuers: options.samlIssuers ?? [DEFAULT_SAML_ISSUER],
      exchangeTokens: options.exchangeTokens ?? [],
      exchangeAudiences: options.exchangeAudiences ?? [],
    };
    refreshTokens = registerTestGrants(provider, env);

    for (const grant of options.extraGrants ?? []) {
      provider.registerGrantType(grant.name, grant.handler, grant.params);
    }

    // Static clients are only validated when first used; fail at startup instead of with a puzzling 400 later.
    for (const client of clients) {
      await provider.Client.find(client.client_id);
    }

    handler = provider.callback();

    return {
      issuer,
      tokenEndpoint,
      jwksUri: `${issuer}/jwks`,
      discoveryUrl: `${issuer}/.well-known/openid-configuration`,
      audience,
      ...(mtlsTokenEndpoint ? { mtlsTokenEndpoint, mtlsCa } : {}),
      tokenRequests,
      issuedTokens,
      issuedRefreshTokens: refreshTokens.issued,
      users,
      provider,
      setAccessTokenTtl(seconds: number) {
        ttl = seconds;
      },
      revokeRefreshTokens: () => refreshTokens.revokeAll(),
      mintAccessToken: (token) => mint({ clientId: BASIC_CLIENT.id, aud: audience, ...token }),
      close: cleanup,
    };
  } catch (err) {
    await cleanup();
    throw err;
  }
}
