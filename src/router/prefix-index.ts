/**
 * Many routes under one host key, indexed by path prefix in a radix (compressed) trie: a request
 * walks its path once, meeting exactly the routes whose prefix its path starts with, so the cost
 * follows the length of the path, not the number of routes.
 */
import { type Bucket, type Candidate, earliestAllowed } from './candidate.js';
import type { RequestTarget } from './request-target.js';

interface TrieNode {
  /** The text between the parent and this node; empty only at the root. */
  label: string;
  /** Keyed by the first character code of each child's label. */
  children: Map<number, TrieNode> | undefined;
  /** Routes whose prefix ends exactly here, sorted by index. */
  routes: Candidate[] | undefined;
}

function node(label: string): TrieNode {
  return { label, children: undefined, routes: undefined };
}

export class PrefixIndex implements Bucket {
  private readonly root = node('');

  /** Candidates must come in index order, so every node's list stays sorted. */
  constructor(candidates: readonly Candidate[]) {
    for (const c of candidates) this.insert(c.pathPrefix ?? '', c);
  }

  earliest(target: RequestTarget, pathEnd: number, before: number): number {
    const path = target.path;
    let at: TrieNode = this.root;
    let depth = 0;
    for (;;) {
      if (at.routes !== undefined) before = earliestAllowed(at.routes, target, before);
      if (depth >= pathEnd || at.children === undefined) return before;
      const next = at.children.get(path.charCodeAt(depth));
      if (next === undefined) return before;
      const label = next.label;
      // A prefix never ends inside a label (insert splits there), so a partial match ends the walk.
      if (depth + label.length > pathEnd || !path.startsWith(label, depth)) return before;
      depth += label.length;
      at = next;
    }
  }

  private insert(prefix: string, candidate: Candidate): void {
    let at = this.root;
    let depth = 0;
    while (depth < prefix.length) {
      const first = prefix.charCodeAt(depth);
      at.children ??= new Map();
      let next = at.children.get(first);
      if (next === undefined) {
        next = node(prefix.slice(depth));
        at.children.set(first, next);
      } else {
        const shared = sharedLength(next.label, prefix, depth);
        if (shared < next.label.length) {
          // The new prefix ends or branches inside the label: split it there.
          const split = node(next.label.slice(0, shared));
          next.label = next.label.slice(shared);
          split.children = new Map([[next.label.charCodeAt(0), next]]);
          at.children.set(first, split);
          next = split;
        }
      }
      depth += next.label.length;
      at = next;
    }
    if (at.routes === undefined) at.routes = [candidate];
    else at.routes.push(candidate);
  }
}

/** How many characters `label` shares with `text` from `offset` on. */
function sharedLength(label: string, text: string, offset: number): number {
  const most = Math.min(label.length, text.length - offset);
  let n = 0;
  while (n < most && label.charCodeAt(n) === text.charCodeAt(offset + n)) n++;
  return n;
}
