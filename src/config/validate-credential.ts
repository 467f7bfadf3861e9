import type { KeyObject } from 'node:crypto';
import {
  algorithmsFor,
  assertCertificateMatches,
  parsePrivateKey,
  SIGNING_ALGS,
} from '../jwt/signing-key.js';
import { type Checker, isAbsoluteUrl, join } from './checker.js';
import { insecureHttp, positive } from './rules.js';
import type {
  ClientAuthConfig,
  ClientAuthMethod,
  CredentialConfig,
  GrantConfig,
  GrantType,
  SigningAlg,
  SigningKeyConfig,
  TokenInput,
} from './types.js';

type Obj = Record<string, unknown>;

export const DEFAULT_TOKEN_TIMEOUT_MS = 10_000;
export const DEFAULT_REFRESH_AHEAD = 0.8;
const DEFAULT_CONNECT_TIMEOUT_MS = 5_000;
const DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024;
const DEFAULT_LIFETIME_MS = 5 * 60_000;
const MAX_LIFETIME_MS = 24 * 3_600_000;
const DEFAULT_INITIAL_BACKOFF_MS = 250;
const DEFAULT_MAX_BACKOFF_MS = 30_000;
const DEFAULT_ASSERTION_LIFETIME_MS = 5 * 60_000;
const DEFAULT_MAX_ENTRIES = 10_000;

const GRANT_TYPES: readonly GrantType[] = [
  'client_credentials',
  'password',
  'jwt_bearer',
  'saml2_bearer',
  'token_exchange',
];
const AUTH_METHODS: readonly ClientAuthMethod[] = [
  'client_secret_basic',
  'client_secret_post',
  'client_secret_jwt',
  'private_key_jwt',
  'tls_client_auth',
  'self_signed_tls_client_auth',
  'none',
];

/** Keys of a credential, each with the auth methods or grants it belongs to (undefined: all). */
const AUTH_KEYS: Readonly<Record<string, readonly ClientAuthMethod[]>> = {
  client_secret: ['client_secret_basic', 'client_secret_post', 'client_secret_jwt'],
  private_key_file: ['private_key_jwt'],
  signing_alg: ['private_key_jwt'],
  key_id: ['private_key_jwt'],
  certificate_file: ['private_key_jwt'],
  client_assertion_file: ['private_key_jwt'],
  assertion_audience: ['private_key_jwt', 'client_secret_jwt'],
  mtls_token_endpoint: ['tls_client_auth', 'self_signed_tls_client_auth'],
};
const GRANT_KEYS: Readonly<Record<string, readonly GrantType[]>> = {
  username: ['password'],
  password: ['password'],
  assertion: ['jwt_bearer', 'saml2_bearer'],
  subject_token: ['token_exchange'],
  actor_token: ['token_exchange'],
  requested_token_type: ['token_exchange'],
};
const COMMON_KEYS = [
  'token_endpoint',
  'grant_type',
  'client_id',
  'auth_method',
  'scope',
  'audience',
  'resource',
  'params',
  'prefetch',
  'timeout',
  'refresh_ahead',
  'tls',
  'connect_timeout',
  'max_response_size',
  'default_lifetime',
  'max_lifetime',
  'token_types',
  'retry',
  'allow_insecure_http',
];
export const CREDENTIAL_KEYS = [...COMMON_KEYS, ...Object.keys(AUTH_KEYS), ...Object.keys(GRANT_KEYS)];

/** Form fields token-injector writes itself; letting `params` set them would hide the real config. */
const RESERVED_PARAMS = [
  'grant_type',
  'client_id',
  'client_secret',
  'client_assertion',
  'client_assertion_type',
  'scope',
  'audience',
  'resource',
  'username',
  'password',
  'refresh_token',
  'assertion',
  'subject_token',
  'subject_token_type',
  'actor_token',
  'actor_token_type',
  'requested_token_type',
];

