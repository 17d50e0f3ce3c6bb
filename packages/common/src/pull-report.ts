import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import type { ClusterKey } from './cluster-key.ts';
import type { UpstreamClient } from './upstream-client.ts';

/**
 * What daemons tell the seed (`POST /api/v1/report`): the pulls they completed, for the
 * cluster's audit log, and now and then a heartbeat with their state, for the dashboard.
 */

/** One completed GET of a manifest or blob, as the node's pull API answered it. */
export interface PullEvent {
  /** Completion time, ms since the epoch. */
  time: number;
  registry: string;
  repository: string;
  kind: 'manifest' | 'blob';
  /** A manifest's tag or digest as requested. */
  reference?: string;
  digest?: string;
  status: number;
  bytes: number;
  /** local/peer/seed/upstream, or none when nothing served it. */
  source: string;
  ms: number;
  /** The client's address. */
  client?: string;
}

/** A pull in the seed's audit log: the event and the node that served it. */
export interface PullRecord extends PullEvent {
  node: string;
}

export interface NodeImage {
  /** `registry/repository:tag`. */
  image: string;
  digest: string;
  /** Bytes of the config and layers this node holds (of the platforms it holds). */
  bytes: number;
  /** Every blob of at least one platform is stored. */
  complete: boolean;
}

export interface NodeTransfer {
  digest: string;
  repository: string;
  source: string;
  written: number;
  size: number | null;
  startedAt: number;
}

export interface RateLimitView {
  registry: string;
  limit: number | null;
  remaining: number | null;
  observedAt: number;
  /** Until when requests to it are held off after a 429 (ms since the epoch), or null. */
  backoffUntil: number | null;
}

/** A node's state as its heartbeat (and `GET /api/v1/status`) reports it. */
export interface NodeHeartbeat {
  version: string;
  startedAt: number;
  ready: boolean;
  readyReason?: string;
  peerId?: string;
  /** Connected libp2p peers (peer IDs). */
  peers: string[];
  cache: { bytes: number; maxBytes: number; entries: number; evictions: number };
  /** Bytes sent to clients by source, since start. */
  served: Record<string, number>;
  /** Bytes fetched into the store by source, since start (upstream: WAN bytes). */
  fetched: Record<string, number>;
  transfers: NodeTransfer[];
  images: NodeImage[];
  rateLimits: RateLimitView[];
  errors: { time: string; level: string; msg: string; err?: string }[];
}

export interface NodeReport {
  /** Stable id: the libp2p peer ID, else the node name. */
  id: string;
  name: string;
  /** When the daemon sent it (ms since the epoch); the seed refuses reports far off its clock when signed. */
  sentAt: number;
  pulls: PullEvent[];
  heartbeat?: NodeHeartbeat;
}

export const REPORT_SIGNATURE_HEADER = 'x-peerpull-signature';

/**
 * Reports are signed with a key derived from the cluster key when there is one, so only
 * cluster members can write into the seed's audit log. Without a cluster key they are not.
 */
export class ReportSigner {
  readonly #key: Buffer;

  constructor(clusterKey: ClusterKey) {
    this.#key = createHash('sha256').update('peerpull/report-hmac/v1\0').update(clusterKey.noisePrologue()).digest();
  }

  sign(body: string | Buffer): string {
    return `sha256=${createHmac('sha256', this.#key).update(body).digest('hex')}`;
  }

  verify(body: string | Buffer, signature: string | undefined): boolean {
    if (!signature) return false;
    const expected = Buffer.from(this.sign(body));
    const given = Buffer.from(signature);
    return given.length === expected.length && timingSafeEqual(given, expected);
  }
}

/** An upstream client's rate-limit state per registry, as reported. */
export function rateLimitViews(upstream: UpstreamClient): RateLimitView[] {
  const now = Date.now();
  return [...upstream.rateLimits].map(([registry, s]) => ({
    registry,
    limit: s.limit ?? null,
    remaining: s.remaining ?? null,
    observedAt: s.observedAt,
    backoffUntil: s.backoffUntil !== undefined && s.backoffUntil > now ? s.backoffUntil : null,
  }));
}
