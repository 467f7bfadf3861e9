/**
 * Real `redis-server` processes for tests (the Debian package; `.ci/run` installs it): single servers,
 * optionally with a password, an ACL user or TLS, and Redis Clusters of n masters. Every server listens on
 * 127.0.0.1 on a port found free at start, so a server someone started by hand is never used or disturbed.
 * Nothing is persisted (`--save '' --appendonly no`): a restarted server is empty, like a new one.
 *
 * Every process is tracked. Call {@link stopAllRedis} in an afterAll hook; should a test file forget, or the
 * worker die, the servers still go: on a normal exit through `process.on('exit')`, and when the worker is
 * killed (Vitest ends its fork workers with SIGTERM, which skips 'exit' handlers) through a small watchdog
 * process that kills every live server once the worker's end of its stdin pipe closes.
 *
 * @example
 * const redis = await startRedis({ password: 's3cret-pass' });
 * await redis.cli('SET', 'k', 'v'); // 'OK\n'
 * await redis.kill(); // a crash
 * await redis.restart(); // same port, empty
 * const cluster = await startRedisCluster(3);
 * await cluster.cli('SET', 'k', 'v'); // follows MOVED redirections (-c)
 * afterAll(stopAllRedis);
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import tls from 'node:tls';
import { promisify } from 'node:util';

const run = promisify(execFile);
const HOST = '127.0.0.1';
const REDIS_SERVER = 'redis-server';
const REDIS_CLI = 'redis-cli';
/** Attempts (25 ms apart) for a started server to answer PING: 5 s in all. */
const READY_ATTEMPTS = 200;
/** Attempts (50 ms apart) for every cluster node to report cluster_state:ok: 15 s in all. */
const CLUSTER_OK_ATTEMPTS = 300;
/** Fresh ports tried when another process takes the chosen one between the probe and redis's bind. */
const PORT_ATTEMPTS = 5;
const STOP_TIMEOUT_MS = 10_000;
const CLI_TIMEOUT_MS = 15_000;
/** Bytes of a server's own output kept for error messages. */
const OUTPUT_TAIL = 8192;

export interface RedisTlsOptions {
  /** PEM file paths: the server certificate and key, and the CA that issued them (and client certificates). */
  cert: string;
  key: string;
  ca: string;
  /**
   * A client certificate (PEM file paths) issued by `ca`. When given, the server requires client
   * certificates (`tls-auth-clients yes`) and `cli()` and the readiness check present this one; without it
   * the server asks for none.
   */
  client?: { cert: string; key: string };
}

export interface RedisOptions {
  /** `requirepass`, or with `username` the password of that ACL user. */
  password?: string;
  /** An ACL user with `password`, allowed all keys, channels and commands; the default user is then off. */
  username?: string;
  /** Serve TLS on the port (`tls-port`) and nothing in plain text; `url` is then `rediss://`. */
  tls?: RedisTlsOptions;
}

export interface RedisServer {
  /** `redis://127.0.0.1:PORT`, or `rediss://` with TLS. Never carries credentials. */
  readonly url: string;
  readonly port: number;
  /** The current process id (it changes on restart). */
  readonly pid: number;
  readonly running: boolean;
  readonly password: string | undefined;
  readonly username: string | undefined;
  /** SIGTERM and wait for the exit (SIGKILL after 10 s). */
  stop(): Promise<void>;
  /** SIGKILL and wait for the exit: a crash. */
  kill(): Promise<void>;
  /** Starts the server again on the same port (stopping it first if it still runs). */
  restart(): Promise<void>;
  /** Runs `redis-cli` against this server, with its auth and TLS, and returns stdout as printed. */
  cli(...args: string[]): Promise<string>;
}

export interface RedisCluster {
  readonly nodes: RedisServer[];
  /** `redis://127.0.0.1:P1`: the first node, as a seed. */
  readonly url: string;
  /** Stops every node and removes the cluster's directory. */
  stop(): Promise<void>;
  /** Runs `redis-cli -c` (following MOVED/ASK) against the seed node and returns stdout as printed. */
  cli(...args: string[]): Promise<string>;
  /** Resolves once every running node reports cluster_state:ok (bounded), e.g. after a node restart. */
  waitUntilOk(): Promise<void>;
}

export interface RedisClusterOptions {
  /** `requirepass` on every node. */
  password?: string;
}

interface ClusterNodeSetup {
  /** The cluster bus port (`cluster-port`). */
  busPort: number;
  /** The cluster's directory (nodes-PORT.conf lives there), owned by the cluster. */
  dir: string;
}

