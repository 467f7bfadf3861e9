import type { Socket } from 'node:net';
import { endAndClose } from './raw-response.js';

/**
 * Joins two connections both ways until either side closes. Bytes flow with backpressure (`pipe`
 * pauses the side that reads faster than the other side drains), an end (FIN) is passed on, and
 * once one socket has closed the other is ended and destroyed when what was written to it is
 * flushed. Both are destroyed on an error, or when the pair has been silent for `idleMs`: a
 * socket's timeout counts its reads and its writes, so traffic either way keeps both alive, and a
 * peer that vanished without a FIN (or stopped reading) does not hold the pair for ever.
 */
export function splice(a: Socket, b: Socket, idleMs: number): void {
  const destroyBoth = () => {
    a.destroy();
    b.destroy();
  };
  a.on('error', destroyBoth);
  b.on('error', destroyBoth);
  a.setTimeout(idleMs, destroyBoth);
  b.setTimeout(idleMs, destroyBoth);
  a.once('close', () => {
    if (!b.destroyed) endAndClose(b);
  });
  b.once('close', () => {
    if (!a.destroyed) endAndClose(a);
  });
  a.pipe(b);
  b.pipe(a);
}
