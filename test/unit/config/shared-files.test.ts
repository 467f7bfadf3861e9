import { describe, expect, it } from 'vitest';
import { parseConfigText } from '../../../src/config/load.js';
import { sources } from './helpers.js';

const CA = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';

describe('files named by many keys', () => {
  it('a ca_file shared by many routes is read once per load, and every route trusts its content', () => {
    const routes = Array.from(
      { length: 50 },
      (_, i) => `  - name: r${i}
    match: { host: r${i}.test }
    upstream: https://u${i}.test
    credential: orders
    tls: { ca_file: ca.pem }
`,
    ).join('');
    const src = sources({}, { '/etc/token-injector/ca.pem': CA });
    const { config, problems } = parseConfigText(
      `credentials:
  orders:
    token_endpoint: https://idp.test/token
    grant_type: client_credentials
    client_id: orders
    client_secret: \${env:SECRET}
routes:
${routes}`,
      { ...src, env: { SECRET: 's' } },
    );
    expect(problems).toEqual([]);
    expect(src.reads).toEqual(['/etc/token-injector/ca.pem']);
    expect(
      config!.routes.every((r) => r.tls.ca === CA && r.tls.caFile === '/etc/token-injector/ca.pem'),
    ).toBe(true);
  });
});
