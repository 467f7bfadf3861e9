import { createHash } from 'node:crypto';
import { type FSWatcher, readFileSync, watch } from 'node:fs';
import { dirname, resolve } from 'node:path';

/**
 * Editors and the kubelet change a file in several steps a few milliseconds apart (write a temp
 * file, rename it over; or write `..2026_…/`, swap the `..data` symlink, delete the old
 * directory). One check after the burst has been quiet this long sees the finished file once,
 * instead of reloading at every step, possibly from a half-written file. Short enough that a
 * change still applies well within a second.
 */
export const CONFIG_WATCH_DEBOUNCE_MS = 300;

/** SHA-256 (hex) of the file's bytes, as `sha256sum` prints it. */
export function configFileHash(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

export interface ConfigWatch {
  close(): void;
}

/**
 * Calls `onChange` when the content of the configuration file changes. The file's directory is
 * watched, not the file: a rename over the file (editors' save) or a symlink swap (a Kubernetes
 * ConfigMap's `..data`) replaces the inode a file watch would follow. Any event in the directory
 * starts the debounce; then the content is hashed and compared with the last one seen, so a
 * touch, or a change to another file of the directory, does nothing.
 *
 * `known`: the hash of the content last read (at start or by the last reload, valid or not), so a
 * change a SIGHUP already applied, or an invalid file touched again, is not reloaded twice.
 */
export function watchConfigFile(
  file: string,
  known: () => string | undefined,
  onChange: () => void,
  onError: (err: Error) => void,
  debounceMs = CONFIG_WATCH_DEBOUNCE_MS,
): ConfigWatch {
  const path = resolve(file);
  let timer: NodeJS.Timeout | undefined;
  const check = () => {
    timer = undefined;
    let hash: string;
    try {
      hash = configFileHash(path);
    } catch {
      // Between an unlink and the rename that follows, or a ConfigMap mid-swap: the next event
      // (the file's return) checks again. A file that stays away changes nothing either.
      return;
    }
    if (hash !== known()) onChange();
  };
  // Not persistent: a watch alone must not keep the process alive (the listeners do).
  const watcher: FSWatcher = watch(dirname(path), { persistent: false }, () => {
    clearTimeout(timer);
    timer = setTimeout(check, debounceMs);
    timer.unref();
  });
  watcher.on('error', (err) => {
    clearTimeout(timer);
    watcher.close();
    onError(err);
  });
  return {
    close() {
      clearTimeout(timer);
      watcher.close();
    },
  };
}
