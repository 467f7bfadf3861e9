// `token-injector ca init` as users run it: a child process from the current source. Exit codes,
// file modes, what is (never) printed, and that the CA it writes is one `validate` accepts and
// whose name constraints TLS clients enforce.
import { createPrivateKey, X509Certificate } from 'node:crypto';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  readFileSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { EXIT } from '../../src/cli/exit-codes.js';
import { openInterception } from '../../src/tls-intercept/open.js';
import { killAllCli, runCli, tempDir, writeConfig } from '../support/cli-process.js';
import { handshake, interceptConfig } from '../support/interception.js';
import { watchSecret } from '../support/leak-watch.js';

let root: string;
let removeRoot: () => void;
let n = 0;

beforeAll(() => {
  ({ dir: root, remove: removeRoot } = tempDir('token-injector-ca-init-'));
});

afterEach(killAllCli);
afterAll(() => removeRoot());

function freshDir(): string {
  return join(root, `case-${++n}`);
}

function mode(path: string): number {
  return statSync(path).mode & 0o777;
}

/** The base64 body of a PEM key: what would show if the key were printed anywhere. */
function keyBody(pem: string): string {
  return pem.replace(/-----[A-Z ]+-----/g, '').replace(/\s+/g, '');
}

describe('ca init', () => {
  it('writes ca.crt (0644) and ca.key (0600) in a new 0700 directory, prints where, never the key', async () => {
    const dir = join(freshDir(), 'nested');
    const result = await runCli(['ca', 'init', '--dir', dir]);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(EXIT.ok);
    const certFile = join(dir, 'ca.crt');
    const keyFile = join(dir, 'ca.key');
    expect(mode(dir)).toBe(0o700);
    expect(mode(certFile)).toBe(0o644);
    expect(mode(keyFile)).toBe(0o600);

    const certPem = readFileSync(certFile, 'utf8');
    const keyPem = readFileSync(keyFile, 'utf8');
    watchSecret(keyBody(keyPem));
    expect(result.stdout).not.toContain(keyBody(keyPem).slice(0, 40));
    const cert = new X509Certificate(certPem);
    const key = createPrivateKey(keyPem);
    expect(cert.ca).toBe(true);
    expect(cert.checkPrivateKey(key)).toBe(true);
    expect(key.asymmetricKeyDetails?.namedCurve).toBe('prime256v1');
    expect(cert.subject).toMatch(/^CN=token-injector interception CA \(.+\)$/);
    const years = (Date.parse(cert.validTo) - Date.now()) / (365 * 24 * 3_600_000);
    expect(years).toBeGreaterThan(1.99);
    expect(years).toBeLessThan(2.01);

    expect(result.stdout).toContain(`certificate  ${certFile}`);
    expect(result.stdout).toContain(`private key  ${keyFile}`);
    expect(result.stdout).toContain(cert.fingerprint256);
    expect(result.stdout).toContain(`NODE_EXTRA_CA_CERTS=${certFile}`);
    expect(result.stdout).toContain('Name constraints: none');

    // The CA it makes is one `validate` accepts as tls_intercept.
    const config = writeConfig(dir, 'config.yaml', {
      tls_intercept: { ca_cert_file: certFile, ca_key_file: keyFile },
    });
    const validated = await runCli(['validate', '--config', config]);
    expect(validated.stderr).toBe('');
    expect(validated.code).toBe(EXIT.ok);
  });

  it('leaves an existing directory as it is', async () => {
    const dir = freshDir();
    mkdirSync(dir);
    chmodSync(dir, 0o751);
    expect((await runCli(['ca', 'init', '--dir', dir])).code).toBe(EXIT.ok);
    expect(mode(dir)).toBe(0o751);
  });

  it('never overwrites a CA: a second run exits 5 naming the file, and changes nothing', async () => {
    const dir = freshDir();
    expect((await runCli(['ca', 'init', '--dir', dir])).code).toBe(EXIT.ok);
    const before = [readFileSync(join(dir, 'ca.crt')), readFileSync(join(dir, 'ca.key'))];
    const again = await runCli(['ca', 'init', '--dir', dir]);
    expect(again.code).toBe(EXIT.caInitFailed);
    expect(again.stderr).toContain(`${join(dir, 'ca.crt')} already exists`);
    expect(again.stdout).toBe('');
    expect([readFileSync(join(dir, 'ca.crt')), readFileSync(join(dir, 'ca.key'))]).toEqual(before);
  });

  it('writes nothing when only one of the two files is there', async () => {
    const dir = freshDir();
    mkdirSync(dir);
    writeFileSync(join(dir, 'ca.key'), 'somebody else’s key\n', { mode: 0o600 });
    const result = await runCli(['ca', 'init', '--dir', dir]);
    expect(result.code).toBe(EXIT.caInitFailed);
    expect(result.stderr).toContain(`${join(dir, 'ca.key')} already exists`);
    expect(existsSync(join(dir, 'ca.crt'))).toBe(false);
    expect(readFileSync(join(dir, 'ca.key'), 'utf8')).toBe('somebody else’s key\n');
  });

  it('does not write through a symlink, even a dangling one', async () => {
    const dir = freshDir();
    mkdirSync(dir);
    const target = join(root, `elsewhere-${n}.key`);
    symlinkSync(target, join(dir, 'ca.key'));
    const result = await runCli(['ca', 'init', '--dir', dir]);
    expect(result.code).toBe(EXIT.caInitFailed);
    expect(result.stderr).toContain(`${join(dir, 'ca.key')} already exists`);
    expect(existsSync(target)).toBe(false);
  });

  it('with --permit makes a CA whose constraints clients enforce, and says what each allows', async () => {
    const dir = freshDir();
    const result = await runCli([
      'ca',
      'init',
      '--dir',
      dir,
      '--permit',
      '*.example.com',
      '--permit',
      '10.0.0.1',
    ]);
    expect(result.code).toBe(EXIT.ok);
    expect(result.stdout).toContain('this CA can only ever sign certificates for');
    expect(result.stdout).toContain('example.com and every name under it');
    expect(result.stdout).toContain('10.0.0.1 (this address only)');

    const ca = {
      certFile: join(dir, 'ca.crt'),
      keyFile: join(dir, 'ca.key'),
      certPem: readFileSync(join(dir, 'ca.crt'), 'utf8'),
      keyPem: readFileSync(join(dir, 'ca.key'), 'utf8'),
    };
    watchSecret(keyBody(ca.keyPem));
    const interception = await openInterception(interceptConfig(ca));
    for (const host of ['api.example.com', '10.0.0.1']) {
      const inside = await handshake(await interception.secureContextFor(host), host, ca.certPem);
      expect(inside.ok, host).toBe(true);
    }
    for (const host of ['api.example.org', '10.0.0.2']) {
      const outside = await handshake(await interception.secureContextFor(host), host, ca.certPem);
      expect(outside, host).toMatchObject({
        ok: false,
        message: expect.stringContaining('permitted subtree violation'),
      });
    }
  });

  it.each([
    [['ca', 'init'], 'ca init needs --dir DIR'],
    [['ca', 'init', '--dir', 'x', '--permit', 'not a host'], '--permit "not a host" is neither a host name'],
    [['ca', 'frob', '--dir', 'x'], 'unknown command "ca frob"'],
    [['ca', 'init', '--dir', 'x', '--force'], "Unknown option '--force'"],
  ])('%j is a usage error (exit 2) that writes nothing', async (args, message) => {
    const result = await runCli(args.map((a) => (a === 'x' ? join(root, 'usage') : a)));
    expect(result.code).toBe(EXIT.usage);
    expect(result.stderr).toContain(message);
    expect(existsSync(join(root, 'usage'))).toBe(false);
  });
});
