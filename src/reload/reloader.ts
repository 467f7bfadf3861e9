import { loadConfig } from '../config/load.js';
import type { Config } from '../config/types.js';
import { ConfigError, type ConfigProblem, formatProblem, TokenInjectorError } from '../errors.js';
import type { Logger } from '../log/logger.js';
import type { Metrics, ReloadResult } from '../metrics/metrics.js';
import { configFileHash } from './config-file.js';
import { planReload, type ReloadPlan } from './plan.js';

/** What asked for the reload; logged with it. */
export type ReloadTrigger = 'SIGHUP' | 'file' | 'call';

export interface ReloadOutcome {
  readonly result: ReloadResult;
  /** The hash of the configuration in force after the reload (the old one unless `success`). */
  readonly configHash: string;
  /** Keys whose change waits for the next restart (the rest was applied). */
  readonly restartRequired: readonly string[];
  /** Why the file was refused (`invalid`), each with its exact key path. */
  readonly problems: readonly ConfigProblem[];
}

/** The running proxy, as a reload sees it. */
export interface Reloadable {
  /** The configuration in force. */
  readonly config: Config;
  /**
   * Applies a plan completely, or throws having changed nothing; synchronous, so no request is
   * ever routed by half of one configuration and half of the other.
   */
  apply(plan: ReloadPlan, hash: string): void;
}

/**
 * Reloads the configuration file: reads and validates it completely; a file that does not
 * validate changes nothing. Every reload is logged and counted by result.
 */
export class ConfigReloader {
  readonly #file: string;
  readonly #target: Reloadable;
  readonly #metrics: Metrics;
  readonly #logger: Logger;
  #hash: string;
  #lastRead: string | undefined;

  /** `hash`: of the file the running configuration came from. */
  constructor(file: string, hash: string, target: Reloadable, deps: { metrics: Metrics; logger: Logger }) {
    this.#file = file;
    this.#hash = hash;
    this.#lastRead = hash;
    this.#target = target;
    this.#metrics = deps.metrics;
    this.#logger = deps.logger;
  }

  /** SHA-256 (hex) of the bytes of the configuration file in force. */
  get configHash(): string {
    return this.#hash;
  }

  /** The hash of the file's content as last read, whether it was applied or refused. */
  get lastRead(): string | undefined {
    return this.#lastRead;
  }

  /** Never throws: a reload that fails in any way leaves the configuration in force. */
  reload(trigger: ReloadTrigger): ReloadOutcome {
    try {
      return this.#reload(trigger);
    } catch (err) {
      return this.#failed(trigger, err);
    }
  }

  #reload(trigger: ReloadTrigger): ReloadOutcome {
    const log = this.#logger;
    let hash: string | undefined;
    let next: Config;
    try {
      // Hashed first: if the file changes while it is read, the watch sees a newer hash than this
      // one and reloads again.
      hash = safeHash(this.#file);
      next = loadConfig(this.#file);
    } catch (err) {
      this.#lastRead = hash;
      if (!(err instanceof ConfigError)) return this.#failed(trigger, err);
      // One line per problem, with its key path, as `validate` and a failed start print them.
      for (const problem of err.problems) {
        log.error(
          { event: 'config_reload_failed', trigger, key: problem.path, problem: problem.message },
          `configuration not reloaded: ${formatProblem(problem)}`,
        );
      }
      this.#metrics.configReloads.inc({ result: 'invalid' });
      return { result: 'invalid', configHash: this.#hash, restartRequired: [], problems: err.problems };
    }
    this.#lastRead = hash;
    const plan = planReload(this.#target.config, next);
    try {
      this.#target.apply(plan, hash ?? this.#hash);
    } catch (err) {
      return this.#failed(trigger, err);
    }
    this.#hash = hash ?? this.#hash;
    for (const key of plan.restartRequired) {
      log.warn(
        { event: 'config_restart_required', trigger, key },
        `configuration: ${key} changed; it takes effect at the next restart (the rest is applied)`,
      );
    }
    for (const w of next.warnings) {
      log.warn({ event: 'config_warning', key: w.path }, `configuration: ${formatProblem(w)}`);
    }
    this.#metrics.configReloads.inc({ result: 'success' });
    this.#metrics.configLastReloadSuccess.set(Date.now() / 1000);
    log.info(
      {
        event: 'config_reloaded',
        trigger,
        config_hash: this.#hash,
        routes: next.routes.length,
        credentials: next.credentials.size,
        credentials_added: plan.added,
        credentials_changed: plan.changed,
        credentials_removed: plan.removed,
        restart_required: plan.restartRequired,
      },
      'configuration reloaded',
    );
    return { result: 'success', configHash: this.#hash, restartRequired: plan.restartRequired, problems: [] };
  }

  /** Valid, but not applied: nothing changed. */
  #failed(trigger: ReloadTrigger, err: unknown): ReloadOutcome {
    this.#logger.error(
      {
        event: 'config_reload_failed',
        trigger,
        error: err instanceof TokenInjectorError ? err.code : 'internal_error',
        detail: (err as Error).message,
      },
      `configuration not reloaded: ${(err as Error).message}`,
    );
    this.#metrics.configReloads.inc({ result: 'error' });
    return { result: 'error', configHash: this.#hash, restartRequired: [], problems: [] };
  }
}

/** Undefined when the file cannot be read: loading it then reports why, as a problem. */
function safeHash(file: string): string | undefined {
  try {
    return configFileHash(file);
  } catch {
    return undefined;
  }
}
