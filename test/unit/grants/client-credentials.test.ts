import { describe, expect, it } from 'vitest';
import type { CredentialConfig } from '../../../src/config/types.js';
import { clientCredentialsForm } from '../../../src/grants/client-credentials.js';

function credential(extra: Partial<CredentialConfig> = {}): CredentialConfig {
  return {
    name: 'orders',
    tokenEndpoint: new URL('https://idp.example.com/token'),
    grantType: 'client_credentials',
    clientId: 'id',
    clientSecret: 'secret',
    authMethod: 'client_secret_basic',
    params: {},
    prefetch: false,
    timeoutMs: 10_000,
    refreshAhead: 0.8,
    tls: {},
    ...extra,
  };
}

describe('clientCredentialsForm (RFC 6749 §4.4.2)', () => {
  it('holds only grant_type for a bare credential, and never the client secret', () => {
    const form = clientCredentialsForm(credential());
    expect(form.toString()).toBe('grant_type=client_credentials');
  });

  it('adds scope, audience and resource when configured', () => {
    const form = clientCredentialsForm(
      credential({ scope: 'orders.read orders.write', audience: 'https://api', resource: 'https://orders/' }),
    );
    expect(Object.fromEntries(form)).toEqual({
      grant_type: 'client_credentials',
      scope: 'orders.read orders.write',
      audience: 'https://api',
      resource: 'https://orders/',
    });
    expect(form.toString()).toContain('scope=orders.read+orders.write');
  });

  it('adds extra params, and the configured scope, audience and resource win over them', () => {
    const form = clientCredentialsForm(
      credential({
        params: { tenant: 'acme', scope: 'sneaky', audience: 'a', resource: 'r' },
        scope: 'real',
        audience: 'https://aud',
        resource: 'https://res',
      }),
    );
    expect(form.getAll('tenant')).toEqual(['acme']);
    expect(form.getAll('scope')).toEqual(['real']);
    expect(form.getAll('audience')).toEqual(['https://aud']);
    expect(form.getAll('resource')).toEqual(['https://res']);
    expect(form.getAll('grant_type')).toEqual(['client_credentials']);
  });
});
