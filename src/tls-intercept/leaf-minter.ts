import {
  generateKeyPairSync,
  X509Certificate as NodeX509Certificate,
  randomBytes,
  webcrypto,
} from 'node:crypto';
import type { TlsInterceptConfig } from '../config/types.js';
import { CertificateMintError, ConfigError } from '../errors.js';
import { parsePrivateKey } from '../jwt/signing-key.js';
import { type CaKeyAlgorithm, caKeyAlgorithm, pemCertificates } from './ca-material.js';
import { certificateName } from './names.js';
import { x509 } from './x509.js';

/** One minted leaf certificate and the times that decide how long it is reused. */
export interface MintedLeaf {
  readonly certPem: string;
  /** Milliseconds since the epoch, whole seconds (X.509 times have no finer resolution). */
  readonly notBefore: number;
  readonly notAfter: number;
  /** `notAfter` is the CA's own: a leaf minted later would not last any longer. */
  readonly cappedByCa: boolean;
}

/**
 * Leaves are backdated by this much so that an app whose clock runs behind ours does not see a
 * certificate from the future (RFC 5280 §4.1.2.5 leaves the margin to the issuer). A sidecar
 * shares the machine's clock with its app; a proxy elsewhere may not.
 */
export const CLOCK_SKEW_MS = 60 * 60_000;

/** X.509 subject attribute `commonName` holds at most 64 characters (RFC 5280 appendix A.1). */
const MAX_COMMON_NAME = 64;

/**
 * Mints leaf certificates for intercepted hosts, signed by the configured CA.
 *
 * Every leaf carries the same key pair, generated once when the minter is made and never written
 * anywhere, so a mint, which a new connection waits for, is a certificate and a signature with no
 * key generation. A key per host would isolate nothing: the CA key, which can sign a leaf for any
 * host, sits in the same process memory, so anyone who could read a leaf key could read the CA
 * key too. The key dies with the process; a restart makes a new one.
 */
export class LeafMinter {
  /** PKCS#8 PEM of the key shared by every leaf; for `tls.createSecureContext` only. */
  readonly keyPem: string;
  /**
   * Certificates sent after the leaf: those of `ca_cert_file` except self-signed roots, which a
   * client must already trust and may be left out (RFC 8446 §4.4.2). Empty for a CA made by
   * `ca init`; an intermediate CA's chain up to its root otherwise.
   */
  readonly chainPem: string;
  readonly caNotBefore: number;
  readonly caNotAfter: number;
  readonly #issuer: x509.Name;
  readonly #signingKey: webcrypto.CryptoKey;
  readonly #signParams: CaKeyAlgorithm['signParams'];
  readonly #leafPublicKey: ArrayBuffer;
  /** The same for every leaf: computed once. */
  readonly #fixedExtensions: readonly x509.Extension[];
  readonly #lifetimeMs: number;

  private constructor(init: {
    keyPem: string;
    chainPem: string;
    ca: x509.X509Certificate;
    signingKey: webcrypto.CryptoKey;
    signParams: CaKeyAlgorithm['signParams'];
    leafPublicKey: ArrayBuffer;
    fixedExtensions: readonly x509.Extension[];
    lifetimeMs: number;
  }) {
    this.keyPem = init.keyPem;
    this.chainPem = init.chainPem;
    this.caNotBefore = init.ca.notBefore.getTime();
    this.caNotAfter = init.ca.notAfter.getTime();
    this.#issuer = init.ca.subjectName;
    this.#signingKey = init.signingKey;
    this.#signParams = init.signParams;
    this.#leafPublicKey = init.leafPublicKey;
    this.#fixedExtensions = init.fixedExtensions;
    this.#lifetimeMs = init.lifetimeMs;
  }

