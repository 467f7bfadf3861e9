import type { KeyObject } from 'node:crypto';
import { type DpopAlg, type DpopConfig, parseDpopKey } from '../dpop/key.js';
import {
  algorithmsFor,
  assertCertificateMatches,
  parsePrivateKey,
  type SigningAlg,
  type SigningKeyConfig,
} from '../jwt/signing-key.js';
import { type Checker, type Fields, isMapping, join } from './checker.js';
import { insecureHttp, tlsClient } from './rules.js';
import { AUTH_KEYS, Credential, GRANT_KEYS } from './schema-credential.js';
import { NAME } from './schema-kit.js';
import type {
  ClientAuthConfig,
  ClientAuthMethod,
  CredentialConfig,
  GrantConfig,
  GrantType,
  TokenInput,
} from './types.js';

type Obj = Record<string, unknown>;
type CredentialFields = Fields<typeof Credential>;

export function credential(c: Checker, name: string, raw: unknown): CredentialConfig | undefined {
  const path = join('credentials', name);
  const before = c.problems.length;
  if (!NAME.test(name)) c.add(path, 'a credential name may hold only letters, digits, ".", "_" and "-"');
  const value = c.entry(raw, path);
  if (!value) return undefined;
  const f = c.fields(Credential, value, path);
  const grantType = f.grant_type;
  // A mistyped method or grant is reported once; checks that depend on it would only add noise.
  const authMethod = c.failed(join(path, 'auth_method')) ? undefined : f.auth_method;
  if (authMethod) notApplicable(c, value, path, AUTH_KEYS, authMethod, 'auth_method');
  if (grantType) notApplicable(c, value, path, GRANT_KEYS, grantType, 'grant_type');
  const clientAuth = authMethod ? clientAuthConfig(c, f, value, path, authMethod) : undefined;
  if (authMethod === 'none' && grantType === 'client_credentials') {
    c.add(
      join(path, 'auth_method'),
      'client_credentials needs client authentication (RFC 6749 §4.4); none is for public clients',
    );
  }
  const grant = grantType ? grantConfig(c, f, value, path, grantType) : undefined;
  if (f.prefetch && grant && usesRequestHeader(grant)) {
    c.add(
      join(path, 'prefetch'),
      'cannot prefetch: the token depends on each request (source: request_header)',
    );
  }
  const tls = tlsClient(c, f.tls, value['tls'], join(path, 'tls'));
  const { token_endpoint: tokenEndpoint, mtls_token_endpoint: mtlsTokenEndpoint, issuer } = f;
  endpointOrIssuer(c, value, path);
  if (!f.allow_insecure_http) {
    if (issuer !== undefined && URL.canParse(issuer))
      insecureHttp(c, new URL(issuer), join(path, 'issuer'), 'the credential');
    if (tokenEndpoint) insecureHttp(c, tokenEndpoint, join(path, 'token_endpoint'), 'the credential');
    if (mtlsTokenEndpoint)
      insecureHttp(c, mtlsTokenEndpoint, join(path, 'mtls_token_endpoint'), 'the credential');
  }
  const timeoutMs = f.timeout;
  // The whole request, connecting included, must fit in `timeout`: a longer connect phase never ends.
  if (value['connect_timeout'] !== undefined && f.connect_timeout > timeoutMs) {
    c.add(
      join(path, 'connect_timeout'),
      `must not be longer than timeout (${timeoutMs} ms), which bounds the whole token request`,
    );
  }
  const { default_lifetime: defaultLifetimeMs, max_lifetime: maxLifetimeMs } = f;
  if (defaultLifetimeMs > maxLifetimeMs) {
    // Named where the user wrote something: either key may be the default.
    const key = value['default_lifetime'] !== undefined ? 'default_lifetime' : 'max_lifetime';
    c.add(
      join(path, key),
      `default_lifetime (${defaultLifetimeMs} ms) must not exceed max_lifetime (${maxLifetimeMs} ms)`,
    );
  }
  const { initial_backoff: initialBackoffMs, max_backoff: maxBackoffMs } = f.retry;
  if (initialBackoffMs > maxBackoffMs) {
    const retry = isMapping(value['retry']) ? value['retry'] : {};
    const key = retry['initial_backoff'] !== undefined ? 'retry.initial_backoff' : 'retry.max_backoff';
    c.add(
      join(path, key),
      `retry.initial_backoff (${initialBackoffMs} ms) must not exceed retry.max_backoff (${maxBackoffMs} ms)`,
    );
  }
  if ((authMethod === 'tls_client_auth' || authMethod === 'self_signed_tls_client_auth') && !tls.cert) {
    c.add(join(path, 'tls.cert_file'), `is required with auth_method ${authMethod} (RFC 8705)`);
  }
  const dpop = f.dpop && dpopConfig(c, f.dpop, join(path, 'dpop'));
  const clientId = f.client_id;
  if (
    c.problems.length > before ||
    (!tokenEndpoint && issuer === undefined) ||
    clientId === undefined ||
    !clientAuth ||
    !grant
  ) {
    return undefined;
  }
  return {
    name,
    ...(tokenEndpoint ? { tokenEndpoint } : { issuer: issuer! }),
    ...(mtlsTokenEndpoint ? { mtlsTokenEndpoint } : {}),
    grant,
    clientId,
    clientAuth,
    ...(f.scope && f.scope.length > 0 ? { scope: f.scope.join(' ') } : {}),
    ...(f.audience !== undefined ? { audience: f.audience } : {}),
    ...(f.resource !== undefined ? { resource: f.resource } : {}),
    params: Object.freeze(f.params),
    prefetch: f.prefetch,
    timeoutMs,
    refreshAhead: f.refresh_ahead,
    tls,
    connectTimeoutMs: f.connect_timeout,
    maxResponseBytes: f.max_response_size,
    defaultLifetimeMs,
    maxLifetimeMs,
    tokenTypes: f.token_types,
    initialBackoffMs,
    maxBackoffMs,
    allowInsecureHttp: f.allow_insecure_http,
    ...(dpop ? { dpop } : {}),
  };
}

