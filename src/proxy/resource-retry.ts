import type { RouteConfig } from '../config/types.js';
import type { Credentials, RouteTokens } from '../credentials/credentials.js';
import { ResourceDiscovery } from '../discovery/protected-resource.js';
import type { Logger } from '../log/logger.js';
import type { Upstreams } from './upstreams.js';

/** The route state a discovery updates: its tokens become those for the discovered resource. */
export interface DiscoveringRoute {
  readonly config: RouteConfig;
  tokens: RouteTokens;
}

/**
 * A `resource_metadata: discover` route's protected-resource discovery (RFC 9728), as the proxy
 * uses it: the upstream's first 401 starts it, and the request that met that 401 is retried
 * once the resource is known. Made once per such route; other routes have none.
 */
export class ResourceRetry {
  readonly #discovery: ResourceDiscovery;

  constructor(discovery: ResourceDiscovery) {
    this.#discovery = discovery;
  }

  /** Whether an answer calls for discovery: a 401 while the resource is still unknown. */
  wants(status: number): boolean {
    return status === 401 && this.#discovery.resource === undefined;
  }

  /**
   * Starts discovery from the 401's challenge (RFC 9728 §5.1). Returns the discovery to await
   * before the one retry; undefined when the request cannot be sent again: the app then gets
   * this 401, and the requests after it the discovered resource.
   */
  discover(wwwAuthenticate: string | string[] | undefined, mayRetry: boolean): Promise<string> | undefined {
    const discovering = this.#discovery.discover(this.#discovery.challenged(wwwAuthenticate));
    if (mayRetry) return discovering;
    discovering.catch(() => {});
    return undefined;
  }
}

/**
 * The retry of a discovering route: the metadata is fetched over the route's own connections to
 * the upstream, and once the resource is known the route's tokens are those requested with
 * `resource` set to it (RFC 8707).
 */
export function resourceRetry(
  state: DiscoveringRoute,
  deps: { readonly credentials: Credentials; readonly upstreams: Upstreams; readonly logger: Logger },
): ResourceRetry {
  const r = state.config;
  const cred = deps.credentials.config(r.credential);
  return new ResourceRetry(
    new ResourceDiscovery({
      route: r.name,
      upstream: r.upstream,
      // Validation makes sure the credential has an issuer.
      issuer: cred.issuer ?? '',
      dispatcher: deps.upstreams.forRoute(r),
      timeoutMs: r.responseTimeoutMs,
      discovered: (resource) => {
        state.tokens = deps.credentials.forRoute({ ...r, tokenScope: { ...r.tokenScope, resource } });
        deps.logger.info(
          { event: 'resource_discovered', route: r.name, resource },
          'protected resource discovered',
        );
      },
    }),
  );
}
