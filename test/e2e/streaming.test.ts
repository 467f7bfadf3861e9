// Bodies stream through a spawned `token-injector run` in both directions without being buffered:
// 512 MiB up and 512 MiB down, checked byte for byte (sha256 and length) while the proxy's peak
// resident memory (VmHWM from /proc) stays far below the body size. Also: a client that gives up
// is passed on to the upstream, and one that gives up while the proxy waits for a token does no harm.
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { createRemoteJWKSet, jwtVerify } from 'jose';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nextArrival } from '../support/arrivals.js';
import {
  type AuthServer,
  BASIC_CLIENT,
  basicAuthorization,
  startAuthServer,
} from '../support/auth-server.js';
import {
  killAllCli,
  type ProcMemory,
  procMemory,
  type RunningCli,
  startRun,
  tempDir,
  writeConfig,
} from '../support/cli-process.js';
import { type FakeTokenEndpoint, startFakeTokenEndpoint } from '../support/fake-token-endpoint.js';
import { leaksInLogs, watchSecret } from '../support/leak-watch.js';
import {
  type EchoResponse,
  patternBytes,
  patternSha256,
  startUpstream,
  type Upstream,
} from '../support/upstream.js';

const MiB = 1024 * 1024;
const BODY_BYTES = 512 * MiB;
/** Far below the body size: a proxy that buffered a body could not stay under it. */
const PEAK_RSS_LIMIT = 250 * MiB;
const CHUNK = 64 * 1024;
const FAKE_SECRET = 'fake-endpoint-secret-4e1d';

let auth: AuthServer;
/** Verifies every token (the real auth server's JWTs). */
let upstream: Upstream;
/** Serves without a valid token: behind the route whose credential uses the fake token endpoint. */
let openUpstream: Upstream;
let fake: FakeTokenEndpoint;
let run: RunningCli;
let removeDir: () => void;
let startupMemory: ProcMemory;

beforeAll(async () => {
  auth = await startAuthServer();
  upstream = await startUpstream({ issuer: auth.issuer, jwksUri: auth.jwksUri, audience: auth.audience });
  openUpstream = await startUpstream({
    issuer: auth.issuer,
    jwksUri: auth.jwksUri,
    audience: auth.audience,
    requireToken: false,
  });
  fake = await startFakeTokenEndpoint();
  watchSecret(BASIC_CLIENT.secret);
  watchSecret(FAKE_SECRET);
  const tmp = tempDir();
  removeDir = tmp.remove;
  const path = writeConfig(tmp.dir, 'streaming.yaml', {
    listen: '127.0.0.1:0',
    admin: { listen: '127.0.0.1:0' },
    log: { level: 'info' },
    credentials: {
      orders: {
        token_endpoint: auth.tokenEndpoint,
        grant_type: 'client_credentials',
        client_id: BASIC_CLIENT.id,
        // biome-ignore lint/suspicious/noTemplateCurlyInString: a config reference, not a template
        client_secret: '${env:TI_E2E_STREAM_SECRET}',
        prefetch: true,
      },
      slow: {
        token_endpoint: fake.url,
        grant_type: 'client_credentials',
        client_id: 'slow-client',
        // biome-ignore lint/suspicious/noTemplateCurlyInString: a config reference, not a template
        client_secret: '${env:TI_E2E_FAKE_SECRET}',
        timeout: '1s',
        // The failure backoff (fail fast until the next probe) is kept negligible here: this test
        // is about the abandoned request, not about the backoff.
        retry: { initial_backoff: '1ms', max_backoff: '1ms' },
      },
      abandoned: {
        token_endpoint: fake.url,
        grant_type: 'client_credentials',
        client_id: 'abandoned-client',
        // biome-ignore lint/suspicious/noTemplateCurlyInString: a config reference, not a template
        client_secret: '${env:TI_E2E_FAKE_SECRET}',
        timeout: '1s',
      },
    },
    routes: [
      {
        name: 'slow-token',
        match: { path_prefix: '/slow-token/' },
        strip_prefix: true,
        upstream: openUpstream.url,
        credential: 'slow',
      },
      {
        name: 'abandoned',
        match: { path_prefix: '/abandoned/' },
        upstream: openUpstream.url,
        credential: 'abandoned',
      },
      { name: 'orders', upstream: upstream.url, credential: 'orders' },
    ],
  });
  run = await startRun(path, {
    env: { TI_E2E_STREAM_SECRET: BASIC_CLIENT.secret, TI_E2E_FAKE_SECRET: FAKE_SECRET },
  });
  startupMemory = procMemory(run.proc.pid);
});

