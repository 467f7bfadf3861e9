import { isLoopback } from '../config/rules.js';
import { readCapped } from '../read-capped.js';
import type { Dispatcher } from '../undici.js';
import { request } from '../undici.js';

/** What token-injector uses of an authorization server's metadata (RFC 8414 §2). */
export interface AuthServerMetadata {
  readonly issuer: string;
  readonly tokenEndpoint: URL;
  /** RFC 8705 §5: `mtls_endpoint_aliases.token_endpoint`. */
  readonly mtlsTokenEndpoint?: URL;
  /** `token_endpoint_auth_methods_supported`; undefined when the server does not list them. */
  readonly authMethods?: readonly string[];
  /** `token_endpoint_auth_signing_alg_values_supported`; undefined when not listed. */
  readonly signingAlgs?: readonly string[];
}

/** Why metadata could not be had; the caller turns it into a typed error naming its credential. */
export class DiscoveryFailure extends Error {
  readonly kind: 'unavailable' | 'invalid' | 'issuer_mismatch';
  /** With `issuer_mismatch`: the issuer the metadata named. */
  readonly metadataIssuer: string | undefined;

  constructor(
    kind: DiscoveryFailure['kind'],
    message: string,
    options?: ErrorOptions & { metadataIssuer?: string },
  ) {
    super(message, options);
    this.name = 'DiscoveryFailure';
    this.kind = kind;
    this.metadataIssuer = options?.metadataIssuer;
  }
}

/** Metadata documents are a few kilobytes; this bounds what a wrong URL can make us read. */
const MAX_METADATA_BYTES = 1024 * 1024;

/**
 * Where an issuer's metadata is looked for, in order:
 * 1. RFC 8414 §3.1: `/.well-known/oauth-authorization-server` inserted between the host and the
 *    issuer's path (a terminating "/" of the path removed first);
 * 2. OpenID Connect Discovery 1.0 §4: `/.well-known/openid-configuration` appended to the issuer
 *    (a terminating "/" removed first), what OpenID providers serve.
 */
export function wellKnownUrls(issuer: string): [URL, URL] {
  const url = new URL(issuer);
  const path = url.pathname.replace(/\/$/, '');
  return [
    new URL(`${url.origin}/.well-known/oauth-authorization-server${path}`),
    new URL(`${url.origin}${path}/.well-known/openid-configuration`),
  ];
}

export interface FetchMetadataOptions {
  /** Exactly as configured: the metadata must repeat it character for character (§3.3). */
  readonly issuer: string;
  readonly dispatcher: Dispatcher;
  readonly timeoutMs: number;
  /** An `http://` token endpoint beyond loopback is accepted only with this. */
  readonly allowInsecureHttp: boolean;
}

/**
 * Fetches and checks an issuer's metadata: the RFC 8414 URL first, then the OpenID Connect one
 * when the first does not answer 200. Throws a {@link DiscoveryFailure}.
 */
export async function fetchAuthServerMetadata(opts: FetchMetadataOptions): Promise<AuthServerMetadata> {
  const signal = AbortSignal.timeout(opts.timeoutMs);
  const statuses: string[] = [];
  let transient = false;
  for (const url of wellKnownUrls(opts.issuer)) {
    let status: number;
    let body: string;
    try {
      const res = await request(url, {
        dispatcher: opts.dispatcher,
        method: 'GET',
        headers: { accept: 'application/json' },
        signal,
      });
      status = res.statusCode;
      if (status !== 200) {
        await res.body.dump();
        statuses.push(`${url.href} answered ${status}`);
        if (status >= 500 || status === 429) transient = true;
        continue;
      }
      body = await readCapped(
        res.body,
        MAX_METADATA_BYTES,
        () =>
          new DiscoveryFailure(
            'invalid',
            `metadata at ${url.href} is larger than ${MAX_METADATA_BYTES} bytes`,
          ),
      );
    } catch (err) {
      if (err instanceof DiscoveryFailure) throw err;
      const e = err as { name?: string; code?: string; message?: string };
      const why = signal.aborted ? `no answer within ${opts.timeoutMs} ms` : (e.code ?? e.name ?? 'error');
      throw new DiscoveryFailure(
        'unavailable',
        `metadata of issuer ${opts.issuer} unreachable at ${url.href} (${why})`,
        {
          cause: err,
        },
      );
    }
    return parseMetadata(body, url, opts);
  }
  throw new DiscoveryFailure(
    transient ? 'unavailable' : 'invalid',
    `no metadata for issuer ${opts.issuer}: ${statuses.join('; ')}`,
  );
}

/** RFC 8414 §3.2 and §3.3: a JSON object, the configured issuer, a usable token endpoint. */
export function parseMetadata(
  body: string,
  from: URL,
  opts: Pick<FetchMetadataOptions, 'issuer' | 'allowInsecureHttp'>,
): AuthServerMetadata {
  const invalid = (why: string) => new DiscoveryFailure('invalid', `metadata at ${from.href}: ${why}`);
  let doc: unknown;
  try {
    doc = JSON.parse(body);
  } catch {
    throw invalid('not JSON');
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) throw invalid('not a JSON object');
  const m = doc as Record<string, unknown>;
  if (m['issuer'] !== opts.issuer) {
    const named = typeof m['issuer'] === 'string' ? m['issuer'] : String(JSON.stringify(m['issuer']));
    throw new DiscoveryFailure(
      'issuer_mismatch',
      `metadata at ${from.href} names issuer ${named}, not the configured ${opts.issuer} (RFC 8414 §3.3): refused`,
      { metadataIssuer: named },
    );
  }
  const endpoint = (value: unknown, key: string): URL => {
    if (typeof value !== 'string') throw invalid(`${key} is missing or not a string`);
    let url: URL;
    try {
      url = new URL(value);
    } catch {
      throw invalid(`${key} "${value}" is not a URL`);
    }
    if (url.protocol !== 'https:' && url.protocol !== 'http:') throw invalid(`${key} must be an http(s) URL`);
    // The same rule as a configured token_endpoint (config/rules.ts insecureHttp).
    if (url.protocol === 'http:' && !isLoopback(url.hostname) && !opts.allowInsecureHttp) {
      throw invalid(
        `${key} ${url.origin} is http:// beyond loopback: secrets would cross the network unencrypted (allow_insecure_http allows it)`,
      );
    }
    return url;
  };
  const aliases = m['mtls_endpoint_aliases'];
  const alias =
    typeof aliases === 'object' && aliases !== null
      ? (aliases as Record<string, unknown>)['token_endpoint']
      : undefined;
  const list = (key: string): readonly string[] | undefined => {
    const value = m[key];
    if (value === undefined) return undefined;
    if (!Array.isArray(value) || !value.every((v) => typeof v === 'string'))
      throw invalid(`${key} is not a list of strings`);
    return Object.freeze([...value]);
  };
  const authMethods = list('token_endpoint_auth_methods_supported');
  const signingAlgs = list('token_endpoint_auth_signing_alg_values_supported');
  return Object.freeze({
    issuer: opts.issuer,
    tokenEndpoint: endpoint(m['token_endpoint'], 'token_endpoint'),
    ...(alias !== undefined
      ? { mtlsTokenEndpoint: endpoint(alias, 'mtls_endpoint_aliases.token_endpoint') }
      : {}),
    ...(authMethods ? { authMethods } : {}),
    ...(signingAlgs ? { signingAlgs } : {}),
  });
}
