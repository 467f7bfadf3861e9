/**
 * A real OAuth 2.0 authorization server for integration tests, the demo and the benchmark.
 *
 * It is `oidc-provider` (not a fake), configured for the client credentials grant with JWT access tokens
 * scoped to a single resource server (`audience`). A plain `node:http` front server sits in front of the
 * provider so that every token request can be recorded verbatim (headers, urlencoded form, status) and
 * every issued access token collected, without interfering with the provider's own body parsing.
 *
 * @example
 * const as = await startAuthServer();
 * // POST as.tokenEndpoint with grant_type=client_credentials and BASIC_CLIENT credentials
 * await as.close();
 */
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';

export interface ClientMetadata {
  client_id: string;
  client_secret?: string;
  token_endpoint_auth_method?: string;
  grant_types?: string[];
  response_types?: string[];
  redirect_uris?: string[];
  scope?: string;
  [key: string]: unknown;
}

export interface RecordedTokenRequest {
  headers: Record<string, string | string[] | undefined>;
  /** The urlencoded body fields exactly as the client sent them (last value wins on duplicates). */
  form: Record<string, string>;
  status: number;
}

/** A grant handler as oidc-provider calls it: it receives the Koa context and sets `ctx.body`. */
export type GrantHandler = (ctx: OidcContext) => Promise<void> | void;

export interface ExtraGrant {
  /** The grant_type value, e.g. 'urn:ietf:params:oauth:grant-type:token-exchange'. */
  name: string;
  handler: GrantHandler;
  /** Form parameters (besides grant_type) the provider must pass through to the handler. */
  params?: string[];
}

export interface AuthServerOptions {
  accessTokenTtlSeconds?: number;
  /** Replaces the default clients (BASIC_CLIENT, POST_CLIENT, SPECIAL_CLIENT). */
  clients?: ClientMetadata[];
  /** The resource indicator every token is issued for (the `aud` claim). */
  audience?: string;
  /** Registered with provider.registerGrantType; list the grant name in the clients' grant_types too. */
  extraGrants?: ExtraGrant[];
}

export interface AuthServer {
  issuer: string;
  tokenEndpoint: string;
  jwksUri: string;
  audience: string;
  tokenRequests: RecordedTokenRequest[];
  issuedTokens: string[];
  setAccessTokenTtl(seconds: number): void;
  /** Escape hatch for tests that need more of the provider (events, extra grants, …). */
  provider: OidcProvider;
  close(): Promise<void>;
}

/** The minimal slice of oidc-provider's untyped API this module relies on. */
export interface OidcProvider {
  issuer: string;
  callback(): (req: http.IncomingMessage, res: http.ServerResponse) => void;
  use(middleware: (ctx: OidcContext, next: () => Promise<void>) => Promise<void>): void;
  registerGrantType(name: string, handler: GrantHandler, params?: string[]): void;
  on(event: string, listener: (...args: unknown[]) => void): void;
  Client: { find(id: string): Promise<unknown> };
}

export interface OidcContext {
  path: string;
  method: string;
  status: number;
  body: unknown;
  req: http.IncomingMessage;
  oidc?: { params?: Record<string, unknown>; client?: { clientId: string } };
}

interface OidcProviderModule {
  default: new (issuer: string, configuration: Record<string, unknown>) => OidcProvider;
  errors: Record<string, new (description?: string) => Error>;
}

export const DEFAULT_AUDIENCE = 'https://orders.test';
export const DEFAULT_SCOPE = 'orders.read orders.write';
export const DEFAULT_ACCESS_TOKEN_TTL_SECONDS = 300;
/** The access tokens' JWS algorithm. */
export const SIGNING_ALG = 'ES256';

export interface TestClient {
  id: string;
  secret: string;
  authMethod: 'client_secret_basic' | 'client_secret_post';
}

export const BASIC_CLIENT: TestClient = {
  id: 'orders-basic',
  secret: 'basic-secret-0123456789',
  authMethod: 'client_secret_basic',
};

export const POST_CLIENT: TestClient = {
  id: 'orders-post',
  secret: 'post-secret-0123456789',
  authMethod: 'client_secret_post',
};

/**
 * Its id and secret only authenticate if the client form-urlencodes them before base64 in the Basic
 * header (RFC 6749 §2.3.1): `%rd` is not valid percent-encoding and `+` would turn into a space.
 */
export const SPECIAL_CLIENT: TestClient = {
  id: 'svc:orders client',
  secret: 'p@ss:w%rd+/=',
  authMethod: 'client_secret_basic',
};

