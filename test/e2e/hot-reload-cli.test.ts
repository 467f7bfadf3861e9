// Hot reload (issue 14) of a real `token-injector run` child process: SIGHUP, a rewritten file and
// a Kubernetes ConfigMap's symlink swap reload it; a file that does not validate changes nothing
// and is logged key by key. Every wait is for a log line, never a sleep.
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { request } from 'undici';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { BASIC_CLIENT } from '../support/auth-server.js';
import {
  type CliProcess,
  killAllCli,
  type RunningCli,
  runCli,
  startRun,
  tempDir,
} from '../support/cli-process.js';
import { plainRequest } from '../support/http-client.js';
import { credentialFor, type Stack, startStack } from '../support/stack.js';

let stack: Stack;
const cleanups: (() => void)[] = [];

beforeAll(async () => {
  stack = await startStack();
});

afterEach(async () => {
  await killAllCli();
  for (const c of cleanups.splice(0)) c();
});

afterAll(async () => {
  await stack?.close();
});

/** A whole configuration file whose one route answers for `host`. */
function configText(host: string, extra: Record<string, unknown> = {}): string {
  return stringify({
    listen: '127.0.0.1:0',
    admin: { listen: '127.0.0.1:0' },
    credentials: { orders: credentialFor(stack.auth, BASIC_CLIENT) },
    routes: [
      { name: host.split('.')[0], match: { host }, upstream: stack.upstream.url, credential: 'orders' },
    ],
    ...extra,
  });
}

