import type { HostPort } from '../router/host.js';

/** Where an intercepted connection's CONNECT pointed: every request on it is for that origin. */
const TUNNEL = Symbol('token-injector.tunnel');

interface Marked {
  [TUNNEL]?: HostPort;
}

/** Marks a decrypted socket with the authority its CONNECT named, before any request is read on it. */
export function markTunnel(socket: object, target: HostPort): void {
  (socket as Marked)[TUNNEL] = target;
}

/** The CONNECT authority of an intercepted connection; undefined for a plain one. */
export function tunnelOf(socket: object | null | undefined): HostPort | undefined {
  return socket == null ? undefined : (socket as Marked)[TUNNEL];
}
