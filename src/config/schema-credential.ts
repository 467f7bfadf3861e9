// biome-ignore-all lint/suspicious/noTemplateCurlyInString: descriptions show the literal ${env:}/${file:} syntax
/**
 * `credentials.<name>`: one object with every key of every grant and client authentication
 * method. Which keys a given `grant_type` or `auth_method` needs or refuses is checked in
 * validate-credential.ts, where the message can name both keys.
 */
import { z } from 'zod';
import { SIGNING_ALGS } from '../jwt/signing-key.js';
import {
  absoluteUri,
  choice,
  count,
  describe,
  duration,
  filePath,
  flag,
  fraction,
  HEADER_NAME,
  httpUrl,
  matching,
  says,
  size,
  text,
  textMap,
  variants,
  verbatim,
  words,
} from './schema-kit.js';

/** `tls: {ca_file, cert_file, key_file}`: extra trust and an optional client certificate. */
export const TlsFiles = z.strictObject({
  ca_file: filePath().optional().meta({ description: 'Extra CA (PEM) trusted besides the public roots.' }),
  cert_file: filePath()
    .optional()
    .meta({ description: 'A client certificate (PEM), e.g. for RFC 8705 mutual TLS; with key_file.' }),
  key_file: filePath().optional().meta({ description: 'The private key (PEM) of cert_file.' }),
});
export const TlsClientFiles = TlsFiles.prefault({}).meta({
  dependentRequired: { cert_file: ['key_file'], key_file: ['cert_file'] },
});

/** RFC 8693 §3 token type identifiers, accepted in short form too (`access_token`). */
const TOKEN_TYPES: Readonly<Record<string, string>> = {
  access_token: 'urn:ietf:params:oauth:token-type:access_token',
  refresh_token: 'urn:ietf:params:oauth:token-type:refresh_token',
  id_token: 'urn:ietf:params:oauth:token-type:id_token',
  saml1: 'urn:ietf:params:oauth:token-type:saml1',
  saml2: 'urn:ietf:params:oauth:token-type:saml2',
  jwt: 'urn:ietf:params:oauth:token-type:jwt',
};

function tokenType() {
  return text()
    .transform((value, ctx) => {
      // Own keys only: "valueOf" or "constructor" must not find Object.prototype.
      const full = Object.hasOwn(TOKEN_TYPES, value) ? TOKEN_TYPES[value]! : value;
      if (full.includes(':')) return full;
      ctx.issues.push({
        code: 'custom',
        input: value,
        message: `"${value}" is not a token type URI; use one of ${Object.keys(TOKEN_TYPES).join(', ')} or a full URI`,
      });
      return z.NEVER;
    })
    .meta({ description: `A token type URI, or one of ${Object.keys(TOKEN_TYPES).join(', ')}.` });
}

const signingAlg = () =>
  choice(SIGNING_ALGS as unknown as readonly [string, ...string[]]).meta({
    description: 'Inferred from the key when omitted.',
  });

const SignInput = z.strictObject({
  source: z.literal('sign').meta({ description: 'Signed by token-injector with private_key_file.' }),
  private_key_file: filePath().meta({ description: 'PEM (PKCS#8, PKCS#1, SEC1) or JWK JSON.' }),
  signing_alg: signingAlg().optional(),
  key_id: text().optional().meta({ description: 'The `kid` header.' }),
  certificate_file: filePath().optional().meta({ description: 'Adds x5t#S256 to the header.' }),
  issuer: text().meta({ description: 'The `iss` claim.' }),
  subject: text().meta({ description: 'The `sub` claim.' }),
  audience: text().optional().meta({ description: 'Default: the token endpoint URL.' }),
  lifetime: duration()
    .refine((ms) => ms >= 1000, 'must be at least 1s')
    .prefault('5m')
    .meta({ description: 'Of each assertion signed (`exp`).' }),
  claims: verbatim(
    z.record(
      z.string(),
      z.unknown(),
      says((v) => `must be a mapping, got ${describe(v)}`),
    ),
  )
    .optional()
    .meta({ description: 'Extra claims, written into the JWT as they are.' }),
});
const FileInput = z.strictObject({
  source: z.literal('file').meta({ description: 'Read from a file.' }),
  path: filePath().meta({ description: 'Re-read at every token request.' }),
});
const HeaderInput = z.strictObject({
  source: z.literal('request_header').meta({
    description: 'Taken from each request (and removed before forwarding); tokens are cached per value.',
  }),
  header: matching(HEADER_NAME, (v) => `"${String(v)}" is not a valid header name`).meta({
    description: 'The request header holding it.',
  }),
  max_entries: count('must be a positive integer')
    .prefault(10_000)
    .meta({ description: 'Bounded cache of tokens per header value.' }),
});
const CredentialInput = z.strictObject({
  source: z.literal('credential').meta({ description: "Another credential's token." }),
  credential: text().meta({ description: 'The name of that credential.' }),
});

