import { type Checker, type Fields, isMapping, join } from './checker.js';
import { tlsClient } from './rules.js';
import type { SharedCache } from './schema.js';
import { text } from './schema-kit.js';
import type { SharedCacheConfig } from './types.js';

/** AES-256-GCM and HMAC-SHA-256 keys: exactly 32 bytes. */
const KEY_BYTES = 32;
const KEY = text();

/** `shared_cache`, as the schema read it from `raw`; every problem is recorded with its exact key. */
export function sharedCache(
  c: Checker,
  f: Fields<typeof SharedCache>,
  raw: unknown,
): SharedCacheConfig | undefined {
  const path = 'shared_cache';
  const obj = isMapping(raw) ? raw : {};
  const url = redisUrl(c, f.url, path);
  const password = c.secret(obj['password'], f.password, join(path, 'password'));
  const encryptionKeys = keys(c, obj, path);
  const tls = tlsClient(c, f.tls, obj['tls'], join(path, 'tls'));
  if (url?.protocol === 'redis:' && obj['tls'] !== undefined) {
    c.add(join(path, 'tls'), 'applies to rediss:// only; use a rediss:// url for TLS');
  }
  if (!c.clean(path) || !url || !encryptionKeys) return undefined;
  return Object.freeze({
    url,
    ...(f.username !== undefined ? { username: f.username } : {}),
    ...(password !== undefined ? { password } : {}),
    keyPrefix: f.key_prefix,
    encryptionKeys,
    timeoutMs: f.timeout,
    tls,
    cluster: f.cluster,
  });
}

function redisUrl(c: Checker, text: string | undefined, path: string): URL | undefined {
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

/** Each key is read on its own, so one that is wrong is named by its index and the others still checked. */
function keys(c: Checker, obj: Record<string, unknown>, path: string): readonly Buffer[] | undefined {
  const here = join(path, 'encryption_keys');
  const raw = obj['encryption_keys'];
  // Absent, or not a list of text: the schema said so.
  if (raw === undefined || raw === null || c.failed(here)) return undefined;
  const list = Array.isArray(raw) ? raw : [raw];
  if (list.length === 0) {
    c.add(here, 'must list at least one key');
    return undefined;
  }
  const out: Buffer[] = [];
  let ok = true;
  list.forEach((item, i) => {
    const at = Array.isArray(raw) ? `${here}[${i}]` : here;
    // The schema already named an item that is not text or whose reference failed.
    const text = c.failed(at) ? undefined : c.value(KEY, item, at);
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
