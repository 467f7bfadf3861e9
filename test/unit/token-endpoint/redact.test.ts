import { describe, expect, it } from 'vitest';
import { clientSecretBasic } from '../../../src/client-auth/client-auth.js';
import { parseTokenResponse } from '../../../src/token-endpoint/parse-response.js';
import { REDACTED, redactSecrets, requestSecrets } from '../../../src/token-endpoint/redact.js';

// Characters that every encoding spells differently: space, "/", "+", "=", "&", '"', "\", ":", "é".
const SECRET = 'top secret/+=&"\\:é-2c9f';

/** Every spelling of a secret a server might echo. */
function spellings(secret: string): string[] {
  const json = JSON.stringify(secret).slice(1, -1);
  return [
    secret,
    encodeURIComponent(secret),
    encodeURIComponent(secret).toLowerCase(),
    new URLSearchParams({ s: secret }).toString().slice(2),
    json,
    json.replace('é', '\\u00e9'),
    json.replaceAll('/', '\\/'),
    Buffer.from(secret).toString('base64'),
    Buffer.from(secret).toString('base64url'),
  ];
}

describe('requestSecrets', () => {
  it('takes every form value but the public fields, and the Basic credentials in all their forms', () => {
    const form = new URLSearchParams({
      grant_type: 'password',
      client_id: 'orders-client',
      scope: 'orders.read',
      username: 'alice',
      password: 'pw-1',
      client_secret: 'cs-2',
      client_assertion: 'ca-3',
      client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
      assertion: 'as-4',
      refresh_token: 'rt-5',
      subject_token: 'st-6',
      subject_token_type: 'urn:ietf:params:oauth:token-type:jwt',
      actor_token: 'at-7',
      tenant: 'param-8',
    });
    const headers: Record<string, string> = {};
    clientSecretBasic('orders:client', () => SECRET)(form, headers, { endpoint: new URL('http://x') });
    const secrets = requestSecrets(form, headers);
    for (const s of ['pw-1', 'cs-2', 'ca-3', 'as-4', 'rt-5', 'st-6', 'at-7', 'param-8', SECRET]) {
      expect(secrets).toContain(s);
    }
    expect(secrets).toContain(headers['authorization']!.slice('Basic '.length));
    for (const s of ['password', 'orders-client', 'orders.read', 'alice']) expect(secrets).not.toContain(s);
  });

  it('is empty for a request without secrets', () => {
    expect(
      requestSecrets(new URLSearchParams({ grant_type: 'client_credentials', client_id: 'c' }), {}),
    ).toEqual([]);
  });
});

describe('redactSecrets', () => {
  it.each(spellings(SECRET).map((s) => [s]))('removes the spelling %s', (spelling) => {
    const out = redactSecrets(`client_secret=${spelling} is wrong`, [SECRET]);
    expect(out).toBe(`client_secret=${REDACTED} is wrong`);
  });

  it('removes every occurrence, the longest secret first', () => {
    const out = redactSecrets('a=abcdef123 b=abcdef123456 c=abcdef123', ['abcdef123', 'abcdef123456']);
    expect(out).toBe(`a=${REDACTED} b=${REDACTED} c=${REDACTED}`);
  });

  it('removes the start of a secret that the server cut off at the end of its text', () => {
    expect(redactSecrets('echo: client_secret=top secr', [SECRET])).toBe(`echo: client_secret=${REDACTED}`);
    // The longest such tail, whichever spelling it starts.
    expect(
      redactSecrets('echo: s=review%20secret-abc', [
        'review secret-abcdef',
        'secret-abcdefghijklmnopqrstuvwxyz',
      ]),
    ).toBe(`echo: s=${REDACTED}`);
    // Shorter tails than 6 characters are left: too likely to be ordinary text.
    expect(redactSecrets('this is top s', [SECRET])).toBe('this is top s');
  });

  it('leaves text without secrets as it is', () => {
    expect(redactSecrets('invalid client', [SECRET])).toBe('invalid client');
    expect(redactSecrets('invalid client', [])).toBe('invalid client');
  });
});

describe('parseTokenResponse with a redactor', () => {
  const redact = (text: string) => redactSecrets(text, [SECRET]);
  const opts = {
    credential: 'orders',
    defaultLifetimeMs: 300_000,
    maxLifetimeMs: 86_400_000,
    now: 0,
    redact,
  };
  const parse = (status: number, body: unknown) => {
    try {
      parseTokenResponse({ status, contentType: 'application/json', body: JSON.stringify(body) }, opts);
    } catch (err) {
      return err as Error & { oauthError?: string; oauthErrorDescription?: string };
    }
    throw new Error('expected a failure');
  };

  it.each([
    ['error_description', 400, { error: 'invalid_client', error_description: `bad secret ${SECRET}` }],
    ['error', 400, { error: `invalid ${SECRET}` }],
    ['token_type', 200, { access_token: 'a', token_type: SECRET }],
    ['expires_in', 200, { access_token: 'a', expires_in: SECRET }],
  ])('keeps the secret out of an echoed %s', (_field, status, body) => {
    const err = parse(status, body);
    const text = `${err.message} ${err.oauthError ?? ''} ${err.oauthErrorDescription ?? ''}`;
    for (const s of spellings(SECRET)) expect(text).not.toContain(s);
    expect(text).toContain(REDACTED);
  });

  it('redacts before cutting: a secret across the length cap leaves no prefix behind', () => {
    const err = parse(400, { error: 'invalid_client', error_description: `${'x'.repeat(290)}${SECRET}` });
    expect(err.oauthErrorDescription).toBe(`${'x'.repeat(290)}${REDACTED}`);
    expect(err.oauthErrorDescription!.length).toBeLessThanOrEqual(300);
  });
});
