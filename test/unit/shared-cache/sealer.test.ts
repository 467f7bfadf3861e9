import { createDecipheriv, randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Sealer } from '../../../src/shared-cache/sealer.js';

const KEY_A = Buffer.alloc(32, 0xa1);
const KEY_B = Buffer.alloc(32, 0xb2);
const NAME = 'token-injector:{entry-1}:token';
const OTHER = 'token-injector:{entry-2}:token';
const TOKEN = JSON.stringify({
  accessToken: 'eyJhbGciOiJSUzI1NiJ9.secret-access-token.sig',
  refreshToken: 'secret-refresh-token',
  tokenType: 'Bearer',
  issuedAt: 1_700_000_000_000,
  expiresAt: 1_700_003_600_000,
});

/** `v1.<key id>.<base64url(iv | ciphertext | tag)>`, split. */
function parts(value: string): { version: string; id: string; raw: Buffer } {
  const [version, id, body] = value.split('.');
  return { version: version!, id: id!, raw: Buffer.from(body!, 'base64url') };
}

function join(version: string, id: string, raw: Buffer): string {
  return `${version}.${id}.${raw.toString('base64url')}`;
}

describe('Sealer: values', () => {
  it('opens what it sealed, for any text', () => {
    const sealer = new Sealer([KEY_A]);
    expect(sealer.open(NAME, sealer.seal(NAME, TOKEN))).toBe(TOKEN);
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme' }), fc.string({ unit: 'binary' }), (name, text) => {
        expect(sealer.open(name, sealer.seal(name, text))).toBe(text);
      }),
    );
  });

  it('writes v1.<key id>.<base64url> with a 12-byte IV, the ciphertext and a 16-byte tag', () => {
    const sealer = new Sealer([KEY_A]);
    const value = sealer.seal(NAME, TOKEN);
    expect(value).toMatch(/^v1\.[A-Za-z0-9_-]{8}\.[A-Za-z0-9_-]+$/);
    // AES-GCM is a stream mode: the ciphertext is as long as the plaintext.
    expect(parts(value).raw.length).toBe(12 + Buffer.byteLength(TOKEN) + 16);
  });

  it('never holds the plaintext, or any recognisable part of it, in clear', () => {
    const sealer = new Sealer([KEY_A]);
    const value = sealer.seal(NAME, TOKEN);
    for (const secret of ['secret-access-token', 'secret-refresh-token', 'Bearer', 'accessToken']) {
      expect(value).not.toContain(secret);
      expect(parts(value).raw.includes(secret)).toBe(false);
      expect(value).not.toContain(Buffer.from(secret).toString('base64url').slice(0, 12));
    }
  });

  it('uses a fresh IV each time: the same token seals differently', () => {
    const sealer = new Sealer([KEY_A]);
    const values = new Set(Array.from({ length: 50 }, () => sealer.seal(NAME, TOKEN)));
    expect(values.size).toBe(50);
    const ivs = new Set([...values].map((v) => parts(v).raw.subarray(0, 12).toString('hex')));
    expect(ivs.size).toBe(50);
  });

  it('never encrypts with the configured key itself, only with a key derived from it', () => {
    // The configured key is only HKDF input (RFC 5869 §3.3); a value must not open under it directly.
    const sealer = new Sealer([KEY_A]);
    const { raw } = parts(sealer.seal(NAME, TOKEN));
    const decipher = createDecipheriv('aes-256-gcm', KEY_A, raw.subarray(0, 12));
    decipher.setAAD(Buffer.from(NAME));
    decipher.setAuthTag(raw.subarray(raw.length - 16));
    decipher.update(raw.subarray(12, raw.length - 16));
    expect(() => decipher.final()).toThrow();
  });
});

describe('Sealer: a value is bound to its name', () => {
  it('does not open under another name (a value copied to another entry is refused)', () => {
    const sealer = new Sealer([KEY_A]);
    const value = sealer.seal(NAME, TOKEN);
    expect(sealer.open(OTHER, value)).toBeUndefined();
    expect(sealer.open(NAME.replace(':token', ':failure'), value)).toBeUndefined();
    expect(sealer.open(`${NAME} `, value)).toBeUndefined();
    expect(sealer.open('', value)).toBeUndefined();
  });

  it('does not open under another key, nor once that key is gone', () => {
    const value = new Sealer([KEY_A]).seal(NAME, TOKEN);
    expect(new Sealer([KEY_B]).open(NAME, value)).toBeUndefined();
    expect(new Sealer([randomBytes(32)]).open(NAME, value)).toBeUndefined();
  });
});

