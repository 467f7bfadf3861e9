import { afterEach, describe, expect, it, vi } from 'vitest';
import { type AccessEntry, createAccessLog } from '../../../src/log/access-log.js';
import { createLogger } from '../../../src/log/logger.js';
import { ENTRY } from './sink-files.js';

afterEach(() => {
  vi.useRealTimers();
});

/** The access line and the line pino writes for the same entry, `request_id` last, at a fixed time. */
function bothLines(entry: AccessEntry): { access: string; pino: string } {
  vi.useFakeTimers({ toFake: ['Date'] });
  vi.setSystemTime(1_700_000_000_123);
  const lines: string[] = [];
  const logger = createLogger('info', { write: (line: string) => void lines.push(line) });
  createAccessLog(logger)(entry);
  logger.info(
    {
      event: 'request',
      route: entry.route,
      method: entry.method,
      host: entry.host,
      path: entry.path,
      status: entry.status,
      duration_ms: entry.durationMs,
      request_id: entry.requestId,
    },
    'proxied',
  );
  expect(lines).toHaveLength(2);
  return { access: lines[0]!, pino: lines[1]! };
}

describe('the access line with a request ID', () => {
  it.each([
    ['a generated ID', '1f0c9a8e7d6b5a493827-2s'],
    ['a UUID from the app', 'f81d4fae-7dec-11d0-a765-00a0c91e6bf6'],
    ['quotes and backslashes from the app', 'a"b\\c"'],
    ['200 visible characters', '~'.repeat(200)],
  ])('writes request_id where pino does, byte for byte: %s', (_name, requestId) => {
    const { access, pino } = bothLines({ ...ENTRY, requestId });
    expect(access).toBe(pino);
    expect(JSON.parse(access).request_id).toBe(requestId);
  });

  it('leaves request_id out when there is none, as pino leaves out an undefined value', () => {
    const { access, pino } = bothLines({ ...ENTRY, requestId: undefined });
    expect(access).toBe(pino);
    expect(access).not.toContain('request_id');
  });
});
