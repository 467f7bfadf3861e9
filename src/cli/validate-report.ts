/**
 * What `token-injector validate` prints, in its two forms: text for people (problems on stderr, a
 * summary on stdout) and one JSON document on stdout for CI pipelines (`--format json`).
 */
import type { Config } from '../config/types.js';
import { type ConfigProblem, formatProblem } from '../errors.js';
import { EXIT } from './exit-codes.js';
import type { CliIo } from './run-cli.js';

export const VALIDATE_FORMATS = ['text', 'json'] as const;
export type ValidateFormat = (typeof VALIDATE_FORMATS)[number];

export function isValidateFormat(text: string): text is ValidateFormat {
  return (VALIDATE_FORMATS as readonly string[]).includes(text);
}

/**
 * The JSON form, a public contract: `valid`, then every problem and every warning with its key
 * path (`""` for the file as a whole, `line L, column C` for a YAML syntax error). Messages are
 * the validator's own, which never quote a secret's value.
 */
export interface ValidationReport {
  readonly valid: boolean;
  readonly problems: readonly ConfigProblem[];
  readonly warnings: readonly ConfigProblem[];
}

/** Prints the verdict on a configuration in `format`; returns the exit code. */
export function reportValidation(
  configPath: string,
  outcome: { config: Config } | { problems: readonly ConfigProblem[] },
  format: ValidateFormat,
  io: CliIo,
): number {
  const valid = 'config' in outcome;
  if (format === 'json') {
    const report: ValidationReport = {
      valid,
      problems: valid ? [] : outcome.problems.map(plain),
      // An invalid configuration yields no Config, hence no warnings: the problems come first.
      warnings: valid ? outcome.config.warnings.map(plain) : [],
    };
    io.out(`${JSON.stringify(report)}\n`);
  } else if (valid) {
    const { config } = outcome;
    for (const w of config.warnings) io.err(`${configPath}: warning: ${formatProblem(w)}\n`);
    io.out(
      `${configPath}: valid (${config.credentials.size} credential${config.credentials.size === 1 ? '' : 's'}, ${config.routes.length} route${config.routes.length === 1 ? '' : 's'})\n`,
    );
  } else {
    io.err(
      `${configPath}: invalid configuration\n${outcome.problems.map((p) => `  ${formatProblem(p)}\n`).join('')}`,
    );
  }
  return valid ? EXIT.ok : EXIT.configInvalid;
}

/** Exactly the two public fields, whatever else a problem object may carry. */
function plain(p: ConfigProblem): ConfigProblem {
  return { path: p.path, message: p.message };
}
