import type { IncomingMessage } from 'node:http';
import { type DpopProver, saysUseDpopNonce } from '../dpop/proof.js';
import { dpopRequestHeaders } from './dpop-headers.js';

/**
 * One request's DPoP exchange with its upstream (RFC 9449): the nonce its last proof carried, and
 * its one retry on a `use_dpop_nonce` challenge (§9). Made only for requests whose credential
 * has `dpop`; other requests never allocate one.
 */
export class DpopUpstream {
  #nonce: string | undefined;
  #retry: 'none' | 'pending' | 'done' = 'none';

  constructor(
    readonly prover: DpopProver,
    /** The route's upstream origin: the `htu` of the proofs and the key of its nonces. */
    readonly origin: string,
  ) {}

  /** RFC 9449 §7.1: `Authorization: DPoP`, and a proof with the upstream's nonce, kept for §9. */
  headers(req: IncomingMessage, consumed: readonly string[], accessToken: string, path: string): string[] {
    this.#nonce = this.prover.nonce(this.origin);
    return dpopRequestHeaders(
      req.rawHeaders,
      consumed,
      this.prover,
      accessToken,
      req.method!,
      this.origin,
      path,
      this.#nonce,
    );
  }

  /**
   * Takes the upstream's DPoP nonce (RFC 9449 §8.2: any response may bring a new one); true when
   * the answer is a `use_dpop_nonce` challenge (§9) to retry, once, with the same token and a
   * proof with that nonce.
   */
  wantsRetry(status: number, headers: Record<string, string | string[]>, mayRetry: boolean): boolean {
    const nonce = headers['dpop-nonce'];
    if (nonce === undefined) return false;
    this.prover.heard(this.origin, nonce);
    if (
      status !== 401 ||
      !mayRetry ||
      this.#retry !== 'none' ||
      !saysUseDpopNonce(headers['www-authenticate']) ||
      !this.prover.hasNewNonce(this.origin, this.#nonce)
    ) {
      return false;
    }
    this.#retry = 'pending';
    return true;
  }

  /** True once, when the answer {@link wantsRetry} asked to retry is discarded: send it again now. */
  retrying(): boolean {
    if (this.#retry !== 'pending') return false;
    this.#retry = 'done';
    return true;
  }
}
