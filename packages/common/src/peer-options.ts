import type { OptionSpecs } from './options.ts';
import { DEFAULT_PEER_ALLOW } from './peer-node.ts';

/** The libp2p options the daemon and the seed share. */
export function peerOptions(defaultPort: number) {
  return {
    'cluster-key-file': { type: 'string', description: 'File with the shared cluster key (32+ random bytes, raw, hex or base64); without it P2P is off', placeholder: 'FILE' },
    'p2p-listen': { type: 'list', description: 'libp2p listen multiaddr', default: [`/ip4/0.0.0.0/tcp/${defaultPort}`], placeholder: 'MULTIADDR' },
    'p2p-announce': { type: 'list', description: 'Multiaddr to announce to peers instead of the listen addresses (e.g. the pod IP)', default: [], placeholder: 'MULTIADDR' },
    bootstrap: { type: 'list', description: 'Static bootstrap peer multiaddr (/p2p/<id> optional)', default: [], placeholder: 'MULTIADDR' },
    'bootstrap-dns': { type: 'list', description: 'DNS name resolving to peers, e.g. a headless Service', default: [], placeholder: `HOST[:PORT]` },
    'p2p-allow': { type: 'list', description: 'Address ranges exempt from inbound connection limits (the cluster network)', default: DEFAULT_PEER_ALLOW, placeholder: 'MULTIADDR' },
  } as const satisfies OptionSpecs;
}