function sha256(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

async function status(run: RunningCli, host: string): Promise<number> {
  return (await plainRequest(run.proxyUrl, '/', { headers: { host } })).status;
}

async function adminJson(run: RunningCli, path: string): Promise<Record<string, unknown>> {
  const res = await request(`${run.adminUrl}${path}`);
  return (await res.body.json()) as Record<string, unknown>;
}

async function reloads(run: RunningCli, result: string): Promise<number> {
  const text = await (await request(`${run.adminUrl}/metrics`)).body.text();
  const sample = `token_injector_config_reloads_total{result="${result}"} `;
  const line = text.split('\n').find((l) => l.startsWith(sample));
  return Number(line?.slice(sample.length));
}

/** The n-th (1-based) log line of `event` with these fields, seen already or still to come. */
function nthLog(proc: CliProcess, n: number, fields: Record<string, unknown>) {
  return proc.waitForLog(
    (l) =>
      Object.entries(fields).every(([k, v]) => l[k] === v) &&
      proc.logs.filter((m) => matches(m, fields)).indexOf(l) === n - 1,
    JSON.stringify(fields),
  );
}

function matches(line: Record<string, unknown>, fields: Record<string, unknown>): boolean {
  return Object.entries(fields).every(([k, v]) => line[k] === v);
}

describe('token-injector run: hot reload', () => {
  it('SIGHUP reloads the configuration: the new route answers, the removed one is gone', async () => {
    const { dir, remove } = tempDir();
    cleanups.push(remove);
    const path = join(dir, 'config.yaml');
    writeFileSync(path, configText('before.test'));
    const run = await startRun(path);
    expect(await status(run, 'before.test')).toBe(200);

    writeFileSync(path, configText('after.test'));
    run.proc.signal('SIGHUP');
    const reloaded = await run.proc.waitForLog(
      (l) => l['event'] === 'config_reloaded' && l['trigger'] === 'SIGHUP',
      'a reload on SIGHUP',
    );
    expect(reloaded['config_hash']).toBe(sha256(path));
    expect(await status(run, 'after.test')).toBe(200);
    expect(await status(run, 'before.test')).toBe(403);
    expect(run.proc.running).toBe(true);
    expect((await adminJson(run, '/readyz'))['config_hash']).toBe(sha256(path));
  });

  it('a change of the file reloads it; a file that does not validate changes nothing and logs each problem with its key', async () => {
    const { dir, remove } = tempDir();
    cleanups.push(remove);
    const path = join(dir, 'config.yaml');
    writeFileSync(path, configText('one.test'));
    const run = await startRun(path);
    const startHash = (await adminJson(run, '/readyz'))['config_hash'];
    expect(startHash).toBe(sha256(path));

    writeFileSync(path, configText('two.test'));
    await nthLog(run.proc, 1, { event: 'config_reloaded', trigger: 'file' });
    expect(await status(run, 'two.test')).toBe(200);
    expect(await status(run, 'one.test')).toBe(403);
    expect(await reloads(run, 'success')).toBe(1);
    const twoHash = sha256(path);
    expect((await adminJson(run, '/readyz'))['config_hash']).toBe(twoHash);

    // Two mistakes: an unknown key and a route naming no credential.
    writeFileSync(
      path,
      configText('three.test', { shutdown_timout: '5s' }).replace('credential: orders', 'credential: ordrs'),
    );
    const failed = await run.proc.waitForLog(
      (l) => l['event'] === 'config_reload_failed' && l['key'] === 'routes[0].credential',
      'the reload failure of routes[0].credential',
    );
    expect(failed['trigger']).toBe('file');
    const keys = run.proc.logs.filter((l) => l['event'] === 'config_reload_failed').map((l) => l['key']);
    expect(keys.sort()).toEqual(['routes[0].credential', 'shutdown_timout']);
    expect(await status(run, 'two.test')).toBe(200);
    expect(await status(run, 'three.test')).toBe(403);
    expect(await reloads(run, 'invalid')).toBe(1);
    expect((await adminJson(run, '/readyz'))['config_hash']).toBe(twoHash);

    // Fixed: applied.
    writeFileSync(path, configText('three.test'));
    await nthLog(run.proc, 2, { event: 'config_reloaded', trigger: 'file' });
    expect(await status(run, 'three.test')).toBe(200);
    expect(await reloads(run, 'success')).toBe(2);
  });

  it('a Kubernetes ConfigMap update (the ..data symlink swapped to a new directory) reloads the file', async () => {
    const { dir, remove } = tempDir();
    cleanups.push(remove);
    // The kubelet's layout: config.yaml -> ..data/config.yaml, ..data -> ..<timestamp>/.
    mkdirSync(join(dir, '..2026_12_06_01'));
    writeFileSync(join(dir, '..2026_12_06_01', 'config.yaml'), configText('first.test'));
    symlinkSync('..2026_12_06_01', join(dir, '..data'));
    symlinkSync(join('..data', 'config.yaml'), join(dir, 'config.yaml'));
    const run = await startRun(join(dir, 'config.yaml'));
    expect(await status(run, 'first.test')).toBe(200);

    // The update, as the kubelet (atomic_writer.go) makes it: a new directory, a new symlink
    // renamed over ..data, the old directory removed.
    mkdirSync(join(dir, '..2026_12_06_02'));
    writeFileSync(join(dir, '..2026_12_06_02', 'config.yaml'), configText('second.test'));
    symlinkSync('..2026_12_06_02', join(dir, '..data_tmp'));
    renameSync(join(dir, '..data_tmp'), join(dir, '..data'));
    rmSync(join(dir, '..2026_12_06_01'), { recursive: true });

    const reloaded = await nthLog(run.proc, 1, { event: 'config_reloaded', trigger: 'file' });
    expect(reloaded['config_hash']).toBe(sha256(join(dir, 'config.yaml')));
    expect(await status(run, 'second.test')).toBe(200);
    expect(await status(run, 'first.test')).toBe(403);
  });
});

describe('token-injector --help', () => {
  it('says that SIGHUP and a change of the file reload the configuration, and which keys need a restart', async () => {
    const res = await runCli(['--help']);
    expect(res.code).toBe(0);
    expect(res.stdout).toMatch(/SIGHUP, or a change of the configuration file/);
    expect(res.stdout).toContain('config_reload_failed');
    expect(res.stdout).toMatch(/listen, admin\.listen, limits\.max_header_size/);
    expect(res.stdout).not.toContain('no reload yet');
  });
});
