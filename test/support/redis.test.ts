import { execFile, spawn } from 'node:child_process';
import { existsSync, readFileSync, readlinkSync } from 'node:fs';
import net from 'node:net';
import { setTimeout as delay } from 'node:timers/promises';
import tls from 'node:tls';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO_ROOT } from './cli-process.js';
import { startRedis, startRedisCluster, stopAllRedis } from './redis.js';
import { createTestCa, type TestCa } from './test-ca.js';

const run = promisify(execFile);

/** Whether a process exists and is not a zombie (a reparented server may wait to be reaped). */
function alive(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.[0] !== 'Z';
  } catch {
    return false;
  }
}

/**
 * Polls (bounded, 5 s) until the condition holds: a process that is not our child, or a directory another
 * process removes, gives no event to await.
 */
async function eventually(condition: () => boolean): Promise<boolean> {
  for (let i = 0; i < 200 && !condition(); i++) await delay(25);
  return condition();
}

/** redis-cli with no credentials at all, whatever the server wants. */
async function anonymousCli(port: number, ...args: string[]): Promise<string> {
  const env = { ...process.env };
  delete env['REDISCLI_AUTH'];
  const { stdout, stderr } = await run('redis-cli', ['-h', '127.0.0.1', '-p', String(port), ...args], {
    env,
  });
  return stdout + stderr;
}

/** Sends PING over a socket and resolves with everything received until the server closes or answers. */
function pingOver(socket: net.Socket, connectEvent: 'connect' | 'secureConnect'): Promise<string> {
  return new Promise((resolve) => {
    let got = '';
    socket.setTimeout(5000, () => socket.destroy());
    socket.once(connectEvent, () => socket.write('*1\r\n$4\r\nPING\r\n'));
    socket.on('data', (chunk: Buffer) => {
      got += chunk.toString('latin1');
      if (got.includes('\r\n')) socket.destroy();
    });
    socket.on('error', (err) => {
      got += `[${(err as NodeJS.ErrnoException).code ?? err.message}]`;
    });
    socket.once('close', () => resolve(got));
  });
}

afterAll(stopAllRedis);

describe('startRedis', () => {
  it('serves SET/GET through redis-cli, dies on kill() and comes back empty on the same port', async () => {
    const redis = await startRedis();
    expect(redis.url).toBe(`redis://127.0.0.1:${redis.port}`);
    expect(await redis.cli('SET', 'token:orders', 'v1')).toBe('OK\n');
    expect(await redis.cli('GET', 'token:orders')).toBe('v1\n');

    const crashed = redis.pid;
    await redis.kill();
    expect(redis.running).toBe(false);
    expect(alive(crashed)).toBe(false);
    await expect(redis.cli('PING')).rejects.toThrow(/Connection refused/);

    await redis.restart();
    expect(redis.pid).not.toBe(crashed);
    expect(redis.url).toBe(`redis://127.0.0.1:${redis.port}`);
    // Nothing is persisted: the restarted server is empty (a nil reply prints as an empty line).
    expect(await redis.cli('GET', 'token:orders')).toBe('\n');

    const pid = redis.pid;
    await redis.stop();
    expect(alive(pid)).toBe(false);
  });

  it('requires AUTH when started with a password', async () => {
    const redis = await startRedis({ password: 'redis pass>with spaces' });
    expect(await anonymousCli(redis.port, 'PING')).toMatch(/^NOAUTH/);
    expect(await redis.cli('PING')).toBe('PONG\n');
    expect(await redis.cli('ACL', 'WHOAMI')).toBe('default\n');
    expect(redis.url).not.toContain('pass');
  });

  it('requires the ACL user when started with a username, and turns the default user off', async () => {
    const redis = await startRedis({ username: 'token-cache', password: 'acl-user-pass' });
    expect(await redis.cli('ACL', 'WHOAMI')).toBe('token-cache\n');
    expect(await redis.cli('SET', 'k', 'v')).toBe('OK\n');
    expect(await anonymousCli(redis.port, 'GET', 'k')).toMatch(/^NOAUTH/);
    // The same password for the default user is refused: only the ACL user may log in.
    const { stdout } = await run('redis-cli', ['-p', String(redis.port), '--no-auth-warning', 'GET', 'k'], {
      env: { ...process.env, REDISCLI_AUTH: 'acl-user-pass' },
    });
    expect(stdout).not.toContain('v');
  });

  describe('with TLS', () => {
    let ca: TestCa;
    beforeAll(async () => {
      ca = await createTestCa();
    });
    afterAll(() => ca.cleanup());

    it('serves TLS only, verified against the CA', async () => {
      const cert = await ca.issue(['127.0.0.1', 'localhost']);
      const redis = await startRedis({ tls: { cert: cert.certFile, key: cert.keyFile, ca: ca.caFile } });
      expect(redis.url).toBe(`rediss://127.0.0.1:${redis.port}`);
      expect(await redis.cli('PING')).toBe('PONG\n');
      const verified = tls.connect({ host: '127.0.0.1', port: redis.port, ca: ca.caPem });
      expect(await pingOver(verified, 'secureConnect')).toBe('+PONG\r\n');
      const plain = net.connect({ host: '127.0.0.1', port: redis.port });
      expect(await pingOver(plain, 'connect')).not.toContain('PONG');
    });

    it('requires a client certificate when one is configured', async () => {
      const cert = await ca.issue(['127.0.0.1']);
      const client = await ca.issue(['token-injector'], { client: true });
      const redis = await startRedis({
        tls: {
          cert: cert.certFile,
          key: cert.keyFile,
          ca: ca.caFile,
          client: { cert: client.certFile, key: client.keyFile },
        },
      });
      expect(await redis.cli('PING')).toBe('PONG\n');
      const withCert = tls.connect({
        host: '127.0.0.1',
        port: redis.port,
        ca: ca.caPem,
        cert: client.cert,
        key: client.key,
      });
      expect(await pingOver(withCert, 'secureConnect')).toBe('+PONG\r\n');
      const withoutCert = tls.connect({ host: '127.0.0.1', port: redis.port, ca: ca.caPem });
      expect(await pingOver(withoutCert, 'secureConnect')).not.toContain('PONG');
    });
  });

  it('stopAllRedis kills every server still running', async () => {
    const a = await startRedis();
    const b = await startRedis({ password: 'another-pass' });
    expect(a.port).not.toBe(b.port);
    const pids = [a.pid, b.pid];
    await stopAllRedis();
    expect(pids.map(alive)).toEqual([false, false]);
    expect([a.running, b.running]).toEqual([false, false]);
  });

  it('kills the servers of a worker that is killed itself (no exit handler runs)', async () => {
    const script = `
      const { startRedis } = await import('./test/support/redis.ts');
      const redis = await startRedis();
      console.log(JSON.stringify({ pid: redis.pid }));
      setInterval(() => {}, 60_000);
    `;
    const worker = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      cwd: REPO_ROOT,
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const exited = new Promise((resolve) => worker.once('exit', resolve));
    try {
      const line = await new Promise<string>((resolve, reject) => {
        let out = '';
        worker.stdout!.on('data', (chunk: Buffer) => {
          out += chunk.toString();
          if (out.includes('\n')) resolve(out);
        });
        worker.once('exit', (code) => reject(new Error(`worker exited (${code}) before starting redis`)));
      });
      const { pid } = JSON.parse(line) as { pid: number };
      expect(alive(pid)).toBe(true);
      // redis-server runs in its own temporary directory (--dir): that goes too.
      const dir = readlinkSync(`/proc/${pid}/cwd`);
      expect(dir).toMatch(/token-injector-redis-/);
      worker.kill('SIGKILL');
      await exited;
      expect(await eventually(() => !alive(pid))).toBe(true);
      expect(await eventually(() => !existsSync(dir))).toBe(true);
    } finally {
      worker.kill('SIGKILL');
    }
  });
});

