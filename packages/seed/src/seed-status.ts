import {
  PEERPULL_VERSION,
  LocalImagesView,
  rateLimitViews,
  recentProblems,
  sumByLabel,
  type BlobResolver,
  type ContentStore,
  type MirrorMetrics,
  type NodeHeartbeat,
  type PeerNode,
  type UpstreamClient,
} from '@peerpull/common';
import type { NodeRegistry } from './node-registry.ts';
import type { PullLog } from './pull-log.ts';

/** The seed's own state: `GET /api/v1/status` and the seed's row on the dashboard; a node's heartbeat plus the seed's parts. */
export interface SeedStatus extends Omit<NodeHeartbeat, 'peerId'> {
  service: 'seed';
  uptimeMs: number;
  address: string;
  peerId: string | null;
  routingTable: number;
  pullLog: { entries: number };
  nodes: { total: number; ready: number; stale: number };
}

export interface SeedStatusOptions {
  startedAt: number;
  address: () => string;
  store: ContentStore;
  blobs: BlobResolver;
  metrics: MirrorMetrics;
  upstream: UpstreamClient;
  peer: PeerNode | undefined;
  nodes: NodeRegistry;
  pullLog: PullLog;
  readinessProblem: () => Promise<string | undefined>;
}

const WAN_SAMPLE_MS = 2_000;

export class SeedStatusCollector {
  readonly #opts: SeedStatusOptions;
  #timer: NodeJS.Timeout | undefined;
  #upstreamSeen = 0;
  readonly #images: LocalImagesView;

  constructor(opts: SeedStatusOptions) {
    this.#opts = opts;
    this.#images = new LocalImagesView(opts.store);
  }

  /** Feeds the seed's own upstream bytes into the WAN time series. */
  start(): void {
    this.#timer = setInterval(() => void this.#sampleWan(), WAN_SAMPLE_MS);
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
  }

  async status(): Promise<SeedStatus> {
    const { store, metrics, peer } = this.#opts;
    const [problem, served, fetched, images] = await Promise.all([
      this.#opts.readinessProblem(),
      sumByLabel(metrics.bytesServed, 'source'),
      sumByLabel(metrics.bytesFetched, 'source'),
      this.#images.images(),
    ]);
    const nodes = this.#opts.nodes.nodes();
    const status: SeedStatus = {
      service: 'seed',
      version: PEERPULL_VERSION,
      startedAt: this.#opts.startedAt,
      uptimeMs: Date.now() - this.#opts.startedAt,
      address: this.#opts.address(),
      ready: problem === undefined,
      peerId: peer?.peerId.toString() ?? null,
      peers: peer ? peer.libp2p.getPeers().map(String) : [],
      routingTable: peer?.routingTableSize() ?? 0,
      cache: { bytes: store.totalBytes, maxBytes: store.maxBytes, entries: store.entries, evictions: store.evictions },
      served,
      fetched,
      transfers: this.#opts.blobs.activeFetches().map((f) => ({ digest: f.digest, repository: `${f.registry}/${f.repository}`, source: f.source, written: f.written, size: f.size ?? null, startedAt: f.startedAt })),
      images,
      rateLimits: rateLimitViews(this.#opts.upstream),
      errors: recentProblems.latest(10),
      pullLog: { entries: this.#opts.pullLog.size },
      nodes: { total: nodes.length, ready: nodes.filter((n) => !n.stale && n.ready).length, stale: nodes.filter((n) => n.stale).length },
    };
    if (problem) status.readyReason = problem;
    return status;
  }

  async #sampleWan(): Promise<void> {
    const upstream = (await sumByLabel(this.#opts.metrics.bytesFetched, 'source')).upstream ?? 0;
    if (upstream > this.#upstreamSeen) this.#opts.nodes.addWan(upstream - this.#upstreamSeen);
    this.#upstreamSeen = upstream;
  }

}
