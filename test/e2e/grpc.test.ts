// Issue 13: gRPC through the proxy. A @grpc/grpc-js client speaks h2c to the proxy port; the
// proxy routes by :authority, injects the token and forwards over h2c (upstream_protocol: http2)
// to a @grpc/grpc-js server that checks the token against the authorization server's keys.
// Metadata and trailers travel intact; a call that cannot be given a token fails with a gRPC
// status the client understands.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { createRemoteJWKSet, jwtVerify } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type AuthServer, startAuthServer } from '../support/auth-server.js';
import { startInjector, type TestInjector } from '../support/injector.js';
import { type CaFiles, type TempDir, tempDir, writeNewCa } from '../support/interception.js';
import { watchSecret } from '../support/leak-watch.js';
import { credentialFor } from '../support/stack.js';

const PROTO = `
syntax = "proto3";
package orders;
message OrderRequest { string id = 1; }
message Order { string id = 1; string owner = 2; }
message Note { string text = 1; }
service Orders {
  rpc Get (OrderRequest) returns (Order);
  rpc Chat (stream Note) returns (stream Note);
}
`;

interface Order {
  id: string;
  owner: string;
}
interface Note {
  text: string;
}
type OrdersClient = grpc.Client & {
  Get(
    req: { id: string },
    metadata: grpc.Metadata,
    callback: (err: grpc.ServiceError | null, res?: Order) => void,
  ): grpc.ClientUnaryCall;
  Chat(metadata: grpc.Metadata): grpc.ClientDuplexStream<Note, Note>;
};

let dir: string;
let auth: AuthServer;
let server: grpc.Server;
let proxy: TestInjector;
/** The same routes behind `tls_intercept`: gRPC over TLS through CONNECT, as with `grpc_proxy`. */
let intercepting: TestInjector;
let caDir: TempDir;
let interceptCa: CaFiles;
let Orders: grpc.ServiceClientConstructor;
/** What the server saw of each call: its token check and the app's metadata. */
const calls: { method: string; tokenValid: boolean; app: string | undefined }[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'grpc-test-'));
  await writeFile(join(dir, 'orders.proto'), PROTO);
  const definition = grpc.loadPackageDefinition(loadSync(join(dir, 'orders.proto')));
  Orders = (definition['orders'] as grpc.GrpcObject)['Orders'] as grpc.ServiceClientConstructor;
  auth = await startAuthServer();
  const jwks = createRemoteJWKSet(new URL(auth.jwksUri));
  const verified = async (metadata: grpc.Metadata): Promise<string | undefined> => {
    const token = /^Bearer (\S+)$/.exec(String(metadata.get('authorization')[0] ?? ''))?.[1];
    if (token === undefined) return undefined;
    try {
      const { payload } = await jwtVerify(token, jwks, { issuer: auth.issuer, audience: auth.audience });
      return String(payload['client_id'] ?? payload.sub);
    } catch {
      return undefined;
    }
  };
  const app = (metadata: grpc.Metadata) => metadata.get('x-app')[0] as string | undefined;

  server = new grpc.Server();
  server.addService(Orders.service, {
    Get: (call: grpc.ServerUnaryCall<{ id: string }, Order>, callback: grpc.sendUnaryData<Order>) => {
      verified(call.metadata).then((owner) => {
        calls.push({ method: 'Get', tokenValid: owner !== undefined, app: app(call.metadata) });
        if (owner === undefined) {
          callback({ code: grpc.status.UNAUTHENTICATED, details: 'no valid token' });
          return;
        }
        if (call.request.id === 'missing') {
          const trailer = new grpc.Metadata();
          trailer.set('x-why', 'no such order');
          callback({ code: grpc.status.NOT_FOUND, details: 'order missing', metadata: trailer });
          return;
        }
        const header = new grpc.Metadata();
        header.set('x-served-by', 'orders-server');
        call.sendMetadata(header);
        const trailer = new grpc.Metadata();
        trailer.set('x-checksum', `sum-${call.request.id}`);
        callback(null, { id: call.request.id, owner }, trailer);
      });
    },
    Chat: (call: grpc.ServerDuplexStream<Note, Note>) => {
      verified(call.metadata).then((owner) => {
        calls.push({ method: 'Chat', tokenValid: owner !== undefined, app: app(call.metadata) });
        if (owner === undefined) {
          call.emit('error', { code: grpc.status.UNAUTHENTICATED, details: 'no valid token' });
          return;
        }
        call.on('data', (note: Note) => call.write({ text: `echo ${note.text}` }));
        call.on('end', () => {
          const trailer = new grpc.Metadata();
          trailer.set('x-notes', 'done');
          call.end(trailer);
        });
      });
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) =>
      err ? reject(err) : resolve(p),
    ),
  );
  const upstream = `http://127.0.0.1:${port}`;
  const fast = { timeout: '300ms', connect_timeout: '300ms' };
  proxy = await startInjector({
    credentials: {
      orders: credentialFor(auth),
      // Nothing listens there: transient, the call may be retried later.
      down: { ...credentialFor(auth), token_endpoint: 'http://127.0.0.1:9/token', ...fast },
      // The authorization server refuses this client for good (invalid_client).
      refused: { ...credentialFor(auth), client_secret: 'not-the-secret', ...fast },
    },
    routes: [
      {
        name: 'orders',
        match: { host: 'orders.grpc' },
        upstream,
        credential: 'orders',
        upstream_protocol: 'http2',
      },
      {
        name: 'down',
        match: { host: 'down.grpc' },
        upstream,
        credential: 'down',
        upstream_protocol: 'http2',
      },
      {
        name: 'refused',
        match: { host: 'refused.grpc' },
        upstream,
        credential: 'refused',
        upstream_protocol: 'http2',
      },
    ],
  });
  caDir = tempDir();
  interceptCa = await writeNewCa(caDir.path, 'grpc');
  intercepting = await startInjector({
    tls_intercept: { ca_cert_file: interceptCa.certFile, ca_key_file: interceptCa.keyFile },
    credentials: { orders: credentialFor(auth) },
    routes: [
      {
        name: 'orders',
        match: { host: 'orders.grpc' },
        upstream,
        credential: 'orders',
        upstream_protocol: 'http2',
      },
    ],
  });
});

