import { isIP } from 'node:net';

/**
 * Where an upstream may send the mirror (redirects, token realms). Docker Hub, ghcr.io and most registries
 * answer blob GETs with a redirect to a CDN, so cross-host redirects must work; but an upstream (or whoever
 * controls its responses) must not be able to point the mirror at the node's own network: the cloud
 * metadata service (169.254.169.254), the kubelet, the API server, a database on 10.x. The policy:
 *
 * - the same origin as the registry (or as the URL that redirected) is always fine;
 * - never from https to http (a downgrade);
 * - a cross-origin target must not be a loopback, private, link-local, unique-local, shared (CGNAT),
 *   multicast or unspecified address literal, nor `localhost`, and must be https, unless the registry
 *   itself is on such an address: an on-premises registry may redirect to its on-premises storage, over
 *   http if it speaks http itself.
 *
 * Names are not resolved here: a public name that resolves to a private address is the DNS operator's
 * choice, and the registry endpoints themselves come from the operator's allowlist.
 *
 * Returns why the target is refused, or undefined when it may be followed.
 */
export function redirectRefusal(registryEndpoint: URL, from: URL, to: URL): string | undefined {
  if (to.protocol !== 'https:' && to.protocol !== 'http:') return `${to.protocol} is not http(s)`;
  if (to.username || to.password) return 'a target with credentials in it';
  if (to.origin === registryEndpoint.origin || to.origin === from.origin) return undefined;
  if (from.protocol === 'https:' && to.protocol !== 'https:') return `a downgrade from https to ${to.protocol}//${to.host}`;
  const registryIsInternal = isInternalHost(registryEndpoint.hostname);
  if (registryIsInternal) return undefined;
  if (to.protocol !== 'https:') return `a cross-origin redirect to plain http (${to.host})`;
  if (isInternalHost(to.hostname)) return `${to.hostname} is a loopback, private or link-local address and ${registryEndpoint.hostname} is not`;
  return undefined;
}

/** A token realm the registry names: the same rules, with the registry's endpoint as the origin. */
export function realmRefusal(registryEndpoint: URL, realm: URL): string | undefined {
  if (realm.protocol !== 'https:' && realm.protocol !== 'http:') return `${realm.protocol} is not http(s)`;
  if (realm.username || realm.password) return 'a realm with credentials in it';
  if (realm.hostname === registryEndpoint.hostname) return undefined;
  if (isInternalHost(realm.hostname) && !isInternalHost(registryEndpoint.hostname)) {
    return `${realm.hostname} is a loopback, private or link-local address and ${registryEndpoint.hostname} is not`;
  }
  return undefined;
}

/**
 * `localhost` (and `*.localhost`), or an IP literal in a range that never names a public host: loopback,
 * RFC 1918 private, link-local (incl. the metadata service), CGNAT, "this network", IPv6 unique-local,
 * link-local, loopback, unspecified and IPv4-mapped forms of all of these. `hostname` as in URL.hostname
 * (IPv6 in brackets).
 */
export function isInternalHost(hostname: string): boolean {
  const host = hostname.toLowerCase().replace(/\.$/, '');
  if (host === 'localhost' || host.endsWith('.localhost')) return true;
  const bare = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
  const kind = isIP(bare.split('%')[0] ?? '');
  if (kind === 4) return isInternalV4(bare);
  if (kind === 6) return isInternalV6(bare.split('%')[0] as string);
  return false;
}

function isInternalV4(address: string): boolean {
  const [a = 0, b = 0] = address.split('.').map(Number);
  return (
    a === 0 || // "this network", 0.0.0.0
    a === 10 ||
    a === 127 ||
    (a === 100 && b >= 64 && b <= 127) || // shared address space (CGNAT)
    (a === 169 && b === 254) || // link-local, cloud metadata
    (a === 172 && b >= 16 && b <= 31) ||
    (a === 192 && b === 168) ||
    (a === 192 && b === 0 && address.startsWith('192.0.0.')) || // IETF protocol assignments
    (a === 198 && (b === 18 || b === 19)) || // benchmarking
    a >= 224 // multicast, reserved, broadcast
  );
}

function isInternalV6(address: string): boolean {
  const groups = expandV6(address);
  if (!groups) return true; // unparseable: refuse
  const [g0 = 0] = groups;
  if (groups.every((g) => g === 0)) return true; // ::
  if (groups.slice(0, 7).every((g) => g === 0) && groups[7] === 1) return true; // ::1
  if ((g0 & 0xfe00) === 0xfc00) return true; // fc00::/7 unique-local
  if ((g0 & 0xffc0) === 0xfe80) return true; // fe80::/10 link-local
  if ((g0 & 0xffc0) === 0xfec0) return true; // fec0::/10 site-local (deprecated)
  if ((g0 & 0xff00) === 0xff00) return true; // multicast
  // IPv4-mapped (::ffff:a.b.c.d), IPv4-compatible (::a.b.c.d) and NAT64 (64:ff9b::a.b.c.d): judge the IPv4 part.
  const v4 = `${groups[6]! >> 8}.${groups[6]! & 0xff}.${groups[7]! >> 8}.${groups[7]! & 0xff}`;
  if (groups.slice(0, 5).every((g) => g === 0) && (groups[5] === 0xffff || groups[5] === 0)) return isInternalV4(v4);
  if (g0 === 0x64 && groups[1] === 0xff9b) return isInternalV4(v4);
  return false;
}

/** Eight 16-bit groups, or undefined. */
function expandV6(address: string): number[] | undefined {
  let text = address;
  const dotted = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (dotted) {
    const [a, b, c, d] = (dotted[1] as string).split('.').map(Number) as [number, number, number, number];
    text = `${text.slice(0, -dotted[1]!.length)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head = '', tail] = text.split('::');
  const parse = (part: string): number[] => (part === '' ? [] : part.split(':').map((g) => parseInt(g, 16)));
  const first = parse(head);
  const last = tail === undefined ? [] : parse(tail);
  const fill = 8 - first.length - last.length;
  if (tail === undefined ? first.length !== 8 : fill < 0) return undefined;
  const groups = [...first, ...Array.from({ length: tail === undefined ? 0 : fill }, () => 0), ...last];
  return groups.length === 8 && groups.every((g) => Number.isInteger(g) && g >= 0 && g <= 0xffff) ? groups : undefined;
}
