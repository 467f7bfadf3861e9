/**
 * Helpers for HTTPS interception tests: CAs written to disk as `ca init` or `openssl` make them,
 * and a real TLS handshake between a server holding a minted context and a Node client that
 * trusts only the CA it is given.
 */
import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, isIP, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  checkServerIdentity,
  connect,
  type DetailedPeerCertificate,
  type PeerCertificate,
  type SecureContext,
  TLSSocket,
} from 'node:tls';
import { promisify } from 'node:util';
import type { TlsInterceptConfig } from '../../src/config/types.js';
import { createCa, type NewCaOptions } from '../../src/tls-intercept/ca-create.js';

const run = promisify(execFile);

export interface CaFiles {
  readonly certFile: string;
  readonly keyFile: string;
  readonly certPem: string;
  readonly keyPem: string;
}

export interface TempDir {
  readonly path: string;
  remove(): void;
}

export function tempDir(): TempDir {
  const path = mkdtempSync(join(tmpdir(), 'token-injector-intercept-'));
  return { path, remove: () => rmSync(path, { recursive: true, force: true }) };
}

/** A CA made as `ca init` makes it, written as `ca.crt` (0644) and `ca.key` (0600) under `name`. */
export async function writeNewCa(
  dir: string,
  name: string,
  options: Partial<NewCaOptions> = {},
): Promise<CaFiles> {
  const ca = await createCa({ hostname: 'test', ...options });
  return writeCaFiles(dir, name, ca.certPem, ca.keyPem);
}

export function writeCaFiles(dir: string, name: string, certPem: string, keyPem: string): CaFiles {
  const certFile = join(dir, `${name}.crt`);
  const keyFile = join(dir, `${name}.key`);
  writeFileSync(certFile, certPem, { mode: 0o644 });
  writeFileSync(keyFile, keyPem, { mode: 0o600 });
  chmodSync(keyFile, 0o600);
  return { certFile, keyFile, certPem, keyPem };
}

/** The validated configuration for a CA on disk, as `validate` would produce it. */
export function interceptConfig(ca: CaFiles, leafLifetimeMs = 24 * 3_600_000): TlsInterceptConfig {
  return {
    caCert: { value: ca.certPem, file: ca.certFile },
    caKey: { value: ca.keyPem, file: ca.keyFile },
    leafLifetimeMs,
  };
}

export type OpensslKey = 'p256' | 'p384' | 'p521' | 'rsa2048' | 'rsa1024' | 'ed25519';

const KEY_ARGS: Readonly<Record<OpensslKey, readonly string[]>> = {
  p256: ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1'],
  p384: ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:secp384r1'],
  p521: ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:secp521r1'],
  rsa2048: ['-newkey', 'rsa:2048'],
  rsa1024: ['-newkey', 'rsa:1024'],
  ed25519: ['-newkey', 'ed25519'],
};

export const CA_EXTENSIONS = ['basicConstraints=critical,CA:TRUE', 'keyUsage=critical,keyCertSign,cRLSign'];

/**
 * A certificate made by the `openssl` CLI: self-signed, or signed by `issuer`. `extensions` are
 * `-addext` values (for a signed one, written to an extension file).
 */
