import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { decodeProtectedHeader, jwtVerify } from 'jose';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { CredentialConfig, GrantConfig, TokenInput } from '../../../src/config/types.js';
import { AssertionInvalidError, AssertionMissingError, CredentialInputError } from '../../../src/errors.js';
import { FileSet } from '../../../src/files/live-file.js';
import {
  jwtBearerGrant,
  saml2BearerGrant,
  tokenExchangeGrant,
} from '../../../src/grants/assertion-grants.js';
import type { GrantContext } from '../../../src/grants/grant.js';
import { grantFor } from '../../../src/grants/grants.js';
import { perRequestInputs } from '../../../src/grants/token-input.js';
import {
  credentialConfig,
  generateKey,
  grantContext,
  TempDir,
  type TestKey,
  TOKEN_ENDPOINT,
  token,
} from '../fixtures.js';

const JWT_BEARER = 'urn:ietf:params:oauth:grant-type:jwt-bearer';
const SAML2_BEARER = 'urn:ietf:params:oauth:grant-type:saml2-bearer';
const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ACCESS_TOKEN = 'urn:ietf:params:oauth:token-type:access_token';
const JWT_TYPE = 'urn:ietf:params:oauth:token-type:jwt';

const SAML_XML = '<saml:Assertion xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="_1"/>';

let dir: TempDir;
let key: TestKey;

beforeAll(() => {
  dir = new TempDir();
  key = generateKey('p256');
});

afterAll(() => dir.remove());

function cred(grant: GrantConfig, extra: Partial<CredentialConfig> = {}): CredentialConfig {
  return credentialConfig({ name: 'svc', grant, ...extra });
}

const header = (name: string, value: string) => new Map([[name, value]]);

async function formOf(c: CredentialConfig, ctx: GrantContext = grantContext()): Promise<URLSearchParams> {
  return grantFor(c, new FileSet()).form(ctx);
}

describe('jwt_bearer (RFC 7523 §2.1)', () => {
  const jwtBearer = (assertion: TokenInput, extra: Partial<CredentialConfig> = {}) =>
    cred({ type: 'jwt_bearer', assertion }, extra);

  it('sends the file content as assertion, with scope, audience, resource and params', async () => {
    const path = dir.file('grant.jwt', '  eyJ.a.b\n');
    const form = await formOf(
      jwtBearer({ source: 'file', path }, { params: { tenant: 'acme' } }),
      grantContext({ tokenScope: { scope: 's', audience: 'https://aud', resource: 'https://res' } }),
    );
    expect([...form]).toEqual([
      ['tenant', 'acme'],
      ['grant_type', JWT_BEARER],
      ['scope', 's'],
      ['audience', 'https://aud'],
      ['resource', 'https://res'],
      ['assertion', 'eyJ.a.b'],
    ]);
  });

  it('reads the file again at every request', async () => {
    const path = dir.file('rotating.jwt', 'first');
    const grant = jwtBearerGrant(jwtBearer({ source: 'file', path }), new FileSet());
    expect((await grant.form(grantContext())).get('assertion')).toBe('first');
    writeFileSync(path, 'other'); // same size, in place
    expect((await grant.form(grantContext())).get('assertion')).toBe('other');
  });

  it('fails with a typed, retryable error when the file is missing', async () => {
    const path = join(dir.path, 'missing.jwt');
    const err = await formOf(jwtBearer({ source: 'file', path })).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CredentialInputError);
    expect((err as CredentialInputError).code).toBe('credential_input_unavailable');
    expect((err as CredentialInputError).credential).toBe('svc');
    expect((err as Error).message).toContain(path);
  });

  it('takes the assertion from the request header, by its lower-case name', async () => {
    const form = await formOf(
      jwtBearer({ source: 'request_header', header: 'X-User-Assertion', maxEntries: 10 }),
      grantContext({ request: header('x-user-assertion', 'eyJ.user.sig') }),
    );
    expect(Object.fromEntries(form)).toEqual({ grant_type: JWT_BEARER, assertion: 'eyJ.user.sig' });
  });

  it('fails with assertion_missing when the request has no such header', async () => {
    const c = jwtBearer({ source: 'request_header', header: 'X-User-Assertion', maxEntries: 10 });
    for (const request of [undefined, header('x-other', 'v')]) {
      const err = await formOf(c, grantContext(request ? { request } : {})).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(AssertionMissingError);
      expect((err as AssertionMissingError).header).toBe('X-User-Assertion');
    }
  });

  it('signs a fresh assertion: aud = the token endpoint by default, configured claims, lifetime', async () => {
    const c = jwtBearer({
      source: 'sign',
      signing: { key: { value: key.pkcs8 }, alg: 'ES256', keyId: 'k1' },
      issuer: 'svc-client',
      subject: 'batch@example.com',
      lifetimeMs: 90_000,
      claims: { tenant: 'acme' },
    });
    const grant = grantFor(c, new FileSet());
    const form = await grant.form(grantContext());
    expect([...form.keys()]).toEqual(['grant_type', 'assertion']);
    const assertion = form.get('assertion')!;
    const { payload } = await jwtVerify(assertion, key.publicKey, {
      algorithms: ['ES256'],
      issuer: 'svc-client',
      subject: 'batch@example.com',
      audience: TOKEN_ENDPOINT,
    });
    expect(payload.exp! - payload.iat!).toBe(90);
    expect(payload.tenant).toBe('acme');
    expect(decodeProtectedHeader(assertion).kid).toBe('k1');
    const again = (await grant.form(grantContext())).get('assertion')!;
    expect(again).not.toBe(assertion);
  });

  it('signs for the configured audience, or the endpoint of the request', async () => {
    const signing = { key: { value: key.pkcs8 }, alg: 'ES256' as const };
    const base = {
      source: 'sign' as const,
      signing,
      issuer: 'i',
      subject: 's',
      lifetimeMs: 60_000,
      claims: {},
    };
    const configured = await formOf(jwtBearer({ ...base, audience: 'https://idp.example.com' }));
    await jwtVerify(configured.get('assertion')!, key.publicKey, { audience: 'https://idp.example.com' });
    const mtls = await formOf(
      jwtBearer(base),
      grantContext({ endpoint: new URL('https://mtls.example.com/t') }),
    );
    await jwtVerify(mtls.get('assertion')!, key.publicKey, { audience: 'https://mtls.example.com/t' });
  });

  it('refuses a credential of another grant', () => {
    expect(() => jwtBearerGrant(credentialConfig(), new FileSet())).toThrow(TypeError);
  });
});

