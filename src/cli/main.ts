#!/usr/bin/env node
import { runCli } from './run-cli.js';

runCli(process.argv.slice(2)).then(
  (code) => {
    if (code !== undefined) process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`token-injector: unexpected error: ${(err as Error).stack ?? String(err)}\n`);
    process.exitCode = 70;
  },
);
