/** What a request asks for, after the listener has worked out its target. */
export interface RequestTarget {
  /** Lower-case host without port, brackets kept for IPv6, no trailing dot. */
  readonly host: string;
  readonly port: number;
  /** Path and query as sent by the client (origin-form). */
  readonly path: string;
  readonly method: string;
}
