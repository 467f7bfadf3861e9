import fs from 'node:fs';
import { describe, expect, it, vi } from 'vitest';
import { createAccessLog } from '../../../src/log/access-log.js';
import { createLogger } from '../../../src/log/logger.js';
import { ENTRY, OpenedSink } from './sink-files.js';

describe('BatchingSink', () => {
  it('holds batched lines until the oldest has waited maxDelayMs, then writes them in one go', () => {
    vi.useFakeTimers();
    const log = new OpenedSink({ batchChars: 1000, maxDelayMs: 500 });
    log.sink.writeBatched('{"n":1}\n');
    vi.advanceTimersByTime(400);
    log.sink.writeBatched('{"n":2}\n');
    vi.advanceTimersByTime(99);
    expect(log.contents()).toBe('');

    vi.advanceTimersByTime(1);
    expect(log.contents()).toBe('{"n":1}\n{"n":2}\n');
    expect(log.writes).toEqual(['{"n":1}\n{"n":2}\n']);
  });

  it('starts a new wait for the first line held after a release', () => {
    vi.useFakeTimers();
    const log = new OpenedSink({ batchChars: 1000, maxDelayMs: 500 });
    log.sink.writeBatched('a\n');
    vi.advanceTimersByTime(500);
    expect(log.contents()).toBe('a\n');
    vi.advanceTimersByTime(300);
    log.sink.writeBatched('b\n');
    vi.advanceTimersByTime(499);
    expect(log.contents()).toBe('a\n');

    vi.advanceTimersByTime(1);
    expect(log.contents()).toBe('a\nb\n');
    expect(log.writes).toEqual(['a\n', 'b\n']);
  });

  it('writes the batch as soon as the held lines reach batchChars, with no timer left behind', () => {
    vi.useFakeTimers();
    const log = new OpenedSink({ batchChars: 10, maxDelayMs: 500 });
    log.sink.writeBatched('12345\n');
    expect(log.contents()).toBe('');
    expect(vi.getTimerCount()).toBe(1);

    log.sink.writeBatched('6789\n');
    expect(log.contents()).toBe('12345\n6789\n');
    expect(log.writes).toEqual(['12345\n6789\n']);
    expect(vi.getTimerCount()).toBe(0);
    vi.advanceTimersByTime(10_000);
    expect(log.writes).toEqual(['12345\n6789\n']);
    expect(log.contents()).toBe('12345\n6789\n');
  });

  it('writes held lines before an urgent line, keeping the order of all lines', () => {
    const log = new OpenedSink({ batchChars: 1000, maxDelayMs: 60_000 });
    log.sink.writeBatched('b1\n');
    log.sink.writeBatched('b2\n');
    log.sink.write('u1\n');
    expect(log.contents()).toBe('b1\nb2\nu1\n');
    log.sink.writeBatched('b3\n');
    log.sink.write('u2\n');
    log.sink.writeBatched('b4\n');
    expect(log.contents()).toBe('b1\nb2\nu1\nb3\nu2\n');

    log.end();
    expect(log.contents()).toBe('b1\nb2\nu1\nb3\nu2\nb4\n');
  });

  it('flushSync writes everything held before it returns, once', () => {
    vi.useFakeTimers();
    const log = new OpenedSink({ batchChars: 1000, maxDelayMs: 500 });
    log.sink.writeBatched('a\n');
    log.sink.writeBatched('b\n');
    expect(log.contents()).toBe('');

    log.sink.flushSync();
    expect(log.contents()).toBe('a\nb\n');
    expect(vi.getTimerCount()).toBe(0);
    log.sink.flushSync();
    expect(log.contents()).toBe('a\nb\n');
    expect(log.writes).toEqual(['a\nb\n']);
  });

  it('flush calls back once what is held is written', async () => {
    const log = new OpenedSink({ batchChars: 1000, maxDelayMs: 60_000 });
    log.sink.writeBatched('a\n');
    expect(log.contents()).toBe('');

    const seen = await new Promise<{ err: Error | undefined; contents: string }>((resolve) =>
      log.sink.flush((err) => resolve({ err, contents: log.contents() })),
    );
    expect(seen).toEqual({ err: undefined, contents: 'a\n' });
  });

  it("a pino logger's flush calls back once the held access lines are written", async () => {
    const log = new OpenedSink({ batchChars: 10_000, maxDelayMs: 60_000 });
    const logger = createLogger('info', log.sink);
    createAccessLog(logger)(ENTRY);
    expect(log.contents()).toBe('');

    const contents = await new Promise<string>((resolve, reject) =>
      logger.flush((err) => (err ? reject(err) : resolve(log.contents()))),
    );
    expect(JSON.parse(contents)).toMatchObject({ msg: 'proxied', path: ENTRY.path });
  });

  it('end writes what is held and removes its process exit hook', () => {
    const before = process.listeners('exit');
    const log = new OpenedSink({ batchChars: 1000, maxDelayMs: 60_000 });
    const added = process.listeners('exit').filter((l) => !before.includes(l));
    expect(added).toHaveLength(1);
    log.sink.writeBatched('a\n');
    log.sink.writeBatched('b\n');

    log.end();
    expect(log.contents()).toBe('a\nb\n');
    expect(log.writes).toEqual(['a\nb\n']);
    expect(process.listeners('exit')).not.toContain(added[0]);
  });

  it('drops every line after end, never throws, and leaves no timer to fire', () => {
    vi.useFakeTimers();
    const log = new OpenedSink({ batchChars: 1000, maxDelayMs: 500 });
    const logger = createLogger('info', log.sink);
    log.sink.writeBatched('held\n');
    expect(vi.getTimerCount()).toBe(1);

    log.end();
    expect(log.contents()).toBe('held\n');
    expect(vi.getTimerCount()).toBe(0);

    const flushed = vi.fn();
    expect(() => {
      log.sink.writeBatched('batched after end\n');
      log.sink.write('urgent after end\n');
      log.sink.flush(flushed);
      log.sink.flushSync();
      log.sink.end();
      logger.warn('after end');
      createAccessLog(logger)(ENTRY);
    }).not.toThrow();
    // No caller of flush is left waiting, though nothing is written.
    expect(flushed).toHaveBeenCalledTimes(1);
    expect(vi.getTimerCount()).toBe(0);
    vi.advanceTimersByTime(60_000);
    expect(log.writes).toEqual(['held\n']);
    expect(log.contents()).toBe('held\n');
  });

  it('writes held lines when the process exits', () => {
    const before = process.listeners('exit');
    const log = new OpenedSink({ batchChars: 1000, maxDelayMs: 60_000 });
    const [onExit] = process.listeners('exit').filter((l) => !before.includes(l));
    log.sink.writeBatched('last words\n');
    expect(log.contents()).toBe('');

    (onExit as () => void)();
    // Written before the listener returns: the process ends right after its exit listeners.
    expect(log.contents()).toBe('last words\n');
  });

  it('keeps multi-byte UTF-8 intact, in batches, urgent lines and across batch boundaries', () => {
    const log = new OpenedSink({ batchChars: 40, maxDelayMs: 60_000 });
    const lines = [
      '{"path":"/café/naïve"}\n',
      '{"path":"/日本語/テスト"}\n',
      '{"msg":"✓ 🚀 𝄞"}\n',
      '{"host":"bücher.example"}\n',
      '{"path":"/Ωμέγα/🙂"}\n',
    ];
    log.sink.writeBatched(lines[0]!);
    log.sink.writeBatched(lines[1]!);
    log.sink.write(lines[2]!);
    log.sink.writeBatched(lines[3]!);
    log.sink.writeBatched(lines[4]!);
    log.end();
    expect(fs.readFileSync(log.path)).toEqual(Buffer.from(lines.join(''), 'utf8'));
  });

  it('keeps multi-byte UTF-8 intact when a default-sized batch is larger in bytes than in characters', () => {
    const log = new OpenedSink();
    // Three bytes a character: a 64 Ki-character batch is about 192 KiB.
    const line = (i: number) => `{"n":${i},"path":"/${'日本語'.repeat(30)}/🚀"}\n`;
    const lines = Array.from({ length: 1500 }, (_, i) => line(i));
    for (const l of lines) log.sink.writeBatched(l);
    expect(log.writes.length).toBeGreaterThan(0);
    log.end();
    expect(log.contents()).toBe(lines.join(''));
  });
});
