// Minted leaves as TLS clients see them: real handshakes between a server holding the minted
// context and a Node client (OpenSSL) that trusts only the CA it is given, so chain building,
// signatures, identity checks and X.509 name constraints are all OpenSSL's verdict, not ours.
import { X509Certificate } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CertificateMintError, ConfigError } from '../../../src/errors.js';
import { parsePermit } from '../../../src/tls-intercept/names.js';
import { type Interception, openInterception } from '../../../src/tls-intercept/open.js';
import {
  type CaFiles,
  handshake,
  interceptConfig,
  opensslCertificate,
  servedCertificate,
  type TempDir,
  tempDir,
  writeNewCa,
} from '../../support/interception.js';

const HOUR = 3_600_000;

let dir: TempDir;
let ca: CaFiles;
let otherCa: CaFiles;
let interception: Interception;

beforeAll(async () => {
  dir = tempDir();
  ca = await writeNewCa(dir.path, 'ca');
  otherCa = await writeNewCa(dir.path, 'other');
  interception = await openInterception(interceptConfig(ca));
});

afterAll(() => dir.remove());

async function leafOf(i: Interception, host: string, trust = ca.certPem) {
  const result = await handshake(await i.secureContextFor(host), host, trust);
  if (!result.ok) throw new Error(`handshake for ${host} failed: ${result.code} ${result.message}`);
  return { result, x509: new X509Certificate(result.cert.raw) };
}

function permits(...texts: string[]) {
  return texts.map((t) => {
    const p = parsePermit(t);
    if (typeof p === 'string') throw new Error(p);
    return p;
  });
}

describe('a minted leaf', () => {
  it('is accepted by a client that trusts the CA, with the identity check for its host', async () => {
    const { result, x509 } = await leafOf(interception, 'api.example.com');
    expect(result.cert.subjectaltname).toBe('DNS:api.example.com');
    expect(x509.subject).toBe('CN=api.example.com');
    expect(x509.ca).toBe(false);
    // serverAuth only (Node names the extended key usage `keyUsage`).
    expect(x509.keyUsage).toEqual(['1.3.6.1.5.5.7.3.1']);
    expect(x509.checkIssued(new X509Certificate(ca.certPem))).toBe(true);
  });

  it('fails the identity check for any other host', async () => {
    const context = await interception.secureContextFor('api.example.com');
    const result = await handshake(context, 'other.example.com', ca.certPem);
    expect(result).toMatchObject({ ok: false, code: 'ERR_TLS_CERT_ALTNAME_INVALID' });
  });

  it('is refused by a client that trusts another CA', async () => {
    const context = await interception.secureContextFor('api.example.com');
    const result = await handshake(context, 'api.example.com', otherCa.certPem);
    expect(result).toMatchObject({ ok: false, code: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' });
  });

  it('names an IPv4 literal as an IP address, with no subject for OpenSSL to mistake for a DNS name', async () => {
    const { result, x509 } = await leafOf(interception, '10.1.2.3');
    expect(result.cert.subjectaltname).toBe('IP Address:10.1.2.3');
    // Node reports an empty subject as undefined.
    expect(x509.subject ?? '').toBe('');
  });

  it('names an IPv6 literal, with or without brackets, as an IP address', async () => {
    const bracketed = await leafOf(interception, '[::1]');
    expect(bracketed.x509.checkIP('::1')).toBe('::1');
    const bare = await leafOf(interception, '2001:db8::7');
    expect(bare.x509.checkIP('2001:db8::7')).toBe('2001:db8::7');
  });

  it('carries a name longer than a subject CN allows in its (then critical) SAN only', async () => {
    const host = `${'a'.repeat(60)}.example.com`;
    const { result, x509 } = await leafOf(interception, host);
    expect(result.cert.subjectaltname).toBe(`DNS:${host}`);
    // Node reports an empty subject as undefined.
    expect(x509.subject ?? '').toBe('');
  });

  it('has a random positive 128-bit serial', async () => {
    const serials = new Set<string>();
    for (const host of ['s1.example.com', 's2.example.com', 's3.example.com']) {
      const { x509 } = await leafOf(interception, host);
      expect(x509.serialNumber).toMatch(/^[4-7][0-9A-F]{31}$/);
      serials.add(x509.serialNumber);
    }
    expect(serials.size).toBe(3);
  });
});

describe('leaf validity', () => {
  it('starts an hour before now and lasts leaf_lifetime', async () => {
    const now = Date.UTC(2026, 0, 10, 12, 0, 30, 500);
    const then = await writeNewCa(dir.path, 'then', { now: Date.UTC(2026, 0, 1) });
    const i = await openInterception(interceptConfig(then, 5 * HOUR), { now: () => now });
    const leaf = await servedCertificate(await i.secureContextFor('time.example.com'), 'time.example.com');
    expect(Date.parse(leaf.validFrom)).toBe(Date.UTC(2026, 0, 10, 11, 0, 30));
    expect(Date.parse(leaf.validTo)).toBe(Date.UTC(2026, 0, 10, 17, 0, 30));
  });

  it('never starts before the CA does', async () => {
    const caNow = Date.now();
    const young = await writeNewCa(dir.path, 'young', { now: caNow });
    const caStart = Date.parse(new X509Certificate(young.certPem).validFrom);
    // Minted half an hour after the CA's start: an hour of backdating would go before it.
    const i = await openInterception(interceptConfig(young), { now: () => caStart + HOUR / 2 });
    const leaf = await servedCertificate(await i.secureContextFor('young.example.com'), 'young.example.com');
    expect(Date.parse(leaf.validFrom)).toBe(caStart);
  });

  it('never outlives the CA', async () => {
    const shortCa = await writeNewCa(dir.path, 'short', { validityMs: 3 * HOUR });
    const caEnd = Date.parse(new X509Certificate(shortCa.certPem).validTo);
    const i = await openInterception(interceptConfig(shortCa, 24 * HOUR));
    const { x509 } = await leafOf(i, 'short.example.com', shortCa.certPem);
    expect(Date.parse(x509.validTo)).toBe(caEnd);
  });

  it('cannot be minted once the CA has expired', async () => {
    const shortCa = await writeNewCa(dir.path, 'expiring', { validityMs: 2 * HOUR });
    const caEnd = Date.parse(new X509Certificate(shortCa.certPem).validTo);
    let now = Date.now();
    const i = await openInterception(interceptConfig(shortCa), { now: () => now });
    now = caEnd + 1000;
    const err = await i.secureContextFor('late.example.com').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CertificateMintError);
    expect(err).toMatchObject({
      code: 'certificate_unavailable',
      reason: 'ca_expired',
      host: 'late.example.com',
    });
  });
});

describe('hosts no certificate can name', () => {
  it.each([
    'exämple.com',
    '*.example.com',
    'a..example.com',
    'fe80::1%eth0',
    `${'a'.repeat(64)}.example.com`,
  ])('%s is refused with host_not_certifiable', async (host) => {
    const err = await interception.secureContextFor(host).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CertificateMintError);
    expect(err).toMatchObject({ reason: 'host_not_certifiable', host });
  });
});

