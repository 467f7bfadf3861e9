import type { RouteConfig } from '../config/types.js';
import { type Bucket, type Candidate, CandidateList, toCandidate } from './candidate.js';
import { PrefixIndex } from './prefix-index.js';
import type { RequestTarget } from './request-target.js';

export type { RequestTarget } from './request-target.js';

export type Router = (target: RequestTarget) => RouteConfig | undefined;

/** Up to this many routes under one host key are tried in order; more get a prefix index. */
const LIST_MAX = 8;

/**
 * Builds the route matcher once at start-up. Routes are tried in configuration order and the
 * first match wins, so a specific route placed before a general one takes precedence.
 *
 * The answer is the one a scan in order would give, found without the scan: routes are grouped by
 * what their host pattern is (an exact host, the suffix of a `*.` pattern, or none), a request
 * consults only the groups its host can reach, and each group gives its earliest match. So the
 * cost per request does not grow with the number of routes.
 */
export function createRouter(routes: readonly RouteConfig[]): Router {
  const exact = new Map<string, Candidate[]>();
  const wildcard = new Map<string, Candidate[]>();
  const anyHost: Candidate[] = [];
  let usesPath = false;
  routes.forEach((route, index) => {
    const candidate = toCandidate(route, index);
    if (candidate.pathPrefix !== undefined) usesPath = true;
    const host = route.match.host;
    if (host === undefined) anyHost.push(candidate);
    else if (host.startsWith('*.')) push(wildcard, host.slice(2), candidate);
    else push(exact, host, candidate);
  });
  const exactBuckets = bucketsOf(exact);
  const wildcardBuckets = bucketsOf(wildcard);
  const anyHostBucket = anyHost.length === 0 ? undefined : bucketOf(anyHost);
  const suffixLengths = new Set([...wildcard.keys()].map((suffix) => suffix.length));
  const none = routes.length;

  return (target) => {
    let pathEnd = 0;
    if (usesPath) {
      pathEnd = target.path.indexOf('?');
      if (pathEnd === -1) pathEnd = target.path.length;
    }
    const host = target.host;
    let best = none;
    const sameHost = exactBuckets.get(host);
    if (sameHost !== undefined) best = sameHost.earliest(target, pathEnd, best);
    if (anyHostBucket !== undefined) best = anyHostBucket.earliest(target, pathEnd, best);
    if (wildcardBuckets.size > 0) {
      // `*.example.com` matches a host that is one or more labels, a dot, then example.com: so
      // look up what follows each dot that has something before it (`.example.com` is no host
      // below example.com). Only suffix lengths some pattern has are copied and looked up.
      for (let dot = host.indexOf('.', 1); dot !== -1; dot = host.indexOf('.', dot + 1)) {
        if (!suffixLengths.has(host.length - dot - 1)) continue;
        const below = wildcardBuckets.get(host.slice(dot + 1));
        if (below !== undefined) best = below.earliest(target, pathEnd, best);
      }
    }
    return best === none ? undefined : routes[best];
  };
}

function push(groups: Map<string, Candidate[]>, key: string, candidate: Candidate): void {
  const group = groups.get(key);
  if (group === undefined) groups.set(key, [candidate]);
  else group.push(candidate);
}

function bucketsOf(groups: Map<string, Candidate[]>): Map<string, Bucket> {
  return new Map([...groups].map(([key, candidates]) => [key, bucketOf(candidates)]));
}

function bucketOf(candidates: Candidate[]): Bucket {
  return candidates.length <= LIST_MAX ? new CandidateList(candidates) : new PrefixIndex(candidates);
}
