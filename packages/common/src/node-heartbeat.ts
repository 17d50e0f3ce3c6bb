import type { BlobResolver } from './blob-resolver.ts';
import type { ContentStore } from './content-store.ts';
import { LocalImagesView } from './local-images.ts';
import { sumByLabel, type MirrorMetrics } from './metrics.ts';
import type { PeerNode } from './peer-node.ts';

import { recentProblems } from './recent-problems.ts';
import { rateLimitViews, type NodeHeartbeat } from './pull-report.ts';
import type { UpstreamClient } from './upstream-client.ts';
import { PEERPULL_VERSION } from './version.ts';

export interface HeartbeatSources {
  startedAt: number;
  store: ContentStore;
  blobs: BlobResolver;
  metrics: MirrorMetrics;
  upstream: UpstreamClient;
  peer: () => PeerNode | undefined;
  readinessProblem: () => Promise<string | undefined>;
}

/** A node's state as the daemon and the seed both report it (heartbeats, `/api/v1/status`). */
export class NodeHeartbeatCollector {
  readonly #sources: HeartbeatSources;
  readonly #images: LocalImagesView;

  constructor(sources: HeartbeatSources) {
    this.#sources = sources;
    this.#images = new LocalImagesView(sources.store);
  }

  async collect(): Promise<NodeHeartbeat> {
    const { store, metrics, blobs, upstream } = this.#sources;
    const peer = this.#sources.peer();
    const [problem, served, fetched, images] = await Promise.all([
      this.#sources.readinessProblem(),
      sumByLabel(metrics.bytesServed, 'source'),
      sumByLabel(metrics.bytesFetched, 'source'),
      this.#images.images(),
    ]);
    const beat: NodeHeartbeat = {
      version: PEERPULL_VERSION,
      startedAt: this.#sources.startedAt,
      ready: problem === undefined,
      peers: peer ? peer.libp2p.getPeers().map(String) : [],
      cache: { bytes: store.totalBytes, maxBytes: store.maxBytes, entries: store.entries, evictions: store.evictions },
      served,
      fetched,
      transfers: blobs.activeFetches().map((f) => ({ digest: f.digest, repository: `${f.registry}/${f.repository}`, source: f.source, written: f.written, size: f.size ?? null, startedAt: f.startedAt })),
      images,
      rateLimits: rateLimitViews(upstream),
      errors: recentProblems.latest(10),
    };
    if (problem) beat.readyReason = problem;
    if (peer) beat.peerId = peer.peerId.toString();
    return beat;
  }
}
