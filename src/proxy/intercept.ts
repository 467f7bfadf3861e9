import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { type SecureContext, TLSSocket } from 'node:tls';
import { InternalError, TokenInjectorError } from '../errors.js';
import type { Logger } from '../log/logger.js';
import type { Metrics } from '../metrics/metrics.js';
import type { HostPort } from '../router/host.js';
import { errorBody, statusFor } from './error-response.js';
import { answerAndClose } from './raw-response.js';
import { markTunnel } from './tunnel.js';

/** Certificates for intercepted hosts (tls_intercept), minted from the configured CA. */
export interface CertificateSource {
  /** The TLS context presenting a certificate for `host` (a name, or an IP literal without brackets). */
  secureContextFor(host: string): Promise<SecureContext>;
}

export interface InterceptDeps {
  readonly certificates: CertificateSource;
  readonly metrics: Metrics;
  readonly logger: Logger;
  /** How long the app may take to finish its TLS handshake (the listener's `headers_timeout`). */
  readonly handshakeTimeoutMs: number;
}

/**
 * Takes over a CONNECT tunnel; `serve` hands the decrypted connection to the HTTP listener, where
 * it is served like a plain one.
 */
export type Interceptor = (
  client: Duplex,
  head: Buffer,
  target: HostPort,
  serve: (socket: Duplex) => void,
) => void;

/** At most one warning a minute about refused handshakes: a misconfigured app is not a log flood. */
const HANDSHAKE_WARN_INTERVAL_MS = 60_000;

/**
 * Terminates an app's CONNECT tunnel with a certificate for the host it named, so the requests
 * inside can be routed and given a token like plain ones. The certificate is ready before the
 * tunnel is accepted: if it cannot be had, the app gets an error instead of a dead handshake.
 */
export function createInterceptor(deps: InterceptDeps): Interceptor {
  const { certificates, metrics, logger } = deps;
  let warnedAt = Number.NEGATIVE_INFINITY;
  let failedSince = 0;
  // Only a TLS failure is worth a warning: an app that resets or goes quiet mid-handshake (it
  // was stopped, or gave up) says nothing about the CA.
  const handshakeFailed = (target: HostPort, err: Error) => {
    const code = (err as NodeJS.ErrnoException).code ?? '';
    if (!code.startsWith('ERR_SSL_')) {
      metrics.interceptedConnections.inc({ outcome: 'abandoned' });
      return;
    }
    metrics.interceptedConnections.inc({ outcome: 'handshake_failed' });
    failedSince++;
    const now = performance.now();
    if (now - warnedAt < HANDSHAKE_WARN_INTERVAL_MS) return;
    logger.warn(
      { event: 'intercept_handshake_failed', host: target.host, failed: failedSince, reason: code },
      /CERTIFICATE|UNKNOWN_CA/.test(code)
        ? 'an app refused the interception certificate; does it trust tls_intercept.ca_cert_file?'
        : 'a TLS handshake inside an intercepted CONNECT failed',
    );
    warnedAt = now;
    failedSince = 0;
  };

  return (client, head, target, serve) => {
    certificates.secureContextFor(bare(target.host)).then(
      (secureContext) => {
        if (client.destroyed) return;
        client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
        // Bytes the app sent after its CONNECT (an eager ClientHello) belong to the handshake.
        if (head.length > 0) client.unshift(head);
        const tls = new TLSSocket(client as Socket, {
          isServer: true,
          secureContext,
          // `serve` hands an h2 connection to the HTTP/2 server and any other to HTTP/1.1.
          ALPNProtocols: ['h2', 'http/1.1'],
        });
        markTunnel(tls, target);
        let secure = false;
        const timer = setTimeout(() => tls.destroy(), deps.handshakeTimeoutMs);
        timer.unref();
        tls.once('secure', () => {
          secure = true;
          clearTimeout(timer);
          metrics.interceptedConnections.inc({ outcome: 'ok' });
          serve(tls);
        });
        let failed = false;
        tls.on('error', (err) => {
          if (!secure && !failed) {
            failed = true;
            clearTimeout(timer);
            handshakeFailed(target, err);
          }
          tls.destroy();
        });
        // The listener's sockets allow half-open connections (the HTTP server ends them itself),
        // and so does this one: an app that hangs up before its handshake must not keep it.
        tls.once('end', () => {
          if (!secure) tls.destroy();
        });
        tls.once('close', () => {
          clearTimeout(timer);
          // Closed (or timed out) before the handshake ended, without a TLS error.
          if (!secure && !failed) metrics.interceptedConnections.inc({ outcome: 'abandoned' });
          client.destroy();
        });
      },
      (err: unknown) => {
        metrics.interceptedConnections.inc({ outcome: 'mint_failed' });
        logger.error(
          { event: 'intercept_mint_failed', host: target.host, err: { message: (err as Error).message } },
          'could not mint a certificate for an intercepted host',
        );
        const failure =
          err instanceof TokenInjectorError
            ? err
            : new InternalError(`no certificate could be made for ${target.host}`);
        answerAndClose(
          client,
          statusFor(failure.code),
          JSON.stringify(errorBody(failure, { host: target.host })),
        );
      },
    );
  };
}

/** `[::1]` → `::1`: certificates name IP literals without the URL brackets. */
function bare(host: string): string {
  return host.startsWith('[') ? host.slice(1, -1) : host;
}
