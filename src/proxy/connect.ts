import type { IncomingMessage } from 'node:http';
import { connect, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Config } from '../config/types.js';
import { ConnectNotAllowedError } from '../errors.js';
import type { Logger } from '../log/logger.js';
import { splitAuthority } from '../router/host.js';
import type { RoutedHost } from '../router/routed-hosts.js';
import type { Router } from '../router/router.js';
import { errorBody, statusFor } from './error-response.js';
import type { Interceptor } from './intercept.js';
import { answerAndClose } from './raw-response.js';
import { splice } from './splice.js';
import { versionRefusal } from './target.js';

/** What CONNECT needs to terminate tunnels to routed hosts (`tls_intercept`). */
export interface ConnectInterception {
  readonly routedHost: RoutedHost;
  readonly intercept: Interceptor;
}

/**
 * CONNECT to a routed host is terminated when `tls_intercept` is set, so the requests inside get
 * their tokens. Otherwise a tunnel is opaque TLS into which no token can be injected: it is
 * refused unless `unmatched: passthrough`, with an answer that tells the app how to reach a
 * route instead.
 */
export function createConnectHandler(
  config: Config,
  logger: Logger,
  route: Router,
  interception?: ConnectInterception,
) {
  return (req: IncomingMessage, client: Duplex, head: Buffer, serve: (socket: Duplex) => void): void => {
    client.on('error', () => client.destroy());
    const badVersion = versionRefusal(req);
    if (badVersion) {
      refuse(client, statusFor(badVersion.code), JSON.stringify(errorBody(badVersion)));
      return;
    }
    const target = splitAuthority(req.url ?? '', 443);
    if (target && interception?.routedHost(target.host, target.port)) {
      interception.intercept(client, head, target, serve);
      return;
    }
    if (config.unmatched !== 'passthrough' || !target) {
      const err = new ConnectNotAllowedError(
        !target
          ? 'CONNECT needs a host:port target'
          : interception
            ? `CONNECT is refused: no route names ${target.host} (port ${target.port}), and unmatched is deny`
            : 'CONNECT tunnels are refused: a token cannot be injected into TLS the proxy does not terminate. Set tls_intercept to let the proxy terminate tunnels to routed hosts, or send routed calls to the proxy as plain HTTP (http:// URLs); the proxy speaks TLS to the upstream.',
      );
      refuse(
        client,
        statusFor(err.code),
        JSON.stringify(errorBody(err, target ? { host: target.host } : {})),
      );
      return;
    }
    if (!interception && route({ host: target.host, port: target.port, path: '/', method: 'GET' })) {
      logger.warn(
        { event: 'connect_to_routed_host', host: target.host },
        'CONNECT to a routed host passes without a token; set tls_intercept or send plain HTTP to get one',
      );
    }
    const upstream: Socket = connect({ host: target.host.replace(/^\[|\]$/g, ''), port: target.port });
    let connected = false;
    const abandon = () => upstream.destroy();
    client.once('close', abandon);
    upstream.once('connect', () => {
      connected = true;
      client.off('close', abandon);
      client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      if (head.length > 0) upstream.write(head);
      splice(client as Socket, upstream, config.limits.tunnelIdleTimeoutMs);
    });
    upstream.on('error', (err) => {
      // Once connected, splice() owns both sockets and their errors.
      if (connected) return;
      refuse(
        client,
        502,
        JSON.stringify({
          error: 'upstream_unreachable',
          detail: `CONNECT to ${target.host}:${target.port} failed (${(err as NodeJS.ErrnoException).code ?? 'error'})`,
        }),
      );
    });
  };
}

function refuse(client: Duplex, status: number, body: string): void {
  answerAndClose(client, status, body);
}
