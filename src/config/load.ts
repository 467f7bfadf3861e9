import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { ConfigError, type ConfigProblem } from '../errors.js';
import type { ConfigSources } from './interpolate.js';
import type { Config } from './types.js';
import { validateConfig } from './validate.js';
import { parseYaml } from './yaml.js';

export type { ConfigSources } from './interpolate.js';

const realSources = (baseDir: string): ConfigSources => ({
  env: process.env,
  readFile: (path) => readFileSync(path, 'utf8'),
  baseDir,
});

/** Parses YAML text and validates it; returns the config or every problem found. */
export function parseConfigText(
  text: string,
  sources: ConfigSources,
): { config?: Config; problems: ConfigProblem[] } {
  const { value, problems } = parseYaml(text);
  if (problems.length > 0) return { problems };
  return validateConfig(value, sources);
}

/** Every problem in a configuration text; empty when it is valid. */
export function validateConfigText(text: string, sources: ConfigSources): ConfigProblem[] {
  return parseConfigText(text, sources).problems;
}

/** Reads, resolves and validates a configuration file; throws {@link ConfigError} listing every problem. */
export function loadConfig(file: string, sources?: ConfigSources): Config {
  const path = resolve(file);
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new ConfigError([{ path: '', message: `cannot read ${path}${code ? ` (${code})` : ''}` }], {
      cause: err,
    });
  }
  const { config, problems } = parseConfigText(text, sources ?? realSources(dirname(path)));
  if (!config) throw new ConfigError(problems);
  return config;
}
