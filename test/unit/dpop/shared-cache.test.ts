/**
 * A DPoP-bound token is worthless to a replica without the key it is bound to (RFC 9449 §6), and a
 * generated key differs in every replica: a credential with `dpop` never reads or writes the
 * fleet's cache, while one without it does (so the store below is really consulted).
 */
import { randomBytes } from 'node:crypto';
import { Writable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { Credentials } from '../../../src/credentials/credentials.js';
import { createLogger } from '../../../src/log/logger.js';
import { SharedCache } from '../../../src/shared-cache/shared-cache.js';
import type { SharedStore } from '../../../src/shared-cache/store.js';
import { type AuthServer, startAuthServer } from '../../support/auth-server.js';
import { configFrom } from '../../support/injector.js';
import { watchSecret } from '../../support/leak-watch.js';
import { credentialFor } from '../../support/stack.js';

/** A store that is always up, holds nothing, grants every lock and records what it was asked. */
function recordingStore(calls: string[]): SharedStore {
  return {
    state: 'up',
    ready: async () => {},
    read: async () => {
      calls.push('read');
      return undefined;
    },
    failure: async () => undefined,
    lock: async () => {
      calls.push('lock');
      return 'owner';
    },
    publish: async () => {
      calls.push('publish');
    },
    fail: async () => {},
    release: async () => {},
    invalidate: async () => {
      calls.push('invalidate');
    },
    watch: async () => ({ changed: async () => {}, close: () => {} }),
    close: async () => {},
  };
}

let auth: AuthServer | undefined;
let credentials: Credentials | undefined;
afterEach(async () => {
  await credentials?.close();
  for (const t of auth?.issuedTokens ?? []) watchSecret(t);
  await auth?.close();
  credentials = auth = undefined;
});

describe('shared_cache and dpop', () => {
  it('a DPoP credential fetches its own tokens; a plain one goes through the fleet', async () => {
    auth = await startAuthServer({ dpop: {} });
    const config = configFrom({
      credentials: {
        payments: credentialFor(auth, undefined, { dpop: {} }),
        orders: credentialFor(auth),
      },
      routes: [],
    });
    const calls: string[] = [];
    const logger = createLogger('error', new Writable({ write: (_c, _e, done) => done() }));
    const shared = new SharedCache(
      {
        url: new URL('redis://127.0.0.1:9'),
        keyPrefix: 'test:',
        encryptionKeys: [randomBytes(32)],
        timeoutMs: 200,
        tls: {},
        cluster: false,
      },
      { logger, store: recordingStore(calls) },
    );
    credentials = new Credentials(config, { logger, sharedCache: shared });

    const bound = await credentials.source('payments').get();
    expect(bound.tokenType).toBe('DPoP');
    credentials.source('payments').invalidate(bound.accessToken);
    expect(calls).toEqual([]);

    const plain = await credentials.source('orders').get();
    expect(plain.tokenType).toBe('Bearer');
    expect(calls).toContain('read');
    expect(calls).toContain('publish');
  });
});
