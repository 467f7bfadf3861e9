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
  describe,
  duration,
  filePath,
  flag,
  fraction,
  HEADER_NAME,
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
    max_header_size: size({ bytes: 1024, why: 'must be at least 1KiB' })
      .prefault('16KiB')
      .meta({ description: 'Larger request headers get 431.' }),
    // At least a handful: a request needs Host, and a token-carrying header may be added.
    max_headers: whole(8, 10_000)
      .prefault(100)
      .meta({ description: 'More header fields get 431 (never truncated).' }),
    headers_timeout: duration({ positive: true })
      .prefault('30s')
      .meta({ description: 'To receive the request headers.' }),
    idle_timeout: duration({ positive: true })
      .prefault('5s')
      .meta({ description: 'An idle keep-alive connection is closed after this.' }),
    tunnel_idle_timeout: duration({ positive: true }).prefault('5m').meta({
      description: 'A WebSocket or passed-through CONNECT tunnel silent both ways this long is closed.',
    }),
    request_timeout: duration()
      .prefault('5m')
      .meta({ description: 'To receive the whole request, body included; 0 = no limit.' }),
    max_connections: whole(1, 1_000_000)
      .prefault(4096)
      .meta({ description: 'Open client connections; more are closed at accept and counted.' }),
    replay_buffer_total: size()
      .prefault('32MiB')
      .meta({ description: 'Memory for bodies kept for a retry after a 401, over all requests.' }),
  })
  .prefault({})
  .meta({ description: 'Limits of the proxy listener against slow or oversized clients.' });

