import type { RouteConfig } from '../config/types.js';
import type { RequestTarget } from './request-target.js';

/** A route's match without its host (the host index has already chosen it), and its position. */
export interface Candidate {
  /** Position in the configuration: the lower one wins. */
  readonly index: number;
  readonly port: number | undefined;
  readonly pathPrefix: string | undefined;
  readonly methods: ReadonlySet<string> | undefined;
}

/** Routes that share a host key, answering which of them a request reaches first. */
export interface Bucket {
  /**
   * The lowest index below `before` of a candidate matching `target`, or `before` when none does.
   * `pathEnd` is where the path ends in `target.path` (its `?`, or its length).
   */
  earliest(target: RequestTarget, pathEnd: number, before: number): number;
}

/** What the host index keeps of a route: its position and the parts of its match other than the host. */
export function toCandidate(route: RouteConfig, index: number): Candidate {
  const { port, pathPrefix, methods } = route.match;
  return { index, port, pathPrefix, methods };
}

/**
 * The lowest index below `before` in `list` (sorted by index) whose port and methods accept
 * `target`, or `before`; the caller has already checked host and path.
 */
export function earliestAllowed(list: readonly Candidate[], target: RequestTarget, before: number): number {
  for (const c of list) {
    if (c.index >= before) break;
    if (
      (c.port === undefined || c.port === target.port) &&
      (c.methods === undefined || c.methods.has(target.method))
    ) {
      return c.index;
    }
  }
  return before;
}

/** A few routes: trying each in order is cheaper than any index. */
export class CandidateList implements Bucket {
  constructor(private readonly list: readonly Candidate[]) {}

  earliest(target: RequestTarget, pathEnd: number, before: number): number {
    for (const c of this.list) {
      if (c.index >= before) break;
      if (
        (c.port === undefined || c.port === target.port) &&
        // Bounded by pathEnd, so the query never takes part and the path needs no copy.
        (c.pathPrefix === undefined ||
          (c.pathPrefix.length <= pathEnd && target.path.startsWith(c.pathPrefix))) &&
        (c.methods === undefined || c.methods.has(target.method))
      ) {
        return c.index;
      }
    }
    return before;
  }
}