  /**
   * A minter for the configured CA (`ca_cert_file`: the issuing CA first, then its chain),
   * already checked by the configuration. Throws a {@link ConfigError} naming the key, never
   * holding key material, when the CA cannot issue TLS server certificates.
   */
  static async create(config: TlsInterceptConfig): Promise<LeafMinter> {
    const [first, ...rest] = pemCertificates(config.caCert.value);
    if (first === undefined) throw caProblem(config, 'ca_cert_file', 'holds no PEM certificate');
    const ca = new x509.X509Certificate(first);
    const usage = ca.getExtension(x509.KeyUsagesExtension);
    // RFC 5280 §4.2.1.3: with a keyUsage extension, only keyCertSign lets a key sign certificates.
    if (usage && (usage.usages & x509.KeyUsageFlags.keyCertSign) === 0) {
      throw caProblem(
        config,
        'ca_cert_file',
        'is a CA certificate whose keyUsage lacks keyCertSign: clients would refuse what it signs',
      );
    }
    const caKey = parsePrivateKey(config.caKey.value);
    const algorithm = caKeyAlgorithm(caKey);
    if (typeof algorithm === 'string') throw caProblem(config, 'ca_key_file', `holds ${algorithm}`);
    const signingKey = await webcrypto.subtle.importKey(
      'pkcs8',
      caKey.export({ type: 'pkcs8', format: 'der' }),
      algorithm.importParams,
      false,
      ['sign'],
    );
    const leafKeys = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    const leafPublicKey = toArrayBuffer(leafKeys.publicKey.export({ type: 'spki', format: 'der' }));
    const fixedExtensions = [
      new x509.BasicConstraintsExtension(false, undefined, true),
      // ECDHE with an ECDSA certificate needs only signatures (RFC 8446 §4.4.3).
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth], false),
      await x509.SubjectKeyIdentifierExtension.create(leafPublicKey, false, webcrypto),
      await authorityKeyIdentifier(ca),
    ];
    const chain = [...(isSelfSigned(first) ? [] : [first]), ...rest.filter((pem) => !isSelfSigned(pem))];
    return new LeafMinter({
      keyPem: leafKeys.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
      chainPem: chain.map((pem) => `${pem}\n`).join(''),
      ca,
      signingKey,
      signParams: algorithm.signParams,
      leafPublicKey,
      fixedExtensions,
      lifetimeMs: config.leafLifetimeMs,
    });
  }

  /**
   * A leaf for `host` (lower case; an IPv6 literal with or without brackets), valid from a little
   * before `now` (never before the CA) until `now` plus the lifetime (never after the CA).
   */
  async mint(host: string, now: number): Promise<MintedLeaf> {
    const name = certificateName(host);
    if (typeof name === 'string') throw new CertificateMintError(host, 'host_not_certifiable', name);
    if (now >= this.caNotAfter) {
      throw new CertificateMintError(
        host,
        'ca_expired',
        `the interception CA expired on ${new Date(this.caNotAfter).toISOString()}; no certificate can be minted for ${host}`,
      );
    }
    if (now < this.caNotBefore) {
      throw new CertificateMintError(
        host,
        'ca_not_yet_valid',
        `the interception CA is not valid until ${new Date(this.caNotBefore).toISOString()}; no certificate can be minted for ${host}`,
      );
    }
    const notBefore = wholeSeconds(Math.max(now - CLOCK_SKEW_MS, this.caNotBefore));
    const wanted = now + this.#lifetimeMs;
    const notAfter = wholeSeconds(Math.min(wanted, this.caNotAfter));
    // A subject CN is what people read in tools, but it has room for 64 characters only, and
    // OpenSSL checks a CN as a DNS name against name constraints when no DNS name is in the SAN
    // (an IP leaf): then the subject stays empty and the SAN is critical (RFC 5280 §4.2.1.6).
    const withCommonName = name.type === 'dns' && name.value.length <= MAX_COMMON_NAME;
    const cert = await x509.X509CertificateGenerator.create(
      {
        serialNumber: randomSerial(),
        ...(withCommonName ? { subject: [{ CN: [name.value] }] } : {}),
        issuer: this.#issuer,
        notBefore: new Date(notBefore),
        notAfter: new Date(notAfter),
        publicKey: this.#leafPublicKey,
        signingKey: this.#signingKey,
        signingAlgorithm: this.#signParams,
        extensions: [
          new x509.SubjectAlternativeNameExtension([{ type: name.type, value: name.value }], !withCommonName),
          ...this.#fixedExtensions,
        ],
      },
      webcrypto,
    );
    return {
      certPem: `${cert.toString('pem')}\n`,
      notBefore,
      notAfter,
      cappedByCa: wanted > this.caNotAfter,
    };
  }
}

/** A problem of the configured CA, named by its key as `validate` names every problem. */
export function caProblem(
  config: TlsInterceptConfig,
  key: 'ca_cert_file' | 'ca_key_file',
  message: string,
): ConfigError {
  const file = key === 'ca_cert_file' ? config.caCert.file : config.caKey.file;
  return new ConfigError([{ path: `tls_intercept.${key}`, message: `${file ?? 'the file'} ${message}` }]);
}

/**
 * RFC 5280 §4.2.1.1: the leaf names its issuer's key as the issuer itself does (its SKI), or
 * clients that build paths by key identifier would not find it; RFC 5280's SHA-1 method when the
 * CA has no SKI.
 */
async function authorityKeyIdentifier(ca: x509.X509Certificate): Promise<x509.Extension> {
  const ski = ca.getExtension(x509.SubjectKeyIdentifierExtension);
  if (ski) return new x509.AuthorityKeyIdentifierExtension(ski.keyId);
  return x509.AuthorityKeyIdentifierExtension.create(ca.publicKey, false, webcrypto);
}

/**
 * RFC 5280 §4.1.2.2: a positive integer of at most 20 octets; the CA/Browser Forum asks for 64
 * random bits at least. 16 random octets, the top bit cleared (positive) and the next set (so
 * DER keeps all 16 octets).
 */
function randomSerial(): string {
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0]! & 0x7f) | 0x40;
  return bytes.toString('hex');
}

function isSelfSigned(pem: string): boolean {
  const cert = new NodeX509Certificate(pem);
  return cert.checkIssued(cert) && cert.verify(cert.publicKey);
}

function wholeSeconds(ms: number): number {
  return Math.floor(ms / 1000) * 1000;
}

function toArrayBuffer(buffer: Buffer): ArrayBuffer {
  return buffer.buffer.slice(buffer.byteOffset, buffer.byteOffset + buffer.byteLength) as ArrayBuffer;
}
