import type { Dispatcher } from 'undici';

/**
 * A response body as text, refused past `max` bytes: a token endpoint or metadata server that
 * answers without end must not fill our memory. The stream is destroyed at once, so the rest of
 * the body is never read.
 */
export async function readCapped(
  body: Dispatcher.ResponseData['body'],
  max: number,
  tooLarge: () => Error,
): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    size += (chunk as Buffer).length;
    if (size > max) {
      body.destroy();
      throw tooLarge();
    }
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}
