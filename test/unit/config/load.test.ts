// biome-ignore-all lint/suspicious/noTemplateCurlyInString: these tests are about the literal ${env:} and ${file:} syntax
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { loadConfig, validateConfigText } from '../../../src/config/load.js';
import { ConfigError } from '../../../src/errors.js';
import { CREDENTIALS_YAML, sources } from './helpers.js';

let dir: string;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'ti-load-'));
});

afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

function caught(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error('expected a ConfigError');
}

describe('loadConfig', () => {
  it('reads a file and resolves relative ${file:} paths against its directory', () => {
    mkdirSync(join(dir, 'secrets'));
    writeFileSync(join(dir, 'secrets', 'orders'), 'from-disk\n');
    const file = join(dir, 'config.yaml');
    writeFileSync(file, CREDENTIALS_YAML.replace('orders-secret', '${file:secrets/orders}'));
    const config = loadConfig(file);
    const auth = config.credentials.get('orders')!.clientAuth;
    expect(auth).toEqual({
      method: 'client_secret_basic',
      secret: { value: 'from-disk', file: join(dir, 'secrets', 'orders') },
    });
  });

  it('uses injected sources when given', () => {
    const file = join(dir, 'config.yaml');
    writeFileSync(file, CREDENTIALS_YAML.replace('orders-secret', '${env:INJECTED}'));
    const config = loadConfig(file, sources({ INJECTED: 'yes' }));
    expect(config.credentials.get('orders')!.clientAuth).toEqual({
      method: 'client_secret_basic',
      secret: { value: 'yes' },
    });
  });

  it('throws a ConfigError with code config_invalid listing every problem', () => {
    const file = join(dir, 'config.yaml');
    writeFileSync(file, 'listen: nowhere\nunmatched: maybe\n');
    const err = caught(() => loadConfig(file));
    expect(err.code).toBe('config_invalid');
    expect(err.problems.map((p) => p.path)).toEqual(['listen', 'unmatched']);
    expect(err.message.split('\n')).toHaveLength(2);
    expect(err.message).toContain('unmatched: must be one of deny, passthrough, got "maybe"');
  });

  it('names a missing secret file by its resolved path', () => {
    const file = join(dir, 'config.yaml');
    writeFileSync(file, CREDENTIALS_YAML.replace('orders-secret', '${file:nope}'));
    const err = caught(() => loadConfig(file));
    expect(err.problems).toEqual([
      {
        path: 'credentials.orders.client_secret',
        message: `cannot read file ${join(dir, 'nope')} (ENOENT)`,
      },
    ]);
  });

  it('throws a ConfigError naming the file when it cannot be read', () => {
    const file = join(dir, 'missing.yaml');
    const err = caught(() => loadConfig(file));
    expect(err.code).toBe('config_invalid');
    expect(err.problems).toEqual([{ path: '', message: `cannot read ${file} (ENOENT)` }]);
  });
});

describe('validateConfigText', () => {
  it('returns no problems for a valid text and every problem for an invalid one', () => {
    expect(validateConfigText(CREDENTIALS_YAML, sources())).toEqual([]);
    expect(validateConfigText('listen: x\nlog:\n  level: y\n', sources()).map((p) => p.path)).toEqual([
      'listen',
      'log.level',
    ]);
  });
});
