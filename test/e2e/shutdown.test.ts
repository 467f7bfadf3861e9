// Graceful shutdown of a spawned `token-injector run`: on SIGTERM it stops accepting, lets the
// requests in flight finish (bounded by shutdown_timeout), then exits 0. The upstream here is a
// plain node:http server that answers only when the test releases a request, so "in flight" is a
// state the test controls, not a race against a timer.
import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { connect } from 'node:net';
import { setTimeout as delay } from 'node:timers/promises';
import { createRemoteJWKSet, jwtVerify } from 'jose';
import { Agent, request } from 'undici';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { nextArrival, queue } from '../support/arrivals.js';
import { type AuthServer, BASIC_CLIENT, startAuthServer } from '../support/auth-server.js';
import { type CliExit, killAllCli, startRun, tempDir, writeConfig } from '../support/cli-process.js';
import { type FakeTokenEndpoint, startFakeTokenEndpoint } from '../support/fake-token-endpoint.js';
import { leaksInLogs, watchSecret } from '../support/leak-watch.js';

interface HeldRequest {
  path: string;
  authorization: string | undefined;
  /** Sends the 200 response with {@link BODY}. */
  release(): void;
  /** How the upstream's response ended: sent in full, or cut before that. */
  readonly ended: Promise<'finished' | 'aborted'>;
}

interface SlowUpstream {
  url: string;
  /** The next request to arrive (queued: one that already arrived is not lost). */
  nextRequest(): Promise<HeldRequest>;
  close(): Promise<void>;
}

/** 1 MiB of random bytes: a truncated or corrupted answer cannot go unnoticed. */
const BODY = randomBytes(1024 * 1024);
const BODY_SHA256 = createHash('sha256').update(BODY).digest('hex');

