// A proxy without `tls_intercept` must not load the X.509 library (nor its Reflect polyfill):
// checked in a fresh process, since this test process may have loaded it for other tests.
// The polyfill defines `Reflect.getMetadata` when it loads, which makes it visible from outside.
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { REPO_ROOT } from '../../support/cli-process.js';
import { type TempDir, tempDir, writeNewCa } from '../../support/interception.js';

const run = promisify(execFile);

let dir: TempDir;

beforeAll(() => {
  dir = tempDir();
});

afterAll(() => dir.remove());

const SCRIPT = `
const { loadConfig } = await import('./src/config/load.ts');
const { startTokenInjector } = await import('./src/app.ts');
await import('./src/cli/run-cli.ts');
await import('./src/tls-intercept/open.ts');
const plain = loadConfig(process.env.PLAIN_CONFIG);
// Validating tls_intercept uses node:crypto only.
const withCa = loadConfig(process.env.INTERCEPT_CONFIG);
const injector = await startTokenInjector(plain, { logDestination: { write() {} } });
const running = typeof Reflect.getMetadata;
await injector.close();
const { openInterception } = await import('./src/tls-intercept/open.ts');
await openInterception(withCa.tlsIntercept);
console.log(JSON.stringify({ running, intercepting: typeof Reflect.getMetadata }));
`;

it('is loaded only when interception opens, not to start or to validate', async () => {
  const ca = await writeNewCa(dir.path, 'ca');
  const base = 'listen: 127.0.0.1:0\nadmin: {listen: 127.0.0.1:0}\nroutes: []\n';
  const plain = join(dir.path, 'plain.yaml');
  const intercept = join(dir.path, 'intercept.yaml');
  writeFileSync(plain, base);
  writeFileSync(
    intercept,
    `${base}tls_intercept: {ca_cert_file: ${ca.certFile}, ca_key_file: ${ca.keyFile}}\n`,
  );
  const { stdout } = await run(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', SCRIPT], {
    cwd: REPO_ROOT,
    env: { ...process.env, PLAIN_CONFIG: plain, INTERCEPT_CONFIG: intercept },
  });
  expect(JSON.parse(stdout.trim().split('\n').pop()!)).toEqual({
    running: 'undefined',
    intercepting: 'function',
  });
});
