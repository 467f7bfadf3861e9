// The shared cache on a 3-node Redis Cluster (`cluster: true`) whose every node hangs, then dies.
// The cluster client says nothing when they hang (no socket closes), and when they die only once
// its topology refresh fails, about 5 s later (node-redis 6.4). So /readyz and
// `token_injector_shared_cache_up` follow what the commands meet: a request that needs a new token
// finds the cache down at once, and is served anyway with a token of the replica's own. The next
// command that is answered, or a node reconnecting, says up again.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nextArrival } from '../support/arrivals.js';
import { isUpLine, type OutageReplica, startOutageReplica } from '../support/cache-outage.js';
import { metric, within } from '../support/fleet.js';
import { type RedisCluster, startRedisCluster, stopAllRedis } from '../support/redis.js';

const UP_GAUGE = 'token_injector_shared_cache_up';

let cluster: RedisCluster;
let replica: OutageReplica;
/** Nodes stopped with SIGSTOP, to be continued whatever happens. */
let frozen: number[] = [];

beforeAll(async () => {
  cluster = await startRedisCluster(3);
  replica = await startOutageReplica(cluster.url, ['before', 'frozen', 'thawed', 'killed', 'restarted'], {
    cluster: true,
  });
}, 60_000);

afterAll(async () => {
  thaw();
  await replica?.close();
  await stopAllRedis();
});

function thaw(): void {
  for (const pid of frozen) process.kill(pid, 'SIGCONT');
  frozen = [];
}

describe('every node of the cluster gone', () => {
  it('nodes that hang: down at the first command that gets no answer, up at the next answered one', async () => {
    if (!replica.proxy.logs.some(isUpLine))
      await within(nextArrival(replica.proxy.logs, isUpLine), 15_000, 'the first shared_cache_up');
    await replica.call('before');
    expect(await replica.sharedCacheState()).toBe('up');
    expect(await metric(replica.proxy.adminUrl, UP_GAUGE)).toBe(1);

    // SIGSTOP: no socket closes, no node client reconnects; only the command's timeout tells.
    frozen = cluster.nodes.map((n) => n.pid);
    for (const pid of frozen) process.kill(pid, 'SIGSTOP');
    const before = replica.fake.requests.length;
    expect(await replica.call('frozen')).toBe(`Bearer ${replica.fake.issuedTokens.at(-1)}`);
    expect(replica.fake.requests.length).toBe(before + 1);
    expect(await replica.sharedCacheState()).toBe('down');
    expect(await metric(replica.proxy.adminUrl, UP_GAUGE)).toBe(0);
    expect(replica.downLines()).toHaveLength(1);
    expect(replica.downLines()[0]).toMatchObject({ reason: expect.stringContaining('did not answer') });

    thaw();
    await cluster.waitUntilOk();
    const back = nextArrival(replica.proxy.logs, isUpLine);
    await replica.call('thawed');
    await within(back, 5_000, 'shared_cache_up');
    expect(await replica.sharedCacheState()).toBe('up');
    expect(await metric(replica.proxy.adminUrl, UP_GAUGE)).toBe(1);
  }, 60_000);

  it('nodes that die: down at the first command, up again once they are back', async () => {
    expect(await replica.sharedCacheState()).toBe('up');
    await Promise.all(cluster.nodes.map((n) => n.kill()));
    const before = replica.fake.requests.length;
    expect(await replica.call('killed')).toBe(`Bearer ${replica.fake.issuedTokens.at(-1)}`);
    expect(replica.fake.requests.length).toBe(before + 1);
    expect(await replica.sharedCacheState()).toBe('down');
    expect(await metric(replica.proxy.adminUrl, UP_GAUGE)).toBe(0);
    expect(replica.downLines()).toHaveLength(2);

    const back = nextArrival(replica.proxy.logs, isUpLine);
    await Promise.all(cluster.nodes.map((n) => n.restart()));
    await cluster.waitUntilOk();
    // The node clients reconnect with backoff (up to 5 s between attempts), and say so.
    await within(back, 15_000, 'shared_cache_up');
    await replica.call('restarted');
    expect(await replica.sharedCacheState()).toBe('up');
    expect(await metric(replica.proxy.adminUrl, UP_GAUGE)).toBe(1);
    expect(replica.downLines()).toHaveLength(2);
  }, 60_000);
});
