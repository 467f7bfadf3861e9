/**
 * The grants oidc-provider does not implement, registered on it with `registerGrantType` by
 * `startAuthServer`: password (RFC 6749 §4.3), refresh_token (§6, replacing the provider's own),
 * jwt-bearer (RFC 7523 §2.1), saml2-bearer (RFC 7522 §2.1) and token-exchange (RFC 8693).
 *
 * The provider's token endpoint authenticates the client (any registered method, including mTLS) and
 * checks the client may use the grant before a handler here runs; the handlers only check the grant.
 * Access tokens are JWTs signed with the server's own key and with the same iss/aud as the provider's,
 * so the verifying upstream accepts them like any other.
 */
import {
  createHash,
  createPublicKey,
  type JsonWebKey,
  type KeyObject,
  randomBytes,
  X509Certificate,
} from 'node:crypto';
import { decodeJwt, type JWTPayload, jwtVerify } from 'jose';
import type { OidcContext, OidcProvider } from './auth-server.js';
import { parseSamlAssertion } from './saml.js';

export const GRANT_TYPES = {
  clientCredentials: 'client_credentials',
  password: 'password',
  refreshToken: 'refresh_token',
  jwtBearer: 'urn:ietf:params:oauth:grant-type:jwt-bearer',
  saml2Bearer: 'urn:ietf:params:oauth:grant-type:saml2-bearer',
  tokenExchange: 'urn:ietf:params:oauth:grant-type:token-exchange',
} as const;

/** RFC 8693 §3 token type identifiers. */
export const TOKEN_TYPES = {
  accessToken: 'urn:ietf:params:oauth:token-type:access_token',
  refreshToken: 'urn:ietf:params:oauth:token-type:refresh_token',
  idToken: 'urn:ietf:params:oauth:token-type:id_token',
  jwt: 'urn:ietf:params:oauth:token-type:jwt',
  saml1: 'urn:ietf:params:oauth:token-type:saml1',
  saml2: 'urn:ietf:params:oauth:token-type:saml2',
} as const;

const KNOWN_TOKEN_TYPES = new Set<string>(Object.values(TOKEN_TYPES));
/** Types whose value may be a JWT this server (or a trusted jwt-bearer issuer) can verify. */
const JWT_TOKEN_TYPES = new Set<string>([TOKEN_TYPES.accessToken, TOKEN_TYPES.jwt, TOKEN_TYPES.idToken]);
/** What token-exchange can issue: this server only mints JWT access tokens. */
const ISSUABLE_TOKEN_TYPES = new Set<string>([TOKEN_TYPES.accessToken, TOKEN_TYPES.jwt]);

export interface TestUser {
  username: string;
  password: string;
}

export interface JwtBearerIssuer {
  /** The assertion's `iss`. */
  issuer: string;
  /** Its verification key: a KeyObject, a public JWK or an SPKI/certificate PEM. */
  publicKey: KeyObject | JsonWebKey | string;
  /** Accepted `alg` values; default: whatever suits the key type. */
  algorithms?: string[];
}

/** A token token-exchange accepts without being able to verify it (RFC 8693 allows any token type). */
export interface ExchangeableToken {
  token: string;
  /** The subject the token stands for: the issued token's `sub` (or `act.sub` as actor token). */
  sub: string;
  /** When set, the request's subject_token_type/actor_token_type must be exactly this. */
  tokenType?: string;
}

export type RefreshTokenIssuance = 'offline_access' | 'always' | 'never';

export interface RefreshTokenRecord {
  clientId: string;
  sub: string;
  scope?: string;
  aud: string | string[];
  expiresAt: number;
  state: 'active' | 'rotated' | 'revoked';
}

export interface IssueAccessToken {
  sub: string;
  clientId: string;
  aud: string | string[];
  scope?: string;
  /** Extra claims, e.g. cnf or act. */
  claims?: JWTPayload;
}

/** Everything the grant handlers need from the server; live values are functions. */
export interface GrantEnv {
  issuer: string;
  audience: string;
  errors: Record<string, new (...args: never[]) => Error>;
  /** The scopes the server knows: the allowed scope of a client that registered none. */
  scopes: readonly string[];
  /** Values accepted as an assertion's audience: token endpoint(s) and issuer. */
  assertionAudiences(): string[];
  accessTokenTtl(): number;
  signAccessToken(token: IssueAccessToken): Promise<string>;
  /** Verifies a JWT this server issued (signature, iss, exp). */
  verifyOwnToken(token: string): Promise<JWTPayload>;
  /** The TLS client certificate of the request, if it came through the mTLS listener with one. */
  peerCertificate(ctx: OidcContext): X509Certificate | undefined;
  users: TestUser[];
  refreshTokens: { issue: RefreshTokenIssuance; rotate: boolean; ttlSeconds: number };
  jwtBearerIssuers: JwtBearerIssuer[];
  samlIssuers: string[];
  exchangeTokens: ExchangeableToken[];
  /** Audience/resource values token-exchange may issue for, besides `audience`. */
  exchangeAudiences: string[];
}

