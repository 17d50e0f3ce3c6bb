import type { OptionSpecs } from './options.ts';

/**
 * Loopback only: many nodes of one machine (tests, the demo) share 127.0.0.1 and would hit the
 * per-address limits. Cluster nodes each have their own address, so the limits apply to them: an
 * allowed range is exempt from every connection limit, a misbehaving member in it included.
 */
export const DEFAULT_PEER_ALLOW = ['/ip4/127.0.0.0/ipcidr/8', '/ip6/::1/ipcidr/128'];

/** What one peer (or all of them) may take of this node: connections and DHT provider records. */
export interface PeerLimits {
  /** Connections before libp2p prunes the least useful ones (allowed ranges are never pruned). */
  maxConnections: number;
  /** Inbound connections still in their handshake at once; more are refused. */
  maxPendingConnections: number;
  /** New inbound connections per second from one address. */
  connectionsPerHostPerSecond: number;
  /** Provider records kept from one other peer, and from all others together. */
  providerRecordsPerPeer: number;
  providerRecords: number;
  /** Provider records (new or refreshed) taken from one peer per second; a faster sender waits. */
  providerRecordsPerPeerPerSecond: number;
}

export const DEFAULT_PEER_LIMITS: PeerLimits = {
  maxConnections: 300,
  maxPendingConnections: 32,
  connectionsPerHostPerSecond: 5,
  // About 450 bytes of heap a record: 100,000 is at most ~45 MiB. A node announces one record per blob,
  // manifest and tag it holds: 10,000 is more than a 20 GiB cache of container images usually holds.
  providerRecordsPerPeer: 10_000,
  providerRecords: 100_000,
  providerRecordsPerPeerPerSecond: 500,
};

/** The libp2p options the daemon and the seed share. */
export function peerOptions(defaultPort: number) {
  return {
    'cluster-key-file': { type: 'string', description: 'File with the shared cluster key (32+ random bytes, raw, hex or base64); without it P2P is off', placeholder: 'FILE' },
    'p2p-listen': { type: 'list', description: 'libp2p listen multiaddr', default: [`/ip4/0.0.0.0/tcp/${defaultPort}`], placeholder: 'MULTIADDR' },
    'p2p-announce': { type: 'list', description: 'Multiaddr to announce to peers instead of the listen addresses (e.g. the pod IP)', default: [], placeholder: 'MULTIADDR' },
    bootstrap: { type: 'list', description: 'Static bootstrap peer multiaddr (/p2p/<id> optional)', default: [], placeholder: 'MULTIADDR' },
    'bootstrap-dns': { type: 'list', description: 'DNS name resolving to peers, e.g. a headless Service', default: [], placeholder: `HOST[:PORT]` },
    'p2p-allow': {
      type: 'list',
      description: 'Address ranges exempt from every inbound connection limit (several nodes behind one address, e.g. on one machine)',
      default: DEFAULT_PEER_ALLOW,
      placeholder: 'MULTIADDR',
    },
    'p2p-max-connections': { type: 'integer', description: 'libp2p connections before the least useful are closed (--p2p-allow ranges are never closed)', default: DEFAULT_PEER_LIMITS.maxConnections },
    'p2p-max-pending-connections': { type: 'integer', description: 'Inbound connections still in their handshake at once; more are refused', default: DEFAULT_PEER_LIMITS.maxPendingConnections },
    'p2p-connection-rate': { type: 'integer', description: 'New inbound connections per second accepted from one address', default: DEFAULT_PEER_LIMITS.connectionsPerHostPerSecond },
    'dht-provider-records': { type: 'integer', description: 'DHT provider records kept from other nodes in total; more are dropped', default: DEFAULT_PEER_LIMITS.providerRecords },
    'dht-provider-records-per-peer': {
      type: 'integer',
      description: 'DHT provider records kept from one node (it announces one per blob and tag it holds); more are dropped',
      default: DEFAULT_PEER_LIMITS.providerRecordsPerPeer,
    },
    'dht-provider-record-rate': {
      type: 'integer',
      description: 'DHT provider records taken from one node per second; a faster sender is made to wait',
      default: DEFAULT_PEER_LIMITS.providerRecordsPerPeerPerSecond,
    },
  } as const satisfies OptionSpecs;
}
