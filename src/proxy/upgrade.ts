import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { isWebSocketUpgrade } from './websocket.js';

/**
 * The listener's 'upgrade' event. Node hands over the connection of every request that offers to
 * switch protocols (`Connection: upgrade` with `Upgrade`), whatever the protocol. WebSocket goes
 * to `onWebSocket`; any other offer (h2c, RFC 7540 §3.2) is declined by serving the request as the
 * plain HTTP/1.1 request it also is (RFC 9110 §7.8 lets a server ignore Upgrade): it goes back to
 * the listener through `serve` with its `Upgrade` field left out, so it is parsed, limited,
 * routed and kept alive like any other request.
 */
export function createUpgradeHandler(
  onWebSocket: (req: IncomingMessage, socket: Duplex, head: Buffer) => void,
): (req: IncomingMessage, socket: Duplex, head: Buffer, serve: (socket: Duplex) => void) => void {
  return (req, socket, head, serve) => {
    const go = () => {
      // The earlier response may have ended the connection (Connection: close).
      if (socket.destroyed || socket.writableEnded) return;
      if (isWebSocketUpgrade(req)) onWebSocket(req, socket, head);
      else declineUpgrade(req, socket, head, serve);
    };
    // Node emits the event as soon as the head is parsed, even when it was pipelined behind a
    // request whose response is still being written (`_httpMessage`, Node's own link from a
    // socket to its current response): answering now would interleave the two (RFC 9112 §9.3.2).
    const pending = (socket as { _httpMessage?: ServerResponse | null })._httpMessage;
    if (pending && !pending.writableFinished) pending.once('finish', go);
    else go();
  };
}

/** Hands the connection back to the listener with the request's head, minus `Upgrade`, replayed. */
function declineUpgrade(
  req: IncomingMessage,
  socket: Duplex,
  head: Buffer,
  serve: (socket: Duplex) => void,
): void {
  let text = `${req.method} ${req.url} HTTP/${req.httpVersion}\r\n`;
  const raw = req.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) {
    // Connection still lists `upgrade` (and e.g. HTTP2-Settings), so those stay hop-by-hop and are
    // never forwarded (headers.ts); without an Upgrade field Node's parser sees no offer.
    if (raw[i]!.toLowerCase() !== 'upgrade') text += `${raw[i]}: ${raw[i + 1]}\r\n`;
  }
  // Node decoded the head as latin1: encoded the same way, the bytes are the app's. The rest of
  // what was read (a body, a pipelined request) follows as it came.
  socket.unshift(Buffer.concat([Buffer.from(`${text}\r\n`, 'latin1'), head]));
  serve(socket);
}