afterAll(async () => {
  const stillRunning = run?.proc.running;
  await killAllCli();
  for (const t of [...(auth?.issuedTokens ?? []), ...(fake?.issuedTokens ?? [])]) watchSecret(t);
  await Promise.all([upstream?.close(), openUpstream?.close(), fake?.close()]);
  await auth?.close();
  removeDir?.();
  // The proxy survived everything this file did to it.
  expect(stillRunning).toBe(true);
  expect(leaksInLogs()).toEqual([]);
});

/** 512 MiB produced on demand: at most a few chunks exist at a time. */
function generatedBody(bytes: number, hash: ReturnType<typeof createHash>): Readable {
  return Readable.from(
    (function* () {
      for (let offset = 0; offset < bytes; offset += CHUNK) {
        const chunk = patternBytes(offset, Math.min(CHUNK, bytes - offset));
        hash.update(chunk);
        yield chunk;
      }
    })(),
    { objectMode: false },
  );
}

function expectMemoryBounded(): ProcMemory {
  const mem = procMemory(run.proc.pid);
  expect(
    mem.peakRss,
    `proxy peak RSS ${Math.round(mem.peakRss / MiB)} MiB (at startup ${Math.round(startupMemory.peakRss / MiB)} MiB)`,
  ).toBeLessThan(PEAK_RSS_LIMIT);
  return mem;
}