async function startSlowUpstream(): Promise<SlowUpstream> {
  const held = queue<HeldRequest>();
  const server = http.createServer((req, res) => {
    const ended = new Promise<'finished' | 'aborted'>((resolve) => {
      res.once('close', () => resolve(res.writableFinished ? 'finished' : 'aborted'));
    });
    req.resume();
    req.once('end', () => {
      held.put({
        path: req.url ?? '',
        authorization: req.headers.authorization,
        release() {
          if (res.destroyed) return;
          res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': BODY.length });
          // In chunks, so the proxy streams it over several writes while it is shutting down.
          for (let i = 0; i < BODY.length; i += 64 * 1024) res.write(BODY.subarray(i, i + 64 * 1024));
          res.end();
        },
        ended,
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    nextRequest: held.next,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/**
 * Resolves with the error code of a TCP connection attempt to 127.0.0.1:port, or 'connected'.
 * The connection, if any, is closed at once.
 */
function tryConnect(port: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve('connected');
    });
    socket.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? 'error'));
  });
}

/**
 * The proxy closes its listener in the same tick it logs "stopping"; the kernel may still complete
 * a handshake queued just before, so a few short retries are allowed before the port must refuse.
 */
async function expectRefused(port: number): Promise<void> {
  let last = '';
  for (let attempt = 0; attempt < 20; attempt++) {
    last = await tryConnect(port);
    if (last === 'ECONNREFUSED') return;
    await delay(10);
  }
  throw new Error(`port ${port} still accepts connections after SIGTERM (last attempt: ${last})`);
}

/**
 * The process's exit, or 'still running' once `ms` have passed: the bound a drain must respect is the
 * point of these tests, so overrunning it fails with a clear message instead of a test timeout.
 */
async function exitWithin(exited: Promise<CliExit>, ms: number): Promise<CliExit | 'still running'> {
  const deadline = new AbortController();
  const late = delay(ms, 'still running' as const, { signal: deadline.signal }).catch(
    () => 'still running' as const,
  );
  try {
    return await Promise.race([exited, late]);
  } finally {
    deadline.abort();
  }
}

let auth: AuthServer;
let upstream: SlowUpstream;
let fake: FakeTokenEndpoint;
let dir: string;
let removeDir: () => void;
const HANG_SECRET = 'hanging-idp-secret-93c1';
const env = { TI_E2E_SHUTDOWN_SECRET: BASIC_CLIENT.secret, TI_E2E_HANG_SECRET: HANG_SECRET };

function config(shutdownTimeout: string): Record<string, unknown> {
  return {
    listen: '127.0.0.1:0',
    admin: { listen: '127.0.0.1:0' },
    log: { level: 'info' },
    shutdown_timeout: shutdownTimeout,
    credentials: {
      orders: {
        token_endpoint: auth.tokenEndpoint,
        grant_type: 'client_credentials',
        client_id: BASIC_CLIENT.id,
        // biome-ignore lint/suspicious/noTemplateCurlyInString: a config reference, not a template
        client_secret: '${env:TI_E2E_SHUTDOWN_SECRET}',
        prefetch: true,
      },
      hanging: {
        // A token endpoint that never answers, with a token timeout far beyond shutdown_timeout.
        token_endpoint: fake.url,
        grant_type: 'client_credentials',
        client_id: 'hanging-client',
        // biome-ignore lint/suspicious/noTemplateCurlyInString: a config reference, not a template
        client_secret: '${env:TI_E2E_HANG_SECRET}',
        timeout: '60s',
      },
    },
    routes: [
      {
        name: 'needs-token',
        match: { path_prefix: '/needs-token/' },
        upstream: upstream.url,
        credential: 'hanging',
      },
      { name: 'slow', upstream: upstream.url, credential: 'orders' },
    ],
  };
}

beforeAll(async () => {
  auth = await startAuthServer();
  upstream = await startSlowUpstream();
  fake = await startFakeTokenEndpoint({ kind: 'hang' });
  ({ dir, remove: removeDir } = tempDir());
  watchSecret(BASIC_CLIENT.secret);
  watchSecret(HANG_SECRET);
});

afterEach(async () => {
  await killAllCli();
  for (const t of [...auth.issuedTokens, ...fake.issuedTokens]) watchSecret(t);
  expect(leaksInLogs()).toEqual([]);
});

afterAll(async () => {
  await killAllCli();
  await upstream?.close();
  await fake?.close();
  await auth?.close();
  removeDir?.();
});

describe('graceful shutdown of `token-injector run`', () => {
  it('SIGTERM: refuses new connections, finishes the request in flight with its full body, exits 0', async () => {
    const { proc, proxyUrl, proxyPort, adminUrl } = await startRun(
      writeConfig(dir, 'drain.yaml', config('20s')),
      {
        env,
      },
    );
    const client = new Agent();
    const idleClient = new Agent();
    try {
      // A keep-alive connection that is idle when the signal comes: it must be closed, not reused.
      const warmup = request(`${proxyUrl}/warmup`, { dispatcher: idleClient });
      const warm = await upstream.nextRequest();
      warm.release();
      const warmRes = await warmup;
      expect(warmRes.statusCode).toBe(200);
      await warmRes.body.arrayBuffer();

      const inFlight = request(`${proxyUrl}/report?year=2024`, { dispatcher: client });
      const held = await upstream.nextRequest();
      expect(held.path).toBe('/report?year=2024');

      proc.signal('SIGTERM');
      const stopping = await proc.waitForEvent('stopping');
      expect(stopping['in_flight']).toBe(1);

      // New connections are refused; the idle keep-alive connection serves nothing new either.
      await expectRefused(proxyPort);
      await expect(request(`${proxyUrl}/late`, { dispatcher: idleClient })).rejects.toThrow();
      // While draining, the admin listener still answers and says "not ready".
      const ready = await request(`${adminUrl}/readyz`);
      expect(ready.statusCode).toBe(503);
      expect(await ready.body.json()).toMatchObject({ status: 'not_ready', serving: false });
      expect(proc.running).toBe(true);

      held.release();
      const res = await inFlight;
      expect(res.statusCode).toBe(200);
      expect(res.headers['content-length']).toBe(String(BODY.length));
      const body = Buffer.from(await res.body.arrayBuffer());
      expect(body.length).toBe(BODY.length);
      expect(createHash('sha256').update(body).digest('hex')).toBe(BODY_SHA256);
      expect(await held.ended).toBe('finished');

      expect(await proc.exited).toEqual({ code: 0, signal: null });
      expect(proc.logs.map((l) => l['event'])).toContain('stopped');
      expect(proc.logs.find((l) => l['event'] === 'request' && l['path'] === '/report')).toMatchObject({
        status: 200,
        route: 'slow',
      });
      // /late never reached the upstream.
      expect(proc.logs.some((l) => l['path'] === '/late')).toBe(false);

      // What the upstream got was a real token from the auth server.
      const { payload } = await jwtVerify(
        held.authorization!.replace(/^Bearer /, ''),
        createRemoteJWKSet(new URL(auth.jwksUri)),
        { issuer: auth.issuer, audience: auth.audience },
      );
      expect(payload['client_id']).toBe(BASIC_CLIENT.id);
    } finally {
      await client.close();
      await idleClient.close();
    }
  });

  it('the drain is bounded: with shutdown_timeout 1s a request that never finishes is cut and the process exits 0', async () => {
    const { proc, proxyUrl } = await startRun(writeConfig(dir, 'bounded.yaml', config('1s')), { env });
    const client = new Agent();
    try {
      const inFlight = request(`${proxyUrl}/never`, { dispatcher: client });
      const outcome = inFlight.then(
        () => 'answered',
        (err: { code?: string }) => err.code ?? 'error',
      );
      const held = await upstream.nextRequest();
      expect(held.path).toBe('/never');

      const signalledAt = performance.now();
      proc.signal('SIGTERM');
      await proc.waitForEvent('stopping');

      // The client sees its connection closed, no answer …
      expect(await outcome).toBe('UND_ERR_SOCKET');
      // … not before shutdown_timeout (timers may fire a millisecond early, hence the margin) …
      expect(performance.now() - signalledAt).toBeGreaterThanOrEqual(900);
      // … and the upstream sees its request cut rather than left hanging.
      expect(await held.ended).toBe('aborted');

      expect(await proc.exited).toEqual({ code: 0, signal: null });
      expect(proc.logs.map((l) => l['event'])).toContain('stopped');
      expect(proc.logs.find((l) => l['event'] === 'request' && l['path'] === '/never')).toMatchObject({
        status: 499,
      });
    } finally {
      await client.close();
    }
  });
  it('a second SIGTERM during the drain exits at once, with 0', async () => {
    const { proc, proxyUrl } = await startRun(writeConfig(dir, 'twice.yaml', config('20s')), { env });
    const client = new Agent();
    try {
      const outcome = request(`${proxyUrl}/stuck`, { dispatcher: client }).then(
        () => 'answered',
        (err: { code?: string }) => err.code ?? 'error',
      );
      const held = await upstream.nextRequest();
      proc.signal('SIGTERM');
      await proc.waitForEvent('stopping');
      proc.signal('SIGTERM');
      // Well inside the 20s drain: the second signal does not wait for it.
      expect(await exitWithin(proc.exited, 5_000)).toEqual({ code: 0, signal: null });
      expect(proc.logs.find((l) => l['event'] === 'forced_exit')).toMatchObject({ signal: 'SIGTERM' });
      expect(await outcome).toBe('UND_ERR_SOCKET');
      expect(await held.ended).toBe('aborted');
    } finally {
      await client.close();
    }
  });

  it('the drain is bounded by shutdown_timeout even while a request waits for a token endpoint that never answers', async () => {
    const { proc, proxyUrl } = await startRun(writeConfig(dir, 'token-hang.yaml', config('1s')), { env });
    const client = new Agent();
    try {
      const tokenRequested = nextArrival(fake.requests);
      const outcome = request(`${proxyUrl}/needs-token/x`, { dispatcher: client }).then(
        () => 'answered',
        (err: { code?: string }) => err.code ?? 'error',
      );
      await tokenRequested;
      proc.signal('SIGTERM');
      await proc.waitForEvent('stopping');
      expect(await outcome).toBe('UND_ERR_SOCKET');
      // shutdown_timeout is 1s; the token request's own 60s timeout must not hold the process.
      expect(
        await exitWithin(proc.exited, 5_000),
        `events: ${proc.logs.map((l) => l['event']).join(', ')}`,
      ).toEqual({
        code: 0,
        signal: null,
      });
      expect(proc.logs.map((l) => l['event'])).toContain('stopped');
    } finally {
      await client.close();
    }
  });
});