export function clientMetadata(client: TestClient, extra: Partial<ClientMetadata> = {}): ClientMetadata {
  return {
    client_id: client.id,
    client_secret: client.secret,
    token_endpoint_auth_method: client.authMethod,
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    scope: DEFAULT_SCOPE,
    ...extra,
  };
}

export const DEFAULT_CLIENTS: readonly ClientMetadata[] = [BASIC_CLIENT, POST_CLIENT, SPECIAL_CLIENT].map(
  (c) => clientMetadata(c),
);

/** RFC 6749 §2.3.1 Basic credentials: each part form-urlencoded, then base64. */
export function basicAuthorization(id: string, secret: string): string {
  const encode = (s: string) => new URLSearchParams({ s }).toString().slice(2);
  return 'Basic ' + Buffer.from(`${encode(id)}:${encode(secret)}`).toString('base64');
}

let providerModule: Promise<OidcProviderModule> | undefined;

function loadProvider(): Promise<OidcProviderModule> {
  providerModule ??= (async () => {
    // oidc-provider 9 targets Node 22+ and warns on import under Node 20, though everything it uses
    // (crypto.hash, URL.parse) exists in Node >= 20.18. Only that one line is dropped.
    const original = console.warn;
    console.warn = (...args: unknown[]) => {
      if (typeof args[0] === 'string' && args[0].includes('Unsupported runtime')) return;
      original.apply(console, args);
    };
    try {
      // A non-literal specifier because the package ships no type declarations.
      const specifier: string = 'oidc-provider';
      return (await import(specifier)) as OidcProviderModule;
    } finally {
      console.warn = original;
    }
  })();
  return providerModule;
}

/**
 * A small in-memory adapter: passing our own keeps oidc-provider from printing its "development-only
 * adapter" warning. Client credentials JWTs are not stored anyway; this only backs incidental models.
 */
function memoryAdapterFactory(): (model: string) => unknown {
  const store = new Map<string, { payload: Record<string, unknown>; expiresAt: number }>();
  const live = (key: string) => {
    const entry = store.get(key);
    if (entry && entry.expiresAt <= Date.now()) {
      store.delete(key);
      return undefined;
    }
    return entry?.payload;
  };
  return (model: string) => ({
    async upsert(id: string, payload: Record<string, unknown>, expiresIn?: number) {
      const expiresAt =
        typeof expiresIn === 'number' ? Date.now() + expiresIn * 1000 : Number.POSITIVE_INFINITY;
      store.set(`${model}:${id}`, { payload, expiresAt });
    },
    async find(id: string) {
      return live(`${model}:${id}`);
    },
    async findByUid(uid: string) {
      for (const [key, { payload }] of store) {
        if (key.startsWith(`${model}:`) && payload['uid'] === uid) return live(key);
      }
      return undefined;
    },
    async findByUserCode(userCode: string) {
      for (const [key, { payload }] of store) {
        if (key.startsWith(`${model}:`) && payload['userCode'] === userCode) return live(key);
      }
      return undefined;
    },
    async consume(id: string) {
      const payload = live(`${model}:${id}`);
      if (payload) payload['consumed'] = Math.floor(Date.now() / 1000);
    },
    async destroy(id: string) {
      store.delete(`${model}:${id}`);
    },
    async revokeByGrantId(grantId: string) {
      for (const [key, { payload }] of store) {
        if (payload['grantId'] === grantId) store.delete(key);
      }
    },
  });
}

// ES256 rather than RS256: generating a fresh P-256 key per server is instant, an RSA one takes ~200 ms.
function signingJwks(): { keys: Record<string, unknown>[] } {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const jwk = privateKey.export({ format: 'jwk' }) as Record<string, unknown>;
  return { keys: [{ ...jwk, kid: `test-${randomBytes(6).toString('hex')}`, alg: SIGNING_ALG, use: 'sig' }] };
}

function readBody(req: http.IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

/**
 * A stand-in for the already-consumed IncomingMessage carrying the same metadata, so the provider (Koa)
 * can read the body a second time. Koa reads headers, url, method and socket; the provider streams the body.
 */
function replayRequest(req: http.IncomingMessage, body: Buffer): http.IncomingMessage {
  const replay = new Readable({ read() {} });
  replay.push(body);
  replay.push(null);
  return Object.assign(replay, {
    headers: req.headers,
    rawHeaders: req.rawHeaders,
    trailers: {},
    rawTrailers: [],
    method: req.method,
    url: req.url,
    httpVersion: req.httpVersion,
    httpVersionMajor: req.httpVersionMajor,
    httpVersionMinor: req.httpVersionMinor,
    socket: req.socket,
    connection: req.socket,
    complete: true,
    aborted: false,
  }) as unknown as http.IncomingMessage;
}

function parseForm(body: Buffer): Record<string, string> {
  const form: Record<string, string> = {};
  for (const [k, v] of new URLSearchParams(body.toString('utf8'))) form[k] = v;
  return form;
}

function closeServer(server: http.Server): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    server.close((err) => (err ? reject(err) : resolve()));
    // Keep-alive sockets from clients would otherwise hold close() open.
    server.closeAllConnections();
  });
}

