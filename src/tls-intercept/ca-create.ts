import { generateKeyPairSync, X509Certificate as NodeX509Certificate, webcrypto } from 'node:crypto';
import { isIPv4 } from 'node:net';
import { AsnConvert } from '@peculiar/asn1-schema';
import {
  GeneralName,
  GeneralSubtree,
  GeneralSubtrees,
  id_ce_nameConstraints,
  NameConstraints,
} from '@peculiar/asn1-x509';
import type { CertificateName } from './names.js';
import { x509 } from './x509.js';

/**
 * Two years. The CA goes into the trust store of every app behind the proxy, so replacing it
 * means touching each of them: a CA that expires every few months would be replaced carelessly.
 * Its key is a file in the proxy's secrets and a private CA has no revocation, so a much longer
 * life would leave a stolen copy useful for years.
 */
export const CA_VALIDITY_MS = 2 * 365 * 24 * 3_600_000;

/** As for leaves: an app whose clock runs a little behind must not see a CA from the future. */
const CA_BACKDATE_MS = 60 * 60_000;

/** X.509 `commonName` holds at most 64 characters (RFC 5280 appendix A.1). */
const MAX_COMMON_NAME = 64;

export interface NewCa {
  readonly certPem: string;
  /** PKCS#8 PEM. */
  readonly keyPem: string;
  readonly subject: string;
  readonly notAfter: Date;
  /** SHA-256 of the certificate, `AB:CD:…`. */
  readonly fingerprint256: string;
}

export interface NewCaOptions {
  /** Shown in the CA's name, so people can tell which proxy's CA they trust. */
  readonly hostname: string;
  /** Name constraints: when given, the only names the CA can ever sign for. */
  readonly permits?: readonly CertificateName[];
  /** Milliseconds since the epoch; default now. */
  readonly now?: number;
  readonly validityMs?: number;
}

/**
 * A self-signed CA for interception: ECDSA P-256, basicConstraints cA with pathLen 0 (it signs
 * leaves only, never another CA), keyUsage keyCertSign and cRLSign, and with `permits` a
 * critical nameConstraints extension (RFC 5280 §4.2.1.10 requires it critical).
 */
export async function createCa(options: NewCaOptions): Promise<NewCa> {
  const now = options.now ?? Date.now();
  const keys = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const signingKey = await webcrypto.subtle.importKey(
    'pkcs8',
    keys.privateKey.export({ type: 'pkcs8', format: 'der' }),
    { name: 'ECDSA', namedCurve: 'P-256' },
    false,
    ['sign'],
  );
  const publicKey = new x509.PublicKey(keys.publicKey.export({ type: 'spki', format: 'der' }));
  const ski = await x509.SubjectKeyIdentifierExtension.create(publicKey, false, webcrypto);
  const name = [{ CN: [commonName(options.hostname)] }];
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(true, 0, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
    ski,
    new x509.AuthorityKeyIdentifierExtension(ski.keyId),
  ];
  if (options.permits && options.permits.length > 0) extensions.push(nameConstraints(options.permits));
  const cert = await x509.X509CertificateGenerator.create(
    {
      subject: name,
      issuer: name,
      notBefore: new Date(now - CA_BACKDATE_MS),
      notAfter: new Date(now + (options.validityMs ?? CA_VALIDITY_MS)),
      publicKey,
      signingKey,
      signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
      extensions,
    },
    webcrypto,
  );
  const certPem = `${cert.toString('pem')}\n`;
  const parsed = new NodeX509Certificate(certPem);
  return {
    certPem,
    keyPem: keys.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
    subject: parsed.subject.replace(/\n/g, ', '),
    notAfter: new Date(parsed.validTo),
    fingerprint256: parsed.fingerprint256,
  };
}

function commonName(hostname: string): string {
  const prefix = 'token-injector interception CA (';
  const room = MAX_COMMON_NAME - prefix.length - 1;
  return `${prefix}${hostname.length > room ? hostname.slice(0, room) : hostname})`;
}

/**
 * Permitted subtrees for the permits, and an excluded "everything" for a kind of name no permit
 * names: RFC 5280 §4.2.1.10 constrains only the kinds of names listed, so without it a CA
 * limited to DNS names could still sign for any IP address, and the other way round.
 */
function nameConstraints(permits: readonly CertificateName[]): x509.Extension {
  const dns = [...new Set(permits.filter((p) => p.type === 'dns').map((p) => p.value))];
  const ips = [...new Set(permits.filter((p) => p.type === 'ip').map((p) => p.value))];
  const permitted = [
    ...dns.map((value) => new GeneralName({ dNSName: value })),
    ...ips.map((value) => new GeneralName({ iPAddress: `${value}/${isIPv4(value) ? 32 : 128}` })),
  ];
  const excluded =
    ips.length === 0
      ? [new GeneralName({ iPAddress: '0.0.0.0/0' }), new GeneralName({ iPAddress: '::/0' })]
      : // The empty DNS name is the root of every name (RFC 5280 §4.2.1.10).
        dns.length === 0
        ? [new GeneralName({ dNSName: '' })]
        : [];
  const value = new NameConstraints({
    permittedSubtrees: subtrees(permitted),
    ...(excluded.length > 0 ? { excludedSubtrees: subtrees(excluded) } : {}),
  });
  return new x509.Extension(id_ce_nameConstraints, true, AsnConvert.serialize(value));
}

function subtrees(names: readonly GeneralName[]): GeneralSubtrees {
  return new GeneralSubtrees(names.map((base) => new GeneralSubtree({ base })));
}
