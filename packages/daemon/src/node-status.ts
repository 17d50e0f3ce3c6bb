import {
  NodeHeartbeatCollector,
  sumByLabel,
  type BlobResolver,
  type ContentStore,
  type MirrorMetrics,
  type NodeHeartbeat,
  type UpstreamClient,
} from '@peerpull/common';
import type { DaemonPeer } from './daemon-peer.ts';
import type { SeedClient } from './seed-client.ts';
import type { SourceHealth, SourcesReport } from './source-health.ts';

/** `GET /api/v1/status` on the daemon: what `peerpull status` prints. */
export interface DaemonStatus extends NodeHeartbeat {
  service: 'daemon';
  id: string;
  name: string;
  uptimeMs: number;
  address: string;
  metricsAddress: string | null;
  /** Every source probed now. */
  sources: SourcesReport;
  /** Requests answered by source (successful manifest and blob requests). */
  requests: Record<string, number>;
  /** Share of the bytes served that came from this node's cache; null before any. */
  hitRatio: number | null;
  /** Bytes served to clients minus bytes fetched from upstream: what direct pulls would have cost the WAN. */
  wanSavedBytes: number;
  peer: { peerId: string; addrs: string[]; connected: number; routingTable: number; advertisedKeys: number; quarantined: string[] } | null;
  seeds: { url: string; up: boolean }[];
}

export interface NodeStatusOptions {
  id: string;
  name: string;
  startedAt: number;
  store: ContentStore;
  blobs: BlobResolver;
  metrics: MirrorMetrics;
  upstream: UpstreamClient;
  peer: DaemonPeer | undefined;
  seeds: SeedClient | undefined;
  health: SourceHealth;
  readinessProblem: () => Promise<string | undefined>;
  addresses: () => { address: string; metricsAddress: string | undefined };
}

/** Builds the node's status and heartbeat from its metrics, store and sources. */
export class NodeStatusCollector {
  readonly #opts: NodeStatusOptions;
  readonly #heartbeat: NodeHeartbeatCollector;

  constructor(opts: NodeStatusOptions) {
    this.#opts = opts;
    this.#heartbeat = new NodeHeartbeatCollector({ ...opts, peer: () => opts.peer?.node });
  }

  heartbeat(): Promise<NodeHeartbeat> {
    return this.#heartbeat.collect();
  }

  async status(): Promise<DaemonStatus> {
    const { metrics, peer, seeds } = this.#opts;
    const [beat, sources, requests] = await Promise.all([this.heartbeat(), this.#opts.health.report(), sumByLabel(metrics.requests, 'source', { result: 'hit' })]);
    const servedTotal = Object.values(beat.served).reduce((a, b) => a + b, 0);
    const { address, metricsAddress } = this.#opts.addresses();
    return {
      ...beat,
      service: 'daemon',
      id: this.#opts.id,
      name: this.#opts.name,
      uptimeMs: Date.now() - this.#opts.startedAt,
      address,
      metricsAddress: metricsAddress ?? null,
      sources,
      requests,
      hitRatio: servedTotal > 0 ? (beat.served.local ?? 0) / servedTotal : null,
      wanSavedBytes: Math.max(0, servedTotal - (beat.fetched.upstream ?? 0)),
      peer: peer
        ? {
            peerId: peer.node.peerId.toString(),
            addrs: peer.node.addresses(),
            connected: peer.node.connectedPeers(),
            routingTable: peer.node.routingTableSize(),
            advertisedKeys: peer.routing.providedCount,
            quarantined: peer.blobSource.quarantinedPeers(),
          }
        : null,
      seeds: seeds?.states() ?? [],
    };
  }

}
