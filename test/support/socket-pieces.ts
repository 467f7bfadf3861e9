import type { Socket } from 'node:net';

/** Each piece in its own write and its own read at the other end (a poll phase in between). */
export async function writePieces(socket: Socket, pieces: readonly string[]): Promise<void> {
  for (const piece of pieces) {
    await new Promise<void>((resolve, reject) =>
      socket.write(piece, (err) => (err ? reject(err) : resolve())),
    );
    await turn();
  }
}

/** Until the event loop has been through its poll phase once more. */
export async function turn(): Promise<void> {
  await new Promise<void>((resolve) => setImmediate(resolve));
  await new Promise<void>((resolve) => setImmediate(resolve));
}
