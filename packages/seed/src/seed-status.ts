import {
  NodeHeartbeatCollector,
  sumByLabel,
  type BlobResolver,
  type ContentStore,
  type MirrorMetrics,
  type NodeHeartbeat,
  type UpstreamClient,
} from '@peerpull/common';
import type { PeerNode } from '@peerpull/common/peer';
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
  readonly #heartbeat: NodeHeartbeatCollector;

  constructor(opts: SeedStatusOptions) {
    this.#opts = opts;
    this.#heartbeat = new NodeHeartbeatCollector({ ...opts, peer: () => opts.peer });
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
    const { peer } = this.#opts;
    const beat = await this.#heartbeat.collect();
    const nodes = this.#opts.nodes.nodes();
    return {
      ...beat,
      service: 'seed',
      uptimeMs: Date.now() - this.#opts.startedAt,
      address: this.#opts.address(),
      peerId: beat.peerId ?? null,
      routingTable: peer?.routingTableSize() ?? 0,
      pullLog: { entries: this.#opts.pullLog.size },
      nodes: { total: nodes.length, ready: nodes.filter((n) => !n.stale && n.ready).length, stale: nodes.filter((n) => n.stale).length },
    };
  }

  async #sampleWan(): Promise<void> {
    const upstream = (await sumByLabel(this.#opts.metrics.bytesFetched, 'source')).upstream ?? 0;
    if (upstream > this.#upstreamSeen) this.#opts.nodes.addWan(upstream - this.#upstreamSeen);
    this.#upstreamSeen = upstream;
  }

}
