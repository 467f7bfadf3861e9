import { type Checker, join } from './checker.js';
import { positive } from './rules.js';
import type { SharedCacheConfig } from './types.js';

type Obj = Record<string, unknown>;

const KEYS = ['url', 'username', 'password', 'key_prefix', 'encryption_keys', 'timeout', 'tls', 'cluster'];

export const SHARED_CACHE_DEFAULTS = {
  keyPrefix: 'token-injector:',
  timeoutMs: 200,
} as const;

/** AES-256-GCM and HMAC-SHA-256 keys: exactly 32 bytes. */
const KEY_BYTES = 32;

/** `shared_cache`: undefined when absent; every problem is recorded with its exact key. */
export function sharedCache(c: Checker, root: Obj): SharedCacheConfig | undefined {
  const raw = root['shared_cache'];
  if (raw === undefined || raw === null) return undefined;
  const path = 'shared_cache';
  const obj = c.object(raw, path);
  if (!obj) return undefined;
  const before = c.problems.length;
  c.onlyKeys(obj, path, KEYS);
  c.required(obj, 'url', path);
  const url = redisUrl(c, obj, path);
  const username = c.string(obj, 'username', path);
  const password = c.secret(obj, 'password', path);
  const keyPrefix = c.string(obj, 'key_prefix', path) ?? SHARED_CACHE_DEFAULTS.keyPrefix;
  if (/[\s{}]/.test(keyPrefix)) {
    c.add(join(path, 'key_prefix'), 'must not contain white space, "{" or "}" (Redis Cluster hash tags)');
  }
  const encryptionKeys = keys(c, obj, path);
  const timeoutMs = positive(c, obj, 'timeout', path, SHARED_CACHE_DEFAULTS.timeoutMs);
  const tls = c.tls(obj, path);
  if (url?.protocol === 'redis:' && obj['tls'] !== undefined) {
    c.add(join(path, 'tls'), 'applies to rediss:// only; use a rediss:// url for TLS');
  }
  const cluster = c.boolean(obj, 'cluster', path, false);
  if (c.problems.length > before || !url || !encryptionKeys) return undefined;
  return Object.freeze({
    url,
    ...(username !== undefined ? { username } : {}),
    ...(password !== undefined ? { password } : {}),
    keyPrefix,
    encryptionKeys,
    timeoutMs,
    tls,
    cluster,
  });
}

function redisUrl(c: Checker, obj: Obj, path: string): URL | undefined {
  const text = c.string(obj, 'url', path);
  if (text === undefined) return undefined;
  const here = join(path, 'url');
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    c.add(here, `"${text}" is not a URL`);
    return undefined;
  }
  if (url.protocol !== 'redis:' && url.protocol !== 'rediss:') {
    c.add(here, `must be a redis:// or rediss:// URL, got ${url.protocol}//`);
    return undefined;
  }
  if (url.username || url.password) {
    // The URL is logged and shown in /readyz; credentials have keys of their own.
    c.add(here, 'must not contain user info; use shared_cache.username and shared_cache.password');
    return undefined;
  }
  if (!url.hostname) {
    c.add(here, 'must name a host, e.g. redis://cache.internal:6379/0');
    return undefined;
  }
  const db = url.pathname.replace(/^\//, '');
  if (db !== '' && !/^\d{1,5}$/.test(db)) {
    c.add(here, `the path must be a database number (e.g. /0), got "/${db}"`);
    return undefined;
  }
  if (url.search || url.hash) {
    c.add(here, 'must not contain a query string or fragment');
    return undefined;
  }
  return url;
}

function keys(c: Checker, obj: Obj, path: string): readonly Buffer[] | undefined {
  const here = join(path, 'encryption_keys');
  const raw = obj['encryption_keys'];
  if (raw === undefined || raw === null) {
    c.add(here, 'is required: a list of 32-byte keys in base64 (openssl rand -base64 32)');
    return undefined;
  }
  const list = Array.isArray(raw) ? raw : [raw];
  if (list.length === 0) {
    c.add(here, 'must list at least one key');
    return undefined;
  }
  const out: Buffer[] = [];
  let ok = true;
  list.forEach((item, i) => {
    const at = Array.isArray(raw) ? `${here}[${i}]` : here;
    const text = c.stringValue(item, at);
    if (text === undefined) {
      ok = false;
      return;
    }
    if (typeof item === 'string' && !item.includes('${')) {
      c.warn(
        at,
        // biome-ignore lint/suspicious/noTemplateCurlyInString: the message shows the literal syntax
        'is written inline; keep keys out of the file with ${env:NAME} or ${file:/path/to/key}',
      );
    }
    const trimmed = text.trim();
    const key = /^[A-Za-z0-9+/_-]+={0,2}$/.test(trimmed) ? Buffer.from(trimmed, 'base64') : undefined;
    if (key?.length !== KEY_BYTES) {
      c.add(
        at,
        key === undefined
          ? 'is not base64; make one with: openssl rand -base64 32'
          : `must be ${KEY_BYTES} bytes once base64-decoded, got ${key.length}`,
      );
      ok = false;
      return;
    }
    if (out.some((k) => k.equals(key))) {
      c.add(at, 'repeats an earlier key');
      ok = false;
      return;
    }
    out.push(key);
  });
  return ok ? Object.freeze(out) : undefined;
}