describe('saml2_bearer (RFC 7522 §2.1)', () => {
  const saml = (assertion: TokenInput) => cred({ type: 'saml2_bearer', assertion });

  it('sends an XML file as unpadded base64url', async () => {
    const path = dir.file('assertion.xml', `${SAML_XML}\n`);
    const form = await formOf(saml({ source: 'file', path }), grantContext({ tokenScope: { scope: 's' } }));
    expect([...form]).toEqual([
      ['grant_type', SAML2_BEARER],
      ['scope', 's'],
      ['assertion', Buffer.from(SAML_XML).toString('base64url')],
    ]);
  });

  it('sends a base64 header value as base64url', async () => {
    const form = await formOf(
      saml({ source: 'request_header', header: 'X-Saml', maxEntries: 10 }),
      grantContext({ request: header('x-saml', Buffer.from(SAML_XML).toString('base64')) }),
    );
    expect(form.get('assertion')).toBe(Buffer.from(SAML_XML).toString('base64url'));
  });

  it('answers a header that holds no SAML assertion with assertion_invalid', async () => {
    const err = await formOf(
      saml({ source: 'request_header', header: 'X-Saml', maxEntries: 10 }),
      grantContext({ request: header('x-saml', 'garbage!') }),
    ).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AssertionInvalidError);
    expect((err as AssertionInvalidError).code).toBe('assertion_invalid');
    expect((err as AssertionInvalidError).header).toBe('X-Saml');
  });

  it('reports a file that holds no SAML assertion as a credential input problem', async () => {
    const path = dir.file('not-saml.txt', 'garbage!');
    const err = await formOf(saml({ source: 'file', path })).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CredentialInputError);
    expect((err as CredentialInputError).credential).toBe('svc');
  });

  it('refuses a credential of another grant', () => {
    expect(() => saml2BearerGrant(credentialConfig(), new FileSet())).toThrow(TypeError);
  });
});

