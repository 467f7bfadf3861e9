import { createHash } from 'node:crypto';
import type { Config, CredentialConfig, TokenInput } from '../config/types.js';

/**
 * A stable SHA-256 (hex) of a configuration value: equal for equal configurations, whatever the
 * order of object keys or of Map and Set entries. The normalized configuration holds values JSON
 * cannot show as they are (URL, Map, Set, Buffer), so each gets a canonical form first.
 *
 * A value read from a file (`*_file` keys and whole `${file:PATH}` values, FileBacked) counts by
 * its path only: a secret file that rotates is not a change of the configuration, and its
 * content (a secret) never enters the hash.
 */
export function fingerprint(value: unknown): string {
  // In an array, so that an absent section (undefined) hashes too.
  return createHash('sha256')
    .update(JSON.stringify([canonical(value)]))
    .digest('hex');
}

/**
 * Each credential's fingerprint, keyed by name. A credential whose grant takes another
 * credential's token (`source: credential`, RFC 8693 token exchange) changes when that one does:
 * its tokens were made from the other credential's.
 */
export function credentialFingerprints(config: Config): Map<string, string> {
  const out = new Map<string, string>();
  const visit = (cred: CredentialConfig, path: ReadonlySet<string>): string => {
    const known = out.get(cred.name);
    if (known !== undefined) return known;
    const upstream: string[] = [];
    for (const name of tokenSources(cred)) {
      const dep = config.credentials.get(name);
      // A cycle or an unknown name does not validate; guarded all the same.
      if (dep !== undefined && !path.has(name)) upstream.push(visit(dep, new Set([...path, name])));
    }
    const print = fingerprint([cred, upstream]);
    out.set(cred.name, print);
    return print;
  };
  for (const cred of config.credentials.values()) visit(cred, new Set([cred.name]));
  return out;
}

/** Names of the credentials whose tokens this credential's grant sends. */
function tokenSources(cred: CredentialConfig): string[] {
  const grant = cred.grant;
  const inputs: (TokenInput | undefined)[] =
    grant.type === 'token_exchange'
      ? [grant.subjectToken, grant.actorToken]
      : grant.type === 'jwt_bearer' || grant.type === 'saml2_bearer'
        ? [grant.assertion]
        : [];
  return inputs.flatMap((i) => (i?.source === 'credential' ? [i.credential] : []));
}

function canonical(value: unknown): unknown {
  if (value === null || typeof value !== 'object') {
    // undefined inside arrays becomes null in JSON; a function or symbol is no configuration.
    return typeof value === 'function' || typeof value === 'symbol' ? null : value;
  }
  if (value instanceof URL) return { url: value.href };
  if (Buffer.isBuffer(value) || value instanceof Uint8Array) {
    // Encryption keys (shared_cache): the hash of a hash, never the bytes.
    return { bytes: createHash('sha256').update(value).digest('hex') };
  }
  if (value instanceof Map) {
    return { map: [...value].map(([k, v]) => [String(k), canonical(v)]).sort(byFirst) };
  }
  if (value instanceof Set) return { set: [...value].map(canonical).map(String).sort() };
  if (Array.isArray(value)) return value.map(canonical);
  const record = value as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(record).sort()) {
    if (record[key] === undefined) continue;
    if (isReadFromFile(record, key)) continue;
    out[key] = canonical(record[key]);
  }
  return out;
}

/**
 * The content of a value read from a file: FileBacked's `value` next to its `file`, and TLS trust's
 * `ca` next to its `caFile`. The path stands for it.
 */
function isReadFromFile(record: Record<string, unknown>, key: string): boolean {
  return (
    (key === 'value' && typeof record['file'] === 'string') ||
    (key === 'ca' && typeof record['caFile'] === 'string')
  );
}

function byFirst(a: unknown[], b: unknown[]): number {
  const x = a[0] as string;
  const y = b[0] as string;
  return x < y ? -1 : x > y ? 1 : 0;
}
