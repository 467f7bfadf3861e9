// biome-ignore-all lint/suspicious/noTemplateCurlyInString: the configuration uses the literal ${env:} syntax
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { Credentials } from '../../../src/credentials/credentials.js';
import { planReload } from '../../../src/reload/plan.js';
import { configFrom } from '../../support/injector.js';

const credential = (clientId: string, extra: object = {}) => ({
  token_endpoint: 'https://idp.example.com/oauth2/token',
  grant_type: 'client_credentials',
  client_id: clientId,
  client_secret: '${env:RECONFIGURE_TEST_SECRET}',
  ...extra,
});

function config(
  credentials: Record<string, unknown>,
  routes: { name: string; credential: string; scope?: string }[],
) {
  return configFrom(
    {
      credentials,
      routes: routes.map((r) => ({
        name: r.name,
        match: { host: `${r.name}.example.com` },
        upstream: 'https://up.example.com',
        credential: r.credential,
        ...(r.scope ? { scope: r.scope } : {}),
      })),
    },
    { RECONFIGURE_TEST_SECRET: 'secret' },
  );
}

describe('Credentials.reconfigure', () => {
  it('keeps the caches of unchanged credentials, replaces changed ones, drops removed ones and unused route caches', async () => {
    const before = config(
      { kept: credential('kept'), changed: credential('changed'), removed: credential('removed') },
      [
        { name: 'k', credential: 'kept' },
        { name: 'scoped', credential: 'kept', scope: 'narrow' },
        { name: 'c', credential: 'changed' },
      ],
    );
    const credentials = new Credentials(before, { logger: pino({ level: 'silent' }) });
    const kept = credentials.source('kept');
    const keptRoute = credentials.forRoute(before.routes[0]!);
    credentials.forRoute(before.routes[1]!);
    const changed = credentials.source('changed');
    credentials.source('removed');
    expect(credentials.sourcesOf('kept')).toHaveLength(2);

    const after = config({ kept: credential('kept'), changed: credential('changed', { scope: 'other' }) }, [
      { name: 'k2', credential: 'kept' },
      { name: 'c', credential: 'changed' },
    ]);
    const plan = planReload(before, after);
    credentials.reconfigure(plan.config, plan.kept);

    expect(credentials.names().sort()).toEqual(['changed', 'kept']);
    expect(credentials.source('kept')).toBe(kept);
    expect(credentials.forRoute(after.routes[0]!)).toBe(keptRoute);
    // The `narrow` cache no route uses any more is gone.
    expect(credentials.sourcesOf('kept')).toEqual([kept]);
    expect(credentials.source('changed')).not.toBe(changed);
    expect(credentials.config('changed').scope).toBe('other');
    expect(() => credentials.source('removed')).toThrow(
      expect.objectContaining({ code: 'unknown_credential' }),
    );
    await credentials.close();
  });
});
