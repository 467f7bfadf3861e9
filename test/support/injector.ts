import { readFileSync } from 'node:fs';
import { Writable } from 'node:stream';
import { stringify } from 'yaml';
import { type RunningInjector, type StartOptions, startTokenInjector } from '../../src/app.js';
import { parseConfigText } from '../../src/config/load.js';
import type { Config } from '../../src/config/types.js';
import { recordLog, watchSecret } from './leak-watch.js';

export interface TestInjector {
  readonly injector: RunningInjector;
  readonly config: Config;
  /** http://127.0.0.1:PORT of the proxy listener. */
  readonly url: string;
  /** http://127.0.0.1:PORT of the admin listener. */
  readonly adminUrl: string;
  /** This injector's log lines, parsed. */
  readonly logs: Record<string, unknown>[];
  close(): Promise<void>;
}

/**
 * Builds a configuration from a plain object (as YAML would give it), validates it with the real
 * loader and starts the real proxy in-process on port 0, capturing every log line at trace level.
 */
export function configFrom(raw: Record<string, unknown>, env: Record<string, string> = {}): Config {
  const withDefaults = {
    listen: '127.0.0.1:0',
    admin: { listen: '127.0.0.1:0' },
    log: { level: 'trace' },
    ...raw,
  };
  const { config, problems } = parseConfigText(stringify(withDefaults), {
    env: { ...process.env, ...env },
    readFile: (p) => readFileSync(p, 'utf8'),
  });
  if (!config)
    throw new Error(`test config invalid:\n${problems.map((p) => `${p.path}: ${p.message}`).join('\n')}`);
  for (const cred of config.credentials.values()) {
    if ('secret' in cred.clientAuth) watchSecret(cred.clientAuth.secret.value);
    if (cred.grant.type === 'password') watchSecret(cred.grant.password.value);
  }
  return config;
}

export async function startInjector(
  raw: Record<string, unknown>,
  env?: Record<string, string>,
): Promise<TestInjector> {
  return startLoaded(configFrom(raw, env));
}

/**
 * The real proxy started in-process from a configuration already loaded (by `configFrom`, or
 * from a file with `configFile` for reloads), every log line checked for leaks and kept, parsed.
 */
export async function startLoaded(
  config: Config,
  options: Pick<StartOptions, 'configFile'> = {},
): Promise<TestInjector> {
  const logs: Record<string, unknown>[] = [];
  const destination = new Writable({
    write(chunk, _enc, done) {
      for (const line of String(chunk).split('\n')) {
        if (!line) continue;
        recordLog(line);
        logs.push(JSON.parse(line) as Record<string, unknown>);
      }
      done();
    },
  });
  const injector = await startTokenInjector(config, { ...options, logDestination: destination });
  return {
    injector,
    config,
    url: `http://127.0.0.1:${injector.proxyAddress.port}`,
    adminUrl: `http://127.0.0.1:${injector.adminAddress.port}`,
    logs,
    close: () => injector.close(),
  };
}