const EVERY_INPUT = [SignInput, FileInput, HeaderInput, CredentialInput];
/** `assertion` of jwt_bearer (all three sources) and saml2_bearer (file, request_header). */
const Assertion = variants('source', [SignInput, FileInput, HeaderInput], EVERY_INPUT);
/** `subject_token` and `actor_token` of a token exchange (RFC 8693 §2.1), with their type. */
const exchangeInput = () => {
  const type = tokenType();
  return variants(
    'source',
    [FileInput.extend({ type }), HeaderInput.extend({ type }), CredentialInput.extend({ type })],
    EVERY_INPUT,
  );
};

/** Form fields token-injector writes itself; letting `params` set them would hide the real config. */
const RESERVED_PARAMS = new Set([
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
]);

type AuthMethod = z.output<typeof AUTH_METHOD>;
type GrantType = z.output<typeof GRANT_TYPE>;
const AUTH_METHOD = choice([
  'client_secret_basic',
  'client_secret_post',
  'client_secret_jwt',
  'private_key_jwt',
  'tls_client_auth',
  'self_signed_tls_client_auth',
  'none',
]);
const GRANT_TYPE = choice(['client_credentials', 'password', 'jwt_bearer', 'saml2_bearer', 'token_exchange']);

/** Keys that belong to some client authentication methods only. */
export const AUTH_KEYS: Readonly<Record<string, readonly AuthMethod[]>> = {
  client_secret: ['client_secret_basic', 'client_secret_post', 'client_secret_jwt'],
  private_key_file: ['private_key_jwt'],
  signing_alg: ['private_key_jwt'],
  key_id: ['private_key_jwt'],
  certificate_file: ['private_key_jwt'],
  client_assertion_file: ['private_key_jwt'],
  assertion_audience: ['private_key_jwt', 'client_secret_jwt'],
  mtls_token_endpoint: ['tls_client_auth', 'self_signed_tls_client_auth'],
};
/** Keys that belong to some grants only. */
export const GRANT_KEYS: Readonly<Record<string, readonly GrantType[]>> = {
  username: ['password'],
  password: ['password'],
  assertion: ['jwt_bearer', 'saml2_bearer'],
  subject_token: ['token_exchange'],
  actor_token: ['token_exchange'],
  requested_token_type: ['token_exchange'],
};

/**
 * For the JSON Schema: what each method and grant needs and refuses, as `if`/`then` on
 * `auth_method` and `grant_type` (validate-credential.ts checks the same with messages naming
 * both keys).
 */
function conditions(): object[] {
  // Strict validators want every required key declared beside `required`.
  const present = (...keys: string[]) => ({
    properties: Object.fromEntries(keys.map((k) => [k, true])),
    required: keys,
  });
  const when = (key: string, value: string, isDefault = false) => {
    const chosen = { properties: { [key]: { const: value } }, required: [key] };
    return isDefault ? { anyOf: [chosen, { not: present(key) }] } : chosen;
  };
  const refuse = (table: Readonly<Record<string, readonly string[]>>, chosen: string) =>
    Object.fromEntries(
      Object.entries(table).flatMap(([k, owners]) => (owners.includes(chosen) ? [] : [[k, false]])),
    );
  const tlsCert = { ...present('tls'), properties: { tls: { type: 'object', ...present('cert_file') } } };
  const needs: Record<string, { properties?: object; oneOf?: object[] }> = {
    client_secret_basic: present('client_secret'),
    client_secret_post: present('client_secret'),
    client_secret_jwt: present('client_secret'),
    private_key_jwt: { oneOf: [present('private_key_file'), present('client_assertion_file')] },
    tls_client_auth: tlsCert,
    self_signed_tls_client_auth: tlsCert,
    password: present('username', 'password'),
    jwt_bearer: present('assertion'),
    saml2_bearer: {
      ...present('assertion'),
      properties: {
        assertion: { type: 'object', properties: { source: { enum: ['file', 'request_header'] } } },
      },
    },
    token_exchange: present('subject_token'),
  };
  const methods = AUTH_METHOD.options[0].options;
  const grants = GRANT_TYPE.options[0].options;
  return [
    ...methods.map((m) => ({
      if: when('auth_method', m, m === 'client_secret_basic'),
      // biome-ignore lint/suspicious/noThenProperty: JSON Schema's if/then, never awaited
      then: { ...needs[m], properties: { ...refuse(AUTH_KEYS, m), ...needs[m]?.properties } },
    })),
    ...grants.map((g) => ({
      if: when('grant_type', g),
      // biome-ignore lint/suspicious/noThenProperty: JSON Schema's if/then, never awaited
      then: { ...needs[g], properties: { ...refuse(GRANT_KEYS, g), ...needs[g]?.properties } },
    })),
  ];
}