export async function opensslCertificate(
  dir: string,
  name: string,
  opts: { key?: OpensslKey; subject?: string; extensions?: readonly string[]; issuer?: CaFiles } = {},
): Promise<CaFiles> {
  const certFile = join(dir, `${name}.crt`);
  const keyFile = join(dir, `${name}.key`);
  const key = KEY_ARGS[opts.key ?? 'p256'];
  const subject = opts.subject ?? `/CN=${name}`;
  const extensions = opts.extensions ?? CA_EXTENSIONS;
  if (opts.issuer === undefined) {
    await openssl(
      [
        'req',
        '-x509',
        ...key,
        '-nodes',
        '-keyout',
        keyFile,
        '-out',
        certFile,
        '-days',
        '2',
        '-subj',
        subject,
        ...extensions.flatMap((e) => ['-addext', e]),
      ],
      dir,
    );
  } else {
    const csr = join(dir, `${name}.csr`);
    const ext = join(dir, `${name}.ext`);
    writeFileSync(
      ext,
      [...extensions, 'subjectKeyIdentifier=hash', 'authorityKeyIdentifier=keyid', ''].join('\n'),
    );
    await openssl(['req', '-new', ...key, '-nodes', '-keyout', keyFile, '-out', csr, '-subj', subject], dir);
    await openssl(
      [
        'x509',
        '-req',
        '-in',
        csr,
        '-CA',
        opts.issuer.certFile,
        '-CAkey',
        opts.issuer.keyFile,
        '-set_serial',
        '0x1234',
        '-days',
        '2',
        '-extfile',
        ext,
        '-out',
        certFile,
      ],
      dir,
    );
  }
  chmodSync(keyFile, 0o600);
  return {
    certFile,
    keyFile,
    certPem: readFileSync(certFile, 'utf8'),
    keyPem: readFileSync(keyFile, 'utf8'),
  };
}

async function openssl(args: string[], cwd: string): Promise<void> {
  try {
    await run('/usr/bin/openssl', args, { cwd });
  } catch (err) {
    const stderr = (err as { stderr?: string }).stderr ?? '';
    throw new Error(`openssl ${args[0]} failed: ${stderr.trim() || String(err)}`, { cause: err });
  }
}

export type HandshakeResult =
  | { readonly ok: true; readonly cert: DetailedPeerCertificate; readonly protocol: string | null }
  | { readonly ok: false; readonly code: string; readonly message: string };

/**
 * A TLS handshake as an intercepted CONNECT will do it: a raw TCP connection wrapped in a server
 * `TLSSocket` with the minted context, and a Node client that trusts only `trust` and checks the
 * certificate's identity for `host` (SNI for names; IP literals are sent no SNI, RFC 6066 §3).
 * With `trust` undefined the client judges nothing: for reading the certificate served.
 */
export async function handshake(
  context: SecureContext,
  host: string,
  trust: string | undefined,
): Promise<HandshakeResult> {
  const open = new Set<Socket>();
  const server: Server = createServer((raw) => {
    open.add(raw);
    raw.once('close', () => open.delete(raw));
    const tlsSocket = new TLSSocket(raw, { isServer: true, secureContext: context });
    tlsSocket.on('error', () => tlsSocket.destroy());
    tlsSocket.on('secure', () => tlsSocket.end());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  const bare = host.replace(/^\[|\]$/g, '');
  try {
    return await new Promise<HandshakeResult>((resolve) => {
      const socket = connect({
        host: '127.0.0.1',
        port,
        ...(isIP(bare) ? {} : { servername: bare }),
        ...(trust === undefined
          ? { rejectUnauthorized: false }
          : {
              ca: trust,
              checkServerIdentity: (_name: string, cert: PeerCertificate) => checkServerIdentity(bare, cert),
            }),
      });
      socket.once('secureConnect', () => {
        resolve({ ok: true, cert: socket.getPeerCertificate(true), protocol: socket.getProtocol() });
        socket.destroy();
      });
      socket.once('error', (err: NodeJS.ErrnoException) => {
        resolve({ ok: false, code: err.code ?? 'unknown', message: err.message });
        socket.destroy();
      });
    });
  } finally {
    for (const raw of open) raw.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}

/** The certificate a context serves for `host`, read without judging it (its dates may be off). */
export async function servedCertificate(context: SecureContext, host: string): Promise<X509Certificate> {
  const result = await handshake(context, host, undefined);
  if (!result.ok) throw new Error(`handshake for ${host} failed: ${result.code} ${result.message}`);
  return new X509Certificate(result.cert.raw);
}
