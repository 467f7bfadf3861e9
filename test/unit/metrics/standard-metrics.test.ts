import { describe, expect, it } from 'vitest';
import type { TokenState } from '../../../src/credentials/token-source.js';
import {
  CREDENTIAL_STATES,
  type CredentialReadings,
  type CredentialState,
  Metrics,
} from '../../../src/metrics/metrics.js';
import { samples } from '../../support/exposition.js';

interface Reading {
  state: CredentialState;
  expiresAt?: number;
  expiresIn?: number;
  lastError?: string;
}

/** Credentials as the gauges see them, changeable between scrapes. */
function readings(of: Record<string, Reading>): CredentialReadings {
  return {
    names: () => Object.keys(of),
    state: (name) => of[name]!.state,
    lastErrorCode: (name) => of[name]!.lastError,
    expiresInSeconds: (name) => of[name]!.expiresIn,
    expiresAt: (name) => of[name]!.expiresAt,
  };
}

describe("Node's default metrics", () => {
  it('keep their standard names, without the product prefix', async () => {
    const text = await new Metrics().registry.metrics();
    for (const name of [
      'process_cpu_seconds_total',
      'process_resident_memory_bytes',
      'process_start_time_seconds',
      'nodejs_eventloop_lag_seconds',
      'nodejs_heap_size_used_bytes',
      'nodejs_version_info',
    ]) {
      expect(text).toContain(`# TYPE ${name} `);
    }
    expect(text).not.toMatch(/^token_injector_(process|nodejs)_/m);
  });
});

describe('credential gauges, read at each scrape', () => {
  it('knows every state credentials can report', () => {
    // Fails to compile when a state is added to TokenState and not here.
    const every: Record<TokenState | 'per_request', true> = {
      fresh: true,
      refreshing: true,
      stale: true,
      failing: true,
      expired: true,
      empty: true,
      per_request: true,
    };
    expect([...CREDENTIAL_STATES].sort()).toEqual(Object.keys(every).sort());
  });

  it('exports every state of every credential: 1 for the current one, 0 for the others', async () => {
    const metrics = new Metrics({ processMetrics: false });
    const now: Record<string, Reading> = { orders: { state: 'fresh' }, users: { state: 'per_request' } };
    metrics.observeCredentials(readings(now));
    const expected = (states: Record<string, CredentialState>) => {
      const out: Record<string, number> = {};
      for (const [credential, current] of Object.entries(states)) {
        for (const state of CREDENTIAL_STATES) {
          out[`{credential="${credential}",state="${state}"}`] = state === current ? 1 : 0;
        }
      }
      return out;
    };
    const read = async () => samples(await metrics.registry.metrics(), 'token_injector_credential_state');
    expect(await read()).toEqual(expected({ orders: 'fresh', users: 'per_request' }));
    now['orders']!.state = 'failing';
    expect(await read()).toEqual(expected({ orders: 'failing', users: 'per_request' }));
  });

  it('exports the expiry as a Unix timestamp, absent while a credential has no token', async () => {
    const metrics = new Metrics({ processMetrics: false });
    const now: Record<string, Reading> = {
      orders: { state: 'fresh', expiresAt: 1_700_000_300_500, expiresIn: 299.5 },
      users: { state: 'empty' },
    };
    metrics.observeCredentials(readings(now));
    const text = await metrics.registry.metrics();
    expect(text).toContain('# TYPE token_injector_token_expiry_timestamp_seconds gauge');
    expect(samples(text, 'token_injector_token_expiry_timestamp_seconds')).toEqual({
      '{credential="orders"}': 1_700_000_300.5,
    });
    expect(samples(text, 'token_injector_token_expires_in_seconds')).toEqual({
      '{credential="orders"}': 299.5,
    });
    // The token is gone (the cache dropped a refused one): both series go with it.
    delete now['orders']!.expiresAt;
    delete now['orders']!.expiresIn;
    const after = await metrics.registry.metrics();
    expect(samples(after, 'token_injector_token_expiry_timestamp_seconds')).toEqual({});
    expect(samples(after, 'token_injector_token_expires_in_seconds')).toEqual({});
  });

  it('exports the last error while it lasts', async () => {
    const metrics = new Metrics({ processMetrics: false });
    const now: Record<string, Reading> = {
      orders: { state: 'failing', lastError: 'token_endpoint_timeout' },
    };
    metrics.observeCredentials(readings(now));
    const read = async () =>
      samples(await metrics.registry.metrics(), 'token_injector_credential_last_error');
    expect(await read()).toEqual({ '{credential="orders",code="token_endpoint_timeout"}': 1 });
    delete now['orders']!.lastError;
    expect(await read()).toEqual({});
  });

  it('follows the credentials it is given: those no longer there leave the next scrape', async () => {
    const metrics = new Metrics({ processMetrics: false });
    metrics.observeCredentials(
      readings({ old: { state: 'fresh', expiresAt: 1_000, expiresIn: 1, lastError: 'internal_error' } }),
    );
    expect(await metrics.registry.metrics()).toContain('credential="old"');
    metrics.observeCredentials(readings({ new: { state: 'empty' } }));
    const text = await metrics.registry.metrics();
    expect(text).not.toContain('credential="old"');
    expect(samples(text, 'token_injector_credential_state')['{credential="new",state="empty"}']).toBe(1);
  });

  it('exports no credential series before it is given credentials', async () => {
    const text = await new Metrics({ processMetrics: false }).registry.metrics();
    expect(text).not.toContain('credential=');
  });
});
