import { randomBytes } from 'node:crypto';
import { createClient, createCluster, ErrorReply } from '@redis/client';
import type { SharedCacheConfig } from '../config/types.js';
import { SharedCacheUnavailableError } from '../errors.js';
import type { Token } from '../token-endpoint/token.js';
import type { Sealer } from './sealer.js';
import type { FailureRecord, SharedCacheState, SharedStore, SharedStoreEvents, Watch } from './store.js';

/** Reconnection backoff: quick at first, never more often than this once Redis stays away. */
const RECONNECT_MIN_MS = 100;
const RECONNECT_MAX_MS = 5_000;

// Each script touches the keys of one entry only; they share a hash tag, hence one cluster slot.
/** Stores the token and releases the lock, unless another replica holds the lock by now. */
const PUBLISH = `
local holder = redis.call('GET', KEYS[2])
if holder and holder ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
redis.call('DEL', KEYS[2], KEYS[3])
return 1`;
/** Records a failure and releases the lock, unless another replica holds the lock by now. */
const FAIL = `
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
redis.call('DEL', KEYS[1])
return 1`;
/** Deletes a key only if it still holds the given value (a lock's owner, a refused token). */
const DELETE_IF = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`;

type Client = ReturnType<typeof createClient> | ReturnType<typeof createCluster>;

/**
 * The shared store on Redis or Valkey (one server, or a Cluster through one seed node), with
 * node-redis. Every command is bounded by `timeout`; while disconnected, commands fail at once
 * (no offline queue) so callers go on alone, and the client reconnects with backoff.
 */
export class RedisStore implements SharedStore {
  #state: SharedCacheState = 'connecting';
  readonly #client: Client;
  readonly #subscriber: Client;
  readonly #sealer: Sealer;
  readonly #prefix: string;
  readonly #timeoutMs: number;
  readonly #events: SharedStoreEvents;
  /** When Redis last answered a command (performance.now()). */
  #answeredAt = 0;
  /** A command is finding out whether a server that is down is back. */
  #probing = false;
  readonly #waiters = new Map<string, Set<() => void>>();
  readonly #onUp = new Set<() => void>();
  /** Resolves once the subscriptions connection is first open (waiting needs it). */
  readonly #listening: Promise<void>;
  #markListening: () => void = () => {};
  #closed = false;

  constructor(config: SharedCacheConfig, sealer: Sealer, events: SharedStoreEvents = {}) {
    this.#sealer = sealer;
    this.#prefix = config.keyPrefix;
    this.#timeoutMs = config.timeoutMs;
    this.#events = events;
    this.#client = newClient(config);
    this.#subscriber = newClient(config);
    this.#watch(this.#client, true, config.cluster);
    this.#watch(this.#subscriber, false, config.cluster);
    this.#connect(this.#client);
    this.#listening = new Promise((resolve) => {
      this.#markListening = resolve;
    });
    this.#connect(this.#subscriber, async () => this.#markListening());
  }

  get state(): SharedCacheState {
    return this.#state;
  }

  /** Both connections: commands, and subscriptions (without it a waiting replica would go alone). */
  ready(timeoutMs: number): Promise<void> {
    if (this.#closed) return Promise.resolve();
    const up =
      this.#state === 'up'
        ? Promise.resolve()
        : new Promise<void>((resolve) => {
            this.#onUp.add(resolve);
          });
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, timeoutMs);
    });
    return Promise.race([Promise.all([up, this.#listening]).then(() => {}), late]).finally(() =>
      clearTimeout(timer),
    );
  }

  async read(id: string): Promise<Token | undefined> {
    const name = this.#key(id, 'token');
    const value = await this.#run('get', () => this.#client.get(name));
    if (value === null || value === undefined) return undefined;
    const token = parseToken(this.#sealer.open(name, String(value)));
    // Another key set, tampering, or an older format: ignored, and overwritten by the next write.
    if (!token) this.#events.operation?.('get', 'invalid');
    return token;
  }

  async failure(id: string): Promise<FailureRecord | undefined> {
    const name = this.#key(id, 'failure');
    const value = await this.#run('get', () => this.#client.get(name));
    if (value === null || value === undefined) return undefined;
    const record = parseFailure(this.#sealer.open(name, String(value)));
    if (!record) this.#events.operation?.('get', 'invalid');
    return record;
  }

  async lock(id: string, ttlMs: number): Promise<string | undefined> {
    const owner = randomBytes(16).toString('base64url');
    const set = await this.#run('lock', () =>
      this.#client.set(this.#key(id, 'lock'), owner, {
        condition: 'NX',
        expiration: { type: 'PX', value: ttlMs },
      }),
    );
    return set === 'OK' ? owner : undefined;
  }

  async publish(id: string, owner: string, token: Token): Promise<void> {
    const name = this.#key(id, 'token');
    const ttl = Math.floor(token.expiresAt - Date.now());
    if (ttl <= 0) return;
    const value = this.#sealer.seal(name, JSON.stringify(token));
    await this.#run('publish', () =>
      this.#client.eval(PUBLISH, {
        keys: [name, this.#key(id, 'lock'), this.#key(id, 'failure')],
        arguments: [owner, value, String(ttl)],
      }),
    );
    await this.#announce(id);
  }

  async fail(id: string, owner: string, record: FailureRecord, keepMs: number): Promise<void> {
    const name = this.#key(id, 'failure');
    const value = this.#sealer.seal(name, JSON.stringify(record));
    await this.#run('fail', () =>
      this.#client.eval(FAIL, {
        keys: [this.#key(id, 'lock'), name],
        arguments: [owner, value, String(Math.max(1, Math.round(keepMs)))],
      }),
    );
    await this.#announce(id);
  }

  async release(id: string, owner: string): Promise<void> {
    await this.#run('release', () =>
      this.#client.eval(DELETE_IF, { keys: [this.#key(id, 'lock')], arguments: [owner] }),
    );
  }

  async invalidate(id: string, accessToken: string): Promise<void> {
    const name = this.#key(id, 'token');
    const value = await this.#run('get', () => this.#client.get(name));
    if (value === null || value === undefined) return;
    // Compare-and-delete on the exact stored value: a newer token written meanwhile stays.
    if (parseToken(this.#sealer.open(name, String(value)))?.accessToken !== accessToken) return;
    await this.#run('invalidate', () =>
      this.#client.eval(DELETE_IF, { keys: [name], arguments: [String(value)] }),
    );
  }

  async watch(id: string): Promise<Watch> {
    // One channel per entry, subscribed only while someone waits for it: a publication reaches
    // the replicas waiting for that token, not the whole fleet.
    const channel = this.#key(id, 'events');
    let heard = false;
    let wake: (() => void) | undefined;
    const hear = () => {
      heard = true;
      wake?.();
    };
    let set = this.#waiters.get(id);
    if (!set) {
      set = new Set();
      this.#waiters.set(id, set);
    }
    const first = set.size === 0;
    set.add(hear);
    const close = () => {
      wake?.();
      const current = this.#waiters.get(id);
      if (!current) return;
      current.delete(hear);
      if (current.size > 0) return;
      this.#waiters.delete(id);
      if (this.#subscriber.isOpen) this.#subscriber.unsubscribe(channel, this.#hear).catch(() => {});
    };
    if (first) {
      try {
        await this.#run('subscribe', () => this.#subscriber.subscribe(channel, this.#hear));
      } catch (err) {
        close();
        throw err;
      }
    }
    return {
      changed: (until) =>
        new Promise<void>((resolve) => {
          const done = () => {
            clearTimeout(timer);
            wake = undefined;
            heard = false;
            resolve();
          };
          if (heard || this.#closed) return done();
          const timer = setTimeout(done, Math.max(0, until - Date.now()));
          wake = done;
        }),
      close,
    };
  }

  async close(): Promise<void> {
    this.#closed = true;
    for (const set of this.#waiters.values()) for (const hear of [...set]) hear();
    for (const done of [...this.#onUp]) done();
    this.#markListening();
    await Promise.all(
      [this.#client, this.#subscriber].map((c) => (c.isOpen ? c.close().catch(() => {}) : undefined)),
    );
  }

  #key(id: string, what: 'token' | 'lock' | 'failure' | 'events'): string {
    return `${this.#prefix}{${id}}:${what}`;
  }

  /** A message on an entry's channel: its waiters look at the entry again. */
  readonly #hear = (_message: unknown, channel: unknown): void => {
    const name = String(channel);
    const id = name.slice(name.indexOf('{', this.#prefix.length) + 1, name.lastIndexOf('}'));
    const waiters = this.#waiters.get(id);
    if (waiters) for (const hear of [...waiters]) hear();
  };

  async #announce(id: string): Promise<void> {
    // Waiters that miss it (a reconnecting subscriber) look again when their own wait ends.
    await this.#run('notify', () => this.#client.publish(this.#key(id, 'events'), '1')).catch(() => {});
  }

  /** One command bounded by `timeout`; any failure is {@link SharedCacheUnavailableError}. */
  async #run<T>(op: string, command: () => Promise<T>): Promise<T> {
    let probe = false;
    if (this.#state !== 'up') {
      // A server that is down may be back without a word (see #outcome): one command at a time
      // goes to find out, the others go on alone at once.
      probe = this.#state === 'down' && !this.#probing;
      if (!probe) {
        this.#events.operation?.(op, 'error');
        throw new SharedCacheUnavailableError(`shared cache is ${this.#state}`);
      }
      this.#probing = true;
    }
    const sent = performance.now();
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(new SharedCacheUnavailableError(`shared cache did not answer within ${this.#timeoutMs} ms`)),
        this.#timeoutMs,
      );
    });
    try {
      const result = await Promise.race([command(), timeout]);
      this.#events.operation?.(op, 'ok');
      this.#outcome(undefined, sent);
      return result;
    } catch (err) {
      const timedOut = err instanceof SharedCacheUnavailableError;
      this.#events.operation?.(op, timedOut ? 'timeout' : 'error');
      this.#outcome(err, sent);
      throw timedOut
        ? err
        : new SharedCacheUnavailableError(`shared cache command failed: ${(err as Error).message}`, {
            cause: err,
          });
    } finally {
      clearTimeout(timer);
      if (probe) this.#probing = false;
    }
  }

  /**
   * The state also follows what commands meet, since a client says nothing when its server hangs
   * (no socket closes), and a cluster client learns that every node is gone only once a topology
   * refresh fails, seconds later (its node clients just keep reconnecting meanwhile).
   * Redis answering, even with an error, means up; CLUSTERDOWN (no node serves the slot), a
   * connection error or no answer in time means down, unless an answer came since the command
   * was sent: on a loaded host one slow command is no outage.
   */
  #outcome(err: unknown, sent: number): void {
    if (err === undefined || (err instanceof ErrorReply && !err.message.startsWith('CLUSTERDOWN'))) {
      this.#answeredAt = performance.now();
      this.#setState('up');
    } else if (this.#answeredAt <= sent) {
      this.#setState('down', (err as Error).message);
    }
  }

  #watch(client: Client, main: boolean, cluster: boolean): void {
    // An 'error' without a listener would crash the process; the state says what matters.
    client.on('error', (err: Error) => {
      if (main) this.#setState('down', err.message);
    });
    if (!main) return;
    if (cluster) {
      // A cluster never says 'ready', 'end' or 'reconnecting': it says 'connect' once it knows its
      // slots, 'node-ready' as each node (re)connects, and 'disconnect' when closed.
      const up = () => {
        if (client.isReady) this.#setState('up');
      };
      client.on('connect', up);
      client.on('node-ready', up);
      client.on('disconnect', () => this.#setState('down', 'connection closed'));
      return;
    }
    client.on('ready', () => this.#setState('up'));
    client.on('end', () => this.#setState('down', 'connection closed'));
    client.on('reconnecting', () => this.#setState('down', 'reconnecting'));
  }

  #connect(client: Client, then?: () => Promise<unknown>): void {
    const attempt = (delay: number) => {
      if (this.#closed) return;
      client
        .connect()
        .then(() => then?.())
        .catch(() => {
          // The first connection failed (node-redis reconnects by itself only once connected).
          if (this.#closed) return;
          setTimeout(() => attempt(Math.min(delay * 2, RECONNECT_MAX_MS)), jitter(delay)).unref();
        });
    };
    attempt(RECONNECT_MIN_MS);
  }

  #setState(state: SharedCacheState, reason?: string): void {
    if (this.#state === state || this.#closed) return;
    this.#state = state;
    this.#events.stateChanged?.(state, reason);
    if (state === 'up') {
      for (const done of [...this.#onUp]) done();
      this.#onUp.clear();
    }
    // No word will come from a store that is gone: waiters look again now, and go on alone.
    if (state === 'down') for (const set of this.#waiters.values()) for (const hear of [...set]) hear();
  }
}

function newClient(config: SharedCacheConfig): Client {
  const socket = {
    connectTimeout: Math.max(1_000, config.timeoutMs * 5),
    reconnectStrategy: (retries: number) =>
      jitter(Math.min(RECONNECT_MIN_MS * 2 ** retries, RECONNECT_MAX_MS)),
    ...(config.url.protocol === 'rediss:'
      ? {
          tls: true as const,
          ...(config.tls.ca ? { ca: config.tls.ca } : {}),
          ...(config.tls.cert ? { cert: config.tls.cert.value } : {}),
          ...(config.tls.key ? { key: config.tls.key.value } : {}),
        }
      : {}),
  };
  const auth = {
    ...(config.username !== undefined ? { username: config.username } : {}),
    ...(config.password !== undefined ? { password: config.password.value } : {}),
  };
  if (config.cluster) {
    return createCluster({
      rootNodes: [{ url: config.url.href }],
      defaults: { ...auth, socket, disableOfflineQueue: true },
    });
  }
  return createClient({ url: config.url.href, ...auth, socket, disableOfflineQueue: true });
}

function jitter(ms: number): number {
  return Math.round(ms * (0.5 + Math.random() / 2));
}

function parseToken(text: string | undefined): Token | undefined {
  if (text === undefined) return undefined;
  try {
    const t = JSON.parse(text) as Partial<Token>;
    if (
      typeof t.accessToken !== 'string' ||
      typeof t.tokenType !== 'string' ||
      typeof t.issuedAt !== 'number' ||
      typeof t.expiresAt !== 'number' ||
      (t.refreshToken !== undefined && typeof t.refreshToken !== 'string') ||
      (t.scope !== undefined && typeof t.scope !== 'string')
    ) {
      return undefined;
    }
    return {
      accessToken: t.accessToken,
      tokenType: t.tokenType,
      issuedAt: t.issuedAt,
      expiresAt: t.expiresAt,
      ...(t.scope !== undefined ? { scope: t.scope } : {}),
      ...(t.refreshToken !== undefined ? { refreshToken: t.refreshToken } : {}),
    };
  } catch {
    return undefined;
  }
}

function parseFailure(text: string | undefined): FailureRecord | undefined {
  if (text === undefined) return undefined;
  try {
    const r = JSON.parse(text) as Partial<FailureRecord>;
    if (
      typeof r.code !== 'string' ||
      typeof r.message !== 'string' ||
      typeof r.transient !== 'boolean' ||
      typeof r.failures !== 'number' ||
      typeof r.retryAt !== 'number'
    ) {
      return undefined;
    }
    return r as FailureRecord;
  } catch {
    return undefined;
  }
}
