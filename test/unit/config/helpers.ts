import type { ConfigSources } from '../../../src/config/interpolate.js';
import { parseConfigText } from '../../../src/config/load.js';
import type { Config } from '../../../src/config/types.js';
import type { ConfigProblem } from '../../../src/errors.js';

/** In-memory sources: `files` maps paths to contents; any other path is ENOENT. `null`: no baseDir. */
export function sources(
  env: Record<string, string | undefined> = {},
  files: Record<string, string> = {},
  baseDir: string | null = '/etc/token-injector',
): ConfigSources & { reads: string[] } {
  const reads: string[] = [];
  return {
    env,
    reads,
    readFile: (path: string) => {
      reads.push(path);
      const content = files[path];
      if (content === undefined) {
        throw Object.assign(new Error(`ENOENT: no such file or directory, open '${path}'`), {
          code: 'ENOENT',
        });
      }
      return content;
    },
    ...(baseDir !== null ? { baseDir } : {}),
  };
}

/** Problems of a YAML text, as `path: message` lines (the form the CLI prints). */
export function problemsOf(yaml: string, src: ConfigSources = sources()): string[] {
  const { config, problems } = parseConfigText(yaml, src);
  if (problems.length > 0 && config !== undefined) throw new Error('a config was returned despite problems');
  return problems.map(format);
}

export function format(p: ConfigProblem): string {
  return p.path ? `${p.path}: ${p.message}` : p.message;
}

/** A config that must be valid; the error lists every problem if it is not. */
export function validConfig(yaml: string, src: ConfigSources = sources()): Config {
  const { config, problems } = parseConfigText(yaml, src);
  if (!config) throw new Error(`expected a valid config, got:\n${problems.map(format).join('\n')}`);
  expectNoProblems(problems);
  return config;
}

function expectNoProblems(problems: readonly ConfigProblem[]): void {
  if (problems.length > 0) throw new Error(`unexpected problems: ${problems.map(format).join('; ')}`);
}

/** A small valid configuration with two credentials and one route, to be extended by tests. */
export const CREDENTIALS_YAML = `credentials:
  orders:
    token_endpoint: https://idp.example.com/token
    grant_type: client_credentials
    client_id: orders-client
    client_secret: orders-secret
  billing:
    token_endpoint: https://idp.example.com/token
    grant_type: client_credentials
    client_id: billing-client
    client_secret: billing-secret
`;

/** CREDENTIALS_YAML plus `routes:` holding the given route items (YAML list text, indented 2). */
export function withRoutes(routesYaml: string): string {
  return `${CREDENTIALS_YAML}routes:\n${routesYaml}`;
}