describe('streaming through a spawned proxy', () => {
  it('uploads 512 MiB (chunked, generated) intact, with the proxy peak RSS far below the body size', async () => {
    const sent = createHash('sha256');
    const res = await request(`${run.proxyUrl}/upload`, {
      method: 'POST',
      headers: { 'content-type': 'application/octet-stream' },
      body: generatedBody(BODY_BYTES, sent),
    });
    expect(res.statusCode).toBe(200);
    const echo = (await res.body.json()) as EchoResponse;
    expect(echo.bodyBytes).toBe(BODY_BYTES);
    expect(echo.bodySha256).toBe(sent.digest('hex'));
    // The upstream verified the injected token.
    expect(echo.claims).toMatchObject({ client_id: BASIC_CLIENT.id });
    expectMemoryBounded();
  }, 60_000);

  it('downloads 512 MiB intact (hashed on the client), with the proxy peak RSS far below the body size', async () => {
    const res = await request(`${run.proxyUrl}/download?bytes=${BODY_BYTES}&length=1`);
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-length']).toBe(String(BODY_BYTES));
    const received = createHash('sha256');
    let bytes = 0;
    for await (const chunk of res.body) {
      bytes += (chunk as Buffer).length;
      received.update(chunk as Buffer);
    }
    expect(bytes).toBe(BODY_BYTES);
    expect(received.digest('hex')).toBe(patternSha256(BODY_BYTES));
    expectMemoryBounded();
  }, 60_000);

  it('a client that aborts a request to /hang: the upstream sees the abort', async () => {
    const arrived = nextArrival(upstream.requests, (r) => r.path === '/hang');
    const abort = new AbortController();
    const pending = request(`${run.proxyUrl}/hang`, { signal: abort.signal }).then(
      () => 'answered',
      (err: Error) => err.name,
    );
    const atUpstream = await arrived;
    expect(atUpstream.tokenValid).toBe(true);
    const upstreamSawAbort = upstream.nextAbort();
    abort.abort();
    expect(await pending).toBe('AbortError');
    await upstreamSawAbort;
    const logged = await run.proc.waitForLog(
      (l) => l['event'] === 'request' && l['path'] === '/hang',
      'the /hang request log line',
    );
    expect(logged).toMatchObject({ route: 'orders', status: 499 });
  });

  it('a client that leaves while the proxy waits for a slow token endpoint does not crash it', async () => {
    fake.setBehavior({ kind: 'hang' });
    const tokenRequested = nextArrival(fake.requests);
    const abort = new AbortController();
    const pending = request(`${run.proxyUrl}/slow-token/first`, { signal: abort.signal }).then(
      () => 'answered',
      (err: Error) => err.name,
    );
    const tokenRequest = await tokenRequested;
    expect(tokenRequest.form['grant_type']).toBe('client_credentials');
    abort.abort();
    expect(await pending).toBe('AbortError');

    // The token request runs into the credential's 1s timeout; only then does the endpoint work again.
    const failed = await run.proc.waitForLog(
      (l) => l['event'] === 'token_failed' && l['credential'] === 'slow',
      'the slow credential failing',
    );
    expect(failed['error']).toBe('token_endpoint_timeout');
    fake.setBehavior({ kind: 'token' });

    // Until the 1 ms backoff has passed, a request fails fast with the last error (the log line
    // can reach us sooner than that); the next one probes the healed endpoint.
    let res = await request(`${run.proxyUrl}/slow-token/second?x=1`);
    for (let attempt = 0; res.statusCode === 504 && attempt < 20; attempt++) {
      expect(await res.body.json()).toMatchObject({ error: 'token_endpoint_timeout', credential: 'slow' });
      res = await request(`${run.proxyUrl}/slow-token/second?x=1`);
    }
    expect(res.statusCode).toBe(200);
    const echo = (await res.body.json()) as EchoResponse;
    expect(echo.path).toBe('/second?x=1');
    expect(echo.headers.authorization).toBe(`Bearer ${fake.issuedTokens.at(-1)}`);

    // And the other route is unaffected.
    const other = await request(`${run.proxyUrl}/after`);
    expect(other.statusCode).toBe(200);
    const otherEcho = (await other.body.json()) as EchoResponse;
    const { payload } = await jwtVerify(
      otherEcho.headers.authorization!.replace(/^Bearer /, ''),
      createRemoteJWKSet(new URL(auth.jwksUri)),
      { issuer: auth.issuer, audience: auth.audience },
    );
    expect(payload['client_id']).toBe(BASIC_CLIENT.id);
    expect(run.proc.running).toBe(true);
    expect(run.proc.stderr).toBe('');
  });

  it('a request whose client left while the proxy waited for a token is logged and counted as 499, not 5xx', async () => {
    // forward() reports a client that went away as 499, and so does the handler when the token
    // arrives after the client left; a token failure after the client left must not become a 5xx
    // in logs and in token_injector_proxied_requests_total, where it would page someone for nothing.
    fake.setBehavior({ kind: 'hang' });
    try {
      const tokenRequested = nextArrival(
        fake.requests,
        (r) => r.headers.authorization === basicAuthorization('abandoned-client', FAKE_SECRET),
      );
      const abort = new AbortController();
      const pending = request(`${run.proxyUrl}/abandoned/x`, { signal: abort.signal }).then(
        () => 'answered',
        (err: Error) => err.name,
      );
      await tokenRequested;
      abort.abort();
      expect(await pending).toBe('AbortError');
      const logged = await run.proc.waitForLog(
        (l) => l['event'] === 'request' && l['path'] === '/abandoned/x',
        'the abandoned request log line',
      );
      const metrics = await (await request(`${run.adminUrl}/metrics`)).body.text();
      const counted = metrics
        .split('\n')
        .filter(
          (line) =>
            line.startsWith('token_injector_proxied_requests_total{') && line.includes('route="abandoned"'),
        );
      expect({ status: logged['status'], counted }).toEqual({
        status: 499,
        counted: ['token_injector_proxied_requests_total{route="abandoned",status_class="4xx"} 1'],
      });
    } finally {
      fake.setBehavior({ kind: 'token' });
    }
  });
});
