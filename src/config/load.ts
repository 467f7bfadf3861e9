import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { LineCounter, parseDocument } from 'yaml';
import { ConfigError, type ConfigProblem } from '../errors.js';
import type { ConfigSources } from './interpolate.js';
import type { Config } from './types.js';
import { validateConfig } from './validate.js';

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
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { prettyErrors: false, uniqueKeys: true, lineCounter });
  if (doc.errors.length > 0) {
    return {
      problems: doc.errors.map((e) => ({
        path: (({ line, col }) => `line ${line}, column ${col}`)(lineCounter.linePos(e.pos[0])),
        message: `YAML syntax: ${e.message.split('\n')[0]}`,
      })),
    };
  }
  let raw: unknown;
  try {
    raw = doc.toJS({ maxAliasCount: 100 });
  } catch (err) {
    // An alias without its anchor, or an alias bomb: a problem to report, never a crash.
    return { problems: [{ path: '', message: `YAML: ${(err as Error).message.split('\n')[0]}` }] };
  }
  return validateConfig(raw, sources);
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
