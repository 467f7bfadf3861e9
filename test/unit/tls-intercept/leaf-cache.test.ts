// The leaf cache through the public API: a real CA and real minting, with the clock injected so
// that expiry is reached by setting the time, never by waiting.
import { X509Certificate } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CertificateMintError } from '../../../src/errors.js';
import { RENEW_AT_FRACTION } from '../../../src/tls-intercept/leaf-cache.js';
import { openInterception } from '../../../src/tls-intercept/open.js';
import {
  type CaFiles,
  handshake,
  interceptConfig,
  servedCertificate,
  type TempDir,
  tempDir,
  writeNewCa,
} from '../../support/interception.js';

const HOUR = 3_600_000;
const LIFETIME = 10 * HOUR;

let dir: TempDir;
let ca: CaFiles;

beforeAll(async () => {
  dir = tempDir();
  ca = await writeNewCa(dir.path, 'ca');
});

afterAll(() => dir.remove());

/** An interception whose clock the test moves. */
async function withClock(options: { maxHosts?: number; ca?: CaFiles; lifetime?: number } = {}) {
  // A whole second, as certificate times are: the leaf then ends exactly `lifetime` later.
  const clock = { now: Math.floor(Date.now() / 1000) * 1000 };
  const interception = await openInterception(
    interceptConfig(options.ca ?? ca, options.lifetime ?? LIFETIME),
    {
      now: () => clock.now,
      ...(options.maxHosts !== undefined ? { maxHosts: options.maxHosts } : {}),
    },
  );
  return { clock, interception, start: clock.now };
}

describe('leaf cache', () => {
  it('mints once for many concurrent callers of one host, and all get the same context', async () => {
    const { interception } = await withClock();
    const contexts = await Promise.all(
      Array.from({ length: 25 }, () => interception.secureContextFor('api.example.com')),
    );
    expect(new Set(contexts).size).toBe(1);
    expect(interception.stats).toMatchObject({ minted: 1, hits: 24, hosts: 1, failures: 0 });
    const result = await handshake(contexts[0]!, 'api.example.com', ca.certPem);
    expect(result.ok).toBe(true);
  });

  it('reuses a leaf until 90% of its lifetime has passed, then mints a new one once', async () => {
    const { clock, interception, start } = await withClock();
    const first = await interception.secureContextFor('api.example.com');
    const renewAt = start + LIFETIME * RENEW_AT_FRACTION;
    clock.now = renewAt - 1;
    expect(await interception.secureContextFor('api.example.com')).toBe(first);
    expect(interception.stats.minted).toBe(1);

    clock.now = renewAt;
    const renewed = await Promise.all(
      Array.from({ length: 5 }, () => interception.secureContextFor('api.example.com')),
    );
    expect(new Set(renewed).size).toBe(1);
    expect(renewed[0]).not.toBe(first);
    expect(interception.stats.minted).toBe(2);
    const [oldLeaf, newLeaf] = await Promise.all([
      servedCertificate(first, 'api.example.com'),
      servedCertificate(renewed[0]!, 'api.example.com'),
    ]);
    expect(newLeaf.serialNumber).not.toBe(oldLeaf.serialNumber);
    expect(Date.parse(newLeaf.validTo) - Date.parse(oldLeaf.validTo)).toBeGreaterThanOrEqual(
      LIFETIME * RENEW_AT_FRACTION - 1000,
    );
  });

  it('keeps a leaf cut short by the CA until its end: a new one would end no later', async () => {
    const shortCa = await writeNewCa(dir.path, 'short', { validityMs: 3 * HOUR });
    const caEnd = Date.parse(new X509Certificate(shortCa.certPem).validTo);
    const { clock, interception } = await withClock({ ca: shortCa, lifetime: 24 * HOUR });
    const first = await interception.secureContextFor('api.example.com');
    clock.now = caEnd - 1000;
    expect(await interception.secureContextFor('api.example.com')).toBe(first);
    expect(interception.stats.minted).toBe(1);
    clock.now = caEnd;
    await expect(interception.secureContextFor('api.example.com')).rejects.toMatchObject({
      reason: 'ca_expired',
    });
  });

  it('holds at most maxHosts hosts, dropping the least recently used', async () => {
    const { interception } = await withClock({ maxHosts: 2 });
    const a = await interception.secureContextFor('a.example.com');
    await interception.secureContextFor('b.example.com');
    await interception.secureContextFor('a.example.com'); // a is now the most recent
    await interception.secureContextFor('c.example.com'); // b goes
    expect(interception.stats).toMatchObject({ minted: 3, evicted: 1, hosts: 2 });
    expect(await interception.secureContextFor('a.example.com')).toBe(a);
    expect(interception.stats.minted).toBe(3);
    await interception.secureContextFor('b.example.com');
    expect(interception.stats).toMatchObject({ minted: 4, evicted: 2, hosts: 2 });
  });

  it('does not keep a failure: concurrent callers share it, the next caller tries again', async () => {
    const { interception } = await withClock();
    const failures = await Promise.all(
      Array.from({ length: 5 }, () => interception.secureContextFor('bad host').catch((e: unknown) => e)),
    );
    for (const err of failures) expect(err).toBeInstanceOf(CertificateMintError);
    expect(interception.stats).toMatchObject({ failures: 1, hosts: 0, minted: 0 });
    await expect(interception.secureContextFor('bad host')).rejects.toBeInstanceOf(CertificateMintError);
    expect(interception.stats.failures).toBe(2);
  });
});
