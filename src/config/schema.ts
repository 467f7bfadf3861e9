// biome-ignore-all lint/suspicious/noTemplateCurlyInString: descriptions show the literal ${env:}/${file:} syntax
/**
 * The configuration file, described once. The TypeScript types of what validators read
 * (`Fields` in checker.ts), the structural checks with their messages, and `config.schema.json`
 * for editors (`npm run schema`) all come from here. Keys are listed in the order `validate`
 * reports their problems. What needs more than one key, a file or the network (credentials
 * named by routes, loopback rules, reading keys) is checked in code, on values typed by this.
 */
import { METHODS } from 'node:http';
import { z } from 'zod';
import { parseHostPattern } from '../router/host.js';
import { Credential, TlsClientFiles } from './schema-credential.js';
import {
  absoluteUri,
  choice,
  DOC,
  describe,
  duration,
  filePath,
  flag,
  fraction,
  HEADER_NAME,
  headerName,
  httpUrl,
  matching,
  NAME,
  REFERENCE,
  says,
  size,
  text,
  whole,
  words,
} from './schema-kit.js';
import type { ListenAddress } from './types.js';

/** Headers that must not be chosen for injection: they are connection-level or routing-level. */
const UNINJECTABLE_HEADERS = new Set([
  'host',
  'connection',
  'keep-alive',
  'proxy-authorization',
  'proxy-authenticate',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'content-length',
]);
/** Node's parser accepts only these methods, so a route naming another could never match. */
const KNOWN_METHODS: ReadonlySet<string> = new Set(METHODS);
/** For editors: methods in any letter case, one or several separated by spaces. */
const METHOD = METHODS.map((m) =>
  [...m].map((ch) => (/[A-Z]/.test(ch) ? `[${ch}${ch.toLowerCase()}]` : ch)).join(''),
).join('|');
const METHOD_LIST = `^ *(?:${METHOD})(?: +(?:${METHOD}))* *$`;

/** `127.0.0.1:8080`, `[::1]:8080`, `0.0.0.0:8080`, or a bare port (bound to loopback). */
export function parseListen(text: string): ListenAddress | undefined {
  // The colon is required whenever a host is given, so "8080" cannot split into "808" and "0".
  const m = /^(?:(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):)?(\d{1,5})$/.exec(text.trim());
  if (!m) return undefined;
  const port = Number(m[3]);
  if (port > 65535) return undefined;
  return Object.freeze({ host: m[1] ?? m[2] ?? '127.0.0.1', port });
}

/** What `parseListen` reads, for editors. */
const LISTEN = /^\s*(?:(?:\[[0-9a-fA-F:.]+\]|[^:[\]]+):)?\d{1,5}\s*$/;

function listenAddress(fallback: string) {
  return z
    .union(
      [z.string().meta({ pattern: `${LISTEN.source}|${REFERENCE.source}` }), z.number()],
      says((v) => `must be a string, got ${describe(v)}`),
    )
    .register(DOC, { type: 'address: `host:port`, `[v6]:port` or a port' })
    .transform((value, ctx) => {
      const parsed = parseListen(String(value));
      if (parsed) return parsed;
      ctx.issues.push({
        code: 'custom',
        input: value,
        message: `must be host:port such as 127.0.0.1:8080 or [::1]:8080, got "${value}"`,
      });
      return z.NEVER;
    })
    .prefault(fallback);
}

