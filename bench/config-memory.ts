/**
 * What loading a 10 000-route configuration costs (issue 12): the YAML parse of the old loader
 * (`yaml`'s parseDocument + toJS, as src/config/load.ts did) against the current one (js-yaml,
 * src/config/yaml.ts), alone and followed by validation (`parseConfigText`).
 *
 *   node --expose-gc --import tsx bench/config-memory.ts
 *
 * The configuration is generated in block style, as people write it: a third each of exact hosts,
 * `*.` wildcards and path prefixes under one host (about 1.3 MB). Each measurement runs in a fresh
 * child process, so one's garbage and allocator state never reach the next: the time of the one
 * load (as at start-up, JIT warm-up included), the peak RSS above the RSS before the load, and
 * after full collections the V8 heap and the RSS once the parsed tree is dropped (with the
 * validated config kept, for the "+ validate" rows): V8 keeps much of the heap it grew to, so a
 * high peak stays in an idle sidecar's RSS.
 * A second child per row runs with `--max-old-space-size=48` and says whether the load fits.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { LineCounter, parseDocument } from 'yaml';
import type { ConfigSources } from '../src/config/interpolate.js';
import { parseConfigText } from '../src/config/load.js';
import { validateConfig } from '../src/config/validate.js';
import { parseYaml } from '../src/config/yaml.js';

const ROUTES = 10_000;
const MODES = ['yaml', 'js-yaml', 'yaml + validate', 'js-yaml + validate'] as const;
type Mode = (typeof MODES)[number];
const CHILD_TIMEOUT_MS = 60_000;
const SMALL_HEAP_MB = 48;
/** Configs kept alive, as a running sidecar keeps its config. */
const held: unknown[] = [];

interface Result {
  readonly ms: number;
  /** RSS before the load (Node, tsx and the modules imported). */
  readonly baseRss: number;
  readonly peakRss: number;
  readonly heap: number;
  readonly rss: number;
}

const sources: ConfigSources = {
  env: {},
  readFile: () => {
    throw new Error('no file is read');
  },
};

if (process.argv[2] === '--child') {
  const result = await measure(process.argv[3] as Mode, process.argv[4]!);
  process.stdout.write(`${JSON.stringify(result)}\n`);
  process.exit(0);
} else {
  main();
}

function main(): void {
  if (typeof globalThis.gc !== 'function') {
    console.error('run with: node --expose-gc --import tsx bench/config-memory.ts');
    process.exit(2);
  }
  const dir = mkdtempSync(join(tmpdir(), 'config-memory-'));
  const file = join(dir, 'config.yaml');
  const text = configText(ROUTES);
  writeFileSync(file, text);
  const self = fileURLToPath(import.meta.url);
  const mib = (bytes: number) => (bytes / 2 ** 20).toFixed(1);
  console.log(
    `${ROUTES} routes, ${(text.length / 1e6).toFixed(2)} MB of YAML; MiB, "+" = above the RSS before the load; heap and RSS after full GCs`,
  );
  console.log(
    `${'loader'.padEnd(20)} ${'ms'.padStart(6)} ${'RSS before'.padStart(10)} ${'peak RSS +'.padStart(10)} ${'heap'.padStart(7)} ${'RSS +'.padStart(7)}  ${`fits in --max-old-space-size=${SMALL_HEAP_MB}`}`,
  );
  try {
    for (const mode of MODES) {
      const r = runChild(self, mode, file, []);
      const small = runChild(self, mode, file, [`--max-old-space-size=${SMALL_HEAP_MB}`]);
      if (!r) throw new Error(`${mode} failed`);
      console.log(
        `${mode.padEnd(20)} ${r.ms.toFixed(0).padStart(6)} ${mib(r.baseRss).padStart(10)} ${mib(r.peakRss - r.baseRss).padStart(10)} ${mib(r.heap).padStart(7)} ${mib(r.rss - r.baseRss).padStart(7)}  ${small ? 'yes' : 'no'}`,
      );
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function runChild(self: string, mode: Mode, file: string, flags: string[]): Result | undefined {
  const out = spawnSync(process.execPath, [...flags, ...process.execArgv, self, '--child', mode, file], {
    encoding: 'utf8',
    timeout: CHILD_TIMEOUT_MS,
  });
  if (out.status !== 0) return undefined;
  return JSON.parse(out.stdout.trim().split('\n').at(-1)!) as Result;
}

async function measure(mode: Mode, file: string): Promise<Result> {
  const text = readFileSync(file, 'utf8');
  await collect();
  const baseRss = process.memoryUsage().rss;
  const ms = timedLoad(mode, text);
  await collect();
  const m = process.memoryUsage();
  const result = {
    ms,
    baseRss,
    peakRss: process.resourceUsage().maxRSS * 1024,
    heap: m.heapUsed,
    rss: m.rss,
  };
  return result;
}

function timedLoad(mode: Mode, text: string): number {
  const start = performance.now();
  const loaded = load(mode, text);
  const ms = performance.now() - start;
  // A parsed tree is dropped, as the loader drops it once validated.
  if (mode.endsWith('validate')) held.push(loaded);
  return ms;
}

/** The parsed tree, or the validated config; throws when the text is not what was generated. */
function load(mode: Mode, text: string): unknown {
  if (mode === 'js-yaml + validate') {
    const { config, problems } = parseConfigText(text, sources);
    if (!config) throw new Error(JSON.stringify(problems.slice(0, 3)));
    return config;
  }
  const tree = mode.startsWith('js-yaml') ? parseYaml(text).value : oldParse(text);
  if (!mode.endsWith('validate')) return tree;
  const { config, problems } = validateConfig(tree, sources);
  if (!config) throw new Error(JSON.stringify(problems.slice(0, 3)));
  return config;
}

/** The YAML step of src/config/load.ts before js-yaml. */
function oldParse(text: string): unknown {
  const doc = parseDocument(text, { prettyErrors: false, uniqueKeys: true, lineCounter: new LineCounter() });
  if (doc.errors.length > 0) throw new Error(doc.errors[0]!.message);
  return doc.toJS({ maxAliasCount: 100 });
}

async function collect(): Promise<void> {
  for (let i = 0; i < 4; i++) {
    globalThis.gc!();
    await new Promise((resolve) => setImmediate(resolve));
  }
}

function configText(routes: number): string {
  let out = 'listen: 127.0.0.1:8080\nlog:\n  level: warn\ncredentials:\n';
  for (const name of ['orders', 'billing', 'profile']) {
    out += `  ${name}:\n    token_endpoint: https://idp.example.test/oauth2/token\n    grant_type: client_credentials\n    client_id: ${name}-client\n    client_secret: not-a-secret\n    scope: [${name}.read]\n`;
  }
  out += 'routes:\n';
  for (let i = 0; i < routes; i++) {
    out += `  - name: r${i}\n    match:\n`;
    if (i % 3 === 0) out += `      host: svc-${i}.example.test\n`;
    else if (i % 3 === 1) out += `      host: '*.zone-${i}.example.test'\n`;
    else out += `      host: api.example.test\n      path_prefix: /p${i}/\n`;
    out += `    upstream: https://u${i % 4}.example.test\n    credential: ${['orders', 'billing', 'profile'][i % 3]}\n`;
    if (i % 7 === 0) out += `    scope: extra.${i % 3}\n`;
  }
  return out;
}
