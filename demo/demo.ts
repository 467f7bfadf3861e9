/**
 * `npm run demo`: a real authorization server and a verifying echo upstream on loopback,
 * token-injector in front of them with demo/config.yaml, one request through it, then it keeps
 * running until Ctrl-C so you can try your own requests.
 */
import { fileURLToPath } from 'node:url';
import { startTokenInjector } from '../src/app.js';
import { loadConfig } from '../src/config/load.js';
import { ConfigError } from '../src/errors.js';
import { BASIC_CLIENT, startAuthServer } from '../test/support/auth-server.js';
import { plainRequest } from '../test/support/http-client.js';
import { type EchoResponse, startUpstream } from '../test/support/upstream.js';

const configFile = fileURLToPath(new URL('config.yaml', import.meta.url));

async function main(): Promise<void> {
  const auth = await startAuthServer();
  const upstream = await startUpstream({
    issuer: auth.issuer,
    jwksUri: auth.jwksUri,
    audience: auth.audience,
  });
  const env = {
    ...process.env,
    DEMO_TOKEN_ENDPOINT: auth.tokenEndpoint,
    DEMO_UPSTREAM: upstream.url,
    DEMO_CLIENT_SECRET: BASIC_CLIENT.secret,
  };
  let config: ReturnType<typeof loadConfig>;
  try {
    config = loadConfig(configFile, { env, readFile: () => '', baseDir: '.' });
  } catch (err) {
    if (err instanceof ConfigError) console.error(`demo/config.yaml is invalid:\n${err.message}`);
    throw err;
  }
  const injector = await startTokenInjector(config).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'EADDRINUSE') {
      console.error(
        `Port ${config.listen.port} or ${config.admin.listen.port} is in use: stop what uses it and retry.`,
      );
    }
    throw err;
  });
  const proxy = `http://127.0.0.1:${injector.proxyAddress.port}`;
  const admin = `http://127.0.0.1:${injector.adminAddress.port}`;

  console.log('\n== token-injector demo ==');
  console.log(`authorization server  ${auth.issuer}  (oidc-provider, token endpoint ${auth.tokenEndpoint})`);
  console.log(`echo upstream         ${upstream.url}  (verifies the JWT it receives)`);
  console.log(`token-injector        ${proxy}  (admin ${admin})\n`);

  console.log('The app sends:  GET http://orders.example.com/v1/orders  via HTTP_PROXY, with no token.');
  const res = await plainRequest(proxy, 'http://orders.example.com/v1/orders', {
    headers: { 'x-request-id': 'demo-1' },
  });
  const body = res.json<EchoResponse>();
  const authz = String(body.headers.authorization ?? '');
  console.log(`The upstream answered ${res.status}. It received:`);
  console.log(`  ${body.method} ${body.path}`);
  console.log(`  host: ${body.headers.host}`);
  console.log(
    `  authorization: ${authz.slice(0, 20)}…${authz.slice(-6)}  (a JWT injected by token-injector)`,
  );
  console.log(`  via: ${body.headers.via}`);
  console.log(
    `  verified claims: ${JSON.stringify({ iss: body.claims?.iss, aud: body.claims?.aud, client_id: body.claims?.client_id, scope: body.claims?.scope })}`,
  );

  console.log('\nTry it yourself (Ctrl-C to stop):');
  console.log(`  curl -x ${proxy} http://orders.example.com/v1/orders           # forward mode (HTTP_PROXY)`);
  console.log(`  curl -H 'Host: orders.example.com' ${proxy}/v1/orders   # reverse mode`);
  console.log(`  curl ${proxy}/elsewhere -H 'Host: other.example.com'  # no route: 403 JSON`);
  console.log(`  curl ${admin}/readyz ; curl ${admin}/metrics`);
  console.log('  Log lines of token-injector follow.\n');

  const stop = async () => {
    await injector.close();
    await upstream.close();
    await auth.close();
    process.exit(0);
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  if (process.env['DEMO_EXIT'] === '1') await stop();
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