describe('Sealer: tampering', () => {
  const sealer = new Sealer([KEY_A]);
  const value = sealer.seal(NAME, TOKEN);
  const { version, id, raw } = parts(value);

  it('refuses any flipped bit: IV, ciphertext or tag', () => {
    for (let i = 0; i < raw.length; i++) {
      for (const bit of [0x01, 0x80]) {
        const copy = Buffer.from(raw);
        copy[i]! ^= bit;
        expect(sealer.open(NAME, join(version, id, copy)), `byte ${i}`).toBeUndefined();
      }
    }
  });

  it('refuses a truncated or extended value', () => {
    for (const cut of [1, 15, 16, 17, raw.length - 28, raw.length - 1]) {
      expect(sealer.open(NAME, join(version, id, raw.subarray(0, raw.length - cut))), `cut ${cut}`).toBe(
        undefined,
      );
      expect(sealer.open(NAME, join(version, id, raw.subarray(cut))), `drop ${cut}`).toBeUndefined();
    }
    expect(sealer.open(NAME, join(version, id, Buffer.concat([raw, Buffer.from([0])])))).toBeUndefined();
    expect(sealer.open(NAME, join(version, id, Buffer.concat([Buffer.from([0]), raw])))).toBeUndefined();
  });

  it('refuses a value whose version or key id was changed', () => {
    expect(sealer.open(NAME, join('v2', id, raw))).toBeUndefined();
    expect(sealer.open(NAME, join('V1', id, raw))).toBeUndefined();
    expect(sealer.open(NAME, join(version, `${id.slice(0, 7)}x`, raw))).toBeUndefined();
    expect(sealer.open(NAME, join(version, '', raw))).toBeUndefined();
    expect(sealer.open(NAME, `${value}.extra`)).toBeUndefined();
  });

  it('refuses a value sealed under another name but relabelled', () => {
    const moved = sealer.seal(OTHER, TOKEN);
    expect(sealer.open(NAME, moved)).toBeUndefined();
    expect(sealer.open(OTHER, moved)).toBe(TOKEN);
  });
});

describe('Sealer: key rotation', () => {
  it('opens a value sealed with key A once B is added first, and seals with B from then on', () => {
    const old = new Sealer([KEY_A]);
    const during = new Sealer([KEY_A, KEY_B]); // step 1: B added last
    const after = new Sealer([KEY_B, KEY_A]); // step 2: B moved first
    const done = new Sealer([KEY_B]); // step 3: A dropped

    const sealedByA = old.seal(NAME, TOKEN);
    expect(during.open(NAME, sealedByA)).toBe(TOKEN);
    expect(after.open(NAME, sealedByA)).toBe(TOKEN);
    expect(done.open(NAME, sealedByA)).toBeUndefined();

    // While B is last, A still seals: replicas not yet deployed can read every new value.
    const sealedDuring = during.seal(NAME, TOKEN);
    expect(parts(sealedDuring).id).toBe(parts(sealedByA).id);
    expect(old.open(NAME, sealedDuring)).toBe(TOKEN);

    // Once B is first it seals, and every replica of step 1 or later opens it.
    const sealedAfter = after.seal(NAME, TOKEN);
    expect(parts(sealedAfter).id).not.toBe(parts(sealedByA).id);
    expect(during.open(NAME, sealedAfter)).toBe(TOKEN);
    expect(done.open(NAME, sealedAfter)).toBe(TOKEN);
    expect(old.open(NAME, sealedAfter)).toBeUndefined();
  });

  it('names the key in each value by an id that does not depend on its position', () => {
    const idA = parts(new Sealer([KEY_A]).seal(NAME, 'x')).id;
    const idB = parts(new Sealer([KEY_B]).seal(NAME, 'x')).id;
    expect(idA).not.toBe(idB);
    expect(parts(new Sealer([KEY_A, KEY_B]).seal(NAME, 'x')).id).toBe(idA);
    expect(parts(new Sealer([KEY_B, KEY_A]).seal(NAME, 'x')).id).toBe(idB);
    // The id is not the key, nor a prefix of its base64.
    expect(KEY_A.toString('base64url')).not.toContain(idA);
  });

  it('gives entry ids per key, the sealing key first, the same on every replica', () => {
    const parts_ = ['https://idp.example.com/token', 'orders-client', 'client_credentials', 'orders', 'read'];
    const [a] = new Sealer([KEY_A]).ids(parts_);
    const [b] = new Sealer([KEY_B]).ids(parts_);
    expect(a).not.toBe(b);
    expect(new Sealer([KEY_A, KEY_B]).ids(parts_)).toEqual([a, b]);
    expect(new Sealer([KEY_B, KEY_A]).ids(parts_)).toEqual([b, a]);
    expect(new Sealer([KEY_A]).ids(parts_)).toEqual([a]);
    // A replica started later, with copies of the same key, finds the same entry.
    expect(new Sealer([Buffer.from(KEY_A)]).ids(parts_)).toEqual([a]);
  });
});

