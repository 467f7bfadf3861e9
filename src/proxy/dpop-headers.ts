import type { DpopProver } from '../dpop/proof.js';
import { upstreamRequestHeaders } from './headers.js';

/**
 * The headers of a request sent upstream with a DPoP-bound token (RFC 9449 §7.1): the token in
 * `Authorization` with the `DPoP` scheme, never as Bearer, and a fresh proof for this very
 * request (`htm`, `htu` without query, `ath` of the token, the upstream's `nonce` if it gave one).
 * `consumed` holds `dpop`, so an app's own proof never travels beside ours.
 */
export function dpopRequestHeaders(
  rawHeaders: readonly string[],
  consumed: readonly string[],
  dpop: DpopProver,
  accessToken: string,
  method: string,
  origin: string,
  path: string,
  nonce: string | undefined,
): string[] {
  const headers = upstreamRequestHeaders(
    rawHeaders,
    { name: 'authorization', value: `DPoP ${accessToken}` },
    consumed,
  );
  const q = path.indexOf('?');
  const htu = q === -1 ? origin + path : origin + path.slice(0, q);
  headers.push('dpop', dpop.proof(method, htu, nonce, accessToken));
  return headers;
}