/** The server's refresh tokens: opaque random strings mapped to what they were granted for. */
export class RefreshTokenStore {
  readonly records = new Map<string, RefreshTokenRecord>();
  /** Every refresh token ever issued, in order. */
  readonly issued: string[] = [];

  issue(record: Omit<RefreshTokenRecord, 'state'>): string {
    const token = `rt-${randomBytes(24).toString('base64url')}`;
    this.records.set(token, { ...record, state: 'active' });
    this.issued.push(token);
    return token;
  }

  /** Makes every refresh token issued so far unusable (invalid_grant), as a server-side logout would. */
  revokeAll(): void {
    for (const record of this.records.values()) record.state = 'revoked';
  }
}

type OidcError = Error & { error_description?: string };

function oauthError(env: GrantEnv, name: string, description: string): OidcError {
  const Ctor = env.errors[name] as unknown as new (description: string) => OidcError;
  const err = new Ctor(description);
  // InvalidGrant and friends have a fixed description and put the argument in a hidden error_detail;
  // tests want to see why a grant failed.
  err.error_description = description;
  return err;
}

const invalidRequest = (env: GrantEnv, d: string) => oauthError(env, 'InvalidRequest', d);
const invalidGrant = (env: GrantEnv, d: string) => oauthError(env, 'InvalidGrant', d);
const invalidTarget = (env: GrantEnv, d: string) => oauthError(env, 'InvalidTarget', d);
const invalidScope = (env: GrantEnv, d: string) => oauthError(env, 'InvalidScope', d);

function param(ctx: OidcContext, name: string): string | undefined {
  const value = ctx.oidc?.params?.[name];
  return typeof value === 'string' && value !== '' ? value : undefined;
}

function params(ctx: OidcContext, name: string): string[] {
  const value = ctx.oidc?.params?.[name];
  if (Array.isArray(value)) return value.filter((v): v is string => typeof v === 'string' && v !== '');
  return typeof value === 'string' && value !== '' ? [value] : [];
}

function required(env: GrantEnv, ctx: OidcContext, name: string): string {
  const value = param(ctx, name);
  if (value === undefined) throw invalidRequest(env, `missing required parameter '${name}'`);
  return value;
}

function client(ctx: OidcContext) {
  const c = ctx.oidc?.client;
  if (!c) throw new Error('grant handler ran without an authenticated client');
  return c;
}

/** The requested scope, checked against the client's registered scope; undefined when none requested. */
function requestedScope(env: GrantEnv, ctx: OidcContext, opts: { offline?: boolean; within?: string }) {
  const requested = param(ctx, 'scope')?.split(' ').filter(Boolean);
  if (!requested?.length) return undefined;
  const allowed = new Set(opts.within?.split(' ') ?? client(ctx).scope?.split(' ') ?? env.scopes);
  if (opts.offline) allowed.add('offline_access');
  const refused = requested.filter((s) => !allowed.has(s));
  if (refused.length) throw invalidScope(env, `requested scope is not allowed: ${refused.join(' ')}`);
  return [...new Set(requested)].join(' ');
}

/** The `aud` of the access token: the requested resource(s)/audience(s) if known, else the default. */
function targets(env: GrantEnv, ctx: OidcContext, extra: readonly string[], names: string[]) {
  const requested = [...new Set(names.flatMap((n) => params(ctx, n)))];
  const known = new Set([env.audience, ...extra]);
  for (const target of requested) {
    if (!known.has(target)) throw invalidTarget(env, `unknown resource or audience: ${target}`);
  }
  if (requested.length === 0) return env.audience;
  return requested.length === 1 ? requested[0]! : requested;
}

/** RFC 8705 §3: a client registered for bound tokens gets the certificate's thumbprint in `cnf`. */
function confirmation(env: GrantEnv, ctx: OidcContext): JWTPayload | undefined {
  if (!client(ctx).tlsClientCertificateBoundAccessTokens) return undefined;
  const cert = env.peerCertificate(ctx);
  if (!cert) throw invalidGrant(env, 'mutual TLS client certificate not provided');
  return { cnf: { 'x5t#S256': certificateThumbprint(cert) } };
}

