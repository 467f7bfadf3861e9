import { STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';

/** How long a refused client may take to read our answer before its socket is destroyed. */
const LINGER_MS = 2_000;

/**
 * Answers on a bare socket (the parser failed, or a CONNECT is refused) and closes it for good.
 * `end()` alone only half-closes: a client that never closes its side would keep the socket, and
 * its file descriptor, for ever (FIN-WAIT-2). So the socket is destroyed once the answer is
 * flushed, or after a short linger if the client does not read it.
 */
export function answerAndClose(
  socket: Duplex,
  status: number,
  body = '',
  contentType = 'application/json',
): void {
  if (!socket.writable || socket.writableEnded) {
    socket.destroy();
    return;
  }
  const type = body ? `content-type: ${contentType}\r\n` : '';
  const head = `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}\r\n${type}connection: close\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n`;
  endAndClose(socket, head + body);
}

/**
 * Ends `socket` (after `last`, if given) and destroys it once everything written is flushed, or
 * after a short linger if the client does not read it (see {@link answerAndClose}).
 */
export function endAndClose(socket: Duplex, last?: string): void {
  const linger = setTimeout(() => socket.destroy(), LINGER_MS);
  linger.unref();
  const close = () => {
    clearTimeout(linger);
    socket.destroy();
  };
  if (last === undefined) socket.end(close);
  else socket.end(last, close);
}