export async function startAuthServer(options: AuthServerOptions = {}): Promise<AuthServer> {
  const { default: Provider, errors } = await loadProvider();
  let ttl = options.accessTokenTtlSeconds ?? DEFAULT_ACCESS_TOKEN_TTL_SECONDS;
  const audience = options.audience ?? DEFAULT_AUDIENCE;
  const tokenRequests: RecordedTokenRequest[] = [];
  const issuedTokens: string[] = [];
  const clients = options.clients ?? [...DEFAULT_CLIENTS];
  const pending = new WeakMap<http.IncomingMessage, RecordedTokenRequest>();

  let handler: ((req: http.IncomingMessage, res: http.ServerResponse) => void) | undefined;
  const server = http.createServer((req, res) => {
    if (!handler) {
      res.writeHead(503).end();
      return;
    }
    const dispatch = handler;
    if (req.method === 'POST' && new URL(req.url ?? '/', 'http://x').pathname === '/token') {
      readBody(req).then(
        (body) => {
          const replay = replayRequest(req, body);
          pending.set(replay, { headers: { ...req.headers }, form: parseForm(body), status: 0 });
          dispatch(replay, res);
        },
        () => res.destroy(),
      );
      return;
    }
    dispatch(req, res);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const issuer = `http://127.0.0.1:${port}`;

  let provider: OidcProvider;
  try {
    provider = new Provider(issuer, {
      adapter: memoryAdapterFactory(),
      clients: clients.map((c) => ({ ...c })),
      jwks: signingJwks(),
      cookies: { keys: [randomBytes(32).toString('hex')] },
      // The provider validates clients lazily against these; its RS256 default would need an RSA key.
      clientDefaults: {
        grant_types: ['client_credentials'],
        response_types: [],
        token_endpoint_auth_method: 'client_secret_basic',
        id_token_signed_response_alg: SIGNING_ALG,
      },
      scopes: ['openid', 'offline_access', ...DEFAULT_SCOPE.split(' ')],
      features: {
        devInteractions: { enabled: false },
        clientCredentials: { enabled: true },
        resourceIndicators: {
          enabled: true,
          defaultResource: async () => audience,
          useGrantedResource: async () => true,
          getResourceServerInfo: async (_ctx: unknown, resource: string) => {
            if (resource !== audience) {
              const InvalidTarget = errors['InvalidTarget']!;
              throw new InvalidTarget();
            }
            return {
              scope: DEFAULT_SCOPE,
              audience,
              accessTokenTTL: ttl,
              accessTokenFormat: 'jwt',
              jwt: { sign: { alg: SIGNING_ALG } },
            };
          },
        },
      },
      ttl: {
        // Defaults are fine but the provider logs a notice when its default TTL functions run.
        AccessToken: () => ttl,
        ClientCredentials: () => ttl,
      },
      clientBasedCORS: () => false,
    });

    provider.use(async (ctx, next) => {
      const record = pending.get(ctx.req);
      try {
        await next();
      } finally {
        if (record) {
          // Recorded before Koa writes the response, so a client that saw the response sees the record.
          record.status = ctx.status;
          const body = ctx.body as { access_token?: unknown } | undefined;
          if (ctx.status === 200 && typeof body?.access_token === 'string')
            issuedTokens.push(body.access_token);
          tokenRequests.push(record);
        }
      }
    });

    for (const grant of options.extraGrants ?? []) {
      provider.registerGrantType(grant.name, grant.handler, grant.params);
    }

    // Static clients are only validated when first used; fail at startup instead of with a puzzling 400 later.
    for (const client of clients) {
      await provider.Client.find(client.client_id);
    }

    handler = provider.callback();
  } catch (err) {
    await closeServer(server);
    throw err;
  }

  return {
    issuer,
    tokenEndpoint: `${issuer}/token`,
    jwksUri: `${issuer}/jwks`,
    audience,
    tokenRequests,
    issuedTokens,
    provider,
    setAccessTokenTtl(seconds: number) {
      ttl = seconds;
    },
    close: () => closeServer(server),
  };
}
