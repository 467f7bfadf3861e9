import type { KeyObject } from 'node:crypto';

/** How a CA key of one supported kind is imported into WebCrypto and signs certificates. */
export interface CaKeyAlgorithm {
  /** For messages: `EC P-256`, `RSA 3072`. */
  readonly label: string;
  readonly importParams:
    | { readonly name: 'ECDSA'; readonly namedCurve: 'P-256' | 'P-384' }
    | { readonly name: 'RSASSA-PKCS1-v1_5'; readonly hash: 'SHA-256' };
  readonly signParams:
    | { readonly name: 'ECDSA'; readonly hash: 'SHA-256' | 'SHA-384' }
    | { readonly name: 'RSASSA-PKCS1-v1_5'; readonly hash: 'SHA-256' };
}

/** NIST SP 800-57 Part 1 §5.6.1: 2048 bits is the smallest RSA modulus still acceptable. */
const MIN_RSA_BITS = 2048;

/**
 * The algorithm of a CA key, or why it is not supported. Accepted: EC P-256 and P-384 (each with
 * the hash of its strength, RFC 5758 §3.2) and RSA of at least 2048 bits, which every TLS client
 * verifies. RSA-PSS keys, other curves and EdDSA are refused: many TLS stacks still reject
 * certificate chains signed with them.
 */
export function caKeyAlgorithm(key: KeyObject): CaKeyAlgorithm | string {
  const details = key.asymmetricKeyDetails;
  if (key.asymmetricKeyType === 'ec') {
    if (details?.namedCurve === 'prime256v1') {
      return {
        label: 'EC P-256',
        importParams: { name: 'ECDSA', namedCurve: 'P-256' },
        signParams: { name: 'ECDSA', hash: 'SHA-256' },
      };
    }
    if (details?.namedCurve === 'secp384r1') {
      return {
        label: 'EC P-384',
        importParams: { name: 'ECDSA', namedCurve: 'P-384' },
        signParams: { name: 'ECDSA', hash: 'SHA-384' },
      };
    }
    return `an EC key on curve ${details?.namedCurve ?? 'unknown'}; use EC P-256 or P-384, or RSA of at least ${MIN_RSA_BITS} bits`;
  }
  if (key.asymmetricKeyType === 'rsa') {
    const bits = details?.modulusLength ?? 0;
    if (bits < MIN_RSA_BITS) return `an RSA key of ${bits} bits; RSA keys need at least ${MIN_RSA_BITS} bits`;
    return {
      label: `RSA ${bits}`,
      importParams: { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' },
      signParams: { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' },
    };
  }
  return `a key of type ${key.asymmetricKeyType ?? 'unknown'}; use EC P-256 or P-384, or RSA of at least ${MIN_RSA_BITS} bits`;
}

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g;

/** Every PEM certificate block in `text`, in order. */
export function pemCertificates(text: string): string[] {
  return text.match(PEM_CERTIFICATE) ?? [];
}