describe('Sealer: entry ids', () => {
  const sealer = new Sealer([KEY_A]);
  const id = (p: string[]) => sealer.ids(p)[0]!;

  it('are 32 base64url characters, safe inside a Redis Cluster hash tag', () => {
    const found = id(['orders', 'user@example.com']);
    expect(found).toMatch(/^[A-Za-z0-9_-]{32}$/);
  });

  it('reveal none of their parts', () => {
    const assertion = 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZUBleGFtcGxlLmNvbSJ9.sig';
    const found = sealer.ids(['orders', 'alice@example.com', assertion]).join(' ');
    for (const part of ['orders', 'alice', assertion.slice(0, 10)]) expect(found).not.toContain(part);
  });

  it('differ whenever the parts differ, also where a plain join would collide', () => {
    expect(id(['a', 'b'])).not.toBe(id(['ab']));
    expect(id(['ab', ''])).not.toBe(id(['a', 'b']));
    expect(id(['a', 'bc'])).not.toBe(id(['ab', 'c']));
    expect(id(['1:a'])).not.toBe(id(['1', 'a']));
    expect(id([''])).not.toBe(id([]));
    expect(id(['', ''])).not.toBe(id(['']));
    expect(id(['x', 'y'])).not.toBe(id(['y', 'x']));
    fc.assert(
      fc.property(fc.array(fc.string()), fc.array(fc.string()), (p, q) => {
        fc.pre(JSON.stringify(p) !== JSON.stringify(q));
        expect(id(p)).not.toBe(id(q));
      }),
    );
  });

  it('are the same for the same parts', () => {
    expect(id(['orders', 'read'])).toBe(id(['orders', 'read']));
  });
});

describe('Sealer: garbage', () => {
  const sealer = new Sealer([KEY_A]);
  const id = parts(sealer.seal(NAME, 'x')).id;

  it('never throws on any input, and opens none of it', () => {
    for (const value of [
      '',
      '.',
      '..',
      '...',
      'v1',
      'v1.',
      'v1..',
      `v1.${id}`,
      `v1.${id}.`,
      `v1.${id}.!!!!`,
      `v1.${id}.${'A'.repeat(27)}`,
      `v1.${id}.${'A'.repeat(40)}`,
      `v1.${id}.${'A'.repeat(10_000)}`,
      'OK',
      'null',
      '{"accessToken":"plain"}',
      'v1.\u0000.\u0000',
      '\uD800',
    ]) {
      expect(sealer.open(NAME, value), JSON.stringify(value)).toBeUndefined();
    }
    fc.assert(
      fc.property(fc.string({ unit: 'binary' }), fc.string(), (value, name) => {
        expect(sealer.open(name, value)).toBeUndefined();
        expect(sealer.open(name, `v1.${id}.${value}`)).toBeUndefined();
      }),
    );
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
        expect(sealer.open(NAME, `v1.${id}.${Buffer.from(bytes).toString('base64url')}`)).toBeUndefined();
      }),
    );
  });

  it('refuses to be built without a key', () => {
    expect(() => new Sealer([])).toThrow(TypeError);
  });
});
