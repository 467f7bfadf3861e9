import type { IncomingMessage } from 'node:http';
import { connect, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Config } from '../config/types.js';
import { ConnectNotAllowedError } from '../errors.js';
import type { Logger } from '../log.js';
import { splitAuthority } from '../router/host.js';
import type { Router } from '../router/router.js';
import { errorBody, statusFor } from './error-response.js';
import { answerAndClose } from './raw-response.js';
import { versionRefusal } from './target.js';

/**
 * CONNECT opens an opaque TLS tunnel into which no token can be injected. It is refused unless
 * `unmatched: passthrough`, with an answer that tells the app how to reach a route instead.
 */
export function createConnectHandler(config: Config, logger: Logger, route: Router) {
  return (req: IncomingMessage, client: Duplex, head: Buffer): void => {
    client.on('error', () => client.destroy());
    const badVersion = versionRefusal(req);
    if (badVersion) {
      refuse(client, statusFor(badVersion.code), JSON.stringify(errorBody(badVersion)));
      return;
    }
    const target = splitAuthority(req.url ?? '', 443);
    if (config.unmatched !== 'passthrough' || !target) {
      const err = new ConnectNotAllowedError(
        target
          ? 'CONNECT tunnels are refused: a token cannot be injected into TLS the proxy does not terminate. Send routed calls to the proxy as plain HTTP (http:// URLs); the proxy speaks TLS to the upstream.'
          : 'CONNECT needs a host:port target',
      );
      refuse(
        client,
        statusFor(err.code),
        JSON.stringify(errorBody(err, target ? { host: target.host } : {})),
      );
      return;
    }
    if (route({ host: target.host, port: target.port, path: '/', method: 'GET' })) {
      logger.warn(
        { event: 'connect_to_routed_host', host: target.host },
        'CONNECT to a routed host passes without a token; send plain HTTP to get one',
      );
    }
    const upstream: Socket = connect({ host: target.host.replace(/^\[|\]$/g, ''), port: target.port });
    let connected = false;
    upstream.once('connect', () => {
      connected = true;
      client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      if (head.length > 0) upstream.write(head);
      upstream.pipe(client);
      client.pipe(upstream);
    });
    upstream.on('error', (err) => {
      if (!connected) {
        refuse(
          client,
          502,
          JSON.stringify({
            error: 'upstream_unreachable',
            detail: `CONNECT to ${target.host}:${target.port} failed (${(err as NodeJS.ErrnoException).code ?? 'error'})`,
          }),
        );
      } else client.destroy();
    });
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  };
}

function refuse(client: Duplex, status: number, body: string): void {
  answerAndClose(client, status, body);
}