/** RFC 8693 §3 token type identifiers, accepted in short form too (`access_token`). */
const TOKEN_TYPES: Readonly<Record<string, string>> = {
  access_token: 'urn:ietf:params:oauth:token-type:access_token',
  refresh_token: 'urn:ietf:params:oauth:token-type:refresh_token',
  id_token: 'urn:ietf:params:oauth:token-type:id_token',
  saml1: 'urn:ietf:params:oauth:token-type:saml1',
  saml2: 'urn:ietf:params:oauth:token-type:saml2',
  jwt: 'urn:ietf:params:oauth:token-type:jwt',
};

const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;
const HEADER = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

export function credential(c: Checker, name: string, value: unknown): CredentialConfig | undefined {
  const path = join('credentials', name);
  if (!NAME.test(name)) c.add(path, 'a credential name may hold only letters, digits, ".", "_" and "-"');
  const obj = c.object(value, path);
  if (!obj) {
    if (value === null || value === undefined) c.add(path, 'must be a mapping');
    return undefined;
  }
  c.onlyKeys(obj, path, CREDENTIAL_KEYS);
  const before = c.problems.length;
  c.required(obj, 'token_endpoint', path);
  const tokenEndpoint = c.url(obj, 'token_endpoint', path, { allowQuery: true });
  c.required(obj, 'grant_type', path);
  const grantType = c.choice(obj, 'grant_type', path, GRANT_TYPES);
  c.required(obj, 'client_id', path);
  const clientId = c.string(obj, 'client_id', path);
  const authMethod = c.choice(obj, 'auth_method', path, AUTH_METHODS, 'client_secret_basic');
  // A mistyped method or grant is reported once; checks that depend on it would only add noise.
  if (authMethod) notApplicable(c, obj, path, AUTH_KEYS, authMethod, 'auth_method');
  if (grantType) notApplicable(c, obj, path, GRANT_KEYS, grantType, 'grant_type');
  const clientAuth = authMethod ? clientAuthConfig(c, obj, path, authMethod) : undefined;
  if (authMethod === 'none' && grantType === 'client_credentials') {
    c.add(
      join(path, 'auth_method'),
      'client_credentials needs client authentication (RFC 6749 §4.4); none is for public clients',
    );
  }
  const mtlsTokenEndpoint = c.url(obj, 'mtls_token_endpoint', path, { allowQuery: true });
  const grant = grantType ? grantConfig(c, obj, path, grantType) : undefined;
  const scope = c.stringList(obj, 'scope', path);
  const audience = c.string(obj, 'audience', path);
  const resource = c.string(obj, 'resource', path);
  if (resource !== undefined && !isAbsoluteUrl(resource)) {
    c.add(join(path, 'resource'), 'must be an absolute URI (RFC 8707 §2)');
  }
  const params = c.stringMap(obj, 'params', path);
  for (const key of Object.keys(params)) {
    if (RESERVED_PARAMS.includes(key)) {
      c.add(
        join(join(path, 'params'), key),
        'is set by token-injector from its own key; use that key instead',
      );
    }
  }
  const prefetch = c.boolean(obj, 'prefetch', path, false);
  if (prefetch && grant && usesRequestHeader(grant)) {
    c.add(
      join(path, 'prefetch'),
      'cannot prefetch: the token depends on each request (source: request_header)',
    );
  }
  const timeoutMs = c.duration(obj, 'timeout', path, DEFAULT_TOKEN_TIMEOUT_MS);
  if (timeoutMs === 0) c.add(join(path, 'timeout'), 'must be greater than 0');
  let refreshAhead = DEFAULT_REFRESH_AHEAD;
  if (obj['refresh_ahead'] !== undefined) {
    const v = obj['refresh_ahead'];
    if (typeof v !== 'number' || !(v > 0 && v < 1)) {
      c.add(
        join(path, 'refresh_ahead'),
        'must be a fraction of the token lifetime between 0 and 1, e.g. 0.8',
      );
    } else refreshAhead = v;
  }
  const tls = c.tls(obj, path);
  const allowInsecureHttp = c.boolean(obj, 'allow_insecure_http', path, false);
  if (!allowInsecureHttp) {
    if (tokenEndpoint) insecureHttp(c, tokenEndpoint, join(path, 'token_endpoint'), 'the credential');
    if (mtlsTokenEndpoint)
      insecureHttp(c, mtlsTokenEndpoint, join(path, 'mtls_token_endpoint'), 'the credential');
  }
  const connectTimeoutMs = positive(c, obj, 'connect_timeout', path, DEFAULT_CONNECT_TIMEOUT_MS);
  // The whole request, connecting included, must fit in `timeout`: a longer connect phase never ends.
  if (obj['connect_timeout'] !== undefined && timeoutMs > 0 && connectTimeoutMs > timeoutMs) {
    c.add(
      join(path, 'connect_timeout'),
      `must not be longer than timeout (${timeoutMs} ms), which bounds the whole token request`,
    );
  }
  const maxResponseBytes = c.size(obj, 'max_response_size', path, DEFAULT_MAX_RESPONSE_BYTES);
  if (maxResponseBytes < 256) c.add(join(path, 'max_response_size'), 'must be at least 256 bytes');
  const defaultLifetimeMs = positive(c, obj, 'default_lifetime', path, DEFAULT_LIFETIME_MS);
  const maxLifetimeMs = positive(c, obj, 'max_lifetime', path, MAX_LIFETIME_MS);
  if (defaultLifetimeMs > maxLifetimeMs) {
    // Named where the user wrote something: either key may be the default.
    const key = obj['default_lifetime'] !== undefined ? 'default_lifetime' : 'max_lifetime';
    c.add(
      join(path, key),
      `default_lifetime (${defaultLifetimeMs} ms) must not exceed max_lifetime (${maxLifetimeMs} ms)`,
    );
  }
  const tokenTypes = (c.stringList(obj, 'token_types', path) ?? []).map((t) => t.toLowerCase());
  const retryObj = c.object(obj['retry'], join(path, 'retry')) ?? {};
  c.onlyKeys(retryObj, join(path, 'retry'), ['initial_backoff', 'max_backoff']);
  const initialBackoffMs = positive(
    c,
    retryObj,
    'initial_backoff',
    join(path, 'retry'),
    DEFAULT_INITIAL_BACKOFF_MS,
  );
  const maxBackoffMs = positive(c, retryObj, 'max_backoff', join(path, 'retry'), DEFAULT_MAX_BACKOFF_MS);
  if (initialBackoffMs > maxBackoffMs) {
    const key = retryObj['initial_backoff'] !== undefined ? 'retry.initial_backoff' : 'retry.max_backoff';
    c.add(
      join(path, key),
      `retry.initial_backoff (${initialBackoffMs} ms) must not exceed retry.max_backoff (${maxBackoffMs} ms)`,
    );
  }
  if ((authMethod === 'tls_client_auth' || authMethod === 'self_signed_tls_client_auth') && !tls.cert) {
    c.add(join(path, 'tls.cert_file'), `is required with auth_method ${authMethod} (RFC 8705)`);
  }
  if (c.problems.length > before || !tokenEndpoint || clientId === undefined || !clientAuth || !grant) {
    return undefined;
  }
  return {
    name,
    tokenEndpoint,
    ...(mtlsTokenEndpoint ? { mtlsTokenEndpoint } : {}),
    grant,
    clientId,
    clientAuth,
    ...(scope && scope.length > 0 ? { scope: scope.join(' ') } : {}),
    ...(audience !== undefined ? { audience } : {}),
    ...(resource !== undefined ? { resource } : {}),
    params: Object.freeze(params),
    prefetch,
    timeoutMs,
    refreshAhead,
    tls,
    connectTimeoutMs,
    maxResponseBytes,
    defaultLifetimeMs,
    maxLifetimeMs,
    tokenTypes,
    initialBackoffMs,
    maxBackoffMs,
    allowInsecureHttp,
  };
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
  obj: Obj,
  path: string,
  method: ClientAuthMethod,
): ClientAuthConfig | undefined {
  const assertionAudience = c.string(obj, 'assertion_audience', path);
  const audience = assertionAudience !== undefined ? { assertionAudience } : {};
  switch (method) {
    case 'client_secret_basic':
    case 'client_secret_post':
    case 'client_secret_jwt': {
      c.required(obj, 'client_secret', path);
      const secret = c.secret(obj, 'client_secret', path);
      if (secret?.value === '') c.add(join(path, 'client_secret'), 'must not be empty');
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
        const file = c.file(obj, 'client_assertion_file', path);
        return file ? { method, assertionFile: file.file!, ...audience } : undefined;
      }
      const signing = signingKey(c, obj, path);
      return signing ? { method, signing, ...audience } : undefined;
    }
    default:
      return { method };
  }
}

