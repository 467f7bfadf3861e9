import { describe, expect, it } from 'vitest';
import type { Config, CredentialConfig } from '../../../src/config/types.js';
import { credentialFingerprints, fingerprint } from '../../../src/reload/fingerprint.js';
import { credentialConfig } from '../fixtures.js';

function configWith(...creds: CredentialConfig[]): Config {
  return { credentials: new Map(creds.map((c) => [c.name, c])) } as unknown as Config;
}

describe('fingerprint', () => {
  it('is the same whatever the order of object keys, Map entries and Set members', () => {
    const a = {
      x: 1,
      y: new Map([
        ['b', 2],
        ['a', 1],
      ]),
      z: new Set(['GET', 'POST']),
    };
    const b = {
      z: new Set(['POST', 'GET']),
      y: new Map([
        ['a', 1],
        ['b', 2],
      ]),
      x: 1,
    };
    expect(fingerprint(a)).toBe(fingerprint(b));
  });

  it('tells values apart that JSON alone would confuse: URLs, Maps, Buffers, absent sections', () => {
    expect(fingerprint({ u: new URL('https://a.example/') })).not.toBe(
      fingerprint({ u: new URL('https://b.example/') }),
    );
    expect(fingerprint(new Map([['a', 1]]))).not.toBe(fingerprint(new Map([['a', 2]])));
    expect(fingerprint([Buffer.alloc(32, 1)])).not.toBe(fingerprint([Buffer.alloc(32, 2)]));
    expect(fingerprint(undefined)).not.toBe(fingerprint({}));
    expect(fingerprint({ a: undefined })).toBe(fingerprint({}));
  });

  it('counts a value read from a file by its path: a rotated secret file is no change, another file is', () => {
    const fromFile = (value: string, file: string) =>
      credentialConfig({ clientAuth: { method: 'client_secret_basic', secret: { value, file } } });
    expect(fingerprint(fromFile('old-secret', '/run/secrets/s'))).toBe(
      fingerprint(fromFile('rotated', '/run/secrets/s')),
    );
    expect(fingerprint(fromFile('old-secret', '/run/secrets/s'))).not.toBe(
      fingerprint(fromFile('old-secret', '/run/secrets/t')),
    );
    expect(fingerprint({ ca: 'PEM 1', caFile: '/ca.pem' })).toBe(
      fingerprint({ ca: 'PEM 2', caFile: '/ca.pem' }),
    );
  });

  it('counts an inline secret by its value (a new secret written in the file is a change), without showing it', () => {
    const inline = (value: string) =>
      credentialConfig({ clientAuth: { method: 'client_secret_basic', secret: { value } } });
    expect(fingerprint(inline('secret-one'))).not.toBe(fingerprint(inline('secret-two')));
    expect(fingerprint(inline('secret-one'))).toMatch(/^[0-9a-f]{64}$/);
  });
});

describe('credentialFingerprints', () => {
  it('changes a token-exchange credential when the credential whose token it exchanges changes', () => {
    const exchange = credentialConfig({
      name: 'exchange',
      grant: {
        type: 'token_exchange',
        subjectToken: { source: 'credential', credential: 'base' },
        subjectTokenType: 'urn:ietf:params:oauth:token-type:access_token',
      },
    });
    const other = credentialConfig({ name: 'other' });
    const before = credentialFingerprints(configWith(credentialConfig({ name: 'base' }), exchange, other));
    const after = credentialFingerprints(
      configWith(credentialConfig({ name: 'base', clientId: 'another-client' }), exchange, other),
    );
    expect(after.get('base')).not.toBe(before.get('base'));
    expect(after.get('exchange')).not.toBe(before.get('exchange'));
    expect(after.get('other')).toBe(before.get('other'));
  });
});