/** `dpop`: the key file (if any) must parse and sign `alg`; read once here, as at start. */
function dpopConfig(c: Checker, f: CredentialFields['dpop'] & {}, path: string): DpopConfig | undefined {
  if (c.failed(join(path, 'alg'))) return undefined;
  const alg = f.alg as DpopAlg;
  if (f.key_file === undefined) return { alg };
  const key = c.file(f.key_file, join(path, 'key_file'));
  if (!key) return undefined;
  try {
    parseDpopKey(key.value, alg);
  } catch (err) {
    c.add(join(path, 'key_file'), (err as Error).message);
    return undefined;
  }
  return { key, alg };
}

/** `token_endpoint`, or `issuer` whose metadata (RFC 8414) names it: exactly one of them. */
function endpointOrIssuer(c: Checker, obj: Obj, path: string): void {
  const hasEndpoint = obj['token_endpoint'] !== undefined;
  const hasIssuer = obj['issuer'] !== undefined;
  if (hasEndpoint && hasIssuer) {
    c.add(
      join(path, 'issuer'),
      'use either token_endpoint or issuer (whose metadata names the token endpoint), not both',
    );
  } else if (!hasEndpoint && !hasIssuer) {
    c.add(
      join(path, 'token_endpoint'),
      "is required, or issuer: the authorization server's issuer, whose metadata (RFC 8414) names it",
    );
  }
  if (hasIssuer && obj['mtls_token_endpoint'] !== undefined) {
    c.add(
      join(path, 'mtls_token_endpoint'),
      "comes from the issuer's metadata (mtls_endpoint_aliases, RFC 8705 §5) with issuer; remove it",
    );
  }
}

/** Names of the credentials a token exchange credential takes its tokens from. */
export function credentialDependencies(cred: CredentialConfig): string[] {
  if (cred.grant.type !== 'token_exchange') return [];
  return [cred.grant.subjectToken, cred.grant.actorToken]
    .filter((t): t is TokenInput & { source: 'credential' } => t?.source === 'credential')
    .map((t) => t.credential);
}

