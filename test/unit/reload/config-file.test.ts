import { mkdirSync, renameSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { type ConfigWatch, configFileHash, watchConfigFile } from '../../../src/reload/config-file.js';
import { tempDir } from '../../support/cli-process.js';

const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

/**
 * A watch as `run` sets one up: `known` is the hash last read, updated on each change. Every check
 * and every change is an awaitable event.
 */
function watched(path: string) {
  let known = configFileHash(path);
  let changes = 0;
  const waiters = { check: [] as (() => void)[], change: [] as (() => void)[] };
  const watch: ConfigWatch = watchConfigFile(
    path,
    () => {
      for (const w of waiters.check.splice(0)) w();
      return known;
    },
    () => {
      changes++;
      known = configFileHash(path);
      for (const w of waiters.change.splice(0)) w();
    },
    (err) => {
      throw err;
    },
    20,
  );
  cleanups.push(() => watch.close());
  return {
    get changes() {
      return changes;
    },
    nextCheck: () => new Promise<void>((resolve) => waiters.check.push(resolve)),
    nextChange: () => new Promise<void>((resolve) => waiters.change.push(resolve)),
  };
}

function dir(): string {
  const { dir, remove } = tempDir('token-injector-watch-');
  cleanups.push(remove);
  return dir;
}

describe('watchConfigFile', () => {
  it('sees a file written in place', async () => {
    const path = join(dir(), 'config.yaml');
    writeFileSync(path, 'a: 1\n');
    const w = watched(path);
    const change = w.nextChange();
    writeFileSync(path, 'a: 2\n');
    await change;
    expect(w.changes).toBe(1);
  });

  it("sees an editor's save: a new file renamed over the old one", async () => {
    const d = dir();
    const path = join(d, 'config.yaml');
    writeFileSync(path, 'a: 1\n');
    const w = watched(path);
    const change = w.nextChange();
    writeFileSync(join(d, '.config.yaml.swp'), 'a: 2\n');
    renameSync(join(d, '.config.yaml.swp'), path);
    await change;
    expect(w.changes).toBe(1);
  });

  it('sees a ConfigMap update: the ..data symlink swapped to a new directory', async () => {
    const d = dir();
    mkdirSync(join(d, '..1'));
    writeFileSync(join(d, '..1', 'config.yaml'), 'a: 1\n');
    symlinkSync('..1', join(d, '..data'));
    symlinkSync(join('..data', 'config.yaml'), join(d, 'config.yaml'));
    const w = watched(join(d, 'config.yaml'));
    const change = w.nextChange();
    mkdirSync(join(d, '..2'));
    writeFileSync(join(d, '..2', 'config.yaml'), 'a: 2\n');
    symlinkSync('..2', join(d, '..data_tmp'));
    renameSync(join(d, '..data_tmp'), join(d, '..data'));
    await change;
    expect(w.changes).toBe(1);
  });

  it('does nothing for a touch, the same content written again, or another file of the directory', async () => {
    const d = dir();
    const path = join(d, 'config.yaml');
    writeFileSync(path, 'a: 1\n');
    const w = watched(path);
    let check = w.nextCheck();
    utimesSync(path, new Date(), new Date(Date.now() + 5_000));
    await check;
    check = w.nextCheck();
    writeFileSync(path, 'a: 1\n');
    await check;
    check = w.nextCheck();
    writeFileSync(join(d, 'other.yaml'), 'b: 1\n');
    await check;
    expect(w.changes).toBe(0);
  });

  it('checks a burst of writes once, after it is quiet', async () => {
    const path = join(dir(), 'config.yaml');
    writeFileSync(path, 'a: 0\n');
    const w = watched(path);
    const change = w.nextChange();
    for (let i = 1; i <= 20; i++) writeFileSync(path, `a: ${i}\n`);
    await change;
    // Any check the burst had left pending would come before this one.
    const check = w.nextCheck();
    writeFileSync(path, 'a: 20\n');
    await check;
    expect(w.changes).toBe(1);
  });
});
