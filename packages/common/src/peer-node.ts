import { lookup } from 'node:dns/promises';
import { noise } from '@chainsafe/libp2p-noise';
import { yamux } from '@chainsafe/libp2p-yamux';
import { identify } from '@libp2p/identify';
import type { Libp2p, PeerId } from '@libp2p/interface';
import { kadDHT, passthroughMapper, removePublicAddressesMapper, type KadDHT } from '@libp2p/kad-dht';
import { ping } from '@libp2p/ping';
import { tcp } from '@libp2p/tcp';
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr';
import { createLibp2p } from 'libp2p';
import { BoundedDatastore } from './bounded-datastore.ts';
import type { ClusterKey } from './cluster-key.ts';
import type { Logger } from './logger.ts';
import { PeerRefusals, type PeerRefusalKind } from './peer-refusals.ts';
import { loadOrCreatePeerKey } from './peer-identity.ts';
import { DEFAULT_PEER_LIMITS, type PeerLimits } from './peer-options.ts';

export const DHT_PROTOCOL = '/peerpull/kad/1.0.0';

/**
 * Connections one peer id may hold to this node (two nodes dialing each other at once make two).
 * Applies in allowed ranges too: one member opening connection after connection is refused.
 */
export const MAX_CONNECTIONS_PER_PEER = 4;

/** Streams one connection may have open at once, all protocols (yamux's default is 1,000). */
const MAX_STREAMS_PER_CONNECTION = 256;

export interface PeerNodeConfig {
  /** Multiaddrs to listen on, e.g. `/ip4/0.0.0.0/tcp/5070`. */
  listen: string[];
  /** Addresses to announce instead of the listen addresses (e.g. the pod IP). */
  announce?: string[];
  dataDir: string;
  clusterKey: ClusterKey;
  /** Static bootstrap multiaddrs; `/p2p/<id>` optional. */
  bootstrap: string[];
  /** `host[:port]` names resolving to peers (a headless Service). */
  bootstrapDns: string[];
  /** Multiaddr ranges exempt from the connection manager's inbound limits. */
  allow: string[];
  /** Keep loopback addresses in DHT records (single-machine clusters and tests). */
  allowLoopback?: boolean;
  /** Defaults: DEFAULT_PEER_LIMITS. */
  limits?: Partial<PeerLimits>;
  /** Called for each thing refused to a peer because of a limit (for a metric). */
  onRefused?: (kind: PeerRefusalKind) => void;
  logger: Logger;
}

export type PeerLibp2p = Libp2p<{ dht: KadDHT; identify: ReturnType<ReturnType<typeof identify>>; ping: ReturnType<ReturnType<typeof ping>> }>;

const DEFAULT_P2P_PORT = 5070;

/**
 * A libp2p node for the cluster: TCP + noise (keyed by the cluster key) + yamux, and a
 * private kad-dht in server mode. It keeps dialing its bootstrap targets in the background
 * until it has peers, so a node whose bootstrap failed joins once the others are up.
 */
export class PeerNode {
  readonly libp2p: PeerLibp2p;
  readonly #config: PeerNodeConfig;
  readonly #datastore: BoundedDatastore;
  /** Limits hit by peers: counted, and logged once per peer and kind. */
  readonly refusals: PeerRefusals;
  readonly #dynamicTargets = new Set<string>();
  /** Peer ids of bootstrap targets (the seeds): stable members whose return means a partition healed or a seed restarted. */
  readonly #bootstrapPeers = new Set<string>();
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;

  private constructor(libp2p: PeerLibp2p, config: PeerNodeConfig, datastore: BoundedDatastore, refusals: PeerRefusals) {
    this.libp2p = libp2p;
    this.#config = config;
    this.#datastore = datastore;
    this.refusals = refusals;
  }

  static async start(config: PeerNodeConfig): Promise<PeerNode> {
    const limits = { ...DEFAULT_PEER_LIMITS, ...config.limits };
    const privateKey = await loadOrCreatePeerKey(config.dataDir);
    const refusals = new PeerRefusals(config.logger, config.onRefused);
    const datastore = new BoundedDatastore({
      perPeer: limits.providerRecordsPerPeer,
      total: limits.providerRecords,
      perPeerPerSecond: limits.providerRecordsPerPeerPerSecond,
      onRefused: (peer, reason) => refusals.note('provider-records', peer, { reason, limit: reason === 'per-peer' ? limits.providerRecordsPerPeer : limits.providerRecords }),
    });
    // The gater below counts the connections of the node it belongs to, which exists only once created.
    let libp2p: PeerLibp2p | undefined;
    libp2p = (await createLibp2p({
      privateKey,
      datastore,
      addresses: { listen: config.listen, ...(config.announce?.length ? { announce: config.announce } : {}) },
      transports: [tcp()],
      connectionEncrypters: [noise({ prologueBytes: config.clusterKey.noisePrologue() })],
      streamMuxers: [yamux({ maxInboundStreams: MAX_STREAMS_PER_CONNECTION })],
      connectionManager: {
        allow: config.allow,
        maxConnections: limits.maxConnections,
        maxIncomingPendingConnections: limits.maxPendingConnections,
        inboundConnectionThreshold: limits.connectionsPerHostPerSecond,
      },
      connectionGater: {
        denyInboundEncryptedConnection: (peer) => {
          const held = libp2p?.getConnections(peer).length ?? 0;
          if (held < MAX_CONNECTIONS_PER_PEER) return false;
          refusals.note('connections', peer.toString(), { limit: MAX_CONNECTIONS_PER_PEER });
          return true;
        },
      },
      services: {
        identify: identify(),
        ping: ping(),
        dht: kadDHT({
          protocol: DHT_PROTOCOL,
          // On a LAN nobody has a public address: without this every node stays a client and queries hang.
          clientMode: false,
          peerInfoMapper: config.allowLoopback ? passthroughMapper : removePublicAddressesMapper,
          initialQuerySelfInterval: 50,
          allowQueryWithZeroPeers: true,
          // kad-dht's defaults, stated: per connection, so a peer's DHT streams are bounded like its blob streams.
          maxInboundStreams: 32,
          maxOutboundStreams: 64,
        }),
      },
    })) as PeerLibp2p;
    datastore.self = libp2p.peerId.toString();
    const node = new PeerNode(libp2p, config, datastore, refusals);
    libp2p.addEventListener('peer:connect', (event) => config.logger.debug({ peer: event.detail.toString() }, 'peer connected'));
    libp2p.addEventListener('peer:disconnect', (event) => config.logger.debug({ peer: event.detail.toString() }, 'peer disconnected'));
    // Per connection too: a peer can hold a dead connection and a new one at once (a partition's end), which the peer events do not show.
    for (const type of ['connection:open', 'connection:close'] as const) {
      libp2p.addEventListener(type, ({ detail: c }) => {
        config.logger.trace({ peer: c.remotePeer.toString(), id: c.id, direction: c.direction, open: libp2p.getConnections(c.remotePeer).length }, type === 'connection:open' ? 'connection opened' : 'connection closed');
      });
    }
    config.logger.info(
      { peerId: libp2p.peerId.toString(), addrs: libp2p.getMultiaddrs().map(String), cluster: config.clusterKey.fingerprint(), limits },
      'p2p node started',
    );
    node.#schedule(0);
    return node;
  }

