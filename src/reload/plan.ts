import type { Config } from '../config/types.js';
import { credentialFingerprints, fingerprint } from './fingerprint.js';

/** What a reload changes, decided before anything is touched. */
export interface ReloadPlan {
  /**
   * The configuration to apply: the new one, except for the keys in `restartRequired`, which keep
   * the values in force until the next restart.
   */
  readonly config: Config;
  /** Keys (as spelled in the file) whose new value takes effect only at the next restart. */
  readonly restartRequired: readonly string[];
  /** Credentials whose configuration did not change: they keep their provider and cached tokens. */
  readonly kept: ReadonlySet<string>;
  readonly added: readonly string[];
  readonly changed: readonly string[];
  readonly removed: readonly string[];
}

/**
 * Parts of the configuration a running process cannot take over, each with the reason:
 * - `listen`, `admin.listen`: a bound socket cannot move; rebinding would drop connections.
 * - `limits.max_header_size`, `limits.max_headers`: HTTP/2 announces them in its SETTINGS, which
 *   are fixed when the listener is made (RFC 9113 §6.5.2), and HTTP/1.1 and HTTP/2 must agree.
 * - `shared_cache`: the Redis client and its encryption keys wrap every token fetch of every cache;
 *   swapping them under cached tokens would mix two fleets' entries.
 * - `tls_intercept`: apps trust the CA they were given; leaves already minted name it.
 * - `tracing`: the tracer is installed once per process.
 */
const RESTART_KEYS: readonly { key: string; of: (c: Config) => unknown }[] = [
  { key: 'listen', of: (c) => c.listen },
  { key: 'admin.listen', of: (c) => c.admin.listen },
  { key: 'limits.max_header_size', of: (c) => c.limits.maxHeaderSize },
  { key: 'limits.max_headers', of: (c) => c.limits.maxHeaders },
  { key: 'shared_cache', of: (c) => c.sharedCache },
  { key: 'tls_intercept', of: (c) => c.tlsIntercept },
  { key: 'tracing', of: (c) => c.tracing },
];

/** Compares the configuration in force with a new, valid one. */
export function planReload(current: Config, next: Config): ReloadPlan {
  const restartRequired = RESTART_KEYS.filter(
    ({ of }) => fingerprint(of(current)) !== fingerprint(of(next)),
  ).map(({ key }) => key);
  const before = credentialFingerprints(current);
  const after = credentialFingerprints(next);
  const kept = new Set<string>();
  const added: string[] = [];
  const changed: string[] = [];
  for (const [name, print] of after) {
    const old = before.get(name);
    if (old === undefined) added.push(name);
    else if (old === print) kept.add(name);
    else changed.push(name);
  }
  const removed = [...before.keys()].filter((name) => !after.has(name));
  return { config: inForce(current, next), restartRequired, kept, added, changed, removed };
}

/** `next`, with the values that need a restart taken from `current`. */
function inForce(current: Config, next: Config): Config {
  return Object.freeze({
    ...next,
    listen: current.listen,
    admin: current.admin,
    limits: Object.freeze({
      ...next.limits,
      maxHeaderSize: current.limits.maxHeaderSize,
      maxHeaders: current.limits.maxHeaders,
    }),
    sharedCache: current.sharedCache,
    tlsIntercept: current.tlsIntercept,
    tracing: current.tracing,
  }) as Config;
}
