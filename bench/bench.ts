/**
 * `npm run bench`: token-injector against the same upstream reached directly and through nginx
 * injecting a static header, in one interleaved run. See bench/README.md for how to read it.
 *
 * Layout on a 2-core machine (the baseline methodology):
 *   core 0: wrk (one thread), the upstream nginx (one worker), this orchestrator and the token
 *           endpoint (idle while measuring).
 *   core 1: the proxy under test alone: token-injector (node) or the nginx proxy (one worker).
 * The upstream shares core 0 with wrk on purpose: core 1 must hold nothing but the proxy, so its
 * CPU time per request is its own and its core is the one that saturates. A `return 200` from
 * nginx costs a few µs of CPU, far less than token-injector, so the upstream never limits it; the
 * "direct" row (wrk -> upstream, both on core 0) shows core 0's ceiling. The nginx proxy is fast
 * enough that core 0 and the round trip between the cores may bound its req/s (its "CPU cores"
 * then stays below 1); its CPU µs/req still holds.
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
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
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
const TARGET_CPU_US = 90;
const HOST = 'bench.local';
const TOKEN = `bench-token-${randomBytes(12).toString('hex')}`;
/** Exactly 100 bytes, no characters that need escaping in nginx.conf. */
const BODY = '0123456789'.repeat(10);
const PROXY_CORE = '1';
const LOAD_CORE = '0';

type TargetName = 'direct' | 'token-injector' | 'nginx' | 'node-minimal';
const ALL_TARGETS: readonly TargetName[] = ['direct', 'token-injector', 'nginx', 'node-minimal'];
/**
 * Which targets run. node-minimal (opt-in) is the floor for any Node proxy on this machine:
 * node:http + an undici Pool injecting the header, without routing, metrics or logging.
 */
const TARGETS = envTargets('BENCH_TARGETS', ['direct', 'token-injector', 'nginx']);

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

/** The upstream's processes, set once it runs; their CPU time is accounted to the load core. */
let upstreamPids: () => number[] = () => [];

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

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
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

function httpGet(port: number, urlPath: string, headers: Record<string, string>): Promise<HttpResult> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: '127.0.0.1', port, path: urlPath, method: 'GET', headers, agent: false, timeout: 5_000 },
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
  pin: boolean;
  notes: string[];
}

