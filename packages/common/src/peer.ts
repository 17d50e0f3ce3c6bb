// The libp2p side of common, a subpath of its own (`@peerpull/common/peer`): loading libp2p costs
// ~35 MB of RSS and start-up time, which a node with P2P off (standalone, edge) should not pay.
export * from './peer-node.ts';
export * from './peer-identity.ts';
export * from './bounded-datastore.ts';