describe('startRedisCluster', () => {
  it('creates a cluster of 3 masters whose slots spread keys over the nodes', async () => {
    const cluster = await startRedisCluster(3);
    expect(cluster.nodes).toHaveLength(3);
    expect(cluster.url).toBe(cluster.nodes[0]!.url);
    for (const node of cluster.nodes) {
      const info = await node.cli('CLUSTER', 'INFO');
      expect(info).toContain('cluster_state:ok');
      expect(info).toContain('cluster_known_nodes:3');
      expect(info).toContain('cluster_slots_assigned:16384');
    }

    // Slots 15495, 3300 and 7365: one in each third of the 16384 slots, so one per master.
    const keys = ['a', 'b', 'c'];
    const slots = await Promise.all(keys.map((k) => cluster.cli('CLUSTER', 'KEYSLOT', k)));
    expect(new Set(slots).size).toBe(3);
    for (const k of keys) expect(await cluster.cli('SET', k, `value-${k}`)).toBe('OK\n');
    // Keys sharing a hash tag share a slot, hence a node.
    await cluster.cli('SET', '{orders}.token', 't');
    await cluster.cli('SET', '{orders}.lock', 'l');

    const held = await Promise.all(cluster.nodes.map(async (n) => (await n.cli('KEYS', '*')).split('\n')));
    const owner = (key: string) => held.findIndex((keysOnNode) => keysOnNode.includes(key));
    expect(new Set(keys.map(owner))).toEqual(new Set([0, 1, 2]));
    expect(owner('{orders}.token')).toBe(owner('{orders}.lock'));

    // Through the seed, redirections are followed; a node that does not own the slot answers MOVED.
    for (const k of keys) expect(await cluster.cli('GET', k)).toBe(`value-${k}\n`);
    const notOwner = cluster.nodes[(owner('a') + 1) % 3]!;
    expect(await notOwner.cli('GET', 'a')).toMatch(/^MOVED 15495 127\.0\.0\.1:\d+/);

    // A node that crashes comes back on its port with its nodes.conf and the cluster is whole again.
    const node = cluster.nodes[owner('a')]!;
    await node.kill();
    await node.restart();
    await cluster.waitUntilOk();
    expect(await cluster.cli('SET', 'a', 'again')).toBe('OK\n');

    const pids = cluster.nodes.map((n) => n.pid);
    const dir = (cluster as unknown as { dir: string }).dir;
    expect(existsSync(dir)).toBe(true);
    await cluster.stop();
    expect(pids.map(alive)).toEqual([false, false, false]);
    expect(existsSync(dir)).toBe(false);
  });

  it('refuses fewer than 3 masters', async () => {
    await expect(startRedisCluster(2)).rejects.toThrow(/at least 3 masters/);
  });
});