/** `private_key_file` + `signing_alg` + `key_id` + `certificate_file`, checked against each other. */
function signingKey(c: Checker, obj: Obj, path: string): SigningKeyConfig | undefined {
  const keyFile = c.file(obj, 'private_key_file', path);
  if (!keyFile) return undefined;
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
  const configured = c.string(obj, 'signing_alg', path);
  let alg: SigningAlg = usable[0]!;
  if (configured !== undefined) {
    if (!(SIGNING_ALGS as readonly string[]).includes(configured)) {
      c.add(join(path, 'signing_alg'), `must be one of ${SIGNING_ALGS.join(', ')}, got "${configured}"`);
      return undefined;
    }
    if (!(usable as readonly string[]).includes(configured)) {
      c.add(join(path, 'signing_alg'), `${configured} does not fit the key (it signs ${usable.join(', ')})`);
      return undefined;
    }
    alg = configured as SigningAlg;
  }
  const keyId = c.string(obj, 'key_id', path);
  const certificate = c.file(obj, 'certificate_file', path);
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
    alg,
    algInferred: configured === undefined,
    ...(keyId !== undefined ? { keyId } : {}),
    ...(certificate ? { certificate } : {}),
  };
}

function grantConfig(c: Checker, obj: Obj, path: string, type: GrantType): GrantConfig | undefined {
  switch (type) {
    case 'client_credentials':
      return { type };
    case 'password': {
      c.required(obj, 'username', path);
      c.required(obj, 'password', path);
      const username = c.string(obj, 'username', path);
      const password = c.secret(obj, 'password', path);
      return username !== undefined && password ? { type, username, password } : undefined;
    }
    case 'jwt_bearer':
    case 'saml2_bearer': {
      c.required(obj, 'assertion', path);
      const sources =
        type === 'jwt_bearer'
          ? (['sign', 'file', 'request_header'] as const)
          : (['file', 'request_header'] as const);
      const assertion = tokenInput(c, obj, 'assertion', path, sources);
      return assertion ? { type, assertion: assertion.input } : undefined;
    }
    case 'token_exchange': {
      c.required(obj, 'subject_token', path);
      const subject = tokenInput(c, obj, 'subject_token', path, ['file', 'request_header', 'credential']);
      const actor =
        obj['actor_token'] === undefined
          ? undefined
          : tokenInput(c, obj, 'actor_token', path, ['file', 'request_header', 'credential']);
      const requested = c.string(obj, 'requested_token_type', path);
      const requestedTokenType =
        requested === undefined ? undefined : tokenType(c, requested, join(path, 'requested_token_type'));
      if (!subject || (obj['actor_token'] !== undefined && !actor)) return undefined;
      return {
        type,
        subjectToken: subject.input,
        subjectTokenType: subject.type!,
        ...(actor ? { actorToken: actor.input, actorTokenType: actor.type! } : {}),
        ...(requestedTokenType !== undefined ? { requestedTokenType } : {}),
      };
    }
  }
}

