// biome-ignore-all lint/suspicious/noTemplateCurlyInString: the configuration uses the literal ${env:} syntax
import { describe, expect, it } from 'vitest';
import { planReload } from '../../../src/reload/plan.js';
import { configFrom } from '../../support/injector.js';

const credential = (clientId: string) => ({
  token_endpoint: 'https://idp.example.com/oauth2/token',
  grant_type: 'client_credentials',
  client_id: clientId,
  client_secret: '${env:PLAN_TEST_SECRET}',
});

function config(raw: Record<string, unknown>) {
  return configFrom(
    {
      credentials: {
        kept: credential('kept'),
        changed: credential('changed'),
        removed: credential('removed'),
      },
      routes: [
        {
          name: 'r',
          match: { host: 'r.example.com' },
          upstream: 'https://up.example.com',
          credential: 'kept',
        },
      ],
      ...raw,
    },
    { PLAN_TEST_SECRET: 'secret' },
  );
}

describe('planReload', () => {
  it('sorts credentials into kept, added, changed and removed', () => {
    const plan = planReload(
      config({}),
      config({
        credentials: {
          kept: credential('kept'),
          changed: credential('changed-2'),
          added: credential('added'),
        },
      }),
    );
    expect([...plan.kept]).toEqual(['kept']);
    expect(plan.added).toEqual(['added']);
    expect(plan.changed).toEqual(['changed']);
    expect(plan.removed).toEqual(['removed']);
    expect(plan.restartRequired).toEqual([]);
  });

  it('an unchanged file changes nothing', () => {
    const plan = planReload(config({}), config({}));
    expect([...plan.kept].sort()).toEqual(['changed', 'kept', 'removed']);
    expect([plan.added, plan.changed, plan.removed, plan.restartRequired]).toEqual([[], [], [], []]);
  });

  it('names the keys that need a restart and keeps their values in force; the rest is the new configuration', () => {
    const current = config({ listen: '127.0.0.1:8080', admin: { listen: '127.0.0.1:9090' } });
    const next = config({
      listen: '127.0.0.1:8081',
      admin: { listen: '127.0.0.1:9091' },
      limits: { max_header_size: '32KiB', headers_timeout: '7s' },
      log: { level: 'warn' },
    });
    const plan = planReload(current, next);
    expect(plan.restartRequired).toEqual(['listen', 'admin.listen', 'limits.max_header_size']);
    expect(plan.config.listen).toEqual(current.listen);
    expect(plan.config.admin.listen).toEqual(current.admin.listen);
    expect(plan.config.limits.maxHeaderSize).toBe(current.limits.maxHeaderSize);
    expect(plan.config.limits.headersTimeoutMs).toBe(7_000);
    expect(plan.config.log.level).toBe('warn');
    expect(plan.config.routes).toBe(next.routes);
  });
});
