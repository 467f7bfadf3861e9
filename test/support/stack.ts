import { type AuthServer, BASIC_CLIENT, startAuthServer, type TestClient } from './auth-server.js';
import { watchSecret } from './leak-watch.js';
import { startUpstream, type Upstream } from './upstream.js';

export interface Stack {
  readonly auth: AuthServer;
  readonly upstream: Upstream;
  close(): Promise<void>;
}

/** A real authorization server and a real upstream that verifies its tokens. */
export async function startStack(options: { accessTokenTtlSeconds?: number } = {}): Promise<Stack> {
  const auth = await startAuthServer(options);
  const upstream = await startUpstream({
    issuer: auth.issuer,
    jwksUri: auth.jwksUri,
    audience: auth.audience,
  });
  return {
    auth,
    upstream,
    close: async () => {
      for (const token of [...auth.issuedTokens, ...auth.issuedRefreshTokens]) watchSecret(token);
      await upstream.close();
      await auth.close();
    },
  };
}

/** A credential block for the real authorization server. */
export function credentialFor(auth: AuthServer, client: TestClient = BASIC_CLIENT, extra: object = {}) {
  return {
    token_endpoint: auth.tokenEndpoint,
    grant_type: 'client_credentials',
    client_id: client.id,
    client_secret: client.secret,
    auth_method: client.authMethod,
    scope: ['orders.read', 'orders.write'],
    ...extra,
  };
}