type Source = TokenInput['source'];

/** The keys each source of an assertion, subject token or actor token may have. */
const INPUT_KEYS: Readonly<Record<Source, readonly string[]>> = {
  sign: [
    'private_key_file',
    'signing_alg',
    'key_id',
    'certificate_file',
    'issuer',
    'subject',
    'audience',
    'lifetime',
    'claims',
  ],
  file: ['path'],
  request_header: ['header', 'max_entries'],
  credential: ['credential'],
};
const ALL_INPUT_KEYS = Object.values(INPUT_KEYS).flat();

/** `assertion`, `subject_token` or `actor_token`: where the value comes from, and its type. */
function tokenInput<S extends Source>(
  c: Checker,
  parent: Obj,
  key: string,
  parentPath: string,
  sources: readonly S[],
): { input: TokenInput; type?: string } | undefined {
  const path = join(parentPath, key);
  const obj = c.object(parent[key], path);
  if (!obj) return undefined;
  const isExchange = key !== 'assertion';
  c.required(obj, 'source', path);
  const source = c.choice(obj, 'source', path, sources);
  if (source === undefined) {
    // Still catch typos in the other keys ("sourse"), against every source's keys.
    c.onlyKeys(obj, path, ['source', ...(isExchange ? ['type'] : []), ...ALL_INPUT_KEYS]);
    return undefined;
  }
  c.onlyKeys(obj, path, ['source', ...(isExchange ? ['type'] : []), ...INPUT_KEYS[source]]);
  let type: string | undefined;
  if (isExchange) {
    c.required(obj, 'type', path);
    const t = c.string(obj, 'type', path);
    if (t !== undefined) type = tokenType(c, t, join(path, 'type'));
  }
  const before = c.problems.length;
  let input: TokenInput | undefined;
  switch (source) {
    case 'file': {
      c.required(obj, 'path', path);
      const file = c.file(obj, 'path', path);
      if (file) input = { source, path: file.file! };
      break;
    }
    case 'request_header': {
      c.required(obj, 'header', path);
      const header = c.string(obj, 'header', path);
      if (header !== undefined && !HEADER.test(header))
        c.add(join(path, 'header'), `"${header}" is not a valid header name`);
      let maxEntries = DEFAULT_MAX_ENTRIES;
      if (obj['max_entries'] !== undefined) {
        const v = obj['max_entries'];
        if (typeof v !== 'number' || !Number.isInteger(v) || v < 1)
          c.add(join(path, 'max_entries'), 'must be a positive integer');
        else maxEntries = v;
      }
      if (header !== undefined) input = { source, header, maxEntries };
      break;
    }
    case 'credential': {
      c.required(obj, 'credential', path);
      const name = c.string(obj, 'credential', path);
      if (name !== undefined) input = { source, credential: name };
      break;
    }
    case 'sign': {
      for (const k of ['private_key_file', 'issuer', 'subject']) c.required(obj, k, path);
      const signing = signingKey(c, obj, path);
      const issuer = c.string(obj, 'issuer', path);
      const subject = c.string(obj, 'subject', path);
      const audience = c.string(obj, 'audience', path);
      const lifetimeMs = c.duration(obj, 'lifetime', path, DEFAULT_ASSERTION_LIFETIME_MS);
      if (lifetimeMs < 1000) c.add(join(path, 'lifetime'), 'must be at least 1s');
      const claims = c.object(obj['claims'], join(path, 'claims')) ?? {};
      if (signing && issuer !== undefined && subject !== undefined) {
        input = {
          source,
          signing,
          issuer,
          subject,
          ...(audience !== undefined ? { audience } : {}),
          lifetimeMs,
          claims: Object.freeze({ ...claims }),
        };
      }
      break;
    }
  }
  if (c.problems.length > before || !input) return undefined;
  return type === undefined ? { input } : { input, type };
}

function tokenType(c: Checker, value: string, path: string): string | undefined {
  // Own keys only: "valueOf" or "constructor" must not find Object.prototype.
  const full = Object.hasOwn(TOKEN_TYPES, value) ? TOKEN_TYPES[value]! : value;
  if (!full.includes(':')) {
    c.add(
      path,
      `"${value}" is not a token type URI; use one of ${Object.keys(TOKEN_TYPES).join(', ')} or a full URI`,
    );
    return undefined;
  }
  return full;
}
