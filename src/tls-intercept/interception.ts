import { X509Certificate } from 'node:crypto';
import { createSecureContext } from 'node:tls';
import type { TlsInterceptConfig } from '../config/types.js';
import { LeafCache } from './leaf-cache.js';
import { caProblem, LeafMinter } from './leaf-minter.js';
import type { Interception, InterceptionOptions } from './open.js';

/** Not a host anyone can own (RFC 6761 §6.4): the probe leaf can never be mistaken for a real one. */
const PROBE_HOST = 'probe.token-injector.invalid';

/** Loaded by `openInterception` only; see there. */
export async function createInterception(
  config: TlsInterceptConfig,
  options: InterceptionOptions,
): Promise<Interception> {
  const now = options.now ?? Date.now;
  const minter = await LeafMinter.create(config);
  const ca = new X509Certificate(config.caCert.value);
  // What `validate` cannot see without minting: whether clients would find this CA to be the
  // issuer of its leaves (keyUsage, key identifiers, names) and accept its signature.
  const probe = new X509Certificate((await minter.mint(PROBE_HOST, now())).certPem);
  if (!probe.checkIssued(ca) || !probe.verify(ca.publicKey)) {
    throw caProblem(
      config,
      'ca_cert_file',
      'cannot issue certificates that verify against it; is it the issuing CA of ca_key_file?',
    );
  }
  const cache = new LeafCache(
    async (host, at) => {
      const leaf = await minter.mint(host, at);
      const context = createSecureContext({ key: minter.keyPem, cert: leaf.certPem + minter.chainPem });
      return { context, notAfter: leaf.notAfter, cappedByCa: leaf.cappedByCa };
    },
    { now, ...(options.maxHosts !== undefined ? { maxHosts: options.maxHosts } : {}) },
  );
  return {
    secureContextFor: (host) => cache.secureContextFor(host),
    stats: cache.stats,
    ca: Object.freeze({
      subject: ca.subject.replace(/\n/g, ', '),
      fingerprint256: ca.fingerprint256,
      notAfter: new Date(ca.validTo),
    }),
  };
}