const Limits = z
  .strictObject({
    max_header_size: size({ bytes: 1024, why: 'must be at least 1KiB' }).prefault('16KiB').meta({
      description:
        'Larger request headers are answered with 431; for HTTP/2, the header list size the proxy announces and enforces.',
    }),
    // At least a handful: a request needs Host, and a token-carrying header may be added.
    max_headers: whole(8, 10_000).prefault(100).meta({
      description:
        'Requests with more header fields (HTTP/2: besides pseudo-header fields) are answered 431 `too_many_headers`, never truncated.',
    }),
    headers_timeout: duration({ positive: true })
      .prefault('30s')
      .meta({ description: "Time allowed to receive a request's headers (408 after it)." }),
    idle_timeout: duration({ positive: true })
      .prefault('5s')
      .meta({ description: 'An idle keep-alive connection is closed after this.' }),
    tunnel_idle_timeout: duration({ positive: true }).prefault('5m').meta({
      description:
        'A WebSocket connection, or a `CONNECT` tunnel passed through with `unmatched: passthrough`, with no traffic either way for this long is closed on both sides (a peer that vanished without closing, or an app that stopped reading, cannot hold the pair for ever).',
    }),
    request_timeout: duration().prefault('5m').meta({
      description:
        'Time allowed to receive a whole request, body included (an HTTP/2 stream whose body is late is cancelled); `0` for no limit.',
    }),
    max_connections: whole(1, 1_000_000).prefault(4096).meta({
      description:
        'Open client connections at most; beyond it a new connection is closed at accept and counted (`token_injector_connections_dropped_total`).',
    }),
    replay_buffer_total: size().prefault('32MiB').meta({
      description:
        "Memory held at once, over all requests, for bodies kept for a retry after a 401 (each up to its route's `replay_buffer`); beyond it a body streams without that retry.",
    }),
  })
  .prefault({})
  .meta({ description: 'Limits of the proxy listener against slow or oversized clients.' });

const Admin = z
  .strictObject({
    listen: listenAddress('127.0.0.1:9090').meta({
      description:
        'The admin listener (`/healthz`, `/readyz`, `/metrics`); must differ from `listen`. In Kubernetes, probes reach the pod IP, so a sidecar uses `0.0.0.0:9090` there.',
    }),
  })
  .prefault({});

const Log = z
  .strictObject({
    level: choice(['trace', 'debug', 'info', 'warn', 'error'])
      .prefault('info')
      .meta({ description: 'Lines below this level are not written.' }),
  })
  .prefault({});

