import { subscribe } from 'node:diagnostics_channel';
import { maxHeaderSize } from 'node:http';
import type { Socket } from 'node:net';
import { buildConnector } from './undici.js';

/*
 * RFC 9110 §15.2: a client MUST be able to parse one or more 1xx responses received before the
 * final one, even if it did not expect any. undici's HTTP/1.1 parser passes 102 and 103 on, but
 * destroys the connection on any `100` (client-h1.js onHeadersComplete: 'bad response'), since it
 * never sends `Expect: 100-continue` itself. Servers send unsolicited 100s all the same, and each
 * one turned a proxied request into a 502, or a token request into a failure.
 *
 * So the sockets undici reads (to upstreams and to token endpoints) are given a `read()` that
 * drops `100` heads where a response starts, before undici's parser sees them. Why this way:
 * - It is where undici's parser takes its bytes (client-h1.js `readMore` and `resume` call
 *   `socket.read()`), on a socket we create and own: the filter edits exactly what the parser
 *   sees and nothing else; flow control and the stream buffer are untouched.
 * - It only looks while a response head must come: from the moment undici writes a request head
 *   (the documented `undici:client:sendHeaders` diagnostics channel, published with the socket)
 *   to the status line of the final response. With `pipelining: 1` (proxy/upstreams.ts,
 *   token-endpoint/post.ts) a response can start nowhere else, so a body that happens to hold
 *   "HTTP/1.1 100 …" is never touched.
 * - Off that window a read costs a call and one boolean test; a response without 1xx costs one
 *   byte test (the status's first digit) and no copy; arming is one diagnostics message per
 *   request. A Transform stream in front of undici would copy
 *   every body byte; retrying after the 'bad response' error cannot work once a streamed body is
 *   spent; forwarding with node:http costs more CPU per request; undici's parser is private.
 * Used by proxy/ and token-endpoint/, hence here, above both. test/e2e/review-interim.test.ts,
 * test/e2e/token-endpoint-interim.test.ts and test/unit/interim-responses.test.ts fail if an
 * undici upgrade stops reading this way or stops publishing that message.
 */

/** The socket symbol that holds a connection's filter. */
const kInterim = Symbol('token-injector.interim');

type TolerantSocket = Socket & { [kInterim]: InterimFilter };

/** An interim head is never longer than any parser would accept; beyond that, undici decides. */
const MAX_HELD_BYTES = maxHeaderSize;

const PARTIAL = 0;
const FINAL = -1;

/** The 1xx heads of one connection that undici must not see. */
export class InterimFilter {
  /** True from a request head written until the status line of its final response arrives. */
  armed = false;
  /** The start of a response head that is not complete yet. */
  #held: Buffer | null = null;

  /**
   * What undici's parser should see of `chunk`, the next bytes of the connection while armed:
   * the same bytes without any `100` head at a response start, or null when all of them are
   * held back (an incomplete interim head) or dropped. 102, 103 and the rest of the 1xx family
   * pass; undici handles those (and forward.ts relays 103).
   */
  filter(chunk: Buffer): Buffer | null {
    const data = this.#held === null ? chunk : Buffer.concat([this.#held, chunk]);
    this.#held = null;
    let kept: Buffer[] | undefined; // pieces before a dropped head; only once one was dropped
    let from = 0; // the start of the bytes kept since the last drop
    let at = 0; // where the next response head starts
    for (;;) {
      const status = interimStatus(data, at);
      if (status === FINAL) {
        this.armed = false;
        at = data.length;
        break;
      }
      const end = status === PARTIAL ? -1 : headEnd(data, at);
      if (end === -1) {
        if (data.length - at > MAX_HELD_BYTES) {
          // Not a head we can make sense of: undici's parser reports it as it would have.
          this.armed = false;
          at = data.length;
        } else {
          this.#held = data.subarray(at);
        }
        break;
      }
      if (status === 100) {
        if (kept === undefined) kept = [];
        kept.push(data.subarray(from, at));
        from = end;
      }
      at = end;
    }
    if (kept === undefined) {
      if (at === data.length) return data;
      return at === 0 ? null : data.subarray(0, at);
    }
    kept.push(data.subarray(from, at));
    const out = Buffer.concat(kept);
    return out.length === 0 ? null : out;
  }
}

