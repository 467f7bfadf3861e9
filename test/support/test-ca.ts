/**
 * A throwaway certificate authority for TLS and mTLS tests, built with the `openssl` CLI in a temporary
 * directory. Keys are EC P-256 so issuing a certificate takes milliseconds.
 *
 * @example
 * const ca = await createTestCa();
 * const server = await ca.issue(['localhost', '127.0.0.1']);
 * const client = await ca.issue(['orders-client'], { client: true });
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
const OPENSSL = '/usr/bin/openssl';

export interface IssuedCertificate {
  cert: string;
  key: string;
  certFile: string;
  keyFile: string;
}

export interface TestCa {
  caPem: string;
  caFile: string;
  /**
   * Issues a leaf certificate whose CN is the first name and whose SANs are all names (IP addresses become
   * IP SANs). Server certificates get serverAuth, client certificates (`client: true`) get clientAuth.
   */
  issue(names: string[], opts?: { client?: boolean }): Promise<IssuedCertificate>;
  dir: string;
  /** Removes the directory with every key and certificate. */
  cleanup(): Promise<void>;
}

async function openssl(args: string[], cwd: string): Promise<void> {
  try {
    await run(OPENSSL, args, { cwd });
  } catch (err) {
    const stderr = (err as { stderr?: string }).stderr ?? '';
    throw new Error(`openssl ${args[0]} failed: ${stderr.trim() || String(err)}`, { cause: err });
  }
}

// Leaf certificates must not carry characters that would change the meaning of the openssl -subj string.
function subjectName(name: string): string {
  return name.replace(/[^A-Za-z0-9 .:_@-]/g, '_');
}

export async function createTestCa(): Promise<TestCa> {
  const dir = await mkdtemp(join(tmpdir(), 'token-injector-ca-'));
  const caFile = join(dir, 'ca.pem');
  const caKeyFile = join(dir, 'ca.key');
  const ecKey = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

  await openssl(
    [
      'req',
      '-x509',
      ...ecKey,
      '-keyout',
      caKeyFile,
      '-out',
      caFile,
      '-days',
      '2',
      '-subj',
      '/CN=token-injector test CA',
      '-addext',
      'basicConstraints=critical,CA:TRUE',
      '-addext',
      'keyUsage=critical,keyCertSign,cRLSign',
    ],
    dir,
  );
  const caPem = await readFile(caFile, 'utf8');
  let issued = 0;

  async function issue(names: string[], opts: { client?: boolean } = {}): Promise<IssuedCertificate> {
    const [first] = names;
    if (first === undefined) throw new Error('issue() needs at least one name');
    const base = join(dir, `leaf-${++issued}`);
    const keyFile = `${base}.key`;
    const csrFile = `${base}.csr`;
    const certFile = `${base}.pem`;
    const extFile = `${base}.ext`;
    const sans = names.map((n) => (isIP(n) ? `IP:${n}` : `DNS:${n}`)).join(',');
    await writeFile(
      extFile,
      [
        'basicConstraints=critical,CA:FALSE',
        'keyUsage=critical,digitalSignature',
        `extendedKeyUsage=${opts.client ? 'clientAuth' : 'serverAuth'}`,
        `subjectAltName=${sans}`,
        'subjectKeyIdentifier=hash',
        'authorityKeyIdentifier=keyid,issuer',
        '',
      ].join('\n'),
    );
    await openssl(
      ['req', '-new', ...ecKey, '-keyout', keyFile, '-out', csrFile, '-subj', `/CN=${subjectName(first)}`],
      dir,
    );
    await openssl(
      [
        'x509',
        '-req',
        '-in',
        csrFile,
        '-CA',
        caFile,
        '-CAkey',
        caKeyFile,
        // Random serials: a fixed one would make two leaves of this CA indistinguishable to TLS caches.
        '-set_serial',
        `0x${randomBytes(16)
          .toString('hex')
          .replace(/^[89a-f]/, '1')}`,
        '-days',
        '2',
        '-extfile',
        extFile,
        '-out',
        certFile,
      ],
      dir,
    );
    const [cert, key] = await Promise.all([readFile(certFile, 'utf8'), readFile(keyFile, 'utf8')]);
    return { cert, key, certFile, keyFile };
  }

  return {
    caPem,
    caFile,
    dir,
    issue,
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
}
