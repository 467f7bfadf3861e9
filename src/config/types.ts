/** The validated, frozen configuration. Durations are milliseconds, sizes are bytes. */

export type LogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error';
export type UnmatchedPolicy = 'deny' | 'passthrough';
export type ClientAuthMethod = 'client_secret_basic' | 'client_secret_post';
export type GrantType = 'client_credentials';

export interface ListenAddress {
  readonly host: string;
  readonly port: number;
}

export interface TlsTrust {
  /** PEM text of extra CAs, trusted in addition to Node's bundled roots. */
  readonly ca?: string;
  /** Where `ca` was read from, for messages. */
  readonly caFile?: string;
}

export interface CredentialConfig {
  readonly name: string;
  readonly tokenEndpoint: URL;
  readonly grantType: GrantType;
  readonly clientId: string;
  readonly clientSecret: string;
  readonly authMethod: ClientAuthMethod;
  /** Space-joined scope, or undefined when none is configured. */
  readonly scope?: string;
  readonly audience?: string;
  readonly resource?: string;
  readonly params: Readonly<Record<string, string>>;
  readonly prefetch: boolean;
  readonly timeoutMs: number;
  /** Fraction of the token lifetime after which a background refresh starts. */
  readonly refreshAhead: number;
  readonly tls: TlsTrust;
}

export interface RouteMatch {
  /** Lower-case host pattern: exact, or `*.` + suffix. Undefined matches every host. */
  readonly host?: string;
  /** When set, the port the request's target must use. */
  readonly port?: number;
  readonly pathPrefix?: string;
  /** Upper-case methods; undefined matches every method. */
  readonly methods?: ReadonlySet<string>;
}

export interface RouteConfig {
  readonly name: string;
  readonly match: RouteMatch;
  /** Upstream origin and optional base path (no trailing slash). */
  readonly upstream: URL;
  readonly stripPrefix: boolean;
  readonly credential: string;
  /** Header name as configured; compared case-insensitively. */
  readonly header: string;
  readonly prefix: string;
  readonly tls: TlsTrust;
}

export interface Config {
  readonly listen: ListenAddress;
  readonly admin: { readonly listen: ListenAddress };
  readonly log: { readonly level: LogLevel };
  readonly unmatched: UnmatchedPolicy;
  /** How long in-flight requests may take to finish after SIGTERM. */
  readonly shutdownTimeoutMs: number;
  readonly credentials: ReadonlyMap<string, CredentialConfig>;
  readonly routes: readonly RouteConfig[];
}