/**
 * An undici connector (a Pool's or Agent's `connect`) whose HTTP/1.1 sockets let undici through
 * unsolicited `100 Continue` responses. Needs `pipelining: 1` (see the top of this file).
 */
export function interimTolerantConnector(options: buildConnector.BuildOptions): buildConnector.connector {
  armOnRequestHeads();
  const connect = buildConnector(options);
  return (opts, callback) =>
    connect(opts, (...args) => {
      if (args[0] === null) tolerateInterim(args[1]);
      callback(...args);
    });
}

/** Installs the filter on one socket. */
function tolerateInterim(socket: Socket): InterimFilter {
  const filter = new InterimFilter();
  const target = socket as TolerantSocket;
  const read = socket.read;
  target[kInterim] = filter;
  target.read = function filteredRead(this: TolerantSocket, size?: number) {
    const chunk = read.call(this, size) as Buffer | null;
    if (chunk === null || !filter.armed) return chunk;
    return filter.filter(chunk);
  };
  return filter;
}

let subscribed = false;

function armOnRequestHeads(): void {
  if (subscribed) return;
  subscribed = true;
  // Process-wide: every undici client publishes here; only our sockets carry a filter.
  subscribe('undici:client:sendHeaders', (message) => {
    const socket = (message as { socket?: Partial<TolerantSocket> }).socket;
    const filter = socket?.[kInterim];
    if (filter !== undefined) filter.armed = true;
  });
}

const SP = 0x20;
const CR = 0x0d;
const LF = 0x0a;
const DIGIT_0 = 0x30;
const DIGIT_1 = 0x31;
const HTTP_1 = Buffer.from('HTTP/1.');
/** `HTTP/1.x 1xx` and the byte after the status code. */
const STATUS_LINE_START = 13;

/**
 * At `at`: the status code of an interim (1xx) head, PARTIAL when the bytes so far could still
 * start one, FINAL for anything else (a final status, 101 which switches protocols, or bytes
 * that are no status line, which undici's parser then refuses as it always did).
 */
function interimStatus(data: Buffer, at: number): number {
  const n = data.length - at;
  // The usual answer: a final status, known from its first digit.
  if (n > 9 && data[at + 9] !== DIGIT_1) return FINAL;
  const m = Math.min(n, STATUS_LINE_START);
  for (let i = 0; i < m; i++) {
    const b = data[at + i]!;
    const ok =
      i < 7
        ? b === HTTP_1[i]
        : i === 8
          ? b === SP
          : i === 12
            ? b === SP || b === CR || b === LF
            : b >= DIGIT_0 && b <= DIGIT_0 + 9;
    if (!ok) return FINAL;
  }
  if (n < STATUS_LINE_START) return PARTIAL;
  const status = 100 + (data[at + 10]! - DIGIT_0) * 10 + (data[at + 11]! - DIGIT_0);
  return status === 101 ? FINAL : status;
}

/**
 * The index just past the empty line ending the head at `at` (a 1xx has no content, RFC 9110
 * §15.2), or -1 when it has not arrived. A bare LF ends a line too (RFC 9112 §2.2).
 */
function headEnd(data: Buffer, at: number): number {
  let lf = data.indexOf(LF, at + STATUS_LINE_START - 1);
  while (lf !== -1) {
    const next = data[lf + 1];
    if (next === LF) return lf + 2;
    if (next === CR) {
      const after = data[lf + 2];
      if (after === LF) return lf + 3;
      if (after === undefined) return -1;
    }
    if (next === undefined) return -1;
    lf = data.indexOf(LF, lf + 1);
  }
  return -1;
}