async function ensureTools(): Promise<Tools> {
  const notes: string[] = [];
  let wrk = await which('wrk');
  let nginx = await which('nginx');
  if (!wrk || !nginx) {
    const missing = [!nginx && 'nginx-light', !wrk && 'wrk'].filter(Boolean).join(' ');
    if (process.getuid?.() === 0) {
      log(`installing ${missing} with apt-get (missing)...`);
      const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
      const upd = await run('apt-get', ['update'], 300_000, env);
      const inst =
        upd.code === 0
          ? await run(
              'apt-get',
              ['install', '-y', '--no-install-recommends', 'nginx-light', 'wrk'],
              300_000,
              env,
            )
          : upd;
      if (inst.code !== 0) {
        const tail = (inst.stderr || inst.stdout).trim().split('\n').slice(-5).join('\n  ');
        notes.push(`apt-get install nginx-light wrk failed (exit ${inst.code}):\n  ${tail}`);
      }
    } else {
      notes.push(`${missing} missing and not root: run 'sudo apt-get install -y nginx-light wrk'`);
    }
    wrk = await which('wrk');
    nginx = await which('nginx');
  }
  if (!wrk) {
    for (const n of notes) log(n);
    throw new Error("wrk is missing and could not be installed; install it with 'apt-get install -y wrk'");
  }
  if (!nginx) notes.push('nginx is missing and could not be installed: the nginx column is skipped');

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
  return { wrk, nginx, pin, notes };
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

async function startTokenServer(): Promise<{ server: http.Server; port: number; count: () => number }> {
  let count = 0;
  const server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      count++;
      if (req.method !== 'POST') {
        res.writeHead(405).end();
        return;
      }
      const body = JSON.stringify({ access_token: TOKEN, token_type: 'Bearer', expires_in: 3600 });
      res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' }).end(body);
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  return { server, port: (server.address() as net.AddressInfo).port, count: () => count };
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

async function startInjector(
  tools: Tools,
  dir: string,
  tokenPort: number,
  upstreamPort: number,
): Promise<{ child: ChildProcess; port: number; adminPort: number; logFile: string }> {
  const port = await freePort();
  const adminPort = await freePort();
  const config = {
    listen: `127.0.0.1:${port}`,
    admin: { listen: `127.0.0.1:${adminPort}` },
    log: { level: LOG_LEVEL },
    unmatched: 'deny',
    shutdown_timeout: '2s',
    credentials: {
      bench: {
        token_endpoint: `http://127.0.0.1:${tokenPort}/token`,
        grant_type: 'client_credentials',
        client_id: 'bench-client',
        client_secret: 'bench-secret',
        prefetch: true,
      },
    },
    routes: [
      {
        name: 'bench',
        match: { host: HOST },
        upstream: `http://127.0.0.1:${upstreamPort}`,
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
    PROXY_CORE,
    process.execPath,
    [...PROXY_NODE_ARGS, path.join(REPO, 'dist/cli/main.js'), 'run', '--config', configFile],
    tools.pin,
  );
  const child = track(spawn(cmd, args, { cwd: REPO, stdio: ['ignore', out, err] }));
  closeSync(out);
  closeSync(err);
  await waitFor(
    'token-injector /readyz',
    20_000,
    async () => (await httpGet(adminPort, '/readyz', {})).status === 200,
    child,
  );
  return { child, port, adminPort, logFile };
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
  const oursOnLoadBefore = (await selfAndReapedTicks()) + (await sampleCpu(upstreamPids())).ticks;
  const before = await sampleCpu(pids);
  const t0 = process.hrtime.bigint();
  const w = await runWrk(tools, script, target, connections, DURATION_S);
  const wallS = Number(process.hrtime.bigint() - t0) / 1e9;
  const after = await sampleCpu(pids);
  const oursOnLoadAfter = (await selfAndReapedTicks()) + (await sampleCpu(upstreamPids())).ticks;
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
    otherOnProxyCore: Math.max(
      0,
      (coreAfter.busy - coreBefore.busy - (after.ticks - before.ticks)) / clkTck / wallS,
    ),
    steal: (coreAfter.steal - coreBefore.steal) / clkTck / wallS,
    otherOnLoadCore: Math.max(
      0,
      (loadAfter.busy -
        loadBefore.busy +
        loadAfter.steal -
        loadBefore.steal -
        (oursOnLoadAfter - oursOnLoadBefore)) /
        clkTck /
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

/** One row per target: the median over rounds of each number. */
function summarize(all: Measurement[], targets: TargetName[], connections: number): string[][] {
  const rows: string[][] = [
    [
      'target',
      'req/s',
      'p50',
      'p99',
      'CPU µs/req',
      'CPU cores',
      'RSS MiB',
      'status>=400/errors',
      'noise c1/c0',
    ],
  ];
  for (const t of targets) {
    const ms = all.filter((m) => m.target === t && m.connections === connections);
    if (ms.length === 0) continue;
    const pick = (f: (m: Measurement) => number | undefined) => {
      const xs = ms.map(f).filter((x): x is number => x !== undefined && !Number.isNaN(x));
      return xs.length ? median(xs) : undefined;
    };
    const cpu = pick((m) => m.cpuUsPerReq);
    const cores = pick((m) => m.cpuCores);
    const rss = pick((m) => m.rssMiB);
    rows.push([
      t,
      Math.round(pick((m) => m.reqPerSec)!).toString(),
      fmtUs(pick((m) => m.p50Us)!),
      fmtUs(pick((m) => m.p99Us)!),
      cpu === undefined ? 'n/a' : cpu.toFixed(1),
      cores === undefined ? 'n/a' : cores.toFixed(2),
      rss === undefined ? 'n/a' : rss.toFixed(1),
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
  const budgetS =
    ROUNDS * CONNECTIONS.length * targetsCount * (WARMUP_S + DURATION_S + QUIET_WAIT_S + 5) + 90;
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
      upstreamPids = () => [up.pid!, ...childPids(up.pid!)];
    } else {
      log('NOTE: no nginx: the upstream is a node http server (slower; the "direct" row shows its ceiling)');
      const up = await startNodeUpstream(tools, upstreamPort);
      upstreamPids = () => [up.pid!];
    }

    // Self-check of the upstream's guard: without the token it must refuse.
    const unauth = await httpGet(upstreamPort, '/bench', {});
    if (unauth.status !== 401) throw new Error(`upstream without a token answered ${unauth.status}, not 401`);

    const injector = await startInjector(tools, path.join(work, 'token-injector'), token.port, upstreamPort);
    const candidates: Target[] = [
      {
        name: 'direct',
        port: upstreamPort,
        headers: [`Host: ${HOST}`, `Authorization: Bearer ${TOKEN}`],
        cpuPids: () => [],
        rssPid: () => undefined,
      },
      {
        name: 'token-injector',
        port: injector.port,
        headers: [`Host: ${HOST}`],
        cpuPids: () => [injector.child.pid!],
        rssPid: () => injector.child.pid,
        child: injector.child,
      },
    ];

    if (tools.nginx && TARGETS.includes('nginx')) {
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
      candidates.push({
        name: 'nginx',
        port: nginxPort,
        headers: [`Host: ${HOST}`],
        cpuPids: () => [master, ...childPids(master)],
        rssPid: () => childPids(master)[0],
        child: proxy,
      });
    }
    if (TARGETS.includes('node-minimal')) {
      const minimal = await startMinimalProxy(tools, upstreamPort);
      candidates.push({
        name: 'node-minimal',
        port: minimal.port,
        headers: [`Host: ${HOST}`],
        cpuPids: () => [minimal.child.pid!],
        rssPid: () => minimal.child.pid,
        child: minimal.child,
      });
    }
    // In the order asked for.
    const targets = TARGETS.flatMap((n) => candidates.filter((t) => t.name === n));

    for (const t of targets) await checkTarget(t);
    log(`all targets answer 200 with the 100-byte body; upstream refuses requests without the token`);
    log(
      `rounds ${ROUNDS}, connections ${CONNECTIONS.join(',')}, warm-up ${WARMUP_S} s, measure ${DURATION_S} s, ` +
        `pinned ${tools.pin ? `(proxy core ${PROXY_CORE}, wrk+upstream core ${LOAD_CORE})` : 'NO'}`,
    );

    const runs: Measurement[] = [];
    for (let round = 1; round <= ROUNDS; round++) {
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
              (m.badStatus || m.errors ? `, ${m.badStatus} status>=400, ${m.errors} errors` : '') +
              `, noise core ${PROXY_CORE} ${pct(proxyNoise(m))}, core ${LOAD_CORE} ${pct(m.otherOnLoadCore)}`,
          );
        }
      }
    }

    // Cross-checks from the proxy itself: its metrics and its log.
    const metrics = await httpGet(injector.adminPort, '/metrics', {});
    const proxied = metrics.body
      .split('\n')
      .filter((l) => l.startsWith('token_injector_proxied_requests_total{'))
      .map((l) => l.trim());
    const tokenRequests = token.count();
    await stopAll();
    const logScan = await scanLog(injector.logFile);

    const names = targets.map((t) => t.name);
    process.stdout.write('\n');
    process.stdout.write(
      `token-injector benchmark: ${os.cpus()[0]?.model ?? 'cpu?'}, ${cpus} CPUs, ` +
        `node ${process.version}, ${DURATION_S} s runs after ${WARMUP_S} s warm-up, ${ROUNDS} round(s)` +
        (ROUNDS > 1 ? ' (medians)' : '') +
        `\n100-byte GET responses; each proxy injects a cached token; nginx access_log ` +
        `${NGINX_ACCESS_LOG ? 'on (buffered)' : 'off'}; token-injector logging at ${LOG_LEVEL}${LOG_LEVEL === 'info' ? ' (one line per request)' : ''}\n`,
    );
    for (const c of CONNECTIONS) {
      process.stdout.write(`\n${c} connection${c === 1 ? '' : 's'}:\n${table(summarize(runs, names, c))}\n`);
    }

    const at64 = runs.filter((m) => m.target === 'token-injector' && m.connections === 64);
    let verdict = 'not measured (64 connections not in BENCH_CONNECTIONS)';
    let pass = true;
    if (at64.length) {
      const cpu = median(at64.map((m) => m.cpuUsPerReq ?? Number.NaN));
      pass = cpu <= TARGET_CPU_US;
      verdict = `${cpu.toFixed(1)} µs CPU/request at 64 connections: ${pass ? 'PASS' : 'FAIL'} (target <= ${TARGET_CPU_US} µs)`;
    }
    process.stdout.write(`\ntoken-injector: ${verdict}\n`);
    process.stdout.write(
      `token-injector self-report: ${tokenRequests} token request(s); ${logScan.lines} log lines ` +
        `${JSON.stringify(logScan.byLevel)}; logged statuses ${JSON.stringify(logScan.statuses)}` +
        ` (499 = wrk closed a connection mid-request when a run ended)\n` +
        `  ${proxied.join('\n  ')}\n`,
    );
    for (const s of logScan.samples) process.stdout.write(`  log: ${s}\n`);
    const wrkRuns = WARMUP_S > 0 ? 2 : 1;
    const max499 = ROUNDS * wrkRuns * CONNECTIONS.reduce((a, c) => a + c, 0);
    if ((logScan.statuses['499'] ?? 0) > max499) {
      process.stdout.write(
        `WARNING: more 499s (${logScan.statuses['499']}) than wrk runs can explain (${max499})\n`,
      );
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
          injector: { tokenRequests, log: logScan, metrics: proxied },
        },
        null,
        2,
      )}\n`,
    );
    if (!KEEP_LOGS) {
      await rm(injector.logFile, { force: true });
      await rm(path.join(work, 'nginx-proxy', 'access.log'), { force: true });
    }
    log(`results: ${resultsFile} (${((Date.now() - started) / 1000).toFixed(0)} s in all)`);
    return 0;
  } finally {
    await stopAll();
    const closed = new Promise<void>((resolve) => token.server.close(() => resolve()));
    token.server.closeAllConnections();
    await closed;
  }
}

/** The upstream: 100 bytes, but only to requests carrying the expected token; 401 otherwise. */
function upstreamHttp(port: number): string {
  return `  server {
    listen 127.0.0.1:${port} backlog=4096;
    location / {
      default_type text/plain;
      if ($http_authorization != "Bearer ${TOKEN}") { return 401; }
      return 200 "${BODY}";
    }
  }`;
}

/** Fallback upstream when nginx is unavailable: the same contract in plain node:http. */
async function startNodeUpstream(tools: Tools, port: number): Promise<ChildProcess> {
  const src = `
    const http = require('node:http');
    const [port, auth, body] = process.argv.slice(1);
    http.createServer({ keepAliveTimeout: 75000 }, (req, res) => {
      req.resume();
      const ok = req.headers.authorization === auth;
      res.writeHead(ok ? 200 : 401, { 'content-type': 'text/plain', 'content-length': ok ? body.length : 0 });
      res.end(ok ? body : undefined);
    }).listen(Number(port), '127.0.0.1');`;
  const [cmd, args] = pinned(
    LOAD_CORE,
    process.execPath,
    ['-e', src, String(port), `Bearer ${TOKEN}`, BODY],
    tools.pin,
  );
  const child = track(spawn(cmd, args, { stdio: ['ignore', 'ignore', 'inherit'] }));
  await waitFor('node upstream', 10_000, () => canConnect(port), child);
  return child;
}

/**
 * The floor for a Node proxy (opt-in target node-minimal): node:http in, an undici Pool out,
 * the header injected, hop-by-hop headers dropped; no routing, metrics, logging or abort handling.
 */
async function startMinimalProxy(
  tools: Tools,
  upstreamPort: number,
): Promise<{ child: ChildProcess; port: number }> {
  const port = await freePort();
  const src = `
    const http = require('node:http');
    const { Pool } = require('undici');
    const [port, upstream, auth] = process.argv.slice(1);
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
  const [cmd, args] = pinned(
    PROXY_CORE,
    process.execPath,
    [...PROXY_NODE_ARGS, '-e', src, String(port), `http://127.0.0.1:${upstreamPort}`, `Bearer ${TOKEN}`],
    tools.pin,
  );
  // cwd: the repository, so require('undici') finds the project's copy.
  const child = track(spawn(cmd, args, { cwd: REPO, stdio: ['ignore', 'ignore', 'inherit'] }));
  await waitFor('node-minimal proxy', 10_000, () => canConnect(port), child);
  return { child, port };
}

/** nginx as the comparison proxy: inject a static header, keep-alive connections upstream. */
function proxyHttp(port: number, upstreamPort: number): string {
  return `  upstream bench_upstream {
    server 127.0.0.1:${upstreamPort};
    keepalive 64;
    keepalive_requests 1000000;
  }
  server {
    listen 127.0.0.1:${port} backlog=4096;
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