export const Credential = z
  .strictObject({
    token_endpoint: httpUrl({ query: true }).meta({
      description: "The authorization server's token endpoint; a query string is kept.",
    }),
    grant_type: GRANT_TYPE.meta({
      description:
        'client_credentials (RFC 6749 §4.4), password (§4.3), jwt_bearer (RFC 7523), saml2_bearer (RFC 7522) or token_exchange (RFC 8693).',
    }),
    client_id: text().meta({ description: 'The client identifier issued by the authorization server.' }),
    auth_method: AUTH_METHOD.prefault('client_secret_basic').meta({
      description: 'How the client authenticates to the token endpoint (RFC 6749 §2.3, RFC 7523, RFC 8705).',
    }),
    client_secret: text({ empty: false }).optional().meta({
      description:
        'client_secret_basic, client_secret_post and client_secret_jwt. Keep it out of the file: ${env:NAME} or ${file:PATH} (re-read when the file changes).',
    }),
    private_key_file: filePath()
      .optional()
      .meta({ description: 'private_key_jwt: the key we sign client assertions with (PEM or JWK JSON).' }),
    signing_alg: signingAlg().optional(),
    key_id: text().optional().meta({ description: 'private_key_jwt: the `kid` header.' }),
    certificate_file: filePath()
      .optional()
      .meta({ description: 'private_key_jwt: the certificate of the key, for x5t#S256.' }),
    client_assertion_file: filePath().optional().meta({
      description:
        'private_key_jwt: a ready assertion, read at every token request (e.g. a projected service-account token).',
    }),
    assertion_audience: text().optional().meta({
      description:
        "The client assertion's aud (private_key_jwt, client_secret_jwt). Default: the token endpoint URL.",
    }),
    mtls_token_endpoint: httpUrl({ query: true })
      .optional()
      .meta({ description: "The provider's mTLS alias of the token endpoint (RFC 8705 §5)." }),
    username: text().optional().meta({ description: 'grant_type password.' }),
    password: text().optional().meta({ description: 'grant_type password; keep it out of the file.' }),
    assertion: Assertion.optional().meta({
      description: 'jwt_bearer and saml2_bearer: where the assertion comes from.',
    }),
    subject_token: exchangeInput()
      .optional()
      .meta({ description: 'token_exchange: where the subject token comes from, and its type.' }),
    actor_token: exchangeInput()
      .optional()
      .meta({ description: 'token_exchange: where the actor token comes from, and its type.' }),
    requested_token_type: tokenType().optional(),
    scope: words().optional().meta({ description: 'A list, or one space-separated string.' }),
    audience: text().optional().meta({ description: 'Sent as-is (Auth0 style).' }),
    resource: absoluteUri('must be an absolute URI (RFC 8707 §2)')
      .optional()
      .meta({ description: 'RFC 8707 resource indicator.' }),
    params: textMap()
      .superRefine((params, ctx) => {
        for (const key of Object.keys(params)) {
          if (RESERVED_PARAMS.has(key)) {
            ctx.addIssue({
              code: 'custom',
              path: [key],
              message: 'is set by token-injector from its own key; use that key instead',
            });
          }
        }
      })
      .prefault({})
      .meta({
        description: 'Extra form fields of the token request, e.g. {tenant: acme}.',
        propertyNames: { not: { enum: [...RESERVED_PARAMS] } },
      }),
    prefetch: flag().prefault(false).meta({
      description: 'Fetch a token at start and keep it fresh even unused; /readyz waits for it.',
    }),
    timeout: duration({ positive: true }).prefault('10s').meta({ description: 'The whole token request.' }),
    refresh_ahead: fraction(0, 1, true, 'must be a fraction of the token lifetime between 0 and 1, e.g. 0.8')
      .prefault(0.8)
      .meta({ description: 'Refresh in the background after this fraction of the lifetime, if used.' }),
    tls: TlsClientFiles.meta({
      description: 'Extra trust and a client certificate towards the token endpoint.',
    }),
    allow_insecure_http: flag().prefault(false).meta({
      description: 'http:// to a host other than loopback sends secrets unencrypted: refused unless true.',
    }),
    connect_timeout: duration({ positive: true })
      .prefault('5s')
      .meta({ description: 'To open a connection to the token endpoint, within timeout.' }),
    max_response_size: size({ bytes: 256, why: 'must be at least 256 bytes' })
      .prefault('64KiB')
      .meta({ description: 'Larger token responses are refused.' }),
    default_lifetime: duration({ positive: true })
      .prefault('5m')
      .meta({ description: 'When the response has no expires_in.' }),
    max_lifetime: duration({ positive: true })
      .prefault('24h')
      .meta({ description: 'Longer expires_in values are cut to this.' }),
    token_types: words()
      .transform((types) => types.map((t) => t.toLowerCase()))
      .prefault([])
      .meta({ description: 'token_type values accepted besides Bearer, e.g. [DPoP].' }),
    retry: z
      .strictObject({
        initial_backoff: duration({ positive: true })
          .prefault('250ms')
          .meta({ description: 'The first wait; it doubles, with jitter.' }),
        max_backoff: duration({ positive: true }).prefault('30s').meta({ description: 'The longest wait.' }),
      })
      .prefault({})
      .meta({
        description:
          'Backoff between retries of transient failures (connection errors, 5xx, 429) and between probes of a failing endpoint.',
      }),
  })
  .meta({ allOf: conditions() });
