import { describe, expect, it } from 'vitest';
import { resourceMetadataParam, wellKnownResourceUrl } from '../../../src/discovery/protected-resource.js';

describe('wellKnownResourceUrl (RFC 9728 §3.1)', () => {
  it('inserts the well-known segment before the path, a terminating slash dropped', () => {
    expect(wellKnownResourceUrl(new URL('https://api.example.com/mcp')).href).toBe(
      'https://api.example.com/.well-known/oauth-protected-resource/mcp',
    );
    expect(wellKnownResourceUrl(new URL('https://api.example.com/v1/')).href).toBe(
      'https://api.example.com/.well-known/oauth-protected-resource/v1',
    );
    expect(wellKnownResourceUrl(new URL('https://api.example.com')).href).toBe(
      'https://api.example.com/.well-known/oauth-protected-resource',
    );
  });
});

describe('resourceMetadataParam (RFC 9728 §5.1)', () => {
  it('reads resource_metadata from a Bearer or DPoP challenge', () => {
    expect(
      resourceMetadataParam(
        'Bearer realm="api", resource_metadata="https://api.example.com/.well-known/oauth-protected-resource"',
      ),
    ).toBe('https://api.example.com/.well-known/oauth-protected-resource');
    expect(resourceMetadataParam(['Basic realm="x"', 'DPoP resource_metadata="https://a/m"'])).toBe(
      'https://a/m',
    );
  });

  it('none without the parameter or a Bearer challenge', () => {
    expect(resourceMetadataParam(undefined)).toBeUndefined();
    expect(resourceMetadataParam('Bearer error="invalid_token"')).toBeUndefined();
    expect(resourceMetadataParam('Basic resource_metadata="https://a/m"')).toBeUndefined();
  });
});