const Admin = z
  .strictObject({
    listen: listenAddress('127.0.0.1:9090').meta({
      description:
        'GET /healthz, /readyz and /metrics. In Kubernetes, probes reach the pod IP, so a sidecar uses 0.0.0.0:9090 there.',
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
      .optional()
      .meta({
        description:
          'Exact host, or *.example.com for any subdomain. host:port matches only that port; without a port any port matches. Omit to match every host.',
      }),
    path_prefix: matching(/^\//, 'must start with "/"')
      .optional()
      .meta({ description: 'A plain prefix of the path.' }),
    methods: words({ item: METHOD_LIST, minItems: 1 })
      .superRefine((methods, ctx) => {
        const bad = methods.find((m) => !KNOWN_METHODS.has(m.toUpperCase()));
        if (bad !== undefined) {
          const hint = HEADER_NAME.test(bad) ? closestMethod(bad.toUpperCase()) : undefined;
          ctx.addIssue(`"${bad}" is not a known HTTP method${hint ? ` (did you mean "${hint}"?)` : ''}`);
        } else if (methods.length === 0) ctx.addIssue('must list at least one method');
      })
      .transform((methods): ReadonlySet<string> => new Set(methods.map((m) => m.toUpperCase())))
      .optional()
      .meta({ description: 'A list, or one space-separated string. Default: every method.' }),
  })
  .prefault({})
  .meta({ description: 'Which requests the route takes; the first matching route wins.' });

export const Route = z.strictObject({
  name: matching(NAME, 'a route name may hold only letters, digits, ".", "_" and "-"').meta({
    description: 'Letters, digits, ".", "_" or "-"; unique. Used in metrics and logs.',
  }),
  match: RouteMatch,
  upstream: httpUrl({ query: false })
    .transform((url) => {
      url.pathname = url.pathname.replace(/\/+$/, '');
      return url;
    })
    .meta({
      description:
        'Where matched requests go: scheme, host, port and an optional base path. An https:// upstream gets TLS from the proxy (verified).',
    }),
  strip_prefix: flag()
    .prefault(false)
    .meta({ description: 'Remove match.path_prefix before appending the path to upstream.' }),
  credential: text().meta({ description: 'The name of the credential whose token is injected.' }),
  header: matching(HEADER_NAME, (v) => `"${String(v)}" is not a valid header name`)
    .refine((h) => !UNINJECTABLE_HEADERS.has(h.toLowerCase()), {
      error: (issue) => `"${String(issue.input)}" is a connection or routing header and cannot carry a token`,
    })
    .prefault('Authorization')
    .meta({ description: 'Replaces any header of that name the app sent.' }),
  prefix: text()
    .refine((p) => !/[\r\n\0]/.test(p), 'must not contain CR, LF or NUL')
    .prefault('Bearer ')
    .meta({ description: 'Written before the token.' }),
  scope: words()
    .optional()
    .meta({ description: "Overrides the credential's scope for this route's tokens." }),
  audience: text()
    .optional()
    .meta({ description: "Overrides the credential's audience for this route's tokens." }),
  resource: absoluteUri('must be an absolute URI (RFC 8707 §2)')
    .optional()
    .meta({ description: "Overrides the credential's RFC 8707 resource for this route's tokens." }),
  tls: TlsClientFiles.meta({ description: 'Extra trust and a client certificate towards the upstream.' }),
  allow_insecure_http: flag()
    .prefault(false)
    .meta({ description: 'Allow an http:// upstream beyond loopback.' }),
  strict_path: flag().prefault(true).meta({
    description:
      'Refuse (400) paths an upstream may decode into something else: %00, overlong UTF-8 and segments that decode to "." or "..". false forwards them verbatim.',
  }),
  upstream_protocol: choice(['http1', 'http2']).prefault('http1').meta({
    description: 'http2: h2 by ALPN to an https:// upstream, h2c with prior knowledge to an http:// one.',
  }),
  retry_on_401: flag().prefault(false).meta({
    description:
      'Retry once with a new token after any 401, not only after WWW-Authenticate: Bearer error="invalid_token".',
  }),
  replay_buffer: size()
    .prefault('64KiB')
    .meta({ description: 'Request bodies up to this size are kept for a retry after a 401.' }),
  connect_timeout: duration({ positive: true })
    .prefault('10s')
    .meta({ description: 'To connect to the upstream (504).' }),
  response_timeout: duration({ positive: true })
    .prefault('60s')
    .meta({ description: "Until the upstream's response headers (504)." }),
  upstream_max_connections: whole(1, 65_535)
    .prefault(256)
    .meta({ description: 'Connections to the upstream; more requests wait within response_timeout.' }),
});

const REDIS_KEY_PREFIX = /^[^\s{}]*$/;

export const SharedCache = z.strictObject({
  url: text().meta({
    description:
      'redis:// or rediss:// (TLS, verified), with an optional database number as path (/0); no user info.',
  }),
  username: text().optional().meta({ description: 'A Redis ACL user.' }),
  password: text().optional().meta({ description: 'Keep it out of the file: ${env:NAME} or ${file:PATH}.' }),
  key_prefix: matching(REDIS_KEY_PREFIX, 'must not contain white space, "{" or "}" (Redis Cluster hash tags)')
    .prefault('token-injector:')
    .meta({ description: 'Before every key and the pub/sub channel.' }),
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
    .meta({
      description:
        '32-byte keys in base64 (openssl rand -base64 32). The first encrypts and names the entries, every one decrypts.',
    }),
  timeout: duration({ positive: true })
    .prefault('200ms')
    .meta({ description: 'Per Redis command; past it the replica goes on alone.' }),
  tls: TlsClientFiles.meta({ description: 'rediss:// only: extra trust and a client certificate.' }),
  cluster: flag()
    .prefault(false)
    .meta({ description: 'true: url is one seed node of a Redis or Valkey Cluster.' }),
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
  ca_cert_file: filePath().meta({ description: 'The CA the apps trust (PEM).' }),
  ca_key_file: filePath().meta({
    description: 'Its private key; refused if group or others may read it (chmod 600).',
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
    .meta({ description: "Of each minted certificate, 1h to 9528h (397 days); never past the CA's end." }),
});

export const Tracing = z.strictObject({
  otlp_endpoint: httpUrl({ query: false }).meta({
    description: 'The OpenTelemetry collector; spans are POSTed to /v1/traces under it.',
  }),
  service_name: text()
    .refine((s) => s !== '', 'must not be empty')
    .prefault('token-injector')
    .meta({ description: 'service.name of the spans.' }),
  sample_ratio: fraction(0, 1, false, 'must be a fraction from 0 to 1, e.g. 0.1 for one trace in ten')
    .prefault(1)
    .meta({ description: "Of new traces (an app's sampled traceparent is always followed), 0 to 1." }),
});

/** The whole file. */
export const ConfigFile = z
  .strictObject({
    listen: listenAddress('127.0.0.1:8080').meta({
      description: 'The proxy port, for both modes (reverse and forward). A bare port binds to 127.0.0.1.',
    }),
    allow_remote_clients: flag().prefault(false).meta({
      description:
        'A listen address beyond loopback lets other machines send requests with your tokens: refused unless true.',
    }),
    limits: Limits,
    admin: Admin.meta({ description: 'The admin listener.' }),
    log: Log.meta({ description: 'Log level: trace, debug, info, warn or error.' }),
    unmatched: choice(['deny', 'passthrough']).prefault('deny').meta({
      description:
        'What happens to a request that matches no route: deny (403, CONNECT refused) or passthrough (forwarded without a token).',
    }),
    shutdown_timeout: duration()
      .prefault('20s')
      .meta({ description: 'How long in-flight requests may run after SIGTERM/SIGINT before they are cut.' }),
    credentials: z
      .record(matching(NAME, 'a credential name may hold only letters, digits, ".", "_" and "-"'), Credential)
      .optional()
      .meta({ description: 'Where tokens come from, by name.' }),
    routes: z.array(Route).optional().meta({
      description:
        'Tried in order; the first match wins. A request that matches none is handled by unmatched.',
    }),
    shared_cache: SharedCache.optional().meta({
      description:
        'One token per credential for a whole fleet of replicas, through Redis or Valkey. Off unless present.',
    }),
    tls_intercept: TlsIntercept.optional().meta({
      description:
        'HTTPS interception: a CONNECT to a host some route matches is answered with a certificate minted from this CA. Off unless present.',
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