describe('token_exchange (RFC 8693 §2.1)', () => {
  it('exchanges another credential’s token, with every field of §2.1', async () => {
    const actorFile = dir.file('actor.jwt', 'actor.jwt.value\n');
    const credentialToken = vi.fn(async (name: string) => token(`token-of-${name}`));
    const c = cred(
      {
        type: 'token_exchange',
        subjectToken: { source: 'credential', credential: 'orders' },
        subjectTokenType: ACCESS_TOKEN,
        actorToken: { source: 'file', path: actorFile },
        actorTokenType: JWT_TYPE,
        requestedTokenType: ACCESS_TOKEN,
      },
      { params: { tenant: 'acme' } },
    );
    const form = await formOf(
      c,
      grantContext({
        credentialToken,
        tokenScope: { scope: 's', audience: 'https://down', resource: 'https://r' },
      }),
    );
    expect([...form]).toEqual([
      ['tenant', 'acme'],
      ['grant_type', TOKEN_EXCHANGE],
      ['scope', 's'],
      ['audience', 'https://down'],
      ['resource', 'https://r'],
      ['subject_token', 'token-of-orders'],
      ['subject_token_type', ACCESS_TOKEN],
      ['actor_token', 'actor.jwt.value'],
      ['actor_token_type', JWT_TYPE],
      ['requested_token_type', ACCESS_TOKEN],
    ]);
    expect(credentialToken).toHaveBeenCalledWith('orders');
  });

  it('leaves actor and requested type out when not configured', async () => {
    const form = await formOf(
      cred({
        type: 'token_exchange',
        subjectToken: { source: 'request_header', header: 'X-Subject', maxEntries: 10 },
        subjectTokenType: JWT_TYPE,
      }),
      grantContext({ request: header('x-subject', 'user.jwt') }),
    );
    expect([...form]).toEqual([
      ['grant_type', TOKEN_EXCHANGE],
      ['subject_token', 'user.jwt'],
      ['subject_token_type', JWT_TYPE],
    ]);
  });

  it('takes subject and actor tokens from two request headers', async () => {
    const form = await formOf(
      cred({
        type: 'token_exchange',
        subjectToken: { source: 'request_header', header: 'X-Subject', maxEntries: 10 },
        subjectTokenType: ACCESS_TOKEN,
        actorToken: { source: 'request_header', header: 'X-Actor', maxEntries: 10 },
        actorTokenType: JWT_TYPE,
      }),
      grantContext({
        request: new Map([
          ['x-subject', 'subject-value'],
          ['x-actor', 'actor-value'],
        ]),
      }),
    );
    expect(form.get('subject_token')).toBe('subject-value');
    expect(form.get('actor_token')).toBe('actor-value');
  });

  it('fails when the other credential has no token', async () => {
    const c = cred({
      type: 'token_exchange',
      subjectToken: { source: 'credential', credential: 'orders' },
      subjectTokenType: ACCESS_TOKEN,
    });
    const failure = new Error('orders is down');
    await expect(
      formOf(
        c,
        grantContext({
          credentialToken: async () => {
            throw failure;
          },
        }),
      ),
    ).rejects.toBe(failure);
  });

  it('accepts the N_A token type of §2.2.1 besides Bearer', () => {
    const c = cred({
      type: 'token_exchange',
      subjectToken: { source: 'file', path: 'x' },
      subjectTokenType: JWT_TYPE,
    });
    expect(tokenExchangeGrant(c, new FileSet()).extraTokenTypes).toEqual(['n_a']);
    expect(grantFor(credentialConfig(), new FileSet()).extraTokenTypes ?? []).toEqual([]);
  });

  it('refuses a credential of another grant', () => {
    expect(() => tokenExchangeGrant(credentialConfig(), new FileSet())).toThrow(TypeError);
  });
});

describe('grantFor', () => {
  it.each([
    [{ type: 'client_credentials' }, 'client_credentials'],
    [{ type: 'password', username: 'u', password: { value: 'p' } }, 'password'],
    [
      { type: 'jwt_bearer', assertion: { source: 'request_header', header: 'X-A', maxEntries: 1 } },
      JWT_BEARER,
    ],
    [
      { type: 'saml2_bearer', assertion: { source: 'request_header', header: 'X-A', maxEntries: 1 } },
      SAML2_BEARER,
    ],
    [
      {
        type: 'token_exchange',
        subjectToken: { source: 'request_header', header: 'X-A', maxEntries: 1 },
        subjectTokenType: JWT_TYPE,
      },
      TOKEN_EXCHANGE,
    ],
  ] as [GrantConfig, string][])('builds the %j grant', async (grant, grantType) => {
    const value = grant.type === 'saml2_bearer' ? SAML_XML : 'value';
    const form = await formOf(cred(grant), grantContext({ request: header('x-a', value) }));
    expect(form.get('grant_type')).toBe(grantType);
  });
});

describe('perRequestInputs', () => {
  it('lists the lower-case headers of request_header inputs only, keeping the smaller cache', () => {
    const inputs = perRequestInputs([
      { source: 'request_header', header: 'X-Subject', maxEntries: 50 },
      undefined,
      { source: 'file', path: '/x' },
      { source: 'request_header', header: 'x-actor', maxEntries: 20 },
    ]);
    expect(inputs?.headers).toEqual(['x-subject', 'x-actor']);
    expect(inputs?.maxEntries).toBe(20);
  });

  it('is undefined when no input comes from the request', () => {
    expect(perRequestInputs([{ source: 'file', path: '/x' }, undefined])).toBeUndefined();
  });
});