export function certificateThumbprint(cert: X509Certificate): string {
  return createHash('sha256').update(cert.raw).digest('base64url');
}

async function respond(
  env: GrantEnv,
  ctx: OidcContext,
  token: Omit<IssueAccessToken, 'clientId'>,
  extraBody: Record<string, unknown> = {},
): Promise<void> {
  const clientId = client(ctx).clientId;
  const claims = { ...token.claims, ...confirmation(env, ctx) };
  const accessToken = await env.signAccessToken({ ...token, clientId, claims });
  ctx.body = {
    access_token: accessToken,
    token_type: 'Bearer',
    expires_in: env.accessTokenTtl(),
    ...(token.scope ? { scope: token.scope } : {}),
    ...extraBody,
  };
}

function describeJoseError(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

async function passwordGrant(env: GrantEnv, store: RefreshTokenStore, ctx: OidcContext): Promise<void> {
  const username = required(env, ctx, 'username');
  const password = required(env, ctx, 'password');
  const user = env.users.find((u) => u.username === username && u.password === password);
  if (!user) throw invalidGrant(env, 'invalid resource owner credentials');
  const scope = requestedScope(env, ctx, { offline: true });
  const aud = targets(env, ctx, [], ['resource']);
  const wantsRefresh =
    env.refreshTokens.issue === 'always' ||
    (env.refreshTokens.issue === 'offline_access' && (scope?.split(' ').includes('offline_access') ?? false));
  const refreshToken = wantsRefresh
    ? store.issue({
        clientId: client(ctx).clientId,
        sub: user.username,
        ...(scope ? { scope } : {}),
        aud,
        expiresAt: Date.now() + env.refreshTokens.ttlSeconds * 1000,
      })
    : undefined;
  await respond(
    env,
    ctx,
    { sub: user.username, aud, scope },
    refreshToken ? { refresh_token: refreshToken } : {},
  );
}

async function refreshTokenGrant(env: GrantEnv, store: RefreshTokenStore, ctx: OidcContext): Promise<void> {
  const presented = required(env, ctx, 'refresh_token');
  const record = store.records.get(presented);
  if (!record) throw invalidGrant(env, 'refresh token is invalid or unknown');
  if (record.state === 'revoked') throw invalidGrant(env, 'refresh token was revoked');
  if (record.state === 'rotated') throw invalidGrant(env, 'refresh token was already used');
  if (record.expiresAt <= Date.now()) throw invalidGrant(env, 'refresh token is expired');
  if (record.clientId !== client(ctx).clientId) {
    throw invalidGrant(env, 'refresh token was issued to another client');
  }
  // RFC 6749 §6: a narrower scope may be requested, never a wider one than originally granted.
  const scope = param(ctx, 'scope') ? requestedScope(env, ctx, { within: record.scope ?? '' }) : record.scope;
  const aud = params(ctx, 'resource').length ? targets(env, ctx, [], ['resource']) : record.aud;
  let rotated: string | undefined;
  if (env.refreshTokens.rotate) {
    record.state = 'rotated';
    // §6: the new refresh token keeps the original scope even when this access token is narrower.
    const { state: _state, ...rest } = record;
    rotated = store.issue({ ...rest, expiresAt: Date.now() + env.refreshTokens.ttlSeconds * 1000 });
  }
  await respond(env, ctx, { sub: record.sub, aud, scope }, rotated ? { refresh_token: rotated } : {});
}

async function verifyWithIssuer(
  env: GrantEnv,
  issuer: JwtBearerIssuer,
  token: string,
  audience: string[] | undefined,
  what: string,
): Promise<JWTPayload> {
  let key: KeyObject;
  try {
    key =
      typeof issuer.publicKey === 'string'
        ? issuer.publicKey.includes('BEGIN CERTIFICATE')
          ? new X509Certificate(issuer.publicKey).publicKey
          : createPublicKey(issuer.publicKey)
        : 'kty' in issuer.publicKey
          ? createPublicKey({ key: issuer.publicKey, format: 'jwk' })
          : (issuer.publicKey as KeyObject);
    // A private key works too (tests sometimes pass the pair's private half): verify with its public part.
    if (key.type === 'private') key = createPublicKey(key);
  } catch (err) {
    throw new Error(`jwtBearerIssuers entry for ${issuer.issuer} has an unusable key`, { cause: err });
  }
  try {
    const { payload } = await jwtVerify(token, key, {
      issuer: issuer.issuer,
      ...(audience ? { audience } : {}),
      requiredClaims: audience ? ['exp', 'sub', 'aud'] : ['exp', 'sub'],
      ...(issuer.algorithms ? { algorithms: issuer.algorithms } : {}),
    });
    return payload;
  } catch (err) {
    throw invalidGrant(env, `${what} is invalid: ${describeJoseError(err)}`);
  }
}

function unverifiedClaims(token: string): JWTPayload | undefined {
  try {
    return decodeJwt(token);
  } catch {
    return undefined;
  }
}

async function jwtBearerGrant(env: GrantEnv, ctx: OidcContext): Promise<void> {
  const assertion = required(env, ctx, 'assertion');
  const claims = unverifiedClaims(assertion);
  if (!claims) throw invalidGrant(env, 'assertion is not a JWT');
  const issuer = env.jwtBearerIssuers.find((i) => i.issuer === claims.iss);
  if (!issuer) throw invalidGrant(env, `assertion issuer is not trusted: ${String(claims.iss)}`);
  // RFC 7523 §3: aud must identify this server; exp is required, and so is sub (the resource owner).
  const payload = await verifyWithIssuer(env, issuer, assertion, env.assertionAudiences(), 'assertion');
  const scope = requestedScope(env, ctx, {});
  await respond(env, ctx, { sub: payload.sub!, aud: targets(env, ctx, [], ['resource']), scope });
}

const BASE64URL = /^[A-Za-z0-9_-]+$/;

async function saml2BearerGrant(env: GrantEnv, ctx: OidcContext): Promise<void> {
  const assertion = required(env, ctx, 'assertion');
  // RFC 7522 §2.1: base64url (RFC 4648 §5) with the padding removed. Standard base64 (+ / =) is a
  // classic interoperability bug, so it is refused rather than tolerated.
  if (!BASE64URL.test(assertion) || assertion.length % 4 === 1) {
    throw invalidGrant(env, 'assertion must be base64url-encoded without padding (RFC 7522 §2.1)');
  }
  const xml = Buffer.from(assertion, 'base64url').toString('utf8');
  let saml: ReturnType<typeof parseSamlAssertion>;
  try {
    saml = parseSamlAssertion(xml);
  } catch (err) {
    throw invalidGrant(env, describeJoseError(err));
  }
  // No XML signature check: the proxy under test passes assertions through untouched, so there is
  // nothing for a signature to prove here (and it would need an XML-DSig implementation).
  if (!env.samlIssuers.includes(saml.issuer)) {
    throw invalidGrant(env, `assertion issuer is not trusted: ${saml.issuer}`);
  }
  const accepted = new Set(env.assertionAudiences());
  if (!saml.audiences.some((a) => accepted.has(a))) {
    throw invalidGrant(env, 'assertion Audience must be the token endpoint URL or the issuer');
  }
  if (!saml.confirmationMethods.includes('urn:oasis:names:tc:SAML:2.0:cm:bearer')) {
    throw invalidGrant(env, 'assertion has no bearer SubjectConfirmation');
  }
  if (saml.recipients.length && !saml.recipients.some((r) => accepted.has(r))) {
    throw invalidGrant(env, 'assertion Recipient must be the token endpoint URL');
  }
  const now = Date.now();
  if (!saml.notOnOrAfter) throw invalidGrant(env, 'assertion has no NotOnOrAfter');
  if (saml.notOnOrAfter.getTime() <= now) throw invalidGrant(env, 'assertion has expired');
  if (saml.notBefore && saml.notBefore.getTime() > now + 5000) {
    throw invalidGrant(env, 'assertion is not yet valid');
  }
  const scope = requestedScope(env, ctx, {});
  await respond(env, ctx, { sub: saml.nameId, aud: targets(env, ctx, [], ['resource']), scope });
}

interface ExchangedToken {
  sub: string;
  act?: unknown;
}

async function exchangedToken(
  env: GrantEnv,
  token: string,
  type: string,
  what: 'subject_token' | 'actor_token',
): Promise<ExchangedToken> {
  if (!KNOWN_TOKEN_TYPES.has(type)) throw invalidRequest(env, `unsupported ${what}_type: ${type}`);
  const claims = JWT_TOKEN_TYPES.has(type) ? unverifiedClaims(token) : undefined;
  if (claims?.iss === env.issuer) {
    let payload: JWTPayload;
    try {
      payload = await env.verifyOwnToken(token);
    } catch (err) {
      throw invalidGrant(env, `${what} is invalid: ${describeJoseError(err)}`);
    }
    if (!payload.sub) throw invalidGrant(env, `${what} has no sub`);
    return { sub: payload.sub, ...(payload['act'] ? { act: payload['act'] } : {}) };
  }
  const trusted = claims && env.jwtBearerIssuers.find((i) => i.issuer === claims.iss);
  if (trusted) {
    const payload = await verifyWithIssuer(env, trusted, token, undefined, what);
    return { sub: payload.sub! };
  }
  const listed = env.exchangeTokens.find((t) => t.token === token);
  if (listed) {
    if (listed.tokenType !== undefined && listed.tokenType !== type) {
      throw invalidGrant(env, `${what}_type does not match the ${what}`);
    }
    return { sub: listed.sub };
  }
  throw invalidGrant(env, `${what} is invalid, expired or unknown`);
}

async function tokenExchangeGrant(env: GrantEnv, ctx: OidcContext): Promise<void> {
  const subjectToken = required(env, ctx, 'subject_token');
  const subjectTokenType = required(env, ctx, 'subject_token_type');
  const actorToken = param(ctx, 'actor_token');
  const actorTokenType = param(ctx, 'actor_token_type');
  // RFC 8693 §2.1: actor_token_type is required with actor_token and must not appear without it.
  if (actorToken !== undefined && actorTokenType === undefined) {
    throw invalidRequest(env, "missing required parameter 'actor_token_type'");
  }
  if (actorToken === undefined && actorTokenType !== undefined) {
    throw invalidRequest(env, 'actor_token_type given without actor_token');
  }
  const requestedType = param(ctx, 'requested_token_type') ?? TOKEN_TYPES.accessToken;
  if (!ISSUABLE_TOKEN_TYPES.has(requestedType)) {
    throw invalidRequest(env, `unsupported requested_token_type: ${requestedType}`);
  }

  const aud = targets(env, ctx, env.exchangeAudiences, ['audience', 'resource']);
  const scope = requestedScope(env, ctx, {});
  const subject = await exchangedToken(env, subjectToken, subjectTokenType, 'subject_token');
  const actor = actorToken
    ? await exchangedToken(env, actorToken, actorTokenType!, 'actor_token')
    : undefined;
  // RFC 8693 §4.1: the current actor on top, prior delegation (the subject token's own act) nested.
  const act = actor
    ? { act: { sub: actor.sub, ...(subject.act ? { act: subject.act } : {}) } }
    : subject.act
      ? { act: subject.act }
      : {};
  await respond(
    env,
    ctx,
    { sub: subject.sub, aud, scope, claims: act },
    { issued_token_type: requestedType },
  );
}

/**
 * Registers the grants on the provider. Returns the refresh token store; the handlers read `env` on
 * every request, so later changes to its arrays (users, issuers) take effect at once.
 */
export function registerTestGrants(provider: OidcProvider, env: GrantEnv): RefreshTokenStore {
  const store = new RefreshTokenStore();
  const withResource = (names: string[]) => [...names, 'scope', 'resource'];
  provider.registerGrantType(
    GRANT_TYPES.password,
    (ctx) => passwordGrant(env, store, ctx),
    withResource(['username', 'password']),
  );
  // oidc-provider registered its own refresh_token handler in its constructor (because of the
  // offline_access scope); registerGrantType replaces the handler in its grant map, so ours wins.
  provider.registerGrantType(
    GRANT_TYPES.refreshToken,
    (ctx) => refreshTokenGrant(env, store, ctx),
    withResource(['refresh_token']),
  );
  provider.registerGrantType(
    GRANT_TYPES.jwtBearer,
    (ctx) => jwtBearerGrant(env, ctx),
    withResource(['assertion']),
  );
  provider.registerGrantType(
    GRANT_TYPES.saml2Bearer,
    (ctx) => saml2BearerGrant(env, ctx),
    withResource(['assertion']),
  );
  provider.registerGrantType(
    GRANT_TYPES.tokenExchange,
    (ctx) => tokenExchangeGrant(env, ctx),
    withResource([
      'subject_token',
      'subject_token_type',
      'actor_token',
      'actor_token_type',
      'requested_token_type',
      'audience',
    ]),
    // RFC 8693 §2.1: resource and audience may each be given more than once.
    ['resource', 'audience'],
  );
  return store;
}
