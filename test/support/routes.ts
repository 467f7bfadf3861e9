// biome-ignore-all lint/suspicious/noTemplateCurlyInString: the configuration uses the literal ${env:} syntax
import type { RouteConfig } from '../../src/config/types.js';
import { configFrom } from './injector.js';

/**
 * Validated routes, one per name to its upstream (matching host `<name>.example.com`), all
 * carrying the token of one client_credentials credential that is never fetched.
 */
export function routesTo(upstreams: Record<string, string>): readonly RouteConfig[] {
  return configFrom(
    {
      credentials: {
        orders: {
          token_endpoint: 'https://idp.example.com/oauth2/token',
          grant_type: 'client_credentials',
          client_id: 'id',
          client_secret: '${env:ROUTES_TO_TEST_SECRET}',
        },
      },
      routes: Object.entries(upstreams).map(([name, upstream]) => ({
        name,
        match: { host: `${name}.example.com` },
        upstream,
        credential: 'orders',
      })),
    },
    { ROUTES_TO_TEST_SECRET: 'secret' },
  ).routes;
}