/** A server that could not bind its port because another process took it first. */
class PortTakenError extends Error {}

/** Servers whose process runs. */
const servers = new Set<RedisProcess>();
/** Every server started and not yet cleaned up by stopAllRedis (a killed one still has its directory). */
const created = new Set<RedisProcess>();
const clusters = new Set<Cluster>();
/** Ports handed out by this worker, never handed out twice (a stopped server may be restarted on its port). */
const handedOut = new Set<number>();

/** A port that was free a moment ago on 127.0.0.1 (listen on port 0, read it, close). */
async function probePort(): Promise<number> {
  for (let i = 0; i < 100; i++) {
    const port = await new Promise<number>((resolve, reject) => {
      const server = net.createServer();
      server.once('error', reject);
      server.listen(0, HOST, () => {
        const { port } = server.address() as net.AddressInfo;
        server.close(() => resolve(port));
      });
    });
    if (!handedOut.has(port)) {
      handedOut.add(port);
      return port;
    }
  }
  throw new Error('no free port on 127.0.0.1 that this worker has not already used');
}

function redisArgs(port: number, dir: string, opts: RedisOptions, cluster: ClusterNodeSetup | undefined) {
  const args = [
    '--bind',
    HOST,
    '--save',
    '',
    '--appendonly',
    'no',
    '--daemonize',
    'no',
    '--dir',
    dir,
    '--loglevel',
    'warning',
  ];
  if (opts.tls) {
    args.push('--port', '0', '--tls-port', String(port));
    args.push('--tls-cert-file', opts.tls.cert, '--tls-key-file', opts.tls.key);
    args.push('--tls-ca-cert-file', opts.tls.ca, '--tls-auth-clients', opts.tls.client ? 'yes' : 'no');
  } else {
    args.push('--port', String(port));
  }
  if (opts.username !== undefined) {
    // redis-server quotes each command-line argument into the config line, so '>password' may hold spaces.
    args.push(
      '--user',
      'default',
      'off',
      '--user',
      opts.username,
      'on',
      `>${opts.password}`,
      '~*',
      '&*',
      '+@all',
    );
  } else if (opts.password !== undefined) {
    args.push('--requirepass', opts.password);
  }
  if (cluster) {
    args.push('--cluster-enabled', 'yes', '--cluster-port', String(cluster.busPort));
    args.push('--cluster-config-file', join(cluster.dir, `nodes-${port}.conf`));
    args.push('--cluster-node-timeout', '2000');
  }
  return args;
}

function encodeCommand(args: readonly string[]): string {
  let out = `*${args.length}\r\n`;
  for (const a of args) out += `$${Buffer.byteLength(a)}\r\n${a}\r\n`;
  return out;
}

/** Reads one RESP2 reply of the kinds these helpers send for (simple, error, integer, bulk) from buf. */
function readReply(buf: Buffer, at: number): { reply: string; next: number } | undefined {
  const eol = buf.indexOf('\r\n', at);
  if (eol === -1) return undefined;
  const head = buf.toString('utf8', at, eol);
  if (head[0] !== '$') return { reply: head, next: eol + 2 };
  const len = Number(head.slice(1));
  if (len < 0) return { reply: '$-1', next: eol + 2 };
  if (buf.length < eol + 2 + len + 2) return undefined;
  return { reply: buf.toString('utf8', eol + 2, eol + 2 + len), next: eol + 2 + len + 2 };
}

interface Endpoint {
  port: number;
  opts: RedisOptions;
}

/**
 * Sends commands over one raw connection (after AUTH when the server has a password) and resolves with the
 * replies: simple strings as `+OK`, errors as `-ERR …`, integers as `:1`, bulk strings as their content.
 */
