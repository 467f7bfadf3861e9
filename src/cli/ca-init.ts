/**
 * `token-injector ca init --dir DIR [--permit HOST]...`: makes the CA that HTTPS interception
 * mints leaf certificates from. Loaded only for this command (it brings the X.509 library).
 */
import { constants } from 'node:fs';
import { chmod, lstat, mkdir, open, rm } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { createCa } from '../tls-intercept/ca-create.js';
import { type CertificateName, describePermit, parsePermit } from '../tls-intercept/names.js';
import { EXIT } from './exit-codes.js';
import type { CliIo } from './run-cli.js';

export const CA_HELP = `Usage: token-injector ca init --dir DIR [--permit HOST]...

Creates the CA that HTTPS interception (tls_intercept) mints certificates from:
DIR/ca.crt (the certificate apps trust) and DIR/ca.key (its private key, mode
0600, never printed). DIR is created with mode 0700 if missing. Existing files
are never overwritten.

  --dir DIR       where to write ca.crt and ca.key
  --permit HOST   limit what the CA can ever sign (X.509 name constraints):
                  api.example.com or *.example.com permits that domain and
                  every name under it; an IP address permits that address.
                  Repeat for more. Without --permit the CA can sign any name.
`;

/** Runs `ca …`; resolves with the exit code. */
export async function runCaCommand(argv: string[], io: CliIo): Promise<number> {
  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse(argv);
  } catch (err) {
    io.err(`token-injector: ${(err as Error).message}\n${CA_HELP}`);
    return EXIT.usage;
  }
  const { values, positionals } = parsed;
  if (values.help) {
    io.out(CA_HELP);
    return EXIT.ok;
  }
  if (positionals.length !== 1 || positionals[0] !== 'init') {
    io.err(
      `token-injector: ${positionals[0] === undefined ? 'ca needs a subcommand' : `unknown command "ca ${positionals.join(' ')}"`}\n${CA_HELP}`,
    );
    return EXIT.usage;
  }
  if (values.dir === undefined || values.dir === '') {
    io.err(`token-injector: ca init needs --dir DIR\n${CA_HELP}`);
    return EXIT.usage;
  }
  const permits: CertificateName[] = [];
  for (const text of values.permit ?? []) {
    const permit = parsePermit(text);
    if (typeof permit === 'string') {
      io.err(`token-injector: ${permit}\n`);
      return EXIT.usage;
    }
    permits.push(permit);
  }
  return init(resolve(values.dir), permits, io);
}

function parse(argv: string[]) {
  return parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: {
      dir: { type: 'string' },
      permit: { type: 'string', multiple: true },
      help: { type: 'boolean', short: 'h' },
    },
  });
}

async function init(dir: string, permits: readonly CertificateName[], io: CliIo): Promise<number> {
  const certFile = join(dir, 'ca.crt');
  const keyFile = join(dir, 'ca.key');
  try {
    // mkdir's mode applies to directories it creates only: an existing DIR keeps its own.
    await mkdir(dir, { recursive: true, mode: 0o700 });
  } catch (err) {
    return failed(io, `cannot create ${dir}`, err);
  }
  // Checked before anything is written, so a refusal leaves no half-made CA behind. O_EXCL
  // below still guards against a file appearing in between (and refuses to follow symlinks).
  for (const file of [certFile, keyFile]) {
    if (await exists(file)) {
      io.err(
        `token-injector: ${file} already exists; an existing CA is never overwritten (apps may trust it). Move it away first, or choose another --dir\n`,
      );
      return EXIT.caInitFailed;
    }
  }
  const ca = await createCa({ hostname: hostname(), permits });
  try {
    // Created with its final mode: the key is never readable by others, not even for a moment.
    await writeNew(keyFile, ca.keyPem, 0o600);
  } catch (err) {
    return failed(io, `cannot write ${keyFile}`, err);
  }
  try {
    await writeNew(certFile, ca.certPem, 0o644);
    // A umask may have narrowed it; the certificate is public and apps must read it.
    await chmod(certFile, 0o644);
  } catch (err) {
    // Ours from a moment ago: a key without its certificate is of no use to anyone.
    await rm(keyFile, { force: true });
    return failed(io, `cannot write ${certFile}`, err);
  }
  io.out(report(dir, certFile, keyFile, ca, permits));
  return EXIT.ok;
}

async function writeNew(file: string, text: string, mode: number): Promise<void> {
  const handle = await open(file, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, mode);
  try {
    await handle.writeFile(text);
    await handle.sync();
  } finally {
    await handle.close();
  }
}

async function exists(file: string): Promise<boolean> {
  try {
    // lstat: a symlink, even a dangling one, is something there that must not be written through.
    await lstat(file);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code !== 'ENOENT';
  }
}

function failed(io: CliIo, what: string, err: unknown): number {
  const code = (err as NodeJS.ErrnoException).code;
  io.err(`token-injector: ${what}${code ? ` (${code})` : ''}\n`);
  return EXIT.caInitFailed;
}

function report(
  dir: string,
  certFile: string,
  keyFile: string,
  ca: Awaited<ReturnType<typeof createCa>>,
  permits: readonly CertificateName[],
): string {
  const constraints =
    permits.length === 0
      ? 'Name constraints: none. This CA can sign a certificate for any name; use --permit to limit it.\n'
      : `Name constraints: this CA can only ever sign certificates for\n${permits.map((p) => `  ${describePermit(p)}\n`).join('')}`;
  return `Created the interception CA in ${dir}
  certificate  ${certFile}  (public: give it to the apps)
  private key  ${keyFile}  (mode 0600: only token-injector may read it)
  subject      ${ca.subject}
  valid until  ${ca.notAfter.toISOString()}
  SHA-256      ${ca.fingerprint256}
${constraints}
Configure token-injector with:
  tls_intercept:
    ca_cert_file: ${certFile}
    ca_key_file: ${keyFile}

Make each app trust ${certFile}, for example:
  Node.js        NODE_EXTRA_CA_CERTS=${certFile}
  Debian/Ubuntu  copy it to /usr/local/share/ca-certificates/token-injector.crt
                 and run update-ca-certificates (Go, curl, Python's ssl, …)
  Java           keytool -importcert -alias token-injector -file ${certFile} -keystore …
See "HTTPS interception" in the README for other languages.
`;
}