describe('CAs made elsewhere', () => {
  it.each(['rsa2048', 'p384'] as const)('an openssl %s CA signs leaves clients accept', async (key) => {
    const made = await opensslCertificate(dir.path, `openssl-${key}`, {
      key,
      subject: '/O=Example, Inc./CN=Corp CA',
    });
    const i = await openInterception(interceptConfig(made));
    await leafOf(i, 'corp.example.com', made.certPem);
  });

  it('an intermediate CA sends its chain, so clients that trust only the root accept the leaf', async () => {
    const root = await opensslCertificate(dir.path, 'root');
    const intermediate = await opensslCertificate(dir.path, 'intermediate', {
      issuer: root,
      extensions: ['basicConstraints=critical,CA:TRUE,pathlen:0', 'keyUsage=critical,keyCertSign'],
    });
    for (const certPem of [intermediate.certPem, intermediate.certPem + root.certPem]) {
      const i = await openInterception(interceptConfig({ ...intermediate, certPem }));
      const { result } = await leafOf(i, 'deep.example.com', root.certPem);
      expect(result.cert.issuerCertificate.subject.CN).toBe('intermediate');
    }
  });

  it('a CA whose keyUsage lacks keyCertSign is refused when interception opens, naming the key', async () => {
    const made = await opensslCertificate(dir.path, 'no-certsign', {
      extensions: ['basicConstraints=critical,CA:TRUE', 'keyUsage=critical,digitalSignature'],
    });
    const err = await openInterception(interceptConfig(made)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).problems).toEqual([
      { path: 'tls_intercept.ca_cert_file', message: expect.stringContaining('lacks keyCertSign') },
    ]);
  });
});

describe('name constraints of a CA made with --permit', () => {
  let dnsOnly: Interception;
  let dnsOnlyCa: CaFiles;
  let ipOnly: Interception;
  let ipOnlyCa: CaFiles;

  beforeAll(async () => {
    dnsOnlyCa = await writeNewCa(dir.path, 'permit-dns', { permits: permits('*.example.com') });
    dnsOnly = await openInterception(interceptConfig(dnsOnlyCa));
    ipOnlyCa = await writeNewCa(dir.path, 'permit-ip', { permits: permits('10.0.0.1', '::1') });
    ipOnly = await openInterception(interceptConfig(ipOnlyCa));
  });

  it.each(['api.example.com', 'a.b.example.com', 'example.com'])(
    'a leaf for %s inside them is accepted',
    async (host) => {
      await leafOf(dnsOnly, host, dnsOnlyCa.certPem);
    },
  );

  it.each(['example.org', 'notexample.com'])(
    'a leaf for %s outside them is refused by the client',
    async (host) => {
      const result = await handshake(await dnsOnly.secureContextFor(host), host, dnsOnlyCa.certPem);
      expect(result).toMatchObject({
        ok: false,
        message: expect.stringContaining('permitted subtree violation'),
      });
    },
  );

  it('DNS permits alone still keep the CA from signing for any IP address', async () => {
    const result = await handshake(await dnsOnly.secureContextFor('10.0.0.1'), '10.0.0.1', dnsOnlyCa.certPem);
    expect(result).toMatchObject({
      ok: false,
      message: expect.stringContaining('excluded subtree violation'),
    });
  });

  it('IP permits allow exactly those addresses, and no DNS name', async () => {
    await leafOf(ipOnly, '10.0.0.1', ipOnlyCa.certPem);
    await leafOf(ipOnly, '[::1]', ipOnlyCa.certPem);
    const otherIp = await handshake(await ipOnly.secureContextFor('10.0.0.2'), '10.0.0.2', ipOnlyCa.certPem);
    expect(otherIp).toMatchObject({
      ok: false,
      message: expect.stringContaining('permitted subtree violation'),
    });
    const name = await handshake(
      await ipOnly.secureContextFor('api.example.com'),
      'api.example.com',
      ipOnlyCa.certPem,
    );
    expect(name).toMatchObject({ ok: false, message: expect.stringContaining('excluded subtree violation') });
  });
});