export function usesRequestHeader(grant: GrantConfig): boolean {
  switch (grant.type) {
    case 'jwt_bearer':
    case 'saml2_bearer':
      return grant.assertion.source === 'request_header';
    case 'token_exchange':
      return grant.subjectToken.source === 'request_header' || grant.actorToken?.source === 'request_header';
    default:
      return false;
  }
}

/** A key that belongs to another auth method or grant is a mistake worth naming. */
function notApplicable<T extends string>(
  c: Checker,
  obj: Obj,
  path: string,
  table: Readonly<Record<string, readonly T[]>>,
  chosen: T,
  selector: string,
): void {
  for (const [key, owners] of Object.entries(table)) {
    if (obj[key] !== undefined && !owners.includes(chosen)) {
      c.add(join(path, key), `is only used with ${selector} ${owners.join(' or ')}, not ${chosen}`);
    }
  }
}

function clientAuthConfig(
  c: Checker,
  f: CredentialFields,
  obj: Obj,
  path: string,
  method: ClientAuthMethod,
): ClientAuthConfig | undefined {
  const assertionAudience = f.assertion_audience;
  const audience = assertionAudience !== undefined ? { assertionAudience } : {};
  switch (method) {
    case 'client_secret_basic':
    case 'client_secret_post':
    case 'client_secret_jwt': {
      c.required(obj, 'client_secret', path);
      const secret = c.secret(obj['client_secret'], f.client_secret, join(path, 'client_secret'));
      if (!secret) return undefined;
      return method === 'client_secret_jwt' ? { method, secret, ...audience } : { method, secret };
    }
    case 'private_key_jwt': {
      const hasKey = obj['private_key_file'] !== undefined;
      const hasFile = obj['client_assertion_file'] !== undefined;
      if (hasKey === hasFile) {
        c.add(
          join(path, hasKey ? 'client_assertion_file' : 'private_key_file'),
          hasKey
            ? 'use either private_key_file (we sign) or client_assertion_file (a ready assertion), not both'
            : 'private_key_jwt needs private_key_file, or client_assertion_file (e.g. a projected service-account token)',
        );
        return undefined;
      }
      if (hasFile) {
        for (const key of ['signing_alg', 'key_id', 'certificate_file']) {
          if (obj[key] !== undefined) c.add(join(path, key), 'is only used with private_key_file');
        }
        const file = c.file(f.client_assertion_file, join(path, 'client_assertion_file'));
        if (!file || c.failed(join(path, 'client_assertion_type'))) return undefined;
        const type = f.client_assertion_type;
        return {
          method,
          assertionFile: file.file!,
          ...(type !== undefined ? { assertionType: type } : {}),
          ...audience,
        };
      }
      if (obj['client_assertion_type'] !== undefined) {
        // What token-injector signs is an RFC 7523 JWT; another type would misname it.
        c.add(
          join(path, 'client_assertion_type'),
          'is only used with client_assertion_file: the assertions token-injector signs are always jwt-bearer (RFC 7523)',
        );
      }
      const signing = signingKey(c, f, path);
      return signing ? { method, signing, ...audience } : undefined;
    }
    default:
      return { method };
  }
}

interface SigningKeyFields {
  readonly private_key_file?: string | undefined;
  readonly signing_alg?: string | undefined;
  readonly key_id?: string | undefined;
  readonly certificate_file?: string | undefined;
}

