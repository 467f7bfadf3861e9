import { createCipheriv, createDecipheriv, createHash, createHmac, hkdfSync, randomBytes } from 'node:crypto';

const VERSION = 'v1';
const IV_BYTES = 12;
const TAG_BYTES = 16;

interface DerivedKey {
  /** Names the key in each value, so a replica finds the key to decrypt with after a rotation. */
  readonly id: string;
  readonly encrypt: Buffer;
  readonly names: Buffer;
}

/**
 * What Redis sees of a token: entry names that are HMACs (no credential, scope or user in
 * clear) and values that are AES-256-GCM ciphertext bound to their entry name (associated data),
 * so no value can be replayed under another name. The first key seals and names; every key opens,
 * so keys rotate without a flush (add the new key last, then move it first, then drop the old).
 */
export class Sealer {
  readonly #keys: readonly DerivedKey[];

  constructor(keys: readonly Buffer[]) {
    if (keys.length === 0) throw new TypeError('at least one key is needed');
    // Separate keys for separate jobs (RFC 5869 §3.3), never the configured key itself.
    this.#keys = keys.map((key) => ({
      id: createHash('sha256').update(key).digest('base64url').slice(0, 8),
      encrypt: Buffer.from(hkdfSync('sha256', key, '', 'token-injector shared cache: values', 32)),
      names: Buffer.from(hkdfSync('sha256', key, '', 'token-injector shared cache: names', 32)),
    }));
  }

  /** Entry ids for `parts` under each key, the sealing key's first (others only during a rotation). */
  ids(parts: readonly string[]): string[] {
    const text = parts.map((p) => `${p.length}:${p}`).join('');
    return this.#keys.map((k) => createHmac('sha256', k.names).update(text).digest('base64url').slice(0, 32));
  }

  seal(name: string, plaintext: string): string {
    const key = this.#keys[0]!;
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv('aes-256-gcm', key.encrypt, iv);
    cipher.setAAD(Buffer.from(name));
    const body = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
    const sealed = Buffer.concat([iv, body, cipher.getAuthTag()]).toString('base64url');
    return `${VERSION}.${key.id}.${sealed}`;
  }

  /** The plaintext, or undefined for anything that does not open: unknown key, tampering, garbage. */
  open(name: string, value: string): string | undefined {
    const [version, id, sealed, extra] = value.split('.');
    if (version !== VERSION || sealed === undefined || extra !== undefined) return undefined;
    const key = this.#keys.find((k) => k.id === id);
    if (!key) return undefined;
    const raw = Buffer.from(sealed, 'base64url');
    if (raw.length < IV_BYTES + TAG_BYTES) return undefined;
    try {
      const decipher = createDecipheriv('aes-256-gcm', key.encrypt, raw.subarray(0, IV_BYTES), {
        authTagLength: TAG_BYTES,
      });
      decipher.setAAD(Buffer.from(name));
      decipher.setAuthTag(raw.subarray(raw.length - TAG_BYTES));
      return Buffer.concat([
        decipher.update(raw.subarray(IV_BYTES, raw.length - TAG_BYTES)),
        decipher.final(),
      ]).toString('utf8');
    } catch {
      return undefined;
    }
  }
}
