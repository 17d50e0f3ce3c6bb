import {
  ClusterKey,
  type BlobResolver,
  type ContentInfo,
  type ContentStore,
  type Digest,
  type Logger,
  type MirrorMetrics,
  type PeerLimits,
} from '@peerpull/common';
import type { PeerId } from '@libp2p/interface';
import { PeerNode } from '@peerpull/common/peer';
import { BlobServer, Libp2pTransfer } from './blob-protocol.ts';
import { PeerBlobSource } from './peer-blob-source.ts';
import { PeerHttpAuth } from './peer-http-auth.ts';
import { PeerHttpAddresses, advertiseHttpDataPlane } from './peer-http-address.ts';
import { HttpTransfer, PeerHttpServer } from './peer-http-transfer.ts';
import { PeerManifestSource } from './peer-manifest-source.ts';
import { PeerRouting, digestToCid } from './peer-routing.ts';
import { PeerTagSource } from './peer-tag-source.ts';
import { PeerBlobServing, type PeerTransportName } from './peer-transfer.ts';
import { watchRejoins } from './rejoin-watch.ts';
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
  /** One more, longer lookup when the seed and the upstream failed too (0: none). */
  lastResortLookupMs: number;
  idleTimeoutMs: number;
  seeds: string[];
  /** How this node fetches from peers: libp2p streams, or HTTP from peers that serve it. */
  transport: PeerTransportName;
  /** `HOST:PORT` to serve the HTTP data plane on; "" not served. */
  httpListen: string;
}

const CONNECT_TIMEOUT_MS = 2_000;
/** How long a seed that may be back (see watchRejoins) has to answer a ping. */
const REJOIN_PING_TIMEOUT_MS = 5_000;

export interface ProviderReport {
  digest: Digest;
  budgetMs: number;
  providers: string[];
  /** Milliseconds until the first provider turned up (null: none did). */
  firstMs: number | null;
  /** The whole lookup (the first provider plus a short grace for more; or until the DHT query ended, or the budget). */
  ms: number;
  /** The first provider's record was held by this node (no network round trip). */
  fromLocalRecord: boolean;
  budgetExhausted: boolean;
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
  readonly #config: DaemonPeerConfig;
  readonly #clusterKey: ClusterKey;
  readonly #httpTransfer: HttpTransfer | undefined;
  #httpServer: PeerHttpServer | undefined;
  #stopSeedDiscovery: (() => void) | undefined;
  #stopRejoinWatch: (() => void) | undefined;

