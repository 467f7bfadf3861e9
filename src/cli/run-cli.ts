import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { openSharedCache, startTokenInjector } from '../app.js';
import { isAbsoluteUrl } from '../config/checker.js';
import { loadConfig } from '../config/load.js';
import type { Config, TokenScope } from '../config/types.js';
import { Credentials } from '../credentials/credentials.js';
import { ConfigError, CredentialBackoffError, TokenInjectorError } from '../errors.js';
import { createLogger } from '../log/logger.js';
import { type ConfigWatch, watchConfigFile } from '../reload/config-file.js';
import { EXIT } from './exit-codes.js';
import { isValidateFormat, reportValidation, VALIDATE_FORMATS } from './validate-report.js';

const HELP = `token-injector: OAuth 2.0 for any program, without a code change.

Usage:
  token-injector run --config FILE        start the proxy and admin listeners
  token-injector validate --config FILE [--format text|json]
                                          check a configuration; print every problem
  token-injector token NAME --config FILE print one access token of credential NAME
  token-injector ca init --dir DIR [--permit HOST]...
                                          create the CA for HTTPS interception
                                          (tls_intercept); see ca --help
  token-injector --help | --version

Options:
  -c, --config FILE   configuration file (YAML); default: $TOKEN_INJECTOR_CONFIG
  --scope S           token: request scope S instead of the credential's scope
  --audience A        token: request audience A instead of the credential's audience
  --resource URI      token: request resource URI instead of the credential's resource
  --format F          validate: text (default; problems on stderr) or json (one
                      document on stdout: {"valid", "problems", "warnings"},
                      each problem and warning a {"path", "message"})
  -h, --help          show this help
  -v, --version       print the version

Exit codes:
  0  success
  1  invalid configuration (each problem is printed with its key path)
  2  bad command-line usage
  3  token: no token could be obtained (the reason is printed)
  4  run: the proxy could not start (for example, the port is in use)
  5  ca init: the CA was not written (a file is already there, or DIR
     cannot be written)

Signals (run): SIGTERM or SIGINT stops accepting connections, lets in-flight
requests finish (up to shutdown_timeout) and exits 0; a second one exits at
once. Every exit on a signal writes out the log lines still waiting in the
log buffer.

Reload (run): SIGHUP, or a change of the configuration file (its directory
is watched, so a Kubernetes ConfigMap update is seen), reloads the
configuration. A file that does not validate changes nothing: each problem
is logged with its key path (event config_reload_failed) and the proxy keeps
serving. listen, admin.listen, limits.max_header_size, limits.max_headers,
shared_cache, tls_intercept and tracing take effect only at the next restart
(logged as config_restart_required); the rest is applied at once.
`;

export interface CliIo {
  readonly out: (text: string) => void;
  readonly err: (text: string) => void;
  readonly env: NodeJS.ProcessEnv;
}

const processIo: CliIo = {
  out: (t) => process.stdout.write(t),
  err: (t) => process.stderr.write(t),
  env: process.env,
};

/** Runs one command; resolves with the exit code (for `run`, once the proxy has stopped). */
export async function runCli(argv: string[], io: CliIo = processIo): Promise<number> {
  if (argv[0] === 'ca') {
    // Its own options, and the X.509 library that no other command needs: loaded on use.
    const { runCaCommand } = await import('./ca-init.js');
    return runCaCommand(argv.slice(1), io);
  }
  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse(argv);
  } catch (err) {
    io.err(`token-injector: ${(err as Error).message}\nRun 'token-injector --help' for usage.\n`);
    return EXIT.usage;
  }
  const { values, positionals } = parsed;
  if (values.help) {
    io.out(HELP);
    return EXIT.ok;
  }
  if (values.version) {
    io.out(`${version()}\n`);
    return EXIT.ok;
  }
  const [command, ...rest] = positionals;
  const configPath = values.config ?? io.env['TOKEN_INJECTOR_CONFIG'];
  if (!command) {
    io.err(HELP);
    return EXIT.usage;
  }
  if (!['run', 'validate', 'token'].includes(command)) {
    io.err(`token-injector: unknown command "${command}"\nRun 'token-injector --help' for usage.\n`);
    return EXIT.usage;
  }
  const expected = command === 'token' ? 1 : 0;
  if (rest.length !== expected) {
    io.err(
      command === 'token'
        ? 'token-injector: usage: token-injector token NAME --config FILE\n'
        : `token-injector: "${command}" takes no arguments besides --config\n`,
    );
    return EXIT.usage;
  }
  const overrides: TokenScope = {
    ...(values.scope !== undefined ? { scope: values.scope } : {}),
    ...(values.audience !== undefined ? { audience: values.audience } : {}),
    ...(values.resource !== undefined ? { resource: values.resource } : {}),
  };
  const given = Object.keys(overrides);
  if (given.length > 0 && command !== 'token') {
    io.err(`token-injector: --${given[0]} applies to the token command only\n`);
    return EXIT.usage;
  }
  if (overrides.resource !== undefined && !isAbsoluteUrl(overrides.resource)) {
    io.err('token-injector: --resource must be an absolute URI (RFC 8707 §2)\n');
    return EXIT.usage;
  }
  const format = values.format ?? 'text';
  if (values.format !== undefined && command !== 'validate') {
    io.err('token-injector: --format applies to the validate command only\n');
    return EXIT.usage;
  }
  if (!isValidateFormat(format)) {
    io.err(`token-injector: --format must be ${VALIDATE_FORMATS.join(' or ')}, got "${format}"\n`);
    return EXIT.usage;
  }
  if (!configPath) {
    io.err('token-injector: --config FILE is required (or set TOKEN_INJECTOR_CONFIG)\n');
    return EXIT.usage;
  }
  let config: Config;
  try {
    config = loadConfig(configPath);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    // run and token report an invalid file as validate's text form does.
    return reportValidation(configPath, { problems: err.problems }, format, io);
  }
  switch (command) {
    case 'validate':
      return reportValidation(configPath, { config }, format, io);
    case 'token':
      return printToken(config, rest[0]!, overrides, io);
    default:
      return run(config, configPath, io);
  }
}

