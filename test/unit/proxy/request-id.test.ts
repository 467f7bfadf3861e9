import { IncomingMessage } from 'node:http';
import { Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { assignRequestId, newRequestId, REQUEST_ID, requestIdOf } from '../../../src/proxy/request-id.js';

/** A request as Node's HTTP/1.1 parser leaves it: the raw list, headers parsed from it on demand. */
function request(rawHeaders: string[]): IncomingMessage {
  const req = new IncomingMessage(new Socket());
  // What the parser calls (lib/_http_common.js), so `headers` joins repeated fields as Node does.
  (req as unknown as { _addHeaderLines(h: string[], n: number): void })._addHeaderLines(
    [...rawHeaders],
    rawHeaders.length,
  );
  return req;
}

function idFields(raw: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) if (raw[i]!.toLowerCase() === REQUEST_ID) out.push(raw[i + 1]!);
  return out;
}

const GENERATED = /^[0-9a-f]{20}-[0-9a-z]+$/;

describe('assignRequestId', () => {
  it.each([
    ['a UUID', 'f81d4fae-7dec-11d0-a765-00a0c91e6bf6'],
    ['one character', 'x'],
    ['200 characters, the most kept', 'a'.repeat(200)],
    ['every visible ASCII character', '!"#$%&\'()*+,-./09:;<=>?@AZ[\\]^_`az{|}~'],
  ])("keeps the app's ID as it is: %s", (_name, id) => {
    const raw = ['Host', 'a.test', 'X-Request-Id', id, 'Accept', '*/*'];
    const req = request(raw);
    expect(assignRequestId(req)).toBe(id);
    expect(requestIdOf(req)).toBe(id);
    // Nothing rewritten: the raw list the upstream's headers are copied from is the app's.
    expect(req.rawHeaders).toEqual(raw);
  });

  it('gives a request without one a new ID, in its parsed and raw headers', () => {
    const req = request(['Host', 'a.test']);
    const id = assignRequestId(req);
    expect(id).toMatch(GENERATED);
    expect(requestIdOf(req)).toBe(id);
    expect(req.headers[REQUEST_ID]).toBe(id);
    expect(req.rawHeaders).toEqual(['Host', 'a.test', REQUEST_ID, id]);
  });

  it.each([
    ['empty', ''],
    ['201 characters', 'a'.repeat(201)],
    ['a space', 'two words'],
    ['a tab', 'a\tb'],
    ['a control character', 'a\u0001b'],
    ['DEL', 'a\u007fb'],
    ['a latin1 byte beyond ASCII', 'caf\u00e9'],
  ])('replaces a malformed ID (%s) where it was, with a new one', (_name, bad) => {
    const req = request(['Host', 'a.test', 'x-request-id', bad, 'Accept', '*/*']);
    const id = assignRequestId(req);
    expect(id).toMatch(GENERATED);
    expect(req.rawHeaders).toEqual(['Host', 'a.test', 'x-request-id', id, 'Accept', '*/*']);
    expect(requestIdOf(req)).toBe(id);
  });

  it('replaces an ID sent twice (joined by Node with ", ") with one new field', () => {
    const req = request(['X-Request-Id', 'one', 'Host', 'a.test', 'x-request-id', 'two']);
    expect(req.headers[REQUEST_ID]).toBe('one, two');
    const id = assignRequestId(req);
    expect(id).toMatch(GENERATED);
    expect(req.rawHeaders).toEqual(['X-Request-Id', id, 'Host', 'a.test']);
    expect(idFields(req.rawHeaders)).toEqual([id]);
  });

  it('replaces an ID that HTTP/2 gives as a list of values', () => {
    // node:http2 keeps a repeated field as an array in the parsed headers.
    const req = {
      headers: { 'x-request-id': ['one', 'two'] },
      rawHeaders: [':path', '/', 'x-request-id', 'one', 'x-request-id', 'two'],
    } as unknown as IncomingMessage;
    const id = assignRequestId(req);
    expect(id).toMatch(GENERATED);
    expect(req.rawHeaders).toEqual([':path', '/', 'x-request-id', id]);
    expect(requestIdOf(req)).toBe(id);
  });
});

describe('newRequestId', () => {
  it('is unique, and shares one random prefix per process', () => {
    const ids = Array.from({ length: 10_000 }, newRequestId);
    expect(new Set(ids).size).toBe(ids.length);
    for (const id of ids) expect(id).toMatch(GENERATED);
    expect(new Set(ids.map((id) => id.slice(0, 21))).size).toBe(1);
  });
});

describe('requestIdOf', () => {
  it('is undefined without a request (a response made by hand) or without an ID', () => {
    expect(requestIdOf(undefined)).toBeUndefined();
    expect(requestIdOf(request(['Host', 'a.test']))).toBeUndefined();
  });
});