  /** DHT provider records this node holds (its own included). */
  get providerRecords(): number {
    return this.#datastore.providerRecords;
  }

  get peerId(): PeerId {
    return this.libp2p.peerId;
  }

  addresses(): string[] {
    return this.libp2p.getMultiaddrs().map(String);
  }

  /** Whether this peer is one of the bootstrap targets this node has reached. */
  isBootstrapPeer(peer: string): boolean {
    return this.#bootstrapPeers.has(peer);
  }

  connectedPeers(): number {
    return this.libp2p.getPeers().length;
  }

  /** Peers in the kad-dht routing table (0 if the DHT does not expose it). */
  routingTableSize(): number {
    return (this.libp2p.services.dht as unknown as { routingTable?: { size?: number } }).routingTable?.size ?? 0;
  }

  /** Bootstrap targets learned at run time (the seeds' advertised addresses). */
  addBootstrap(addrs: string[]): void {
    let added = false;
    for (const a of addrs) {
      if (!this.#dynamicTargets.has(a)) {
        this.#dynamicTargets.add(a);
        added = true;
      }
    }
    if (added) this.#schedule(0);
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    await this.libp2p.stop();
  }

  #schedule(delayMs: number): void {
    clearTimeout(this.#timer);
    if (this.#stopped) return;
    this.#timer = setTimeout(() => {
      void this.#bootstrapRound().then(
        () => this.#schedule(this.connectedPeers() === 0 ? 1_000 : 15_000),
        () => this.#schedule(2_000),
      );
    }, delayMs);
    this.#timer.unref();
  }

  async #bootstrapRound(): Promise<void> {
    const targets = await this.#targets();
    for (const target of targets) {
      const id = target.toString().split('/p2p/')[1];
      if (id) this.#bootstrapPeers.add(id);
    }
    const own = new Set(this.addresses().map((a) => a.split('/p2p/')[0]));
    const connectedAddrs = new Set(this.libp2p.getConnections().map((c) => c.remoteAddr.toString().split('/p2p/')[0]));
    const connectedPeers = new Set(this.libp2p.getPeers().map(String));
    const pending = targets.filter((t) => {
      const [addr, id] = t.toString().split('/p2p/');
      if (own.has(addr as string) || id === this.peerId.toString()) return false;
      return id ? !connectedPeers.has(id) : !connectedAddrs.has(addr as string);
    });
    // Enough to join the DHT: the routing table fills itself from there.
    const batch = shuffle(pending).slice(0, 8);
    await Promise.all(
      batch.map(async (target) => {
        try {
          const connection = await this.libp2p.dial(target, { signal: AbortSignal.timeout(3_000) });
          this.#bootstrapPeers.add(connection.remotePeer.toString());
        } catch (err) {
          this.#config.logger.debug({ target: target.toString(), err: (err as Error).message }, 'bootstrap dial failed');
        }
      }),
    );
    if (targets.length && this.connectedPeers() === 0) {
      this.#config.logger.warn({ targets: targets.length }, 'no peer reachable yet; serving from seed/upstream and retrying');
    }
  }

  async #targets(): Promise<Multiaddr[]> {
    const out: Multiaddr[] = [];
    for (const text of [...this.#config.bootstrap, ...this.#dynamicTargets]) {
      try {
        out.push(multiaddr(text));
      } catch {
        this.#config.logger.warn({ bootstrap: text }, 'ignoring invalid bootstrap multiaddr');
      }
    }
    for (const name of this.#config.bootstrapDns) {
      const [host = name, port = String(DEFAULT_P2P_PORT)] = name.split(':');
      try {
        for (const { address, family } of await lookup(host, { all: true })) {
          out.push(multiaddr(`/${family === 6 ? 'ip6' : 'ip4'}/${address}/tcp/${port}`));
        }
      } catch (err) {
        this.#config.logger.debug({ name, err: (err as Error).message }, 'bootstrap DNS lookup failed');
      }
    }
    return out;
  }
}

function shuffle<T>(items: T[]): T[] {
  const a = [...items];
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [a[i], a[j]] = [a[j] as T, a[i] as T];
  }
  return a;
}
