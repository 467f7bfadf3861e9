/**
 * A throwaway certificate authority for TLS and mTLS tests, built with the `openssl` CLI in a temporary
 * directory. Keys are EC P-256 by default so issuing a certificate takes milliseconds.
 *
 * @example
 * const ca = await createTestCa();
 * const server = await ca.issue(['localhost', '127.0.0.1']);
 * const client = await ca.issue(['orders-client'], { client: true });
 * const withDn = await ca.issue(['orders-client'], { client: true, subject: { O: 'Example', CN: 'orders' } });
 * const selfSigned = await ca.selfSigned(['orders-client']);
 */
import { execFile } from 'node:child_process';
import { randomBytes, X509Certificate } from 'node:crypto';
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

export interface IssueOptions {
  /** A client certificate (extendedKeyUsage clientAuth) instead of a server one (serverAuth). */
  client?: boolean;
  /**
   * The subject's attributes in certificate order, most significant first as in `openssl -subj`
   * (e.g. `{ C: 'DE', O: 'Example, Inc.', CN: 'orders-client' }`; its RFC 4514 string is
   * `CN=orders-client,O=Example\, Inc.,C=DE`, see {@link subjectDn}). Default: `CN=<first name>`.
   */
  subject?: Record<string, string>;
  /** Default 'ec' (P-256). 'rsa' is a 2048-bit key: slower, for code paths that only RSA exercises. */
  keyType?: 'ec' | 'rsa';
}

export interface TestCa {
  caPem: string;
  caFile: string;
  /**
   * Issues a leaf certificate whose CN is the first name (unless `subject` is given) and whose SANs are
   * all names: IP addresses become IP SANs, names with `@` email SANs, `scheme://…` URI SANs, the rest
   * DNS SANs. Server certificates get serverAuth, client certificates (`client: true`) get clientAuth.
   */
  issue(names: string[], opts?: IssueOptions): Promise<IssuedCertificate>;
  /**
   * A self-signed client certificate (not signed by this CA) with the same naming rules, for RFC 8705
   * self_signed_tls_client_auth. Stored in this CA's directory so cleanup() removes it too.
   */
  selfSigned(names: string[], opts?: Omit<IssueOptions, 'client'>): Promise<IssuedCertificate>;
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

// An explicit subject may carry RFC 4514 specials (`,` `+` `=` …) on purpose, to test DN matching:
// openssl -subj takes them backslash-escaped; only control characters are refused.
function subjectString(subject: Record<string, string>): string {
  return Object.entries(subject)
    .map(([attr, value]) => {
      if (!/^[A-Za-z][A-Za-z0-9]*$/.test(attr)) throw new Error(`bad subject attribute ${attr}`);
      if ([...value].some((c) => c.charCodeAt(0) < 0x20)) {
        throw new Error(`control character in subject ${attr}`);
      }
      return `/${attr}=${value.replace(/[\\/+=]/g, (c) => `\\${c}`)}`;
    })
    .join('');
}

function sanEntry(name: string): string {
  if (isIP(name)) return `IP:${name}`;
  if (/^[A-Za-z][A-Za-z0-9+.-]*:\/\//.test(name)) return `URI:${name}`;
  if (name.includes('@')) return `email:${name}`;
  return `DNS:${name}`;
}

function keyArgs(keyType: 'ec' | 'rsa' = 'ec'): string[] {
  return keyType === 'rsa'
    ? ['-newkey', 'rsa:2048', '-nodes']
    : ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
}

// Random serials: a fixed one would make two leaves of this CA indistinguishable to TLS caches.
function randomSerial(): string {
  return `0x${randomBytes(16)
    .toString('hex')
    .replace(/^[89a-f]/, '1')}`;
}

/**
 * The RFC 4514 string of a certificate's subject, e.g. `CN=orders-client,O=Example\, Inc.,C=DE`: the
 * form RFC 8705 `tls_client_auth_subject_dn` values are written in. Node prints the RDNs one per line in
 * certificate order, already RFC 2253-escaped; RFC 4514 lists them in reverse order, comma-separated.
 */
export function subjectDn(cert: string | X509Certificate): string {
  const x509 = typeof cert === 'string' ? new X509Certificate(cert) : cert;
  return x509.subject.split('\n').reverse().join(',');
}

export async function createTestCa(): Promise<TestCa> {
  const dir = await mkdtemp(join(tmpdir(), 'token-injector-ca-'));
  const caFile = join(dir, 'ca.pem');
  const caKeyFile = join(dir, 'ca.key');

  await openssl(
    [
      'req',
      '-x509',
      ...keyArgs(),
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

  function extensions(names: string[], client: boolean, selfSigned: boolean): string[] {
    return [
      'basicConstraints=critical,CA:FALSE',
      'keyUsage=critical,digitalSignature',
      `extendedKeyUsage=${client ? 'clientAuth' : 'serverAuth'}`,
      ...(names.length ? [`subjectAltName=${names.map(sanEntry).join(',')}`] : []),
      'subjectKeyIdentifier=hash',
      ...(selfSigned ? [] : ['authorityKeyIdentifier=keyid,issuer']),
    ];
  }

  function subjectFor(names: string[], subject: Record<string, string> | undefined): string {
    if (subject) return subjectString(subject);
    const [first] = names;
    if (first === undefined) throw new Error('a certificate needs at least one name or a subject');
    return `/CN=${subjectName(first)}`;
  }

  async function issue(names: string[], opts: IssueOptions = {}): Promise<IssuedCertificate> {
    const subj = subjectFor(names, opts.subject);
    const base = join(dir, `leaf-${++issued}`);
    const keyFile = `${base}.key`;
    const csrFile = `${base}.csr`;
    const certFile = `${base}.pem`;
    const extFile = `${base}.ext`;
    await writeFile(extFile, [...extensions(names, opts.client ?? false, false), ''].join('\n'));
    await openssl(
      ['req', '-new', ...keyArgs(opts.keyType), '-keyout', keyFile, '-out', csrFile, '-subj', subj],
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
        '-set_serial',
        randomSerial(),
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

  async function selfSigned(
    names: string[],
    opts: Omit<IssueOptions, 'client'> = {},
  ): Promise<IssuedCertificate> {
    const subj = subjectFor(names, opts.subject);
    const base = join(dir, `self-${++issued}`);
    const keyFile = `${base}.key`;
    const certFile = `${base}.pem`;
    const addext = extensions(names, true, true).flatMap((e) => ['-addext', e]);
    await openssl(
      [
        'req',
        '-x509',
        ...keyArgs(opts.keyType),
        '-keyout',
        keyFile,
        '-out',
        certFile,
        '-days',
        '2',
        '-set_serial',
        randomSerial(),
        '-subj',
        subj,
        // req -x509 adds CA:TRUE and its own key usages unless told otherwise; a client leaf must not be a CA.
        '-config',
        '/dev/null',
        ...addext,
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
    selfSigned,
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
}
