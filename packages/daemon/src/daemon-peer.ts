import {
  ClusterKey,
  PeerNode,
  type BlobResolver,
  type ContentInfo,
  type ContentStore,
  type Logger,
  type MirrorMetrics,
  type PeerLimits,
} from '@peerpull/common';
import { BlobServer } from './blob-protocol.ts';
import { PeerBlobSource } from './peer-blob-source.ts';
import { PeerManifestSource } from './peer-manifest-source.ts';
import { PeerRouting } from './peer-routing.ts';
import { PeerTagSource } from './peer-tag-source.ts';
import { seedPeerAddresses } from './seed-peer-discovery.ts';

export interface DaemonPeerConfig {
  clusterKeyFile: string;
  dataDir: string;
  listen: string[];
  announce: string[];
  bootstrap: string[];
  bootstrapDns: string[];
  allow: string[];
  uploadLimit: number;
  uploadLimitPerPeer: number;
  limits?: Partial<PeerLimits>;
  lookupBudgetMs: number;
  idleTimeoutMs: number;
  seeds: string[];
}

/**
 * The daemon's part in the cluster's P2P network: it announces every blob it holds or is
 * downloading, serves them to other nodes, and fetches from them before the seed.
 */
export class DaemonPeer {
  readonly node: PeerNode;
  readonly routing: PeerRouting;
  readonly blobSource: PeerBlobSource;
  readonly manifestSource: PeerManifestSource;
  readonly tagSource: PeerTagSource;
  readonly #logger: Logger;
  readonly #metrics: MirrorMetrics;
  readonly #uploadLimit: number;
  readonly #uploadLimitPerPeer: number;
  #server: BlobServer | undefined;
  #stopSeedDiscovery: (() => void) | undefined;

  private constructor(node: PeerNode, config: DaemonPeerConfig, logger: Logger, metrics: MirrorMetrics) {
    this.node = node;
    this.#logger = logger;
    this.#metrics = metrics;
    this.#uploadLimit = config.uploadLimit;
    this.#uploadLimitPerPeer = config.uploadLimitPerPeer;
    this.routing = new PeerRouting(node, logger, metrics);
    this.blobSource = new PeerBlobSource({
      node,
      routing: this.routing,
      logger,
      lookupBudgetMs: config.lookupBudgetMs,
      connectTimeoutMs: 2_000,
      idleTimeoutMs: config.idleTimeoutMs,
      quarantineMs: 10 * 60_000,
      onTransfer: (outcome) => metrics.peerTransfers.inc({ direction: 'download', outcome }),
    });
    this.manifestSource = new PeerManifestSource(this.blobSource);
    this.tagSource = new PeerTagSource({ node, routing: this.routing, logger, lookupBudgetMs: config.lookupBudgetMs });
  }

  static async start(config: DaemonPeerConfig, logger: Logger, metrics: MirrorMetrics): Promise<DaemonPeer> {
    const clusterKey = ClusterKey.load(config.clusterKeyFile);
    const node = await PeerNode.start({
      listen: config.listen,
      announce: config.announce,
      dataDir: config.dataDir,
      clusterKey,
      bootstrap: config.bootstrap,
      bootstrapDns: config.bootstrapDns,
      allow: config.allow,
      allowLoopback: true,
      ...(config.limits ? { limits: config.limits } : {}),
      onRefused: (kind) => metrics.peerRefusals.inc({ kind }),
      logger,
    });
    const peer = new DaemonPeer(node, config, logger, metrics);
    if (config.seeds.length) peer.#stopSeedDiscovery = seedPeerAddresses(config.seeds, logger, (addrs) => node.addBootstrap(addrs));
    return peer;
  }

  /** Starts serving and announcing once the store and resolver exist. */
  async attach(store: ContentStore, blobs: BlobResolver): Promise<void> {
    this.#server = new BlobServer({
      node: this.node,
      blobs,
      tagLookup: (key) => store.getTag(key),
      uploadLimit: this.#uploadLimit,
      uploadLimitPerPeer: this.#uploadLimitPerPeer,
      logger: this.#logger,
      onUpload: (bytes, outcome) => {
        this.#metrics.peerBytesUploaded.inc(bytes);
        this.#metrics.peerTransfers.inc({ direction: 'upload', outcome });
      },
    });
    await this.#server.start();
    // Announce a blob as soon as its download starts: peers then stream it from us while it arrives.
    blobs.events.on('fetch-started', (locator: { digest: ContentInfo['digest'] }) => this.routing.provide(locator.digest));
    store.on('added', (info: ContentInfo) => this.routing.provide(info.digest));
    store.on('removed', (info: ContentInfo) => this.routing.unprovide(info.digest));
    store.on('tag', (key: string) => this.routing.provideTag(key));
    for (const info of store.list()) this.routing.provide(info.digest);
    for (const { key } of await store.listTags()) this.routing.provideTag(key);
  }

  collectMetrics(): void {
    this.#metrics.peersConnected.set(this.node.connectedPeers());
    this.#metrics.peersQuarantined.set(this.blobSource.quarantinedPeers().length);
    this.#metrics.dhtRoutingTableSize.set(this.node.routingTableSize());
    this.#metrics.advertisedKeys.set(this.routing.providedCount);
    this.#metrics.dhtProviderRecords.set(this.node.providerRecords);
  }

  async stop(): Promise<void> {
    this.#stopSeedDiscovery?.();
    await this.node.stop();
  }
}
