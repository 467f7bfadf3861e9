/**
 * Which CONNECT authorities HTTPS interception may terminate: hosts that some route names (exactly
 * or by a `*.` pattern) on a port it accepts. Never a host only a host-less route would take.
 */
import { describe, expect, it } from 'vitest';
import { createRoutedHosts } from '../../../src/router/routed-hosts.js';
import { routeConfig } from '../fixtures.js';

describe('createRoutedHosts', () => {
  const routed = createRoutedHosts([
    routeConfig('exact', { host: 'api.partner.test', pathPrefix: '/v1/' }),
    routeConfig('wild', { host: '*.fleet.test' }),
    routeConfig('port', { host: 'ports.test', port: 8443 }),
    routeConfig('port-2', { host: 'ports.test', port: 9443 }),
    routeConfig('any-port-after', { host: 'mixed.test', port: 8443 }),
    routeConfig('any-port', { host: 'mixed.test' }),
    routeConfig('v6', { host: '[::1]' }),
    routeConfig('no-host', { pathPrefix: '/everything/' }),
  ]);

  it.each([
    ['api.partner.test', 443, true],
    ['api.partner.test', 8443, true],
    ['eu.fleet.test', 443, true],
    ['a.b.fleet.test', 443, true],
    ['fleet.test', 443, false],
    ['xfleet.test', 443, false],
    ['ports.test', 8443, true],
    ['ports.test', 9443, true],
    ['ports.test', 443, false],
    ['mixed.test', 443, true],
    ['mixed.test', 8443, true],
    ['[::1]', 443, true],
    ['elsewhere.test', 443, false],
    ['partner.test', 443, false],
  ] as const)('%s:%i → %s', (host, port, expected) => {
    expect(routed(host, port)).toBe(expected);
  });

  it('a route without match.host makes no host interceptable', () => {
    const onlyHostless = createRoutedHosts([
      routeConfig('no-host', {}),
      routeConfig('prefix', { pathPrefix: '/x/' }),
    ]);
    expect(onlyHostless('anything.test', 443)).toBe(false);
  });
});
