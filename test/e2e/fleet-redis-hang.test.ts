// A single Redis that hangs (SIGSTOP): no socket closes and the client says nothing, so /readyz
// and `token_injector_shared_cache_up` follow what the commands meet. A request that needs a new
// token finds the cache down at its first unanswered command and is served with a token of the
// replica's own; once Redis answers again, the next command says up.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nextArrival } from '../support/arrivals.js';
import { isUpLine, type OutageReplica, startOutageReplica } from '../support/cache-outage.js';
import { metric, within } from '../support/fleet.js';
import { type RedisServer, startRedis, stopAllRedis } from '../support/redis.js';

const UP_GAUGE = 'token_injector_shared_cache_up';

let redis: RedisServer;
let replica: OutageReplica;
let frozen: number | undefined;

beforeAll(async () => {
  redis = await startRedis();
  replica = await startOutageReplica(redis.url, ['before', 'frozen', 'thawed']);
}, 60_000);

afterAll(async () => {
  thaw();
  await replica?.close();
  await stopAllRedis();
});

function thaw(): void {
  if (frozen !== undefined) process.kill(frozen, 'SIGCONT');
  frozen = undefined;
}

describe('a single Redis that hangs', () => {
  it('down at the first command that gets no answer, up at the next answered one', async () => {
    if (!replica.proxy.logs.some(isUpLine))
      await within(nextArrival(replica.proxy.logs, isUpLine), 15_000, 'the first shared_cache_up');
    await replica.call('before');
    expect(await replica.sharedCacheState()).toBe('up');
    expect(await metric(replica.proxy.adminUrl, UP_GAUGE)).toBe(1);

    frozen = redis.pid;
    process.kill(frozen, 'SIGSTOP');
    const before = replica.fake.requests.length;
    expect(await replica.call('frozen')).toBe(`Bearer ${replica.fake.issuedTokens.at(-1)}`);
    expect(replica.fake.requests.length).toBe(before + 1);
    expect(await replica.sharedCacheState()).toBe('down');
    expect(await metric(replica.proxy.adminUrl, UP_GAUGE)).toBe(0);
    expect(replica.downLines()).toHaveLength(1);
    expect(replica.downLines()[0]).toMatchObject({ reason: expect.stringContaining('did not answer') });

    thaw();
    const back = nextArrival(replica.proxy.logs, isUpLine);
    await replica.call('thawed');
    await within(back, 5_000, 'shared_cache_up');
    expect(await replica.sharedCacheState()).toBe('up');
    expect(await metric(replica.proxy.adminUrl, UP_GAUGE)).toBe(1);
  }, 60_000);
});