function rawCommands(endpoint: Endpoint, commands: readonly (readonly string[])[]): Promise<string[]> {
  const { port, opts } = endpoint;
  const all: (readonly string[])[] = [];
  if (opts.password !== undefined) {
    all.push(opts.username !== undefined ? ['AUTH', opts.username, opts.password] : ['AUTH', opts.password]);
  }
  all.push(...commands);
  return new Promise<string[]>((resolve, reject) => {
    const payload = all.map(encodeCommand).join('');
    const socket: net.Socket = opts.tls
      ? tls.connect({
          host: HOST,
          port,
          ca: readFileSync(opts.tls.ca),
          ...(opts.tls.client
            ? { cert: readFileSync(opts.tls.client.cert), key: readFileSync(opts.tls.client.key) }
            : {}),
          // Only whether the server answers is asked here; trust is for the tests' own clients to check.
          rejectUnauthorized: false,
        })
      : net.connect({ host: HOST, port });
    let buf = Buffer.alloc(0);
    const replies: string[] = [];
    socket.setTimeout(2000, () => socket.destroy(new Error('no reply within 2 s')));
    socket.once(opts.tls ? 'secureConnect' : 'connect', () => socket.write(payload));
    socket.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      let at = 0;
      for (let r = readReply(buf, at); r; r = readReply(buf, at)) {
        replies.push(r.reply);
        at = r.next;
      }
      buf = buf.subarray(at);
      if (replies.length >= all.length) {
        socket.destroy();
        resolve(replies.slice(all.length - commands.length));
      }
    });
    socket.once('error', reject);
    socket.once('close', () => reject(new Error(`connection closed after ${replies.length} replies`)));
  });
}

// ---- the watchdog: servers die with the worker even when it is killed ----

// Runs as a separate node process. Lines "p+PID" / "p-PID" and "d+DIR" / "d-DIR" on stdin track the live
// servers and the directories not yet removed; when stdin ends (the worker exited or was killed, by any
// signal) every server still listed is killed and every directory removed.
const WATCHDOG_SOURCE = `
const { rmSync } = require('node:fs');
const sets = { p: new Set(), d: new Set() };
let rest = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (chunk) => {
  const lines = (rest + chunk).split('\\n');
  rest = lines.pop();
  for (const line of lines) {
    const set = sets[line[0]];
    if (set) line[1] === '+' ? set.add(line.slice(2)) : set.delete(line.slice(2));
  }
});
process.stdin.on('end', () => {
  for (const pid of sets.p) try { process.kill(Number(pid), 'SIGKILL'); } catch {}
  for (const dir of sets.d) rmSync(dir, { recursive: true, force: true });
});
`;

let watchdog: ChildProcess | undefined;

/** Tells the watchdog that a server process (p) or a directory (d) now exists (alive) or is gone. */
function watch(kind: 'p' | 'd', value: number | string, alive: boolean): void {
  if (exiting) return;
  if (!watchdog) {
    // Detached: a Ctrl-C to the test run's process group must not end the watchdog before it has acted.
    watchdog = spawn(process.execPath, ['-e', WATCHDOG_SOURCE], {
      stdio: ['pipe', 'ignore', 'ignore'],
      detached: true,
    });
    watchdog.stdin!.on('error', () => {});
    // Neither the process nor the pipe may keep the worker alive.
    watchdog.unref();
    (watchdog.stdin as net.Socket).unref();
  }
  watchdog.stdin!.write(`${kind}${alive ? '+' : '-'}${value}\n`);
}

let exitHookInstalled = false;
let exiting = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    exiting = true;
    for (const server of servers) server.killNow();
    for (const server of created) server.removeDirNow();
    for (const cluster of clusters) rmSync(cluster.dir, { recursive: true, force: true });
  });
}

// ---- one server process ----

class RedisProcess implements RedisServer {
  readonly port: number;
  readonly opts: RedisOptions;
  readonly #cluster: ClusterNodeSetup | undefined;
  /** The server's working directory: its own unless it is a cluster node. */
  readonly #dir: string;
  #child: ChildProcess | undefined;
  #exited: Promise<void> = Promise.resolve();
  #output = '';

  constructor(port: number, opts: RedisOptions, cluster?: ClusterNodeSetup) {
    this.port = port;
    this.opts = opts;
    this.#cluster = cluster;
    this.#dir = cluster ? cluster.dir : mkdtempSync(join(tmpdir(), 'token-injector-redis-'));
  }

