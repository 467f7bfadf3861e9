/**
 * The entry to HTTPS interception, and the only module of this folder that start-up code may
 * import statically: it loads the X.509 library (through `import()`) only when interception is
 * configured, so a proxy without `tls_intercept` never loads it.
 */
import type { SecureContext } from 'node:tls';
import type { TlsInterceptConfig } from '../config/types.js';
import type { LeafCacheStats } from './leaf-cache.js';

export type InterceptionStats = LeafCacheStats;

/** Mints and caches leaf certificates for intercepted hosts. */
export interface Interception {
  /**
   * The TLS server context for `host`: a leaf certificate naming it (DNS name, or IP address
   * for an IP literal), the chain above it, and the key. `host` is what the router matched,
   * lower case; an IPv6 literal may keep its brackets. Reused until near expiry; concurrent
   * calls for one host share one mint. Rejects with `CertificateMintError` when the CA has
   * expired or the host cannot be named in a certificate.
   */
  secureContextFor(host: string): Promise<SecureContext>;
  /** Counters for metrics (minted, hits, failures, evicted, hosts). */
  readonly stats: InterceptionStats;
  /** The interception CA, for a start-up log line. */
  readonly ca: {
    readonly subject: string;
    /** SHA-256 of the certificate, `AB:CD:…`, as `openssl x509 -fingerprint -sha256` prints it. */
    readonly fingerprint256: string;
    readonly notAfter: Date;
  };
}

export interface InterceptionOptions {
  /** Milliseconds since the epoch; injected by tests. Default `Date.now`. */
  readonly now?: () => number;
  /** Hosts whose leaves are kept at most (least recently used dropped). Default 1000. */
  readonly maxHosts?: number;
}

/**
 * Prepares interception with the configured CA: imports its key, makes the process-wide leaf
 * key, and mints one probe leaf that must verify against the CA. Rejects with a `ConfigError`
 * naming `tls_intercept.ca_cert_file` or `ca_key_file` when the CA cannot issue leaves that
 * clients accept (checks that need the X.509 library, beyond what `validate` does).
 */
export async function openInterception(
  config: TlsInterceptConfig,
  options: InterceptionOptions = {},
): Promise<Interception> {
  const { createInterception } = await import('./interception.js');
  return createInterception(config, options);
}
