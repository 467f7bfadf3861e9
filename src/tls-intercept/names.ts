import { isIP } from 'node:net';

/**
 * A name as a certificate carries it (RFC 5280 §4.2.1.6): a DNS name (`dNSName`) or an IP
 * address (`iPAddress`). IP values are in canonical text form (IPv6 compressed, no brackets).
 */
export interface CertificateName {
  readonly type: 'dns' | 'ip';
  readonly value: string;
}

/** RFC 1123 labels of at most 63 octets; underscores allowed, as the router allows them. */
const LABEL = /^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$/;
/** RFC 1035 §2.3.4: 255 octets on the wire, so 253 characters in text. */
const MAX_DNS_NAME = 253;

/**
 * The name a leaf certificate for `host` must carry, or why no certificate can name it. `host`
 * is lower case as the router normalises it; an IPv6 literal may keep its brackets. A `dNSName`
 * is an IA5String, so anything beyond ASCII letters, digits, `-`, `_` and dots is refused, and a
 * `*` never gets here as a name: leaves are minted for exact hosts only, never as wildcards.
 */
export function certificateName(host: string): CertificateName | string {
  const bare = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
  const ip = canonicalIp(bare);
  if (ip !== undefined) return ip;
  if (bare.length === 0 || bare.length > MAX_DNS_NAME) {
    return `"${host}" is not a host name a certificate can carry (1 to ${MAX_DNS_NAME} characters)`;
  }
  if (!bare.split('.').every((label) => LABEL.test(label))) {
    return `"${host}" is not a host name a certificate can carry (lower-case ASCII letters, digits, "-", "_" and dots)`;
  }
  return { type: 'dns', value: bare };
}

/** An IP literal in the form certificates and name constraints use; undefined for names. */
function canonicalIp(text: string): CertificateName | undefined {
  const family = isIP(text);
  if (family === 4) return { type: 'ip', value: text };
  // A zone (`fe80::1%eth0`) is local to one machine and has no place in a certificate.
  if (family !== 6 || text.includes('%')) return undefined;
  // The URL parser writes IPv6 canonically (RFC 5952), e.g. `::ffff:1.2.3.4` as `::ffff:102:304`,
  // which every IP parser downstream reads the same way.
  return { type: 'ip', value: new URL(`http://[${text}]/`).hostname.slice(1, -1) };
}

/**
 * One `--permit` of `ca init` as an X.509 name constraint (RFC 5280 §4.2.1.10): a DNS subtree
 * (`example.com` and `*.example.com` both give the subtree `example.com`, which holds the name
 * itself and every name under it) or one IP address. Returns why when `text` is neither.
 */
export function parsePermit(text: string): CertificateName | string {
  const lower = text.trim().toLowerCase().replace(/\.$/, '');
  const name = certificateName(lower.startsWith('*.') ? lower.slice(2) : lower);
  if (typeof name === 'string') {
    return `--permit "${text}" is neither a host name (api.example.com, *.example.com) nor an IP address`;
  }
  return name;
}

/** What a permit lets the CA sign, in words, for the output of `ca init`. */
export function describePermit(permit: CertificateName): string {
  return permit.type === 'ip'
    ? `${permit.value} (this address only)`
    : `${permit.value} and every name under it (*.${permit.value}, a.b.${permit.value}, …)`;
}
