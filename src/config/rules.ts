import { type Checker, join } from './checker.js';

type Obj = Record<string, unknown>;

/** A duration that must not be zero. */
export function positive(c: Checker, obj: Obj, key: string, path: string, fallback: number): number {
  const ms = c.duration(obj, key, path, fallback);
  if (ms <= 0) c.add(join(path, key), 'must be greater than 0');
  return ms;
}

/** 127.0.0.0/8, ::1 and localhost: reachable only from this machine (or this pod). */
export function isLoopback(host: string): boolean {
  const h = host.toLowerCase().replace(/^\[|\]$/g, '');
  return h === 'localhost' || h === '::1' || /^127\.\d+\.\d+\.\d+$/.test(h) || h === '::ffff:127.0.0.1';
}

/**
 * A token sent over plain HTTP beyond this machine can be read on the way: refused unless the
 * credential or route says `allow_insecure_http: true`.
 */
export function insecureHttp(c: Checker, url: URL, path: string, what: string): void {
  if (url.protocol === 'http:' && !isLoopback(url.hostname)) {
    c.add(
      path,
      `http:// to ${url.hostname} would send tokens or secrets unencrypted; use https://, or set allow_insecure_http: true on ${what} if the network is trusted`,
    );
  }
}