/** `private_key_file` + `signing_alg` + `key_id` + `certificate_file`, checked against each other. */
function signingKey(c: Checker, f: SigningKeyFields, path: string): SigningKeyConfig | undefined {
  const keyFile = c.file(f.private_key_file, join(path, 'private_key_file'));
  if (!keyFile || c.failed(join(path, 'signing_alg'))) return undefined;
  let key: KeyObject;
  try {
    key = parsePrivateKey(keyFile.value);
  } catch (err) {
    c.add(join(path, 'private_key_file'), (err as Error).message);
    return undefined;
  }
  const usable = algorithmsFor(key);
  if (usable.length === 0) {
    c.add(join(path, 'private_key_file'), `this key type (${key.asymmetricKeyType}) cannot sign JWTs here`);
    return undefined;
  }
  const configured = f.signing_alg as SigningAlg | undefined;
  if (configured !== undefined && !usable.includes(configured)) {
    c.add(join(path, 'signing_alg'), `${configured} does not fit the key (it signs ${usable.join(', ')})`);
    return undefined;
  }
  const certificate = c.file(f.certificate_file, join(path, 'certificate_file'));
  if (certificate) {
    try {
      assertCertificateMatches(certificate.value, key);
    } catch (err) {
      c.add(join(path, 'certificate_file'), (err as Error).message);
      return undefined;
    }
  }
  return {
    key: keyFile,
    alg: configured ?? usable[0]!,
    algInferred: configured === undefined,
    ...(f.key_id !== undefined ? { keyId: f.key_id } : {}),
    ...(certificate ? { certificate } : {}),
  };
}

function grantConfig(
  c: Checker,
  f: CredentialFields,
  obj: Obj,
  path: string,
  type: GrantType,
): GrantConfig | undefined {
  switch (type) {
    case 'client_credentials':
      return { type };
    case 'password': {
      c.required(obj, 'username', path);
      c.required(obj, 'password', path);
      const username = f.username;
      const password = c.secret(obj['password'], f.password, join(path, 'password'));
      return username !== undefined && password ? { type, username, password } : undefined;
    }
    case 'jwt_bearer':
    case 'saml2_bearer': {
      c.required(obj, 'assertion', path);
      const assertion = f.assertion;
      if (type === 'saml2_bearer' && assertion?.source === 'sign') {
        // RFC 7522 assertions are SAML: token-injector signs JWTs only.
        c.add(join(path, 'assertion.source'), 'must be one of file, request_header, got "sign"');
        return undefined;
      }
      const input = assertion && tokenInput(c, assertion, join(path, 'assertion'));
      return input ? { type, assertion: input } : undefined;
    }
    case 'token_exchange': {
      c.required(obj, 'subject_token', path);
      const { subject_token: subject, actor_token: actor } = f;
      const subjectToken = subject && tokenInput(c, subject, join(path, 'subject_token'));
      const actorToken = actor && tokenInput(c, actor, join(path, 'actor_token'));
      if (!subject || !subjectToken || subject.type === undefined) return undefined;
      if (obj['actor_token'] !== undefined && (!actorToken || actor?.type === undefined)) return undefined;
      return {
        type,
        subjectToken,
        subjectTokenType: subject.type,
        ...(actorToken && actor?.type ? { actorToken, actorTokenType: actor.type } : {}),
        ...(f.requested_token_type !== undefined ? { requestedTokenType: f.requested_token_type } : {}),
      };
    }
  }
}

type InputFields = NonNullable<CredentialFields['assertion'] | CredentialFields['subject_token']>;

/** `assertion`, `subject_token` or `actor_token`, read by the schema's variant for its `source`. */
function tokenInput(c: Checker, input: InputFields, path: string): TokenInput | undefined {
  switch (input.source) {
    case 'file': {
      const file = c.file(input.path, join(path, 'path'));
      return file ? { source: 'file', path: file.file! } : undefined;
    }
    case 'request_header':
      return input.header === undefined
        ? undefined
        : { source: 'request_header', header: input.header, maxEntries: input.max_entries };
    case 'credential':
      return input.credential === undefined
        ? undefined
        : { source: 'credential', credential: input.credential };
    case 'sign': {
      const signing = signingKey(c, input, path);
      const { issuer, subject, audience } = input;
      if (!signing || issuer === undefined || subject === undefined) return undefined;
      return {
        source: 'sign',
        signing,
        issuer,
        subject,
        ...(audience !== undefined ? { audience } : {}),
        lifetimeMs: input.lifetime,
        claims: Object.freeze({ ...input.claims }),
      };
    }
    default:
      return undefined;
  }
}
