import type { IncomingMessage, ServerResponse } from 'node:http';
import { ExpectationFailedError } from '../errors.js';

/**
 * Node's own test (lib/_http_common.js `continueExpression`), so the handler agrees with the
 * event Node chose ('checkContinue' or 'checkExpectation', both routed to it by server.ts).
 */
const CONTINUE = /(?:^|\W)100-continue(?:$|\W)/i;

/** An empty list: RFC 9110 §5.6.1 asks recipients to accept empty list elements. */
const NOTHING = /^[\s,]*$/;

/**
 * RFC 9110 §10.1.1 applies to HTTP/1.1 requests only, as in Node: an HTTP/1.0 request's
 * 100-continue MUST be ignored, and so is anything else it expects.
 */
function expecting(req: IncomingMessage): string | undefined {
  const expect = req.headers.expect;
  if (expect === undefined || req.httpVersionMajor !== 1 || req.httpVersionMinor !== 1) return undefined;
  return NOTHING.test(expect) ? undefined : expect;
}

/**
 * The refusal of an expectation that cannot be met: anything but `100-continue` (RFC 9110
 * §10.1.1, 417). The value is not echoed: it is the app's data.
 */
export function unmetExpectation(req: IncomingMessage): ExpectationFailedError | undefined {
  const expect = expecting(req);
  if (expect === undefined || CONTINUE.test(expect)) return undefined;
  return new ExpectationFailedError('the only expectation supported is 100-continue (RFC 9110 §10.1.1)');
}

/**
 * Sends `100 Continue` to an app that waits for it before sending its body. Called once the
 * request has a route and a token, right before its body is read: a request refused before that
 * costs the app no upload, and since no 100 was sent Node closes that connection after the error
 * instead of reusing it with an unread body (`_expect_continue` in lib/_http_server.js). The
 * expectation itself is not forwarded (undici refuses `Expect`): the proxy is the one that waits
 * for nothing and streams the body on.
 */
export function continueIfAwaited(req: IncomingMessage, res: ServerResponse): void {
  const expect = expecting(req);
  if (expect !== undefined && !res.headersSent && CONTINUE.test(expect)) res.writeContinue();
}
