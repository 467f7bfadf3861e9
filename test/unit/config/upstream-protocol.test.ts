import { describe, expect, it } from 'vitest';
import { problemsOf, validConfig, withRoutes } from './helpers.js';

const route = (extra = '') =>
  withRoutes(`  - name: r\n    upstream: https://api.example.com\n    credential: orders\n${extra}`);

describe('routes[].upstream_protocol', () => {
  it('is http1 unless a route asks for http2', () => {
    expect(validConfig(route()).routes[0]!.upstreamProtocol).toBe('http1');
    expect(validConfig(route('    upstream_protocol: http2\n')).routes[0]!.upstreamProtocol).toBe('http2');
    expect(validConfig(route('    upstream_protocol: http1\n')).routes[0]!.upstreamProtocol).toBe('http1');
  });

  it.each(['h2', 'HTTP2', 'http3'])('refuses %s, naming the key and the allowed values', (value) => {
    expect(problemsOf(route(`    upstream_protocol: ${value}\n`))).toEqual([
      `routes[0].upstream_protocol: must be one of http1, http2, got "${value}"`,
    ]);
  });
});
