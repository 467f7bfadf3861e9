import {
  AuthorizationServerNotListedError,
  type ResourceDiscoveryError,
  ResourceMetadataInvalidError,
  ResourceMetadataUnavailableError,
  ResourceMismatchError,
} from '../errors.js';
import { readCapped } from '../read-capped.js';
import { type Dispatcher, request } from '../undici.js';

/** Metadata documents are small; this bounds what a wrong URL can make us read. */
const MAX_METADATA_BYTES = 256 * 1024;
/** After a failed discovery, how long its error is answered before the metadata is asked again. */
export const RESOURCE_RETRY_MS = 30_000;

/**
 * RFC 9728 §3.1: the metadata of a resource at `https://api.example.com/mcp` is at
 * `https://api.example.com/.well-known/oauth-protected-resource/mcp` (the well-known segment
 * inserted before the path, a terminating "/" removed).
 */
export function wellKnownResourceUrl(resource: URL): URL {
  const path = resource.pathname.replace(/\/$/, '');
  return new URL(`${resource.origin}/.well-known/oauth-protected-resource${path}`);
}

/**
 * RFC 9728 §5.1: the `resource_metadata` parameter of a `Bearer` (or `DPoP`) challenge in a
 * `WWW-Authenticate` header; undefined when there is none.
 */
export function resourceMetadataParam(header: string | string[] | undefined): string | undefined {
  if (header === undefined) return undefined;
  const value = Array.isArray(header) ? header.join(', ') : header;
  if (!/\b(?:bearer|dpop)\b/i.test(value)) return undefined;
  return /\bresource_metadata\s*=\s*"([^"]*)"/i.exec(value)?.[1];
}

export interface ResourceDiscoveryOptions {
  readonly route: string;
  /** The route's upstream: the resource the metadata must name (§3.3). */
  readonly upstream: URL;
  /** The credential's issuer, exactly as configured: it must be among `authorization_servers`. */
  readonly issuer: string;
  /** The route's own connections to its upstream: metadata is only fetched from there. */
  readonly dispatcher: Dispatcher;
  readonly timeoutMs: number;
  /** Called once the resource is known: the route's tokens are then requested for it. */
  readonly discovered: (resource: string) => void;
  readonly now?: () => number;
}

/**
 * Protected-resource discovery for one route (RFC 9728, as MCP clients do it): on the upstream's
 * first 401, its metadata is fetched from the challenge's `resource_metadata` URL, or else from
 * the well-known URL at the upstream; its `resource` must be the route's upstream and the
 * credential's issuer one of its `authorization_servers`. One fetch at a time; a failure is
 * answered for {@link RESOURCE_RETRY_MS} before the metadata is asked again.
 */
export class ResourceDiscovery {
  readonly #opts: ResourceDiscoveryOptions;
  readonly #now: () => number;
  #resource: string | undefined;
  #flight: Promise<string> | undefined;
  #failed: { readonly error: ResourceDiscoveryError; readonly until: number } | undefined;

  constructor(opts: ResourceDiscoveryOptions) {
    this.#opts = opts;
    this.#now = opts.now ?? Date.now;
  }

  /** The resource discovered, once it is known. */
  get resource(): string | undefined {
    return this.#resource;
  }

  /** A 401 from the upstream: the metadata URL to discover from (the challenge's, else the well-known one). */
  challenged(wwwAuthenticate: string | string[] | undefined): string {
    return resourceMetadataParam(wwwAuthenticate) ?? wellKnownResourceUrl(this.#opts.upstream).href;
  }

  /** Discovers the resource from the metadata at `url`; rejects with a typed error naming the route. */
  discover(url: string): Promise<string> {
    if (this.#resource !== undefined) return Promise.resolve(this.#resource);
    const failed = this.#failed;
    if (failed !== undefined && this.#now() < failed.until) return Promise.reject(failed.error);
    this.#flight ??= this.#fetch(url).then(
      (resource) => {
        this.#flight = undefined;
        this.#failed = undefined;
        this.#resource = resource;
        this.#opts.discovered(resource);
        return resource;
      },
      (err: ResourceDiscoveryError) => {
        this.#flight = undefined;
        this.#failed = { error: err, until: this.#now() + RESOURCE_RETRY_MS };
        throw err;
      },
    );
    return this.#flight;
  }

  async #fetch(href: string): Promise<string> {
    const { route, upstream } = this.#opts;
    const invalid = (why: string) =>
      new ResourceMetadataInvalidError(route, `resource metadata at ${href}: ${why}`);
    if (!URL.canParse(href)) throw invalid('not a URL');
    const url = new URL(href);
    // Only the configured upstream is asked: a challenge cannot send the proxy elsewhere.
    if (url.origin !== upstream.origin) throw invalid(`not at the upstream's origin ${upstream.origin}`);
    let body: string;
    try {
      const res = await request(url, {
        dispatcher: this.#opts.dispatcher,
        method: 'GET',
        headers: { accept: 'application/json' },
        signal: AbortSignal.timeout(this.#opts.timeoutMs),
      });
      if (res.statusCode !== 200) {
        await res.body.dump();
        throw new ResourceMetadataUnavailableError(
          route,
          `resource metadata at ${href} answered ${res.statusCode}`,
        );
      }
      body = await readCapped(
        res.body,
        MAX_METADATA_BYTES,
        () => new Error(`larger than ${MAX_METADATA_BYTES} bytes`),
      );
    } catch (err) {
      if (err instanceof ResourceMetadataUnavailableError) throw err;
      const e = err as { code?: string; name?: string };
      throw new ResourceMetadataUnavailableError(
        route,
        `resource metadata at ${href} unreachable (${e.code ?? e.name ?? 'error'})`,
        { cause: err },
      );
    }
    return this.#check(body, href);
  }

  /** RFC 9728 §3.2, §3.3: a JSON object naming this resource and our authorization server. */
  #check(body: string, href: string): string {
    const { route, upstream, issuer } = this.#opts;
    let doc: unknown;
    try {
      doc = JSON.parse(body);
    } catch {
      throw new ResourceMetadataInvalidError(route, `resource metadata at ${href}: not JSON`);
    }
    if (typeof doc !== 'object' || doc === null || Array.isArray(doc))
      throw new ResourceMetadataInvalidError(route, `resource metadata at ${href}: not a JSON object`);
    const m = doc as Record<string, unknown>;
    const resource = m['resource'];
    if (typeof resource !== 'string')
      throw new ResourceMetadataInvalidError(route, `resource metadata at ${href}: no resource`);
    // Compared as URLs: the configured upstream is kept normalized ("https://a" is "https://a/").
    if (!URL.canParse(resource) || new URL(resource).href !== upstream.href) {
      throw new ResourceMismatchError(
        route,
        `resource metadata at ${href} is for resource ${resource}, not the route's upstream ${upstream.href} (RFC 9728 §3.3): refused`,
      );
    }
    const servers = m['authorization_servers'];
    if (!Array.isArray(servers) || !servers.includes(issuer)) {
      throw new AuthorizationServerNotListedError(
        route,
        `resource ${resource} does not list the credential's issuer ${issuer} among its authorization_servers (${Array.isArray(servers) ? servers.join(', ') : 'none'})`,
      );
    }
    return resource;
  }
}
