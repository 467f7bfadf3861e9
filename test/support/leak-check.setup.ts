import { afterAll, expect } from 'vitest';
import { leaksInLogs } from './leak-watch.js';

// Runs after every test file: no secret or token any test server issued may appear in any
// line the proxy logged during that file.
afterAll(() => {
  expect(leaksInLogs()).toEqual([]);
});
