/**
 * Bounded soak and outage runs of the real proxy (in-process), loopback only:
 *
 * 1. 100 000 requests (after a 5 000-request warm-up) at 64 in flight, with a background refresh
 *    every second (dozens of them) and faults injected into those refreshes: 503s, resets, a
 *    hang that times a refresh out, a permanent 400, a 500. Every response must be a 200, the
 *    upstream must only ever see tokens the fake issued and that had not expired, the proxy's
 *    sockets must all close again and the heap must not grow.
 * 2. A load run during which the token endpoint resets every connection for 2.5 s, longer than
 *    what is left of the cached token's usable life: requests succeed, or fail fast with a 503
 *    JSON body and Retry-After, no expired token ever reaches the upstream, and the proxy recovers
 *    on its own once the endpoint is back.
 */
import type http from 'node:http';
import { Pool } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type Behavior,
  type FakeTokenEndpoint,
  startFakeTokenEndpoint,
} from '../support/fake-token-endpoint.js';
import { watchSecret } from '../support/leak-watch.js';
import {
  BODY_100,
  type FastUpstream,
  forceGc,
  type LeanInjector,
  ledgerFor,
  startFastUpstream,
  startLeanInjector,
  type TokenLedger,
  tcpSocketResources,
  tcpSockets,
} from '../support/soak.js';

const CONCURRENCY = 64;
const WARMUP_REQUESTS = 5_000;
const SOAK_REQUESTS = 100_000;
const EXPIRES_IN_S = 3;
/**
 * The soak's tokens live 10 s: usable 9 s (the proxy keeps 1 s back). With refresh_ahead 0.1 the
 * refresh point (0.45–0.9 s) is under the proxy's floor of 1 s between refreshes (token-source.ts
 * #scheduleRefresh), so each token is refreshed 1 s after it came: as many refreshes, and as many
 * failed ones, as with 3 s tokens. What 3 s tokens lacked is slack: they had 1 s between the
 * refresh and the end of their usable life, less the fault being served (up to 0.35 s), so one
 * event-loop stall of 0.7 s on a loaded machine left requests without a token (503/502: the proxy
 * rightly serves no token in its last second, and fails fast while the endpoint is failing). Here a
 * failed refresh has about 8 s to be retried, which no stall short of a hung machine exhausts.
 */
const SOAK_EXPIRES_IN_S = 10;
const HEAP_GROWTH_LIMIT = 30 * 1024 * 1024;
const HOST = 'soak.test';

let fake: FakeTokenEndpoint;
let ledger: TokenLedger;
let upstream: FastUpstream;

/** What the upstream saw, for the run under way. */
interface UpstreamStats {
  requests: number;
  /** Requests whose token the fake never issued (or without one). */
  unknown: number;
  /** Requests whose token had expired (for its issuer) when it arrived. */
  expired: number;
  minRemainingMs: number;
  tokens: Set<string>;
}

let stats: UpstreamStats;

function freshStats(): UpstreamStats {
  return { requests: 0, unknown: 0, expired: 0, minRemainingMs: Number.POSITIVE_INFINITY, tokens: new Set() };
}

function verify(req: http.IncomingMessage): void {
  const now = Date.now();
  stats.requests++;
  const auth = req.headers.authorization;
  const token = auth?.startsWith('Bearer ') ? auth.slice('Bearer '.length) : undefined;
  const issued = token === undefined ? undefined : ledger.issued.get(token);
  if (!token || !issued) {
    stats.unknown++;
    return;
  }
  stats.tokens.add(token);
  const remaining = issued.expiresAt - now;
  if (remaining <= 0) stats.expired++;
  if (remaining < stats.minRemainingMs) stats.minRemainingMs = remaining;
}

beforeAll(async () => {
  fake = await startFakeTokenEndpoint();
  ledger = ledgerFor(fake, { kind: 'token', expiresIn: EXPIRES_IN_S });
  upstream = await startFastUpstream(verify);
});

afterAll(async () => {
  for (const token of fake.issuedTokens) watchSecret(token);
  await upstream.close();
  await fake.close();
});

function credential(extra: Record<string, unknown>) {
  return {
    token_endpoint: fake.url,
    grant_type: 'client_credentials',
    client_id: 'soak-client',
    client_secret: 'soak-secret-0123456789',
    ...extra,
  };
}

