import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { recordLog } from '../support/leak-watch.js';

describe('npm run demo', () => {
  it('sends one request through the proxy and shows that the upstream verified the injected token', async () => {
    // DEMO_EXIT=1 makes the demo stop after its first request instead of waiting for Ctrl-C.
    const child = spawn(process.execPath, ['--import', 'tsx', 'demo/demo.ts'], {
      env: { ...process.env, DEMO_EXIT: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (c: Buffer) => {
      out += c.toString();
    });
    child.stderr.on('data', (c: Buffer) => {
      out += c.toString();
    });
    const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
    for (const line of out.split('\n')) if (line.startsWith('{')) recordLog(line);
    expect(out).toContain('The upstream answered 200');
    expect(out).toContain('"client_id":"orders-basic"');
    expect(out).toMatch(/"event":"token_fetched"/);
    expect(code).toBe(0);
  });
});
