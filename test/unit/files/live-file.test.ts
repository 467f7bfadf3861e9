import { mkdirSync, renameSync, symlinkSync, unlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FileSet, LiveFile } from '../../../src/files/live-file.js';
import { TempDir } from '../fixtures.js';

let dir: TempDir;

beforeEach(() => {
  dir = new TempDir();
});

afterEach(() => dir.remove());

/** Writes a new file and renames it over `path` (atomic replacement, a new inode). */
function replace(path: string, content: string): void {
  writeFileSync(`${path}.tmp`, content);
  renameSync(`${path}.tmp`, path);
}

/** A fixed modification time, so that a rewrite can leave size and mtime as they were. */
const MTIME = 1_700_000_000;

/**
 * A Kubernetes-style mounted Secret: `name` → `..data/name`, `..data` → `..<version>/`. An update
 * writes a new version directory and atomically swaps the `..data` symlink.
 */
class SecretVolume {
  #version = 0;

  constructor(
    readonly root: string,
    readonly name: string,
  ) {}

  get path(): string {
    return join(this.root, this.name);
  }

  write(content: string): void {
    this.#version++;
    const version = `..v${this.#version}`;
    mkdirSync(join(this.root, version));
    writeFileSync(join(this.root, version, this.name), content);
    symlinkSync(version, join(this.root, '..data_tmp'));
    renameSync(join(this.root, '..data_tmp'), join(this.root, '..data'));
    if (this.#version === 1) symlinkSync(join('..data', this.name), this.path);
  }
}

describe('LiveFile', () => {
  it('reads the file at construction', () => {
    const file = new LiveFile(dir.file('secret', 'one'));
    expect(file.read()).toBe('one');
    expect(file.path).toBe(join(dir.path, 'secret'));
  });

  it('throws at construction when the file does not exist', () => {
    expect(() => new LiveFile(join(dir.path, 'nope'))).toThrow(/ENOENT/);
  });

  it('re-reads a file replaced by rename, even with the same size', () => {
    const path = dir.file('secret', 'one');
    const file = new LiveFile(path);
    replace(path, 'two');
    expect(file.read()).toBe('two');
    replace(path, 'three, longer');
    expect(file.read()).toBe('three, longer');
  });

  it('re-reads a file rewritten in place with another size', () => {
    const path = dir.file('secret', 'one');
    const file = new LiveFile(path);
    writeFileSync(path, 'one plus more');
    expect(file.read()).toBe('one plus more');
  });

  it('follows a Kubernetes symlink swap of a mounted Secret', () => {
    const volume = new SecretVolume(dir.path, 'client-secret');
    volume.write('v1');
    const file = new LiveFile(volume.path);
    expect(file.read()).toBe('v1');
    volume.write('v2');
    expect(file.read()).toBe('v2');
    volume.write('v3');
    expect(file.read()).toBe('v3');
  });

  it('does not read the file again while it looks unchanged', () => {
    const path = dir.file('secret', 'abc');
    utimesSync(path, MTIME, MTIME);
    const file = new LiveFile(path);
    // Same inode, same size, same mtime: stat cannot tell, so the cached content is kept...
    writeFileSync(path, 'xyz');
    utimesSync(path, MTIME, MTIME);
    expect(file.read()).toBe('abc');
    // ...until reload() reads it whatever stat says.
    expect(file.reload()).toBe(true);
    expect(file.read()).toBe('xyz');
  });

  it('reload() says whether the content changed', () => {
    const path = dir.file('secret', 'one');
    const file = new LiveFile(path);
    expect(file.reload()).toBe(false);
    replace(path, 'two');
    expect(file.reload()).toBe(true);
    expect(file.read()).toBe('two');
    expect(file.reload()).toBe(false);
  });

  it('keeps the last content while the file is briefly missing, and reads it again when it is back', () => {
    const path = dir.file('secret', 'one');
    const file = new LiveFile(path);
    unlinkSync(path);
    expect(file.read()).toBe('one');
    expect(file.read()).toBe('one');
    writeFileSync(path, 'two');
    expect(file.read()).toBe('two');
  });

  it('reload() throws while the file is missing and keeps the last content', () => {
    const path = dir.file('secret', 'one');
    const file = new LiveFile(path);
    unlinkSync(path);
    expect(() => file.reload()).toThrow(/ENOENT/);
    writeFileSync(path, 'two');
    expect(file.reload()).toBe(true);
    expect(file.read()).toBe('two');
  });
});

describe('FileSet', () => {
  it('gives a constant value for a value that has no file', () => {
    const value = new FileSet().value({ value: 'plain\n' });
    expect(value.read()).toBe('plain\n');
  });

  it.each([
    ['secret\n', 'secret'],
    ['secret\r\n', 'secret'],
    ['secret\n\n', 'secret\n'],
    ['secret', 'secret'],
    ['  secret  \n', '  secret  '],
  ])('trims one trailing newline of a secret file %j', (content, expected) => {
    const path = dir.file('secret', content);
    expect(new FileSet().value({ value: 'ignored', file: path }).read()).toBe(expected);
  });

  it('keeps the content of other files (keys, certificates) as it is', () => {
    const path = dir.file('key.pem', 'PEM\n\n');
    expect(new FileSet().value({ value: 'ignored', file: path }, false).read()).toBe('PEM\n\n');
  });

  it('reads the file, not the value remembered at load time, and follows changes', () => {
    const path = dir.file('secret', 'on-disk\n');
    const value = new FileSet().value({ value: 'at-load', file: path });
    expect(value.read()).toBe('on-disk');
    replace(path, 'rotated\n');
    expect(value.read()).toBe('rotated');
  });

  it('shares one LiveFile per path', () => {
    const set = new FileSet();
    const path = dir.file('secret', 'x');
    expect(set.file(path)).toBe(set.file(path));
    expect(set.file(path)).not.toBe(new FileSet().file(path));
  });

  it('reloadAll() re-reads every file and says whether any changed', () => {
    const set = new FileSet();
    const a = dir.file('a', 'abc');
    const b = dir.file('b', 'one');
    utimesSync(a, MTIME, MTIME);
    const va = set.value({ value: 'abc', file: a });
    const vb = set.value({ value: 'one', file: b });
    expect(set.reloadAll()).toBe(false);
    writeFileSync(a, 'xyz');
    utimesSync(a, MTIME, MTIME);
    expect(va.read()).toBe('abc');
    expect(set.reloadAll()).toBe(true);
    expect(va.read()).toBe('xyz');
    expect(vb.read()).toBe('one');
    expect(set.reloadAll()).toBe(false);
  });

  it('reloadAll() skips a file that is missing and keeps its last content', () => {
    const set = new FileSet();
    const a = dir.file('a', 'one');
    const value = set.value({ value: 'one', file: a }, false);
    unlinkSync(a);
    expect(set.reloadAll()).toBe(false);
    writeFileSync(a, 'two');
    expect(set.reloadAll()).toBe(true);
    expect(value.read()).toBe('two');
  });
});