async function startProxy(name: string, extra: Record<string, unknown>): Promise<LeanInjector> {
  return startLeanInjector(
    {
      credentials: { [name]: credential(extra) },
      routes: [{ name, match: { host: HOST }, upstream: upstream.url, credential: name }],
    },
    // Every token the fake issues starts with "fake-": no request line may hold one.
    (line) => line.includes('fake-'),
  );
}

interface Result {
  readonly status: number;
  readonly text: string;
  readonly retryAfter: string | undefined;
  readonly contentType: string | undefined;
  /** Epoch ms when the request was sent. */
  readonly sentAt: number;
  readonly ms: number;
}

/**
 * Sends requests through `pool`, CONCURRENCY at a time, until `count` were sent or `stop()` says
 * so. A transport error (reset, refused) fails the run.
 */
async function load(
  pool: Pool,
  limits: { count: number; stop?: () => boolean },
  onResult: (r: Result) => void,
): Promise<number> {
  let sent = 0;
  const worker = async () => {
    while (sent < limits.count && !limits.stop?.()) {
      sent++;
      const sentAt = Date.now();
      const started = performance.now();
      const res = await pool.request({ path: '/v1/items', method: 'GET', headers: { host: HOST } });
      const text = await res.body.text();
      const header = (name: string) => {
        const v = res.headers[name];
        return Array.isArray(v) ? v[0] : v;
      };
      onResult({
        status: res.statusCode,
        text,
        retryAfter: header('retry-after'),
        contentType: header('content-type'),
        sentAt,
        ms: performance.now() - started,
      });
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  return sent;
}

function newPool(url: string): Pool {
  return new Pool(url, { connections: CONCURRENCY, pipelining: 1 });
}

/** Resolves when every socket open now that `match` selects has closed. */
async function closed(match: (ends: { localPort?: number; remotePort?: number }) => boolean): Promise<void> {
  await Promise.all(
    tcpSockets()
      .filter((s) => match(s.ends))
      .map((s) => new Promise<void>((resolve) => s.socket.once('close', () => resolve()))),
  );
}

function count(match: (ends: { localPort?: number; remotePort?: number }) => boolean): number {
  return tcpSockets().filter((s) => match(s.ends)).length;
}

const fakePort = () => Number(new URL(fake.url).port);

/** Refresh faults, one group per refresh, cycling: each group is answered to the refresh after a token. */
const FAULT_GROUPS: readonly (readonly Behavior[])[] = [
  [],
  [
    { kind: 'json', status: 503, body: { error: 'temporarily_unavailable' } },
    {
      kind: 'json',
      status: 503,
      body: { error: 'temporarily_unavailable' },
      headers: { 'retry-after': '0' },
    },
  ],
  [{ kind: 'reset' }, { kind: 'reset' }],
  // The refresh takes its whole timeout and fails: the cached token is served (stale) until a probe.
  [{ kind: 'hang' }],
  // A permanent error: the refresh fails at once, without retries.
  [{ kind: 'json', status: 400, body: { error: 'invalid_client' } }],
  [{ kind: 'raw', status: 500, body: 'oops' }, { kind: 'reset' }],
];

describe('soak', () => {
  it('100 000 requests with refresh faults: all 200, only live issued tokens upstream, no leak', async () => {
    stats = freshStats();
    const socketsBefore = tcpSocketResources();
    ledger.setBase({ kind: 'token', expiresIn: SOAK_EXPIRES_IN_S });
    const proxy = await startProxy('soak', {
      // Refreshed 1 s after each token came (see SOAK_EXPIRES_IN_S), leaving 8 s for a failed
      // refresh (timeout 300 ms) and its re-probes (backoff up to 100 ms).
      refresh_ahead: 0.1,
      timeout: '300ms',
      retry: { initial_backoff: '40ms', max_backoff: '100ms' },
    });
    const proxyPort = proxy.injector.proxyAddress.port;
    const pool = newPool(proxy.url);
    const statuses = new Map<number, number>();
    let wrongBodies = 0;
    const record = (r: Result) => {
      statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
      if (r.status === 200 && r.text !== BODY_100) wrongBodies++;
    };
    let soakMs = 0;
    let heapBefore = 0;
    let heapAfter = 0;
    let listenerSockets = 0;
    let upstreamSocketsAfterRun = 0;
    let tokenSocketsAfterRun = 0;
    try {
      await load(pool, { count: WARMUP_REQUESTS }, record);
      // Server-side ends are counted: undici unrefs idle client sockets, which then go unlisted.
      listenerSockets = count((e) => e.localPort === proxyPort);
      expect(listenerSockets).toBeGreaterThan(0);
      expect(listenerSockets).toBeLessThanOrEqual(CONCURRENCY);
      heapBefore = forceGc();
      const issuedBefore = ledger.issued.size;
      ledger.onIssue((n) => ledger.failNext(...FAULT_GROUPS[n % FAULT_GROUPS.length]!));
      const started = performance.now();
      await load(pool, { count: SOAK_REQUESTS }, record);
      soakMs = performance.now() - started;
      ledger.onIssue(undefined);
      const refreshes = ledger.issued.size - issuedBefore;

      // The client goes away: every proxy-side client connection must close with it.
      await pool.close();
      await closed((e) => e.localPort === proxyPort);
      expect(count((e) => e.localPort === proxyPort)).toBe(0);
      heapAfter = forceGc();
      // Idle keep-alive connections to the upstream are bounded by the concurrency, then expire.
      upstreamSocketsAfterRun = upstream.liveConnections;
      expect(upstreamSocketsAfterRun).toBeLessThanOrEqual(CONCURRENCY);
      await upstream.idle();
      expect(count((e) => e.localPort === upstream.port)).toBe(0);
      // Token endpoint connections: the refresh loop keeps at most its agent's 4.
      tokenSocketsAfterRun = count((e) => e.localPort === fakePort());
      expect(tokenSocketsAfterRun).toBeLessThanOrEqual(4);

      const total = WARMUP_REQUESTS + SOAK_REQUESTS;
      expect(Object.fromEntries(statuses)).toEqual({ 200: total });
      expect(wrongBodies).toBe(0);
      expect(stats.requests).toBe(total);
      expect(stats.unknown).toBe(0);
      expect(stats.expired).toBe(0);
      // Never in the last second of a token's life (the proxy's safety margin), give or take transit.
      expect(stats.minRemainingMs).toBeGreaterThan(500);
      // Several refreshes happened, and the upstream saw their tokens.
      expect(refreshes).toBeGreaterThanOrEqual(5);
      expect(stats.tokens.size).toBeGreaterThanOrEqual(5);
      // The faults were really served, and some refreshes really failed as a whole.
      for (const kind of ['503', 'reset', 'hang', '400', '500']) {
        expect(ledger.answered.get(kind) ?? 0, kind).toBeGreaterThan(0);
      }
      expect(proxy.logs.filter((l) => l['event'] === 'refresh_retry').length).toBeGreaterThan(0);
      expect(Object.fromEntries(proxy.requestLines)).toEqual({ 200: total });
      expect(proxy.leakyRequestLines).toEqual([]);
      expect(heapAfter - heapBefore).toBeLessThan(HEAP_GROWTH_LIMIT);
    } finally {
      await pool.destroy();
      await proxy.close();
    }
    // Closed: no connection of the proxy is left, in either direction.
    await closed((e) => e.localPort === fakePort() || e.localPort === upstream.port);
    expect(count((e) => e.localPort === fakePort() || e.localPort === upstream.port)).toBe(0);
    expect(upstream.liveConnections).toBe(0);
    expect(tcpSocketResources()).toBe(socketsBefore);
    console.info(
      `soak: ${SOAK_REQUESTS} requests in ${(soakMs / 1000).toFixed(1)} s ` +
        `(${Math.round(SOAK_REQUESTS / (soakMs / 1000))} req/s), ${stats.tokens.size} tokens seen upstream, ` +
        `faults served ${JSON.stringify(Object.fromEntries(ledger.answered))}, ` +
        `min token life left at upstream ${stats.minRemainingMs} ms; ` +
        `heap ${(heapBefore / 2 ** 20).toFixed(1)} → ${(heapAfter / 2 ** 20).toFixed(1)} MiB; ` +
        `proxy listener sockets after warm-up ${listenerSockets}, after the client left 0; ` +
        `upstream connections after run ${upstreamSocketsAfterRun}, after keep-alive 0; ` +
        `token endpoint connections ${tokenSocketsAfterRun}; TCPSocketWrap before ${socketsBefore}, after close ${tcpSocketResources()}`,
    );
  }, 180_000);

  it('token endpoint down for 2.5 s under load: 200 or fast 503, never an expired token upstream', async () => {
    stats = freshStats();
    // 3 s tokens here (whatever the soak left): usable 2 s, so a 2.5 s outage outlives one.
    ledger.setBase({ kind: 'token', expiresIn: EXPIRES_IN_S });
    const timeoutMs = 300;
    const maxBackoffMs = 200;
    const proxy = await startProxy('outage', {
      // Usable 2 s, refreshed after about 1 s: a 2.5 s outage outlives the cached token.
      refresh_ahead: 0.5,
      timeout: `${timeoutMs}ms`,
      retry: { initial_backoff: '50ms', max_backoff: `${maxBackoffMs}ms` },
    });
    const pool = newPool(proxy.url);
    const results: Result[] = [];
    const keep = (r: Result) => {
      results.push({ ...r, text: r.status === 200 && r.text === BODY_100 ? '' : r.text });
    };
    let outageStart = 0;
    let outageEnd = 0;
    let requestsDuringOutage = 0;
    const allowance = timeoutMs + maxBackoffMs + 500;
    try {
      let sent = await load(pool, { count: 4_000 }, keep);
      const tokenRequestsBefore = fake.requests.length;
      ledger.setBase({ kind: 'reset' });
      outageStart = Date.now();
      let over = false;
      const timer = setTimeout(() => {
        ledger.setBase({ kind: 'token', expiresIn: EXPIRES_IN_S });
        outageEnd = Date.now();
        requestsDuringOutage = fake.requests.length - tokenRequestsBefore;
        over = true;
      }, 2_500);
      try {
        sent += await load(pool, { count: Number.POSITIVE_INFINITY, stop: () => over }, keep);
      } finally {
        clearTimeout(timer);
      }
      // Then at least 5 000 more (20 000 in all), and on until well after the recovery.
      const minimum = Math.max(5_000, 20_000 - sent);
      const recoveredBy = outageEnd + allowance + 1_000;
      const before = results.length;
      sent += await load(
        pool,
        {
          count: Number.POSITIVE_INFINITY,
          stop: () => results.length - before >= minimum && Date.now() > recoveredBy,
        },
        keep,
      );
      expect(results.length).toBe(sent);
    } finally {
      await pool.close();
      await proxy.close();
    }

    const ok = results.filter((r) => r.status === 200);
    const failed = results.filter((r) => r.status !== 200);
    // Only 200s with the upstream's body, and 503s with the JSON error and a Retry-After.
    expect(ok.every((r) => r.text === '')).toBe(true);
    expect([...new Set(failed.map((r) => r.status))]).toEqual(failed.length > 0 ? [503] : []);
    for (const r of failed) {
      expect(r.contentType).toBe('application/json');
      expect(JSON.parse(r.text)).toMatchObject({
        error: 'token_endpoint_unreachable',
        credential: 'outage',
        route: 'outage',
      });
      expect(Number(r.retryAfter)).toBeGreaterThanOrEqual(1);
    }
    // The outage outlived the token: some requests failed, and only during it (or its last probe).
    expect(failed.length).toBeGreaterThan(0);
    expect(Math.min(...failed.map((r) => r.sentAt))).toBeGreaterThanOrEqual(outageStart);
    expect(Math.max(...failed.map((r) => r.sentAt))).toBeLessThanOrEqual(outageEnd + allowance);
    // Failing fast: at most one token request's time, never the client's patience.
    const slowest503 = Math.max(...failed.map((r) => r.ms));
    expect(slowest503).toBeLessThan(timeoutMs + 700);
    // Recovered by itself: everything sent once the endpoint was back (and probed) succeeded.
    const after = results.filter((r) => r.sentAt > outageEnd + allowance);
    expect(after.length).toBeGreaterThan(500);
    expect(after.every((r) => r.status === 200)).toBe(true);
    // One probe per backoff step, not one per request: 64 clients did not turn into a storm.
    expect(requestsDuringOutage).toBeLessThan(60);
    // The upstream saw every success, each with a token the fake issued and that had not expired.
    expect(stats.requests).toBe(ok.length);
    expect(stats.unknown).toBe(0);
    expect(stats.expired).toBe(0);
    expect(stats.minRemainingMs).toBeGreaterThan(500);
    expect(proxy.leakyRequestLines).toEqual([]);
    console.info(
      `outage: ${results.length} requests, ${ok.length} × 200, ${failed.length} × 503 ` +
        `(slowest ${slowest503.toFixed(0)} ms), ${requestsDuringOutage} token requests during the 2.5 s outage, ` +
        `min token life left at upstream ${stats.minRemainingMs} ms`,
    );
  }, 120_000);
});