const RouteMatch = z
  .strictObject({
    host: text()
      .transform((value, ctx) => {
        const parsed = parseHostPattern(value);
        if (typeof parsed !== 'string') return parsed;
        ctx.issues.push({ code: 'custom', input: value, message: parsed });
        return z.NEVER;
      })
      .register(DOC, { type: 'host name or `*.` pattern, with an optional `:port`', absent: 'any host' })
      .optional()
      .meta({
        description:
          'Exact host name, or `*.example.com` for every name below `example.com` (not `example.com` itself). Case-insensitive; a trailing dot is ignored. `host:port` matches only that port; without a port, any port matches (absolute-form requests without a port use 80 for `http`).',
      }),
    path_prefix: matching(/^\//, 'must start with "/"')
      .register(DOC, { type: 'path, starting with `/`', absent: 'any path' })
      .optional()
      .meta({
        description:
          'A plain prefix of the path (the query is not part of it): `/v1/` matches `/v1/x` but not `/v10`.',
      }),
    methods: words({ item: METHOD_LIST, minItems: 1 })
      .superRefine((methods, ctx) => {
        const bad = methods.find((m) => !KNOWN_METHODS.has(m.toUpperCase()));
        if (bad !== undefined) {
          const hint = HEADER_NAME.test(bad) ? closestMethod(bad.toUpperCase()) : undefined;
          ctx.addIssue(`"${bad}" is not a known HTTP method${hint ? ` (did you mean "${hint}"?)` : ''}`);
        } else if (methods.length === 0) ctx.addIssue('must list at least one method');
      })
      .transform((methods): ReadonlySet<string> => new Set(methods.map((m) => m.toUpperCase())))
      .register(DOC, { type: 'list of HTTP methods, or one space-separated string', absent: 'any method' })
      .optional()
      .meta({ description: 'For example `[GET, POST]`, in any letter case.' }),
  })
  .prefault({})
  .meta({ description: 'Which requests the route takes; the first matching route wins.' });

export const Route = z.strictObject({
  name: matching(NAME, 'a route name may hold only letters, digits, ".", "_" and "-"')
    .register(DOC, { type: 'name: letters, digits, `.`, `_`, `-`' })
    .meta({ description: 'Unique; used in logs and metric labels.' }),
  match: RouteMatch,
  upstream: httpUrl({ query: false })
    .transform((url) => {
      url.pathname = url.pathname.replace(/\/+$/, '');
      return url;
    })
    .meta({
      description:
        'Where matched requests go: `http(s)://host[:port][/base/path]` with no query; the request path is appended to the base path. An `https://` upstream gets TLS from the proxy (verified).',
    }),
  strip_prefix: flag().prefault(false).meta({
    description:
      'Remove `match.path_prefix` from the path before appending it to `upstream` (needs `path_prefix`).',
  }),
  credential: text().meta({ description: 'The name of the credential whose token is injected.' }),
  header: headerName()
    .refine((h) => !UNINJECTABLE_HEADERS.has(h.toLowerCase()), {
      error: (issue) => `"${String(issue.input)}" is a connection or routing header and cannot carry a token`,
    })
    .prefault('Authorization')
    .meta({
      description:
        'The header that carries the token; it replaces every header of that name the app sent, in any letter case. Connection and routing headers (`Host`, `Connection`, `Proxy-Authorization`, …) are refused.',
    }),
  prefix: text()
    .refine((p) => !/[\r\n\0]/.test(p), 'must not contain CR, LF or NUL')
    .prefault('Bearer ')
    .meta({ description: 'Written before the token.' }),
  scope: words()
    .register(DOC, { type: 'list, or one space-separated string', absent: "the credential's" })
    .optional()
    .meta({
      description:
        "Replaces the credential's `scope` in this route's token requests; routes with different values never share a token.",
    }),
  audience: text()
    .register(DOC, { type: 'string', absent: "the credential's" })
    .optional()
    .meta({ description: "Replaces the credential's `audience` in this route's token requests." }),
  resource: absoluteUri('must be an absolute URI (RFC 8707 §2)')
    .register(DOC, { type: 'absolute URI', absent: "the credential's" })
    .optional()
    .meta({ description: "Replaces the credential's `resource` (RFC 8707) in this route's token requests." }),
  resource_metadata: choice(['discover']).optional().meta({
    description:
      "Protected-resource discovery (RFC 9728): on the upstream's first 401, its metadata (from the challenge's `resource_metadata` URL, else `/.well-known/oauth-protected-resource` at the upstream) must name this upstream as `resource` and the credential's `issuer` among `authorization_servers`; tokens are then requested with `resource` set to it (RFC 8707) and the request retried once. Needs a credential with `issuer`; excludes `resource`. See \"Protected-resource discovery\".",
  }),
  tls: TlsClientFiles.meta({
    description:
      'Extra trust and a client certificate (mutual TLS) towards this `https://` upstream; for certificate-bound tokens (RFC 8705 §3), the certificate the credential uses. Files are re-read when they change, checked at most every 10 s.',
  }),
  allow_insecure_http: flag().prefault(false).meta({
    description:
      'Allow an `http://` upstream on a host beyond loopback; without it such a route is refused, since tokens would cross the network unencrypted.',
  }),
  strict_path: flag().prefault(true).meta({
    description:
      'Refuse (400 `bad_request`) paths spelled in ways some upstreams decode into something else: an encoded NUL (`%00`), overlong UTF-8 (`%c0%ae`), or a segment that is a `.` or `..` segment once percent-decoded once or twice (`..%3B`, `..%3F`, `%252e%252e`); see "Requests the proxy refuses" under Behaviour. `false` forwards such paths verbatim to this route\'s upstream, for one that needs them and decodes a path only once; a `#`, a malformed `%` and encoded slashes (`%2F`, `%5C`) stay refused.',
  }),
  upstream_protocol: choice(['http1', 'http2']).prefault('http1').meta({
    description:
      'How the proxy speaks to this route\'s upstream, whatever the app speaks to the proxy. `http2` is h2 negotiated by ALPN on an `https://` upstream (one that answers ALPN with anything else is not spoken to: 502 `upstream_unreachable` naming ALPN, never a silent fall back to HTTP/1.1) and h2c with prior knowledge on an `http://` one. Requests without a streamed body share one multiplexed session (up to 100 streams, then another); a request that streams its body (any gRPC call) gets a session of its own from the same pool, kept alive for the next one, since undici would otherwise hold it until every other stream of a shared session is done. `upstream_max_connections` bounds each kind. WebSocket upgrades on such a route get 501 `upgrade_not_supported` (WebSockets over HTTP/2, RFC 8441, are not carried). See "Trailers" under Behaviour.',
  }),
  retry_on_401: flag().prefault(false).meta({
    description:
      'After an upstream 401 with `WWW-Authenticate: Bearer error="invalid_token"` the cached token is always dropped and the request retried once with a new token when its body can be replayed (unless that new token was refused too: see "Upstream 401" under Behaviour); with `true` any 401 does this.',
  }),
  replay_buffer: size().prefault('64KiB').meta({
    description:
      'Request bodies up to this size (by `Content-Length`) are kept in memory so that a retry after a 401 is possible; larger or chunked bodies stream and are not retried.',
  }),
  connect_timeout: duration({ positive: true })
    .prefault('10s')
    .meta({ description: 'Time allowed to connect to the upstream (504 `upstream_timeout`).' }),
  response_timeout: duration({ positive: true }).prefault('60s').meta({
    description:
      "Time allowed until the upstream's response headers (504 `upstream_timeout`); the body may stream as long as it keeps coming.",
  }),
  upstream_max_connections: whole(1, 65_535).prefault(256).meta({
    description:
      "Connections to this route's upstream at most; further requests wait for a free one, and one that has no response headers within `response_timeout` (waiting included) gets 504 `upstream_timeout`. Routes with the same upstream and settings share the pool.",
  }),
});

const REDIS_KEY_PREFIX = /^[^\s{}]*$/;

export const SharedCache = z.strictObject({
  url: text().register(DOC, { type: 'URL, `redis://` or `rediss://`' }).meta({
    description:
      '`redis://host[:port][/db]` or `rediss://…` (TLS, verified like every other TLS connection); the path, if any, is a database number. No user info: use `username` and `password`. With `cluster: true`, one seed node of the Cluster.',
  }),
  username: text().optional().meta({ description: 'A Redis ACL user (Redis 6 or later, Valkey).' }),
  password: text().optional().meta({
    description:
      'The password of `username`, or of the default user (`requirepass`). A secret: write `${file:…}` or `${env:…}`; written inline it works but `validate` warns.',
  }),
  key_prefix: matching(REDIS_KEY_PREFIX, 'must not contain white space, "{" or "}" (Redis Cluster hash tags)')
    .prefault('token-injector:')
    .meta({
      description:
        'Written before every key and pub/sub channel, so that several fleets (or other programs) can share one Redis; no white space, `{` or `}`.',
    }),
  encryption_keys: z
    .union(
      [z.array(text()).meta({ minItems: 1 }), text()],
      says((v) =>
        v === undefined
          ? 'is required: a list of 32-byte keys in base64 (openssl rand -base64 32)'
          : `must be a string, got ${describe(v)}`,
      ),
    )
    .transform((v) => (Array.isArray(v) ? v : [v]))
    .register(DOC, { type: 'list of keys, or one key' })
    .meta({
      description:
        '32-byte keys in base64 or base64url (`openssl rand -base64 32`), best as `${file:…}` or `${env:…}` (inline keys work but warn). The first encrypts values and names entries; every one decrypts, so keys rotate without a flush (see "Key rotation" under Fleet). A key that is not 32 bytes once decoded, or repeats another, is refused with its index.',
    }),
  timeout: duration({ positive: true }).prefault('200ms').meta({
    description:
      'Time allowed for each Redis command; past it the replica goes on alone (its own cache and token requests) for this fetch.',
  }),
  tls: TlsClientFiles.meta({
    description:
      '`rediss://` only: extra trust, and a client certificate for a Redis with `tls-auth-clients yes`.',
  }),
  cluster: flag().prefault(false).meta({
    description:
      "`true`: `url` is one node of a Redis or Valkey Cluster; the others are found from it, and each entry's keys share one hash slot.",
  }),
});

const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;

/**
 * A leaf is renewed when a tenth of its lifetime is left: below an hour that leaves minutes, too
 * little for clocks that differ and for connections that last. At most 397 days, the longest the
 * CA/Browser Forum Baseline Requirements (§6.3.2) allow for a TLS server certificate: a minted
 * leaf cannot be revoked, so its lifetime is how long a copy stays usable.
 */
export const TlsIntercept = z.strictObject({
  ca_cert_file: filePath().meta({
    description:
      'The CA certificate (PEM) the apps trust. It must be a CA (basicConstraints `cA`), valid now, and, if it has a keyUsage, allow `keyCertSign`. An intermediate CA may be followed in the file by its issuers, in order; they are sent with each leaf, self-signed roots excepted. A CA that expires within 30 days gives a warning.',
  }),
  ca_key_file: filePath().meta({
    description:
      "The CA's private key (PEM, unencrypted): EC P-256 or P-384, or RSA of at least 2048 bits, matching `ca_cert_file`. Refused if group or others may read or write it (fix: `chmod 600`); for Kubernetes Secrets see HTTPS interception.",
  }),
  leaf_lifetime: duration()
    .refine(
      (ms) => ms >= HOUR_MS,
      'must be at least 1h: a certificate is renewed when a tenth of its lifetime is left, and less than an hour leaves too little room for clocks that differ',
    )
    .refine(
      (ms) => ms <= 397 * DAY_MS,
      'must be at most 9528h (397 days), the longest the CA/Browser Forum allows a TLS server certificate: a minted certificate cannot be revoked, so its lifetime is how long a copy stays usable',
    )
    .prefault('24h')
    .register(DOC, { type: 'duration from 1h to 9528h' })
    .meta({
      description:
        "Lifetime of each minted certificate, from `1h` to `9528h` (397 days, the CA/Browser Forum limit for TLS server certificates: a minted certificate cannot be revoked, so its lifetime is how long a copy stays usable); never past the CA's own end.",
    }),
});

export const Tracing = z.strictObject({
  otlp_endpoint: httpUrl({ query: false }).meta({
    description:
      "The collector's OTLP/HTTP base URL (`https://` is verified like every TLS connection); spans are POSTed to `<otlp_endpoint>/v1/traces`, a path in it is kept: `http://c:4318/otel` → `http://c:4318/otel/v1/traces`.",
  }),
  service_name: text()
    .refine((s) => s !== '', 'must not be empty')
    .prefault('token-injector')
    .meta({ description: "The spans' `service.name`." }),
  sample_ratio: fraction(0, 1, false, 'must be a fraction from 0 to 1, e.g. 0.1 for one trace in ten')
    .prefault(1)
    .meta({
      description:
        "The fraction of new traces recorded, by trace ID; a request that comes with the app's `traceparent` follows the app's decision instead.",
    }),
});

/** The whole file. */
export const ConfigFile = z
  .strictObject({
    listen: listenAddress('127.0.0.1:8080').meta({
      description:
        'The proxy listener, for both modes (reverse and forward). A bare port binds to 127.0.0.1; an address beyond loopback is refused unless `allow_remote_clients: true`.',
    }),
    allow_remote_clients: flag().prefault(false).meta({
      description:
        'Allow a `listen` address beyond loopback (127.0.0.0/8, `::1`, `localhost`): every client that reaches it can send requests with your tokens, so use it only behind your own access control.',
    }),
    limits: Limits,
    admin: Admin.meta({ description: 'The admin listener.' }),
    log: Log.meta({ description: 'What the proxy logs.' }),
    unmatched: choice(['deny', 'passthrough']).prefault('deny').meta({
      description:
        'A request that matches no route: `deny` answers 403 JSON naming host and path and refuses `CONNECT`; `passthrough` forwards it to its own target without a token and tunnels `CONNECT`.',
    }),
    shutdown_timeout: duration()
      .prefault('20s')
      .meta({ description: 'How long in-flight requests may run after SIGTERM/SIGINT before they are cut.' }),
    credentials: z
      .record(matching(NAME, 'a credential name may hold only letters, digits, ".", "_" and "-"'), Credential)
      .optional()
      .meta({ description: 'Where tokens come from, by name (letters, digits, `.`, `_`, `-`).' }),
    routes: z.array(Route).optional().meta({
      description:
        'Tried in order; the first match wins. A request that matches none is handled by `unmatched`.',
    }),
    shared_cache: SharedCache.optional().meta({
      description:
        'One token per credential for a whole fleet of replicas, through Redis or Valkey. Off unless present.',
    }),
    tls_intercept: TlsIntercept.optional().meta({
      description:
        'HTTPS interception: a `CONNECT` to a host some route matches is answered with a certificate minted from this CA. Off unless present.',
    }),
    tracing: Tracing.optional().meta({
      description: 'OpenTelemetry tracing by OTLP/HTTP. Off unless present.',
    }),
  })
  .meta({ title: 'token-injector configuration' });

/** The known method nearest to a mistyped one (`GTE` → `GET`), by letters regardless of order. */
function closestMethod(method: string): string | undefined {
  const sorted = (m: string) => [...m].sort().join('');
  return METHODS.find((m) => sorted(m) === sorted(method));
}

/** A configuration file as written (YAML parsed), e.g. for tests that build one as an object. */
export type ConfigFileInput = z.input<typeof ConfigFile>;
