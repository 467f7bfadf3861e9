import { describe, expect, it } from 'vitest';
import { ResourceDiscovery } from '../../../src/discovery/protected-resource.js';
import { ResourceRetry } from '../../../src/proxy/resource-retry.js';
import { Agent } from '../../../src/undici.js';

// Metadata at another origin is refused before any connection is made (RFC 9728 §3.3 checks).
const OFF_ORIGIN =
  'Bearer resource_metadata="https://elsewhere.example/.well-known/oauth-protected-resource"';

function retryFor(discovered: string[] = []): ResourceRetry {
  return new ResourceRetry(
    new ResourceDiscovery({
      route: 'api',
      upstream: new URL('https://api.example/mcp'),
      issuer: 'https://as.example',
      dispatcher: new Agent(),
      timeoutMs: 1000,
      discovered: (resource) => discovered.push(resource),
    }),
  );
}

describe('ResourceRetry (RFC 9728)', () => {
  it('wants only a 401', () => {
    const retry = retryFor();
    expect(retry.wants(401)).toBe(true);
    expect(retry.wants(403)).toBe(false);
    expect(retry.wants(200)).toBe(false);
  });

  it('a replayable request gets the discovery to await before its retry', async () => {
    const discovering = retryFor().discover(OFF_ORIGIN, true);
    await expect(discovering).rejects.toMatchObject({ code: 'resource_metadata_invalid' });
  });

  it('a request that cannot be sent again gets none, and the failed discovery is not left unhandled', () => {
    // vitest fails the run on an unhandled rejection: the swallowed one must not surface.
    expect(retryFor().discover(OFF_ORIGIN, false)).toBeUndefined();
  });
});
