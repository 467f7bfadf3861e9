/**
 * `client_assertion_type` beside `client_assertion_file`: a ready assertion of another profile than
 * RFC 7523's jwt-bearer, e.g. a SPIFFE JWT-SVID (draft-ietf-oauth-spiffe-client-auth §3.1), is sent
 * as it is under the configured type; without the key the type stays jwt-bearer.
 */
import { writeFileSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import {
  clientAssertion,
  clientAuthFor,
  JWT_BEARER_ASSERTION,
} from '../../../src/client-auth/client-auth.js';
import { FileSet } from '../../../src/files/live-file.js';
import { credentialConfig, TempDir, TOKEN_ENDPOINT } from '../fixtures.js';

const JWT_SPIFFE = 'urn:ietf:params:oauth:client-assertion-type:jwt-spiffe';
const SPIFFE_ID = 'spiffe://example.org/ns/orders/sa/orders';
const ctx = { endpoint: new URL(TOKEN_ENDPOINT) };

/** A JWT-SVID as spiffe-helper writes it: header.payload.signature, no trailing newline. */
function svid(sub: string, exp: number): string {
  const part = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
  return `${part({ alg: 'ES256', kid: 'k1', typ: 'JWT' })}.${part({ aud: ['https://sso.example.com/realms/acme'], exp, sub })}.c2lnbmF0dXJl`;
}

const dir = new TempDir();
afterAll(() => dir.remove());

async function run(auth: ReturnType<typeof clientAuthFor>) {
  const form = new URLSearchParams({ grant_type: 'client_credentials' });
  const headers: Record<string, string> = {};
  await auth(form, headers, ctx);
  return { form, headers };
}

describe('clientAssertion', () => {
  it('sends jwt-bearer (RFC 7523 §2.2) unless given another type', async () => {
    const form = new URLSearchParams();
    await clientAssertion('id', () => 'a.b.c')(form, {}, ctx);
    expect(form.get('client_assertion_type')).toBe(JWT_BEARER_ASSERTION);
    expect(JWT_BEARER_ASSERTION).toBe('urn:ietf:params:oauth:client-assertion-type:jwt-bearer');

    const other = new URLSearchParams([['client_assertion_type', 'stale']]);
    await clientAssertion('id', () => 'a.b.c', JWT_SPIFFE)(other, {}, ctx);
    expect(other.getAll('client_assertion_type')).toEqual([JWT_SPIFFE]);
  });
});

describe('private_key_jwt with client_assertion_file and client_assertion_type', () => {
  it('sends the JWT-SVID as it is, under jwt-spiffe, with the SPIFFE ID as client_id', async () => {
    const first = svid(SPIFFE_ID, 2_000_000_000);
    const path = dir.file('jwt_svid.token', first);
    const auth = clientAuthFor(
      credentialConfig({
        clientId: SPIFFE_ID,
        clientAuth: { method: 'private_key_jwt', assertionFile: path, assertionType: JWT_SPIFFE },
      }),
      new FileSet(),
    );
    const { form, headers } = await run(auth);
    // draft-ietf-oauth-spiffe-client-auth §3.1: client_assertion_type and a single JWT-SVID as
    // client_assertion; client_id (RFC 7521 §4.2: optional, the assertion's sub) beside them.
    expect([...form]).toEqual([
      ['grant_type', 'client_credentials'],
      ['client_id', SPIFFE_ID],
      ['client_assertion_type', JWT_SPIFFE],
      ['client_assertion', first],
    ]);
    expect(headers).toEqual({});

    // spiffe-helper rewrites the file before the SVID expires: the next request sends the new one.
    const second = svid(SPIFFE_ID, 2_000_000_300);
    writeFileSync(path, `${second}\n`);
    const next = await run(auth);
    expect(next.form.get('client_assertion')).toBe(second);
    expect(next.form.get('client_assertion_type')).toBe(JWT_SPIFFE);
  });

  it('keeps jwt-bearer for a ready assertion without client_assertion_type', async () => {
    const path = dir.file('sa-token', svid('system:serviceaccount:orders:orders', 2_000_000_000));
    const { form } = await run(
      clientAuthFor(
        credentialConfig({ clientId: 'app', clientAuth: { method: 'private_key_jwt', assertionFile: path } }),
        new FileSet(),
      ),
    );
    expect(form.getAll('client_assertion_type')).toEqual([JWT_BEARER_ASSERTION]);
  });

  it('passes any absolute URI through, for profiles token-injector does not know', async () => {
    const type = 'urn:example:params:oauth:client-assertion-type:workload-token';
    const path = dir.file('other.token', 'x.y.z');
    const { form } = await run(
      clientAuthFor(
        credentialConfig({
          clientId: 'app',
          clientAuth: { method: 'private_key_jwt', assertionFile: path, assertionType: type },
        }),
        new FileSet(),
      ),
    );
    expect(form.get('client_assertion_type')).toBe(type);
    expect(form.get('client_assertion')).toBe('x.y.z');
  });
});
