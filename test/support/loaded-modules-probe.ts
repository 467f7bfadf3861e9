/**
 * Run as a child process (`node --import tsx test/support/loaded-modules-probe.ts`): starts the
 * real proxy from the configuration in TRACING_PROBE_CONFIG (JSON, as YAML would give it), sends
 * one request through it with the headers in TRACING_PROBE_HEADERS, stops it, and prints one JSON
 * line: the request's status and every file of an `@opentelemetry` package this process loaded,
 * with the file that required it.
 *
 * A fresh process, so nothing another test loaded counts. OpenTelemetry's packages are CommonJS
 * (Node picks their `default` export condition), so every file of theirs that was loaded, however
 * it was imported, is in `require.cache`; the test runs a traced proxy through this probe too, to
 * show that the probe sees them when they are loaded.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { Writable } from 'node:stream';
import { request } from 'undici';
import { startTokenInjector } from '../../src/app.js';
import { parseConfigText } from '../../src/config/load.js';

const { config, problems } = parseConfigText(process.env['TRACING_PROBE_CONFIG']!, {
  env: process.env,
  readFile: (p) => readFileSync(p, 'utf8'),
});
if (!config) throw new Error(`probe config invalid: ${JSON.stringify(problems)}`);
const discard = new Writable({
  write(_chunk, _enc, done) {
    done();
  },
});
const injector = await startTokenInjector(config, { logDestination: discard });
const res = await request(`http://127.0.0.1:${injector.proxyAddress.port}/probe`, {
  headers: JSON.parse(process.env['TRACING_PROBE_HEADERS'] ?? '{}') as Record<string, string>,
});
await res.body.dump();
await injector.close();
const cache = createRequire(import.meta.url).cache;
// With the file that first required each one (`parent`; none when imported from an ES module).
const loaded = Object.entries(cache)
  .filter(([file]) => file.includes('/@opentelemetry/'))
  .map(([file, mod]) => ({
    file,
    by: (mod as { parent?: { filename?: string } } | undefined)?.parent?.filename,
  }));
writeFileSync(1, `${JSON.stringify({ status: res.statusCode, loaded })}\n`);
