import { describe, expect, it } from 'vitest';
import { clientCredentialsGrant } from '../../../src/grants/client-credentials.js';
import { credentialConfig, scoped } from '../fixtures.js';

describe('clientCredentialsGrant (RFC 6749 §4.4.2)', () => {
  it('holds only grant_type for a bare credential, and never the client secret', async () => {
    const form = await clientCredentialsGrant(credentialConfig()).form(scoped({}));
    expect(form.toString()).toBe('grant_type=client_credentials');
  });

  it('adds scope, audience and resource of the context', async () => {
    const form = await clientCredentialsGrant(credentialConfig()).form(
      scoped({ scope: 'orders.read orders.write', audience: 'https://api', resource: 'https://orders/' }),
    );
    expect(Object.fromEntries(form)).toEqual({
      grant_type: 'client_credentials',
      scope: 'orders.read orders.write',
      audience: 'https://api',
      resource: 'https://orders/',
    });
    expect(form.toString()).toContain('scope=orders.read+orders.write');
  });

  it('takes scope, audience and resource from the context, not from the credential', async () => {
    // The context holds what is in force (a route override, else the credential's own values).
    const cred = credentialConfig({
      scope: 'credential-scope',
      audience: 'https://cred',
      resource: 'https://cred/r',
    });
    const form = await clientCredentialsGrant(cred).form(scoped({ scope: 'route-scope' }));
    expect(Object.fromEntries(form)).toEqual({ grant_type: 'client_credentials', scope: 'route-scope' });
  });

  it('adds extra params, and the scope, audience and resource in force win over them', async () => {
    const form = await clientCredentialsGrant(
      credentialConfig({
        params: { tenant: 'acme', scope: 'sneaky', audience: 'a', resource: 'r', grant_type: 'password' },
      }),
    ).form(scoped({ scope: 'real', audience: 'https://aud', resource: 'https://res' }));
    expect(form.getAll('tenant')).toEqual(['acme']);
    expect(form.getAll('scope')).toEqual(['real']);
    expect(form.getAll('audience')).toEqual(['https://aud']);
    expect(form.getAll('resource')).toEqual(['https://res']);
    expect(form.getAll('grant_type')).toEqual(['client_credentials']);
  });

  it('builds a new form for every request', async () => {
    const grant = clientCredentialsGrant(credentialConfig());
    const a = await grant.form(scoped({}));
    a.set('client_id', 'added-by-client-auth');
    expect((await grant.form(scoped({}))).toString()).toBe('grant_type=client_credentials');
  });
});
