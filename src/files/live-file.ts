import { readFileSync, statSync } from 'node:fs';

/**
 * A value that may change on disk while we run (Kubernetes rotates mounted Secrets): the value
 * read at start, and the file it came from when it was a whole `${file:PATH}` or a `*_file` key.
 */
export interface FileBacked {
  readonly value: string;
  readonly file?: string;
}

/**
 * A file whose content may change while we run: Kubernetes rotates a mounted Secret by swapping
 * a symlink, which changes the inode that `stat` (following links) reports. `read()` costs one
 * `stat` and re-reads only when the file looks different; `reload()` re-reads unconditionally.
 */
export class LiveFile {
  readonly path: string;
  #content: string;
  #signature: string;

  constructor(path: string) {
    this.path = path;
    this.#signature = signature(path);
    this.#content = readFileSync(path, 'utf8');
  }

  read(): string {
    const now = signature(this.path);
    // Briefly missing during a rotation: keep the last content until the new file is there.
    if (now === MISSING) return this.#content;
    if (now !== this.#signature) {
      this.#content = readFileSync(this.path, 'utf8');
      this.#signature = now;
    }
    return this.#content;
  }

  /** Re-reads the file whatever `stat` says; true when the content changed. */
  reload(): boolean {
    const before = this.#content;
    this.#signature = signature(this.path);
    this.#content = readFileSync(this.path, 'utf8');
    return this.#content !== before;
  }
}

const MISSING = 'missing';

function signature(path: string): string {
  try {
    const s = statSync(path);
    return `${s.ino}:${s.size}:${s.mtimeMs}`;
  } catch {
    return MISSING;
  }
}

/** A configured value that is re-read from its file when the file changes. */
export interface LiveValue {
  read(): string;
}

/**
 * The files one credential depends on, so that an `invalid_client` answer can re-read them all
 * at once (a rotated secret whose change `stat` missed) before one retry.
 */
export class FileSet {
  readonly #files = new Map<string, LiveFile>();

  /** A live view of a config value: re-read from its file when it has one, else constant. */
  value(v: FileBacked, trim = true): LiveValue {
    if (!v.file) return { read: () => v.value };
    const file = this.file(v.file);
    // `${file:}` secrets lose one trailing newline, as at load time.
    return trim ? { read: () => file.read().replace(/\r?\n$/, '') } : { read: () => file.read() };
  }

  file(path: string): LiveFile {
    let file = this.#files.get(path);
    if (!file) {
      file = new LiveFile(path);
      this.#files.set(path, file);
    }
    return file;
  }

  /** Re-reads every file; true when any content changed. */
  reloadAll(): boolean {
    let changed = false;
    for (const file of this.#files.values()) {
      try {
        if (file.reload()) changed = true;
      } catch {
        // Unreadable now: keep the last content; the next token request will tell.
      }
    }
    return changed;
  }
}