  private constructor(node: PeerNode, clusterKey: ClusterKey, config: DaemonPeerConfig, logger: Logger, metrics: MirrorMetrics) {
    this.node = node;
    this.#logger = logger;
    this.#metrics = metrics;
    this.#config = config;
    this.#clusterKey = clusterKey;
    this.routing = new PeerRouting(node, logger, metrics);
    const libp2p = new Libp2pTransfer(node);
    if (config.transport === 'http') {
      this.#httpTransfer = new HttpTransfer({
        self: node.peerId.toString(),
        auth: new PeerHttpAuth(clusterKey),
        addresses: new PeerHttpAddresses(node, logger),
        fallback: libp2p,
        connectTimeoutMs: CONNECT_TIMEOUT_MS,
        idleTimeoutMs: config.idleTimeoutMs,
        logger,
      });
    }
    this.blobSource = new PeerBlobSource({
      transfer: this.#httpTransfer ?? libp2p,
      routing: this.routing,
      logger,
      lookupBudgetMs: config.lookupBudgetMs,
      lastResortLookupMs: config.lastResortLookupMs,
      connectTimeoutMs: CONNECT_TIMEOUT_MS,
      idleTimeoutMs: config.idleTimeoutMs,
      quarantineMs: 10 * 60_000,
      onTransfer: (outcome, transport) => metrics.peerTransfers.inc({ direction: 'download', outcome, transport }),
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
    const peer = new DaemonPeer(node, clusterKey, config, logger, metrics);
    if (config.seeds.length) peer.#stopSeedDiscovery = seedPeerAddresses(config.seeds, logger, (addrs) => node.addBootstrap(addrs));
    return peer;
  }

  /** Starts serving and announcing once the store and resolver exist. */
  async attach(store: ContentStore, blobs: BlobResolver): Promise<void> {
    // One serving side for both transports: the upload limit counts libp2p and HTTP uploads together.
    const serving = new PeerBlobServing({
      blobs,
      uploadLimit: this.#config.uploadLimit,
      uploadLimitPerPeer: this.#config.uploadLimitPerPeer,
      onPeerLimit: (peer, limit) => this.node.refusals.note('uploads', peer, { limit }),
      logger: this.#logger,
      onUpload: (bytes, outcome, transport) => {
        this.#metrics.peerBytesUploaded.inc({ transport }, bytes);
        this.#metrics.peerTransfers.inc({ direction: 'upload', outcome, transport });
      },
    });
    await new BlobServer({ node: this.node, serving, tagLookup: (key) => store.getTag(key) }).start();
    if (this.#config.httpListen) {
      this.#httpServer = await PeerHttpServer.start({ listen: this.#config.httpListen, serving, auth: new PeerHttpAuth(this.#clusterKey), logger: this.#logger });
      await advertiseHttpDataPlane(this.node, this.#httpServer.address);
    } else if (this.#config.transport === 'http') {
      this.#logger.warn('--peer-transport http without --peer-http-listen: this node fetches over HTTP but peers fetch from it over libp2p');
    }
    // Announce a blob as soon as its download starts: peers then stream it from us while it arrives.
    blobs.events.on('fetch-started', (locator: { digest: ContentInfo['digest'] }) => this.routing.provide(locator.digest));
    store.on('added', (info: ContentInfo) => this.routing.provide(info.digest));
    store.on('removed', (info: ContentInfo) => this.routing.unprovide(info.digest));
    store.on('tag', (key: string) => this.routing.provideTag(key));
    for (const info of store.list()) this.routing.provide(info.digest);
    for (const { key } of await store.listTags()) this.routing.provideTag(key);
    // A seed back after a partition (or a seed restart): the DHT servers we could not reach (or the
    // restarted seed) hold none of our recent records; announce them again.
    this.#stopRejoinWatch = watchRejoins<PeerId>(this.node.libp2p, (peers) => {
      this.#logger.info({ peers }, 'peers that were gone are back: re-providing');
      void this.routing.reprovideAll();
    }, {
      watched: (peer) => this.node.isBootstrapPeer(peer),
      ping: (peer) => this.node.libp2p.services.ping.ping(peer, { signal: AbortSignal.timeout(REJOIN_PING_TIMEOUT_MS) }),
    });
  }

  collectMetrics(): void {
    this.#metrics.peersConnected.set(this.node.connectedPeers());
    this.#metrics.peersQuarantined.set(this.blobSource.quarantinedPeers().length);
    this.#metrics.dhtRoutingTableSize.set(this.node.routingTableSize());
    this.#metrics.advertisedKeys.set(this.routing.providedCount);
    this.#metrics.dhtProviderRecords.set(this.node.providerRecords);
  }

  /** `GET /api/v1/providers`: one provider lookup as a pull would run it (default budget: --peer-lookup-timeout). */
  async providerReport(digest: Digest, budgetMs = this.#config.lookupBudgetMs): Promise<ProviderReport> {
    const r = await this.routing.lookup(digestToCid(digest), budgetMs);
    const round = (ms: number): number => Math.round(ms * 100) / 100;
    return {
      digest,
      budgetMs,
      providers: r.providers.map(String),
      firstMs: r.firstMs === null ? null : round(r.firstMs),
      ms: round(r.ms),
      fromLocalRecord: r.fromLocalRecord,
      budgetExhausted: r.budgetExhausted,
    };
  }

  /** Where this node serves the HTTP data plane, if it does. */
  get httpAddress(): { host: string; port: number } | undefined {
    return this.#httpServer?.address;
  }

  async stop(): Promise<void> {
    this.#stopSeedDiscovery?.();
    this.#stopRejoinWatch?.();
    await this.#httpServer?.close();
    await this.#httpTransfer?.close();
    await this.node.stop();
  }
}
