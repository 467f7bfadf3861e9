/**
 * Memory per configured route (issue 12: at most 2 KB per route with 10 000 routes).
 *
 *   node --expose-gc --import tsx bench/routes-memory.ts
 *
 * Each variant runs in a fresh child process, once with 1 route and once with 10 000 (exact hosts,
 * `*.` wildcards and path prefixes mixed), so one measurement's garbage and allocator state never
 * reach the next. A child validates the configuration as the loader does (`validateConfig`, the
 * step after YAML parsing), starts the real proxy with `startTokenInjector` (as
 * test/support/injector.ts does), forces full collections and reports the V8 heap in use and the
 * RSS. Per route = (10 000 routes − 1 route) / 9 999, for the validated configuration alone and
 * for the running proxy on top of it. No route carries traffic: this is the cost of routes that
 * are configured and idle.
 *
 * Variants:
 *   shared-upstreams  3 credentials (3 scope overrides), 4 upstream origins
 *   own-upstreams     the same, but every route has its own upstream origin
 *   own-upstreams-ca  own origins, every route trusting the same extra CA (`tls.ca_file`)
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { rootCertificates } from 'node:tls';
import { fileURLToPath } from 'node:url';
import { startTokenInjector } from '../src/app.js';
import type { Config } from '../src/config/types.js';
import { validateConfig } from '../src/config/validate.js';

const ROUTES = 10_000;
const VARIANTS = ['shared-upstreams', 'own-upstreams', 'own-upstreams-ca'] as const;
type Variant = (typeof VARIANTS)[number];
/** Each child is killed after this long; all six together stay well under 30 s. */
const CHILD_TIMEOUT_MS = 20_000;

interface Sample {
  readonly heap: number;
  readonly rss: number;
}

interface ChildResult {
  readonly base: Sample;
  readonly config: Sample;
  readonly started: Sample;
}

if (process.argv[2] === '--child') {
  const result = await measure(process.argv[3] as Variant, Number(process.argv[4]), process.argv[5]!);
  process.stdout.write(`${JSON.stringify(result)}\n`);
  process.exit(0);
} else {
  main();
}

function main(): void {
  if (typeof globalThis.gc !== 'function') {
    console.error('run with: node --expose-gc --import tsx bench/routes-memory.ts');
    process.exit(2);
  }
  const dir = mkdtempSync(join(tmpdir(), 'routes-memory-'));
  const caFile = join(dir, 'ca.pem');
  // Any PEM certificate will do: no connection is made.
  writeFileSync(caFile, `${rootCertificates[0]}\n`);
  const self = fileURLToPath(import.meta.url);
  const kb = (bytes: number) => (bytes / 1024).toFixed(2).padStart(8);
  console.log(`memory per route (KiB), ${ROUTES} routes vs 1, no traffic; target ≤ 2 KiB`);
  console.log(
    `${'variant'.padEnd(18)} ${'config heap'.padStart(12)} ${'proxy heap'.padStart(12)} ${'total heap'.padStart(12)} ${'total RSS'.padStart(12)}`,
  );
  try {
    for (const variant of VARIANTS) {
      const [one, many] = [1, ROUTES].map((n) => runChild(self, variant, n, caFile)) as [
        ChildResult,
        ChildResult,
      ];
      const per = (pick: (r: ChildResult) => number) => (pick(many) - pick(one)) / (ROUTES - 1);
      const configHeap = per((r) => r.config.heap - r.base.heap);
      const proxyHeap = per((r) => r.started.heap - r.config.heap);
      const totalHeap = per((r) => r.started.heap - r.base.heap);
      const totalRss = per((r) => r.started.rss - r.base.rss);
      console.log(
        `${variant.padEnd(18)} ${kb(configHeap).padStart(12)} ${kb(proxyHeap).padStart(12)} ${kb(totalHeap).padStart(12)} ${kb(totalRss).padStart(12)}`,
      );
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function runChild(self: string, variant: Variant, routes: number, caFile: string): ChildResult {
  const out = spawnSync(
    process.execPath,
    [...process.execArgv, self, '--child', variant, String(routes), caFile],
    { encoding: 'utf8', timeout: CHILD_TIMEOUT_MS },
  );
  if (out.status !== 0) {
    throw new Error(`${variant} with ${routes} routes failed (${out.status ?? out.signal}):\n${out.stderr}`);
  }
  return JSON.parse(out.stdout.trim().split('\n').at(-1)!) as ChildResult;
}

async function measure(variant: Variant, routes: number, caFile: string): Promise<ChildResult> {
  const base = await sample();
  let config: Config | undefined = buildConfig(variant, routes, caFile);
  const afterConfig = await sample();
  const injector = await startTokenInjector(config, { logDestination: sink() });
  config = undefined;
  const started = await sample();
  await injector.close();
  return { base, config: afterConfig, started };
}

function buildConfig(variant: Variant, routes: number, caFile: string): Config {
  const credentials: Record<string, unknown> = {};
  for (const name of ['orders', 'billing', 'profile']) {
    credentials[name] = {
      // Never called: no route carries traffic and nothing is prefetched.
      token_endpoint: 'http://127.0.0.1:9/token',
      grant_type: 'client_credentials',
      client_id: `${name}-client`,
      client_secret: 'not-a-secret',
      scope: [`${name}.read`],
    };
  }
  const list: Record<string, unknown>[] = [];
  for (let i = 0; i < routes; i++) {
    // A third each: exact hosts, `*.` wildcards, and path prefixes under one host.
    const match =
      i % 3 === 0
        ? { host: `svc-${i}.example.test` }
        : i % 3 === 1
          ? { host: `*.zone-${i}.example.test` }
          : { host: 'api.example.test', path_prefix: `/p${i}/` };
    const shared = variant === 'shared-upstreams';
    list.push({
      name: `r${i}`,
      match,
      upstream: shared ? `https://upstream-${i % 4}.example.test` : `https://u${i}.example.test`,
      credential: ['orders', 'billing', 'profile'][i % 3],
      ...(i % 7 === 0 ? { scope: `extra.${i % 3}` } : {}),
      ...(variant === 'own-upstreams-ca' ? { tls: { ca_file: caFile } } : {}),
    });
  }
  const raw = {
    listen: '127.0.0.1:0',
    admin: { listen: '127.0.0.1:0' },
    log: { level: 'warn' },
    credentials,
    routes: list,
  };
  const { config, problems } = validateConfig(raw, {
    env: process.env,
    readFile: (p) => readFileSync(p, 'utf8'),
    baseDir: process.cwd(),
  });
  if (!config) throw new Error(problems.map((p) => `${p.path}: ${p.message}`).join('\n'));
  return config;
}

async function sample(): Promise<Sample> {
  // Several full collections, with turns of the event loop between them for finalizers.
  for (let i = 0; i < 4; i++) {
    globalThis.gc!();
    await new Promise((resolve) => setImmediate(resolve));
  }
  const m = process.memoryUsage();
  return { heap: m.heapUsed, rss: m.rss };
}

function sink(): Writable {
  return new Writable({ write: (_chunk, _enc, done) => done() });
}