function parse(argv: string[]) {
  return parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: {
      config: { type: 'string', short: 'c' },
      scope: { type: 'string' },
      audience: { type: 'string' },
      resource: { type: 'string' },
      format: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
      version: { type: 'boolean', short: 'v' },
    },
  });
}

async function printToken(config: Config, name: string, overrides: TokenScope, io: CliIo): Promise<number> {
  if (!config.credentials.has(name)) {
    const known = [...config.credentials.keys()].join(', ') || 'none';
    io.err(`token-injector: unknown credential "${name}" (known: ${known})\n`);
    return EXIT.usage;
  }
  // stdout carries only the token; diagnostics go to stderr.
  const logger = createLogger('error', stderrDestination());
  const sharedCache = config.sharedCache ? await openSharedCache(config.sharedCache, { logger }) : undefined;
  // The fleet's token, if Redis answers soon enough; otherwise one of our own.
  await sharedCache?.ready(config.sharedCache!.timeoutMs * 5);
  const credentials = new Credentials(config, { logger, ...(sharedCache ? { sharedCache } : {}) });
  try {
    const token = await credentials.source(name, overrides).get();
    io.out(`${token.accessToken}\n`);
    return EXIT.ok;
  } catch (err) {
    // The backoff's "next attempt in Ns" is for the proxy's callers: this command makes none.
    const e = (
      err instanceof CredentialBackoffError && err.cause instanceof TokenInjectorError ? err.cause : err
    ) as TokenInjectorError;
    io.err(`token-injector: ${e instanceof TokenInjectorError ? `${e.code}: ` : ''}${e.message}\n`);
    return EXIT.tokenFailed;
  } finally {
    await credentials.close();
    await sharedCache?.close();
  }
}

async function run(config: Config, configPath: string, io: CliIo): Promise<number> {
  let injector: Awaited<ReturnType<typeof startTokenInjector>>;
  try {
    injector = await startTokenInjector(config, { configFile: configPath });
  } catch (err) {
    io.err(`token-injector: cannot start: ${(err as Error).message}\n`);
    return EXIT.startFailed;
  }
  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (signal: NodeJS.Signals) => {
      if (stopping) {
        // A second signal means "now": do not wait for the drain.
        injector.logger.warn({ event: 'forced_exit', signal }, 'second signal: exiting now');
        injector.logger.flush();
        process.exit(EXIT.ok);
      }
      stopping = true;
      watch?.close();
      injector.logger.info({ event: 'signal', signal }, 'shutting down');
      injector.close().then(() => {
        injector.logger.flush();
        process.off('SIGTERM', stop);
        process.off('SIGINT', stop);
        process.off('SIGHUP', hangup);
        resolve(EXIT.ok);
      });
    };
    // SIGHUP means "reload" to daemons (nginx, Prometheus, Envoy's hot-restarter); Node's default
    // would kill a proxy that is serving traffic.
    const reloader = injector.reloader!;
    const hangup = () => {
      if (!stopping) reloader.reload('SIGHUP');
    };
    const unwatched = (err: Error) =>
      injector.logger.warn(
        { event: 'config_watch_failed', detail: err.message },
        'the configuration file is not watched; SIGHUP still reloads it',
      );
    let watch: ConfigWatch | undefined;
    try {
      watch = watchConfigFile(
        configPath,
        () => reloader.lastRead,
        () => {
          if (!stopping) reloader.reload('file');
        },
        unwatched,
      );
    } catch (err) {
      // Out of inotify watches (ENOSPC), say: the proxy runs all the same.
      unwatched(err as Error);
    }
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
    process.on('SIGHUP', hangup);
  });
}

function stderrDestination() {
  return { write: (line: string) => process.stderr.write(line) };
}

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
    version: string;
  };
  return pkg.version;
}