  get url(): string {
    return `${this.opts.tls ? 'rediss' : 'redis'}://${HOST}:${this.port}`;
  }
  get pid(): number {
    if (!this.#child?.pid) throw new Error(`redis on port ${this.port} has no process`);
    return this.#child.pid;
  }
  get running(): boolean {
    const child = this.#child;
    return child?.pid !== undefined && child.exitCode === null && child.signalCode === null;
  }
  get password(): string | undefined {
    return this.opts.password;
  }
  get username(): string | undefined {
    return this.opts.username;
  }

  /** Spawns the server and resolves once it answers PING; throws PortTakenError if its port was taken. */
  async start(): Promise<void> {
    if (this.running) throw new Error(`redis on port ${this.port} is already running`);
    installExitHook();
    created.add(this);
    if (!this.#cluster) {
      mkdirSync(this.#dir, { recursive: true });
      watch('d', this.#dir, true);
    }
    this.#output = '';
    const child = spawn(REDIS_SERVER, redisArgs(this.port, this.#dir, this.opts, this.#cluster), {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.#child = child;
    const keep = (chunk: Buffer) => {
      this.#output = (this.#output + chunk.toString('utf8')).slice(-OUTPUT_TAIL);
    };
    child.stdout!.on('data', keep);
    child.stderr!.on('data', keep);
    const spawned = new Promise<void>((resolve, reject) => {
      child.once('spawn', resolve);
      child.once('error', reject);
    });
    this.#exited = new Promise<void>((resolve) => {
      child.once('close', () => {
        servers.delete(this);
        if (child.pid) watch('p', child.pid, false);
        resolve();
      });
      // A process that never started (no redis-server on PATH) may never emit 'close'.
      child.once('error', () => {
        if (!child.pid) resolve();
      });
    });
    try {
      await spawned;
    } catch (err) {
      throw new Error(`could not run ${REDIS_SERVER} (is the Debian package redis-server installed?)`, {
        cause: err,
      });
    }
    servers.add(this);
    watch('p', child.pid!, true);
    await this.#waitReady(child);
  }

  async #waitReady(child: ChildProcess): Promise<void> {
    let last = '';
    for (let i = 0; i < READY_ATTEMPTS; i++) {
      if (child.exitCode !== null || child.signalCode !== null) break;
      try {
        const [reply] = await rawCommands(this, [['PING']]);
        if (reply === '+PONG') return;
        last = reply ?? '';
      } catch (err) {
        last = String(err);
      }
      await delay(25);
    }
    await this.kill();
    if (/address already in use/i.test(this.#output)) {
      throw new PortTakenError(`port ${this.port} was taken by another process`);
    }
    throw new Error(
      `redis-server on port ${this.port} did not answer PING (last: ${last})\nits output:\n${this.#output}`,
    );
  }

  async stop(): Promise<void> {
    if (this.running) {
      this.#child!.kill('SIGTERM');
      const timer = setTimeout(() => this.#child?.kill('SIGKILL'), STOP_TIMEOUT_MS);
      await this.#exited;
      clearTimeout(timer);
    }
    await this.#exited;
    this.removeDirNow();
    created.delete(this);
  }

  /** Removes the server's own directory (a cluster node's belongs to the cluster). */
  removeDirNow(): void {
    if (this.#cluster) return;
    rmSync(this.#dir, { recursive: true, force: true });
    watch('d', this.#dir, false);
  }

  async kill(): Promise<void> {
    this.killNow();
    await this.#exited;
  }

  /** SIGKILL without waiting: for the process 'exit' hook, where nothing asynchronous runs. */
  killNow(): void {
    if (this.running) this.#child!.kill('SIGKILL');
  }

  async restart(): Promise<void> {
    if (this.running) {
      this.#child!.kill('SIGTERM');
      await this.#exited;
    }
    await this.start();
  }

  cli(...args: string[]): Promise<string> {
    return redisCli(this, args);
  }

  /** The last lines the server printed (warnings and up), for a test's own failure messages. */
  get output(): string {
    return this.#output;
  }
}

async function redisCli(endpoint: Endpoint, args: readonly string[], cluster = false): Promise<string> {
  const { port, opts } = endpoint;
  const cliArgs = ['-h', HOST, '-p', String(port), '--no-auth-warning'];
  if (cluster) cliArgs.push('-c');
  if (opts.username !== undefined) cliArgs.push('--user', opts.username);
  if (opts.tls) {
    cliArgs.push('--tls', '--cacert', opts.tls.ca);
    if (opts.tls.client) cliArgs.push('--cert', opts.tls.client.cert, '--key', opts.tls.client.key);
  }
  // The password goes through the environment, not argv, so it never shows in a process listing.
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env['REDISCLI_AUTH'];
  if (opts.password !== undefined) env['REDISCLI_AUTH'] = opts.password;
  try {
    const { stdout } = await run(REDIS_CLI, [...cliArgs, ...args], {
      env,
      timeout: CLI_TIMEOUT_MS,
      maxBuffer: 16 * 1024 * 1024,
    });
    return stdout;
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string };
    throw new Error(
      `redis-cli ${args.join(' ')} against port ${port} failed: ${(e.stderr || e.stdout || String(err)).trim()}`,
      { cause: err },
    );
  }
}

/** Starts a server on a fresh port, trying another one should a different process take the first. */
async function launch(opts: RedisOptions, clusterDir?: string): Promise<RedisProcess> {
  if (opts.username !== undefined && opts.password === undefined) {
    throw new Error('an ACL username needs a password');
  }
  let lastErr: unknown;
  for (let i = 0; i < PORT_ATTEMPTS; i++) {
    const port = await probePort();
    const cluster = clusterDir === undefined ? undefined : { busPort: await probePort(), dir: clusterDir };
    const server = new RedisProcess(port, opts, cluster);
    try {
      await server.start();
      return server;
    } catch (err) {
      await server.stop();
      if (!(err instanceof PortTakenError)) throw err;
      lastErr = err;
    }
  }
  throw new Error(`no free port for redis-server after ${PORT_ATTEMPTS} attempts`, { cause: lastErr });
}

/**
 * Starts a real `redis-server` on 127.0.0.1 on a free port and resolves once it answers PING.
 * Stop it with {@link RedisServer.stop}, or every server with {@link stopAllRedis}.
 */
export function startRedis(opts: RedisOptions = {}): Promise<RedisServer> {
  return launch(opts);
}

// ---- clusters ----

class Cluster implements RedisCluster {
  readonly nodes: RedisProcess[];
  readonly dir: string;
  readonly opts: RedisClusterOptions;

  constructor(nodes: RedisProcess[], dir: string, opts: RedisClusterOptions) {
    this.nodes = nodes;
    this.dir = dir;
    this.opts = opts;
  }

  get url(): string {
    return this.nodes[0]!.url;
  }

  async stop(): Promise<void> {
    await Promise.all(this.nodes.map((n) => n.stop()));
    rmSync(this.dir, { recursive: true, force: true });
    watch('d', this.dir, false);
    clusters.delete(this);
  }

  cli(...args: string[]): Promise<string> {
    return redisCli({ port: this.nodes[0]!.port, opts: this.opts }, args, true);
  }

  async waitUntilOk(): Promise<void> {
    const states = new Map<number, string>();
    for (let i = 0; i < CLUSTER_OK_ATTEMPTS; i++) {
      await Promise.all(
        this.nodes
          .filter((n) => n.running)
          .map(async (n) => {
            try {
              const [info] = await rawCommands(n, [['CLUSTER', 'INFO']]);
              states.set(n.port, /^cluster_state:(\w+)/m.exec(info ?? '')?.[1] ?? String(info));
            } catch (err) {
              states.set(n.port, String(err));
            }
          }),
      );
      if (this.nodes.every((n) => !n.running || states.get(n.port) === 'ok')) return;
      await delay(50);
    }
    throw new Error(`cluster not ok: ${JSON.stringify(Object.fromEntries(states))}`);
  }
}

/**
 * Starts a Redis Cluster of `n` masters (no replicas) on 127.0.0.1, creates it with
 * `redis-cli --cluster create` and resolves once every node reports cluster_state:ok.
 * redis-cli refuses to create a cluster of fewer than 3 masters.
 */
export async function startRedisCluster(n = 3, opts: RedisClusterOptions = {}): Promise<RedisCluster> {
  if (!Number.isInteger(n) || n < 3) throw new Error(`a Redis Cluster needs at least 3 masters, not ${n}`);
  installExitHook();
  const dir = mkdtempSync(join(tmpdir(), 'token-injector-redis-cluster-'));
  watch('d', dir, true);
  const started = await Promise.allSettled(Array.from({ length: n }, () => launch(opts, dir)));
  const nodes = started.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
  const cluster = new Cluster(nodes, dir, opts);
  clusters.add(cluster);
  try {
    const failed = started.find((s): s is PromiseRejectedResult => s.status === 'rejected');
    if (failed) throw failed.reason;
    const create = ['--cluster', 'create', ...nodes.map((node) => `${HOST}:${node.port}`)];
    await redisCli(nodes[0]!, [...create, '--cluster-replicas', '0', '--cluster-yes']);
    await cluster.waitUntilOk();
    return cluster;
  } catch (err) {
    await cluster.stop();
    throw err;
  }
}

/** Kills every server and cluster this worker started and removes their directories. */
export async function stopAllRedis(): Promise<void> {
  await Promise.all(
    [...created].map(async (s) => {
      await s.kill();
      s.removeDirNow();
    }),
  );
  created.clear();
  await Promise.all([...clusters].map((c) => c.stop()));
}
