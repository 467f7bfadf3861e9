// biome-ignore-all lint/suspicious/noTemplateCurlyInString: descriptions show the literal ${env:}/${file:} syntax
/**
 * `credentials.<name>`: one object with every key of every grant and client authentication
 * method. Which keys a given `grant_type` or `auth_method` needs or refuses is checked in
 * validate-credential.ts, where the message can name both keys.
 */
import { z } from 'zod';
import { DPOP_ALGS } from '../dpop/key.js';
import { SIGNING_ALGS } from '../jwt/signing-key.js';
import {
  absoluteUri,
  anyOf,
  choice,
  count,
  DOC,
  describe,
  duration,
  filePath,
  flag,
  fraction,
  headerName,
  httpUrl,
  REFERENCE,
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
  ca_file: filePath()
    .optional()
    .meta({ description: 'A PEM file of extra CAs trusted, in addition to the public roots.' }),
  cert_file: filePath().optional().meta({
    description:
      'A PEM client certificate, presented with `key_file` (both or neither): mutual TLS, e.g. for certificate-bound tokens (RFC 8705).',
  }),
  key_file: filePath().optional().meta({ description: 'The PEM private key (unencrypted) of `cert_file`.' }),
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
    .register(DOC, {
      type: `token type: ${Object.keys(TOKEN_TYPES)
        .map((t) => `\`${t}\``)
        .join(', ')} or a URI`,
    })
    .meta({
      description: `A token type (RFC 8693 §3): a URI, or one of ${Object.keys(TOKEN_TYPES).join(', ')} (short for urn:ietf:params:oauth:token-type:…).`,
    });
}

/**
 * RFC 8414 §2: an issuer identifier is a URL without query or fragment. Kept as written: its
 * metadata must repeat it exactly (§3.3), which a normalized URL (a trailing "/" added) would break.
 */
const issuerIdentifier = () =>
  z
    .string(says((v) => `must be a string, got ${describe(v)}`))
    .refine((value) => {
      if (!URL.canParse(value)) return false;
      const url = new URL(value);
      return (
        (url.protocol === 'https:' || url.protocol === 'http:') &&
        !url.search &&
        !url.hash &&
        !url.username &&
        !url.password
      );
    }, 'must be an https:// URL without query, fragment or user info (RFC 8414 §2)')
    .meta({ pattern: `^[hH][tT][tT][pP][sS]?://[^?#]*$|${REFERENCE.source}` });

const signingAlg = () =>
  choice(SIGNING_ALGS as unknown as readonly [string, ...string[]])
    .register(DOC, { type: anyOf(SIGNING_ALGS), absent: 'from the key' })
    .meta({
      description:
        'The JWS algorithm; it must fit the key. Without it: `RS256` for RSA, `PS256` for RSA-PSS, `ES256`/`ES384`/`ES512` for EC P-256/P-384/P-521, `EdDSA` for Ed25519.',
    });

const SignInput = z.strictObject({
  source: z.literal('sign').meta({ description: 'A JWT token-injector signs for each token request.' }),
  private_key_file: filePath().meta({
    description:
      "The signing key, as the credential's `private_key_file`: PEM (PKCS#8, PKCS#1, SEC1) or JWK JSON.",
  }),
  signing_alg: signingAlg().optional(),
  key_id: text().optional().meta({ description: '`kid` in the JWT header.' }),
  certificate_file: filePath()
    .optional()
    .meta({ description: "The key's certificate; adds `x5t#S256` to the JWT header." }),
  issuer: text().meta({ description: 'The `iss` claim.' }),
  subject: text().meta({ description: 'The `sub` claim: the user or service the token is for.' }),
  audience: text()
    .register(DOC, { type: 'string', absent: 'the token endpoint URL' })
    .optional()
    .meta({ description: 'The `aud` claim; by default the URL the request goes to.' }),
  lifetime: duration()
    .refine((ms) => ms >= 1000, 'must be at least 1s')
    .prefault('5m')
    .register(DOC, { type: 'duration, at least 1s' })
    .meta({ description: 'From `iat` to `exp` of each assertion signed.' }),
  claims: verbatim(
    z.record(
      z.string(),
      z.unknown(),
      says((v) => `must be a mapping, got ${describe(v)}`),
    ),
  )
    .optional()
    .meta({
      description:
        "Extra claims, e.g. `{tenant: acme}`, written into the JWT as they are; `iss`, `sub`, `aud`, `iat`, `nbf`, `exp` and `jti` are always token-injector's.",
    }),
});
const FileInput = z.strictObject({
  source: z.literal('file').meta({ description: 'A file read at each token request.' }),
  path: filePath().meta({
    description: 'The file; it must be readable at start. Read again, and trimmed, at each token request.',
  }),
});
const HeaderInput = z.strictObject({
  source: z.literal('request_header').meta({
    description:
      'A value the app sends with each request (removed before forwarding); tokens are cached per value.',
  }),
  header: headerName().meta({
    description: 'The request header that carries the value; it is removed before the request is forwarded.',
  }),
  max_entries: count('must be a positive integer').prefault(10_000).meta({
    description:
      'How many tokens (one per distinct value) are kept; the least recently used one is dropped first.',
  }),
});
const CredentialInput = z.strictObject({
  source: z.literal('credential').meta({ description: 'The current token of another credential.' }),
  credential: text().meta({
    description:
      'The name of another credential whose token is used; credentials must not depend on each other in a cycle.',
  }),
});

const EVERY_INPUT = [SignInput, FileInput, HeaderInput, CredentialInput];
/** `assertion` of jwt_bearer (all three sources) and saml2_bearer (file, request_header). */
const Assertion = variants('source', [SignInput, FileInput, HeaderInput], EVERY_INPUT);
/** `subject_token` and `actor_token` of a token exchange (RFC 8693 §2.1), with their type. */
const exchangeInput = () => {
  const type = tokenType().meta({
    description:
      "`subject_token` and `actor_token` only: the token's type (RFC 8693 §3), sent as `subject_token_type` or `actor_token_type`.",
  });
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
  client_assertion_type: ['private_key_jwt'],
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
    // Exactly one of them: the token endpoint, or the issuer whose metadata names it.
    { oneOf: [present('token_endpoint'), present('issuer')] },
    // A type for the ready assertion only: what token-injector signs is always jwt-bearer.
    { dependentRequired: { client_assertion_type: ['client_assertion_file'] } },
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
    token_endpoint: httpUrl({ query: true })
      .register(DOC, { type: 'URL, `http://` or `https://`', absent: 'this or `issuer`' })
      .optional()
      .meta({
        description: "The authorization server's token endpoint; a query string is kept. Excludes `issuer`.",
      }),
    issuer: issuerIdentifier()
      .register(DOC, { type: 'URL, `https://`, no query', absent: 'this or `token_endpoint`' })
      .optional()
      .meta({
        description:
          'Instead of `token_endpoint`: the authorization server\'s issuer identifier. Its metadata (RFC 8414, then OpenID Connect Discovery) names the token endpoint; it must name this exact issuer. Fetched with the first token request, used for an hour; see "Authorization-server discovery".',
      }),
    grant_type: GRANT_TYPE.meta({
      description:
        'How the token is obtained: client_credentials (RFC 6749 §4.4), password (§4.3), jwt_bearer (RFC 7523), saml2_bearer (RFC 7522) or token_exchange (RFC 8693).',
    }),
    client_id: text().meta({ description: 'The client identifier issued by the authorization server.' }),
    auth_method: AUTH_METHOD.prefault('client_secret_basic').meta({
      description:
        'How the client authenticates to the token endpoint (RFC 6749 §2.3, RFC 7523, RFC 8705); `none` is refused with `client_credentials`.',
    }),
    client_secret: text({ empty: false })
      .register(DOC, { type: 'string, not empty', absent: 'required' })
      .optional()
      .meta({
        description:
          "The client's secret. Keep it out of the file: `${env:NAME}` or `${file:PATH}` (a whole `${file:PATH}` is re-read when the file changes); written inline it works but `validate` warns.",
      }),
    private_key_file: filePath()
      .register(DOC, { type: 'file path', absent: 'this or `client_assertion_file`' })
      .optional()
      .meta({
        description:
          'The private key client assertions are signed with: PEM (PKCS#8, PKCS#1 RSA, SEC1 EC) or a JWK with `d`; encrypted keys are refused. Parsed at start.',
      }),
    signing_alg: signingAlg().optional(),
    key_id: text()
      .optional()
      .meta({ description: 'Written as `kid` in the JWT header (with `private_key_file`).' }),
    certificate_file: filePath().optional().meta({
      description:
        "The key's PEM certificate (with `private_key_file`), checked against the key at start; adds its SHA-256 thumbprint as `x5t#S256` to the JWT header.",
    }),
    client_assertion_file: filePath()
      .register(DOC, { type: 'file path', absent: 'this or `private_key_file`' })
      .optional()
      .meta({
        description:
          'A file holding a ready client assertion, e.g. a projected service-account token; sent as-is (whitespace trimmed), read at start and at every token request. Excludes `private_key_file`, `signing_alg`, `key_id` and `certificate_file`; `assertion_audience` does not apply to it.',
      }),
    client_assertion_type: absoluteUri('must be an absolute URI (RFC 7521 §4.2)')
      .register(DOC, {
        type: 'absolute URI',
        absent: '`urn:ietf:params:oauth:client-assertion-type:jwt-bearer`',
      })
      .optional()
      .meta({
        description:
          "With `client_assertion_file` only: the assertion's type, sent as `client_assertion_type` (RFC 7521 §4.2), e.g. `urn:ietf:params:oauth:client-assertion-type:jwt-spiffe` for a SPIFFE JWT-SVID (draft-ietf-oauth-spiffe-client-auth). Refused with `private_key_file`: the assertions token-injector signs are RFC 7523 JWTs.",
      }),
    assertion_audience: text()
      .register(DOC, { type: 'string', absent: 'the token endpoint URL' })
      .optional()
      .meta({
        description:
          'The `aud` of the client assertions token-injector signs; by default the URL the request goes to. Some providers want their issuer instead.',
      }),
    mtls_token_endpoint: httpUrl({ query: true }).optional().meta({
      description:
        "The server's mTLS alias of the token endpoint (RFC 8705 §5, `mtls_endpoint_aliases`); token requests go there instead of `token_endpoint`.",
    }),
    username: text()
      .register(DOC, { type: 'string', absent: 'required' })
      .optional()
      .meta({ description: "The resource owner's user name." }),
    password: text().register(DOC, { type: 'string', absent: 'required' }).optional().meta({
      description: "The resource owner's password. Keep it out of the file: `${env:NAME}` or `${file:PATH}`.",
    }),
    assertion: Assertion.optional().meta({
      description:
        'Where the assertion comes from: `source` `sign` (`jwt_bearer` only), `file` or `request_header`.',
    }),
    subject_token: exchangeInput().optional().meta({
      description:
        'The token to exchange: `source` `file`, `request_header` or `credential`, and its `type`.',
    }),
    actor_token: exchangeInput().optional().meta({
      description: 'The token of the party that acts (RFC 8693 §1.1); same keys as `subject_token`.',
    }),
    requested_token_type: tokenType()
      .optional()
      .meta({ description: 'A token type (short name or URI, as `type`), sent as `requested_token_type`.' }),
    scope: words().optional().meta({
      description:
        'A list (`[a, b]`) or one space-separated string; sent as `scope`. A route may override it.',
    }),
    audience: text()
      .optional()
      .meta({ description: 'Sent as-is as `audience` (Auth0, RFC 8693). A route may override it.' }),
    resource: absoluteUri('must be an absolute URI (RFC 8707 §2)')
      .optional()
      .meta({ description: 'An RFC 8707 resource indicator, sent as `resource`. A route may override it.' }),
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
        description: `Extra form fields of the token request, e.g. \`{tenant: acme}\`. Fields token-injector sets itself are refused here, use their own keys: ${anyOf([...RESERVED_PARAMS])}.`,
        propertyNames: { not: { enum: [...RESERVED_PARAMS] } },
      }),
    prefetch: flag().prefault(false).meta({
      description:
        'Fetch a token at start (retrying with backoff until it succeeds) and keep it fresh even while no request uses it; `/readyz` is 503 until it holds one. Refused when the token depends on each request (`source: request_header`).',
    }),
    timeout: duration({ positive: true })
      .prefault('10s')
      .meta({ description: 'Bound on the whole token request: connect, send, headers and body.' }),
    refresh_ahead: fraction(0, 1, true, 'must be a fraction of the token lifetime between 0 and 1, e.g. 0.8')
      .prefault(0.8)
      .meta({
        description:
          "Fraction of a token's lifetime after which it is refreshed in the background (less a little random jitter, so replicas spread out), if a request used it since it came or the credential has `prefetch`; an idle token is renewed by the next request.",
      }),
    tls: TlsClientFiles.meta({
      description:
        'Extra trust and a client certificate towards the token endpoint, read at start. The certificate is required with `tls_client_auth` and `self_signed_tls_client_auth`; with another method it lets the server bind tokens to it (RFC 8705 §3). Certificate and key are re-read when they change.',
    }),
    allow_insecure_http: flag().prefault(false).meta({
      description:
        'Allow an `http://` `token_endpoint` (or `mtls_token_endpoint`) on a host beyond loopback; without it such a configuration is refused, since secrets would cross the network unencrypted.',
    }),
    connect_timeout: duration({ positive: true })
      .prefault('5s')
      .meta({ description: 'Time allowed to open a connection to the token endpoint, within `timeout`.' }),
    max_response_size: size({ bytes: 256, why: 'must be at least 256 bytes' })
      .prefault('64KiB')
      .meta({ description: 'Token responses larger than this are refused (`token_response_invalid`).' }),
    default_lifetime: duration({ positive: true })
      .prefault('5m')
      .meta({ description: 'Lifetime of a token whose response has no `expires_in`.' }),
    max_lifetime: duration({ positive: true }).prefault('24h').meta({
      description:
        'Longer `expires_in` values are cut to this, so a token is re-fetched at least this often.',
    }),
    token_types: words()
      .transform((types) => types.map((t) => t.toLowerCase()))
      .prefault([])
      .meta({
        description:
          "`token_type` values accepted besides `Bearer` (any letter case), e.g. `[N_A]`; others are refused. The token is still sent with the route's `prefix`; for DPoP-bound tokens use `dpop`, which sends them as DPoP.",
      }),
    dpop: z
      .strictObject({
        key_file: filePath()
          .register(DOC, { type: 'file path', absent: 'a key generated at start' })
          .optional()
          .meta({
            description:
              'The private key proofs are signed with: a JWK with `d`, or PEM (PKCS#8, PKCS#1 RSA, SEC1 EC); read and checked against `alg` at start. Without it a new key is generated at each start, so tokens never outlive the process.',
          }),
        alg: choice(DPOP_ALGS)
          .prefault('ES256')
          .meta({ description: 'The JWS algorithm of the proofs; it must fit `key_file`.' }),
      })
      .optional()
      .meta({
        description:
          'Sender-constrained tokens (DPoP, RFC 9449): token requests and upstream requests carry a proof signed with this key, the token must come back with `token_type` `DPoP`, and routes send it as `Authorization: DPoP <token>`. Such a credential does not use `shared_cache`.',
      }),
    retry: z
      .strictObject({
        initial_backoff: duration({ positive: true }).prefault('250ms').meta({
          description:
            'First delay between attempts after a transient failure (connection error, 5xx, 429 whatever its body); it doubles with jitter up to `retry.max_backoff`, and `Retry-After` is honoured. Also the first hold of a new token an upstream refused too (see "Upstream 401" under Behaviour).',
        }),
        max_backoff: duration({ positive: true }).prefault('30s').meta({
          description:
            'Longest delay between attempts, and between probes of an endpoint that keeps failing.',
        }),
      })
      .prefault({})
      .meta({
        description:
          'Backoff between retries of transient failures (connection errors, 5xx, 429) and between probes of a failing endpoint.',
      }),
  })
  .meta({ allOf: conditions() });