afterAll(async () => {
  await proxy?.close();
  await intercepting?.close();
  caDir?.remove();
  server?.forceShutdown();
  for (const token of auth?.issuedTokens ?? []) watchSecret(token);
  await auth?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** A client of the proxy port whose calls carry `:authority: host` (the route's match). */
function clientFor(host: string): OrdersClient {
  return new Orders(`127.0.0.1:${new URL(proxy.url).port}`, grpc.credentials.createInsecure(), {
    'grpc.default_authority': host,
  }) as unknown as OrdersClient;
}

function metadata(): grpc.Metadata {
  const m = new grpc.Metadata();
  m.set('x-app', 'checkout');
  return m;
}

interface UnaryResult {
  err: grpc.ServiceError | null;
  res: Order | undefined;
  headers: grpc.Metadata | undefined;
  status: grpc.StatusObject | undefined;
}

function unary(client: OrdersClient, id: string): Promise<UnaryResult> {
  return new Promise((resolve) => {
    let headers: grpc.Metadata | undefined;
    let status: grpc.StatusObject | undefined;
    let result: { err: grpc.ServiceError | null; res: Order | undefined } | undefined;
    const done = () => {
      if (result && status) resolve({ ...result, headers, status });
    };
    const call = client.Get({ id }, metadata(), (err, res) => {
      result = { err, res };
      done();
    });
    call.on('metadata', (m: grpc.Metadata) => {
      headers = m;
    });
    call.on('status', (s: grpc.StatusObject) => {
      status = s;
      done();
    });
  });
}

describe('gRPC through the proxy (h2c in, h2c out)', () => {
  it('a unary call gets its token injected; metadata and trailers arrive intact', async () => {
    const client = clientFor('orders.grpc');
    try {
      const { err, res, headers, status } = await unary(client, 'o-1');
      expect(err).toBeNull();
      expect(res).toEqual({ id: 'o-1', owner: expect.any(String) });
      expect(calls.at(-1)).toEqual({ method: 'Get', tokenValid: true, app: 'checkout' });
      expect(headers!.get('x-served-by')).toEqual(['orders-server']);
      expect(status!.code).toBe(grpc.status.OK);
      expect(status!.metadata.get('x-checksum')).toEqual(['sum-o-1']);
    } finally {
      client.close();
    }
  });

  it("the server's error status, message and trailers reach the client (trailers-only)", async () => {
    const client = clientFor('orders.grpc');
    try {
      const { err, status } = await unary(client, 'missing');
      expect(err?.code).toBe(grpc.status.NOT_FOUND);
      expect(err?.details).toBe('order missing');
      expect(status!.metadata.get('x-why')).toEqual(['no such order']);
    } finally {
      client.close();
    }
  });

  it('a bidirectional stream carries messages both ways, then the trailers', async () => {
    const client = clientFor('orders.grpc');
    try {
      const call = client.Chat(metadata());
      const received: string[] = [];
      const status = new Promise<grpc.StatusObject>((resolve) => call.on('status', resolve));
      // Each answer comes before the next note is sent: the stream is interactive, not buffered.
      for (const text of ['one', 'two', 'three']) {
        const answer = new Promise<Note>((resolve) => call.once('data', resolve));
        call.write({ text });
        received.push((await answer).text);
      }
      call.end();
      const final = await status;
      expect(received).toEqual(['echo one', 'echo two', 'echo three']);
      expect(final.code).toBe(grpc.status.OK);
      expect(final.metadata.get('x-notes')).toEqual(['done']);
      expect(calls.at(-1)).toEqual({ method: 'Chat', tokenValid: true, app: 'checkout' });
    } finally {
      client.close();
    }
  });

  it('several streams at once do not wait for each other', async () => {
    const client = clientFor('orders.grpc');
    try {
      const open = [client.Chat(metadata()), client.Chat(metadata()), client.Chat(metadata())];
      // All three are answered while all three are still open.
      const answers = await Promise.all(
        open.map((call, i) => {
          const answer = new Promise<Note>((resolve) => call.once('data', resolve));
          call.write({ text: `s${i}` });
          return answer;
        }),
      );
      expect(answers.map((a) => a.text)).toEqual(['echo s0', 'echo s1', 'echo s2']);
      await Promise.all(
        open.map((call) => {
          const status = new Promise((resolve) => call.on('status', resolve));
          call.end();
          return status;
        }),
      );
    } finally {
      client.close();
    }
  });

  it('a call whose token endpoint cannot be reached fails UNAVAILABLE, naming the credential', async () => {
    const client = clientFor('down.grpc');
    const before = calls.length;
    try {
      const { err } = await unary(client, 'o-2');
      expect(err?.code).toBe(grpc.status.UNAVAILABLE);
      expect(err?.details).toMatch(
        /^token-injector has no token for credential "down" \(token_endpoint_unreachable\)/,
      );
      expect(calls.length).toBe(before);
    } finally {
      client.close();
    }
  });

  it('a call whose client is refused by the authorization server fails UNAUTHENTICATED', async () => {
    const client = clientFor('refused.grpc');
    const before = calls.length;
    try {
      const { err } = await unary(client, 'o-3');
      expect(err?.code).toBe(grpc.status.UNAUTHENTICATED);
      expect(err?.details).toMatch(/credential "refused" \(token_endpoint_rejected\)/);
      expect(err?.details).not.toContain('not-the-secret');
      expect(calls.length).toBe(before);
    } finally {
      client.close();
    }
  });
});

describe('gRPC over TLS through CONNECT (tls_intercept)', () => {
  /**
   * A TLS client of `orders.grpc:443` that trusts the interception CA and, as grpc-js does when
   * `grpc_proxy` is set, reaches it with CONNECT through the proxy. grpc-js reads the variable
   * when the channel is made.
   */
  function tlsClientThroughProxy(): OrdersClient {
    const saved = process.env['grpc_proxy'];
    process.env['grpc_proxy'] = `http://127.0.0.1:${intercepting.injector.proxyAddress.port}`;
    try {
      return new Orders(
        'orders.grpc:443',
        grpc.credentials.createSsl(Buffer.from(interceptCa.certPem)),
      ) as unknown as OrdersClient;
    } finally {
      if (saved === undefined) delete process.env['grpc_proxy'];
      else process.env['grpc_proxy'] = saved;
    }
  }

  it('a unary call and a bidirectional stream get the token, with metadata and trailers intact', async () => {
    const client = tlsClientThroughProxy();
    try {
      const { err, res, headers, status } = await unary(client, 'tls-1');
      expect(err).toBeNull();
      expect(res).toEqual({ id: 'tls-1', owner: expect.any(String) });
      expect(calls.at(-1)).toEqual({ method: 'Get', tokenValid: true, app: 'checkout' });
      expect(headers!.get('x-served-by')).toEqual(['orders-server']);
      expect(status!.metadata.get('x-checksum')).toEqual(['sum-tls-1']);

      const call = client.Chat(metadata());
      const final = new Promise<grpc.StatusObject>((resolve) => call.on('status', resolve));
      const answer = new Promise<Note>((resolve) => call.once('data', resolve));
      call.write({ text: 'over tls' });
      expect((await answer).text).toBe('echo over tls');
      call.end();
      expect((await final).metadata.get('x-notes')).toEqual(['done']);
      expect(calls.at(-1)).toEqual({ method: 'Chat', tokenValid: true, app: 'checkout' });
      // It went through a terminated tunnel, not around the proxy.
      const metrics = await (await fetch(`${intercepting.adminUrl}/metrics`)).text();
      expect(metrics).toMatch(/^token_injector_intercepted_connections_total\{outcome="ok"\} [1-9]/m);
    } finally {
      client.close();
    }
  });
});
