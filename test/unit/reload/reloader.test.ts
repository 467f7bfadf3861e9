import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../../../src/config/load.js';
import type { Config } from '../../../src/config/types.js';
import { Metrics } from '../../../src/metrics/metrics.js';
import { configFileHash } from '../../../src/reload/config-file.js';
import type { ReloadPlan } from '../../../src/reload/plan.js';
import { ConfigReloader, type Reloadable } from '../../../src/reload/reloader.js';
import { tempDir } from '../../support/cli-process.js';

const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

function file(host: string, extra = ''): string {
  return `listen: 127.0.0.1:0
admin: { listen: 127.0.0.1:0 }
credentials:
  orders:
    token_endpoint: https://idp.example.com/oauth2/token
    grant_type: client_credentials
    client_id: orders
    client_secret: \${env:RELOADER_TEST_SECRET}
routes:
  - { name: r, match: { host: ${host} }, upstream: https://up.example.com, credential: orders }
${extra}`;
}

function setup(applyError?: Error) {
  process.env['RELOADER_TEST_SECRET'] = 'reloader-test-secret';
  const { dir, remove } = tempDir('token-injector-reloader-');
  cleanups.push(remove);
  const path = join(dir, 'config.yaml');
  writeFileSync(path, file('a.example.com'));
  const logs: Record<string, unknown>[] = [];
  const logger = pino({ level: 'debug' }, { write: (line: string) => logs.push(JSON.parse(line)) });
  const metrics = new Metrics({ processMetrics: false });
  const applied: ReloadPlan[] = [];
  const target: Reloadable & { config: Config } = {
    config: loadConfig(path),
    apply(plan) {
      if (applyError) throw applyError;
      applied.push(plan);
      this.config = plan.config;
    },
  };
  const startHash = configFileHash(path);
  const reloader = new ConfigReloader(path, startHash, target, { metrics, logger });
  const count = async (result: string) =>
    (await metrics.configReloads.get()).values.find((v) => v.labels.result === result)?.value;
  return { path, logs, metrics, applied, target, reloader, startHash, count };
}

describe('ConfigReloader', () => {
  it('applies a valid file: new hash, counted as success, the success time set', async () => {
    const t = setup();
    writeFileSync(t.path, file('b.example.com'));
    const outcome = t.reloader.reload('SIGHUP');
    expect(outcome).toMatchObject({ result: 'success', configHash: configFileHash(t.path), problems: [] });
    expect(t.applied).toHaveLength(1);
    expect(t.target.config.routes[0]!.match.host).toBe('b.example.com');
    expect(t.reloader.configHash).toBe(configFileHash(t.path));
    expect(await t.count('success')).toBe(1);
    expect((await t.metrics.configLastReloadSuccess.get()).values[0]!.value).toBeGreaterThan(0);
    expect(t.logs.find((l) => l['event'] === 'config_reloaded')).toMatchObject({ trigger: 'SIGHUP' });
  });

  it('refuses a file that does not validate: nothing applied, one log line per problem with its key', async () => {
    const t = setup();
    writeFileSync(t.path, file('b.example.com', 'shutdown_timout: 5s\nunmatched: sometimes\n'));
    const outcome = t.reloader.reload('file');
    expect(outcome.result).toBe('invalid');
    expect(outcome.problems.map((p) => p.path).sort()).toEqual(['shutdown_timout', 'unmatched']);
    expect(t.applied).toHaveLength(0);
    expect(t.reloader.configHash).toBe(t.startHash);
    // The file was read: a watch does not read the same invalid content again.
    expect(t.reloader.lastRead).toBe(configFileHash(t.path));
    const failed = t.logs.filter((l) => l['event'] === 'config_reload_failed');
    expect(failed.map((l) => l['key']).sort()).toEqual(['shutdown_timout', 'unmatched']);
    expect(failed.every((l) => l['trigger'] === 'file')).toBe(true);
    expect(await t.count('invalid')).toBe(1);
    expect(await t.count('success')).toBe(0);
  });

  it('a file that is gone is refused like an invalid one', async () => {
    const t = setup();
    const outcome = new ConfigReloader(`${t.path}.missing`, t.startHash, t.target, {
      metrics: t.metrics,
      logger: pino({ level: 'silent' }),
    }).reload('file');
    expect(outcome.result).toBe('invalid');
    expect(outcome.configHash).toBe(t.startHash);
  });

  it('a valid file that cannot be applied changes nothing and counts as error', async () => {
    const t = setup(new Error('certificate file unreadable'));
    writeFileSync(t.path, file('b.example.com'));
    const outcome = t.reloader.reload('file');
    expect(outcome).toMatchObject({ result: 'error', configHash: t.startHash });
    expect(t.target.config.routes[0]!.match.host).toBe('a.example.com');
    expect(t.logs.find((l) => l['event'] === 'config_reload_failed')).toMatchObject({
      error: 'internal_error',
      detail: 'certificate file unreadable',
    });
    expect(await t.count('error')).toBe(1);
  });

  it('exports every result at 0 before any reload', async () => {
    const t = setup();
    expect([await t.count('success'), await t.count('invalid'), await t.count('error')]).toEqual([0, 0, 0]);
  });
});
