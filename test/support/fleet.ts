/**
 * A fleet of real `token-injector run` processes sharing one Redis (issue 11), and what the fleet
 * tests need around it: steady paced traffic over every replica, metrics read from each admin
 * listener, and bounded waits. Secrets and cache keys reach the processes through the environment
 * (`${env:…}`), never inline in the configuration file.
 */
import { randomBytes } from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';
import { type Agent, request } from 'undici';
import { type RunningCli, type SpawnOptions, startRun } from './cli-process.js';

/** The environment variable the fleet configurations read their cache key from. */
export const CACHE_KEY_ENV = 'TI_FLEET_CACHE_KEY';

/** A fresh 32-byte key, base64, as `openssl rand -base64 32` makes one. */
export function newCacheKey(): string {
  return randomBytes(32).toString('base64');
}

/**
 * The `shared_cache` section. A 1 s command timeout instead of the 200 ms default: the tests run on a
 * loaded 2-core machine, and a command timing out would make a replica fetch its own token, which is
 * the documented fallback, not what these tests are about.
 */
export function sharedCacheSection(
  url: string,
  extra: Record<string, unknown> = {},
): Record<string, unknown> {
  return { url, encryption_keys: [`\${env:${CACHE_KEY_ENV}}`], timeout: '1s', ...extra };
}

/** `promise`, or a rejection naming `what` after `ms`. */
export async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Polls `check` every 25 ms until it returns true, at most `ms`: only for states that give no event
 * (a subscriber count in Redis, a metric).
 */
export async function eventually(check: () => Promise<boolean>, ms: number, what: string): Promise<void> {
  const until = Date.now() + ms;
  for (;;) {
    if (await check()) return;
    if (Date.now() >= until) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await delay(25);
  }
}

/**
 * `n` replicas of `run --config configPath`, started side by side. Resolves once each is ready and
 * connected to the shared cache (its `shared_cache_up` log line), and `connected()` (e.g. a
 * {@link clientsOn} count: each replica opens a command and a pub/sub connection) says every
 * connection is open, so no replica of the fleet is still on its own when a test begins.
 */
export async function startFleet(
  n: number,
  configPath: string,
  opts: SpawnOptions & { connected: () => Promise<boolean> },
): Promise<RunningCli[]> {
  const fleet = await Promise.all(Array.from({ length: n }, () => startRun(configPath, opts)));
  await Promise.all(
    fleet.map((r, i) =>
      within(r.proc.waitForEvent('shared_cache_up'), 15_000, `replica ${i} shared_cache_up`),
    ),
  );
  await eventually(opts.connected, 10_000, 'every replica connected to Redis');
  return fleet;
}

/** Connections a server has open, besides the redis-cli asking (`INFO clients`). */
export async function clientsOn(cli: (...args: string[]) => Promise<string>): Promise<number> {
  const info = await cli('INFO', 'clients');
  return Number(/^connected_clients:(\d+)/m.exec(info)?.[1] ?? 0) - 1;
}

/** A sample's value in a replica's /metrics (0 when absent), e.g. ('token_injector_up', '{credential="a"}'). */
export async function metric(adminUrl: string, name: string, labels = ''): Promise<number> {
  const res = await request(`${adminUrl}/metrics`);
  const text = await res.body.text();
  const line = text.split('\n').find((l) => l.startsWith(`${name}${labels} `));
  return line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : 0;
}

export interface TrafficResult {
  /** Every answer: which replica, and its status (0 for a request that failed at the client). */
  answers: { replica: number; status: number }[];
}

/**
 * Steady traffic: every replica gets a request every `intervalMs` (one at a time per replica), each
 * marked with `x-replica: <index>` so the upstream knows who sent it. Paced on purpose: it models
 * apps calling their sidecars, and leaves CPU for the replicas' timers on a 2-core machine.
 */
export function steadyTraffic(
  fleet: readonly { proxyUrl: string }[],
  opts: { host: string; intervalMs: number; dispatcher: Agent; path?: string },
): { stop(): Promise<TrafficResult>; readonly answers: TrafficResult['answers'] } {
  const answers: TrafficResult['answers'] = [];
  let running = true;
  const loops = fleet.map(async (replica, i) => {
    while (running) {
      let status = 0;
      try {
        const res = await request(`${replica.proxyUrl}${opts.path ?? '/v1/orders'}`, {
          headers: { host: opts.host, 'x-replica': String(i) },
          dispatcher: opts.dispatcher,
        });
        status = res.statusCode;
        await res.body.dump();
      } catch {
        status = 0;
      }
      answers.push({ replica: i, status });
      if (running) await delay(opts.intervalMs);
    }
  });
  return {
    answers,
    async stop() {
      running = false;
      await Promise.all(loops);
      return { answers };
    },
  };
}

/**
 * Records when each item is pushed to a recording array (`fake.requests`, `up.requests`), from now
 * on: the returned array holds Date.now() of every later push, in order.
 */
export function arrivalTimes<T>(array: T[]): number[] {
  const times: number[] = [];
  const push = array.push.bind(array);
  array.push = (...items: T[]): number => {
    for (const _ of items) times.push(Date.now());
    return push(...items);
  };
  return times;
}

/** Every warning and error the replicas logged, one line each: what a failed assertion should show. */
export function troubles(fleet: readonly RunningCli[]): string {
  return fleet
    .flatMap((r, i) =>
      r.proc.logs
        .filter((l) => typeof l['level'] === 'number' && (l['level'] as number) >= 40)
        .map((l) => `replica ${i}: ${JSON.stringify(l)}`),
    )
    .join('\n');
}
