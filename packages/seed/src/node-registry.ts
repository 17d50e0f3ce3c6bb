import type { NodeHeartbeat, NodeReport, PullEvent } from '@peerpull/common';

export interface NodeView extends Partial<NodeHeartbeat> {
  id: string;
  name: string;
  /** Where its reports come from. */
  address: string;
  firstSeen: number;
  lastSeen: number;
  /** No report for a while: the node is down, or cannot reach this seed. */
  stale: boolean;
  /** Pulls it reported to this seed since the seed started. */
  pullsReported: number;
}

export interface SeriesPoint {
  /** Start of the bucket, ms since the epoch. */
  t: number;
  /** Bytes the nodes served to their clients. */
  pulled: number;
  /** Bytes fetched from upstreams (the seed's and the nodes' own). */
  wan: number;
}

export interface NodeRegistryOptions {
  /** A node not heard from for this long is shown as stale. */
  staleAfterMs?: number;
  /** ... and forgotten after this long. */
  forgetAfterMs?: number;
  /** Width and number of the time-series buckets (default: 10 s × 360 = the last hour). */
  bucketMs?: number;
  buckets?: number;
}

interface NodeEntry {
  view: NodeView;
  /** The node's upstream byte counter at its previous heartbeat, for WAN deltas. */
  upstreamSeen: number;
}

/**
 * The nodes the seed knows of, from their reports: their last heartbeat (state, peers,
 * images, transfers), and a time series of bytes pulled through the cluster against bytes
 * fetched over the WAN, for the dashboard. In memory: it refills within a heartbeat.
 */
export class NodeRegistry {
  readonly #nodes = new Map<string, NodeEntry>();
  readonly #series: SeriesPoint[] = [];
  readonly #staleAfterMs: number;
  readonly #forgetAfterMs: number;
  readonly #bucketMs: number;
  readonly #maxBuckets: number;

  constructor(opts: NodeRegistryOptions = {}) {
    this.#staleAfterMs = opts.staleAfterMs ?? 20_000;
    this.#forgetAfterMs = opts.forgetAfterMs ?? 3_600_000;
    this.#bucketMs = opts.bucketMs ?? 10_000;
    this.#maxBuckets = opts.buckets ?? 360;
  }

  /** Takes a node's report: its identity, heartbeat, and the bytes its pulls carried. */
  report(report: NodeReport, address: string): void {
    const now = Date.now();
    let entry = this.#nodes.get(report.id);
    if (!entry) {
      entry = { view: { id: report.id, name: report.name, address, firstSeen: now, lastSeen: now, stale: false, pullsReported: 0 }, upstreamSeen: 0 };
      this.#nodes.set(report.id, entry);
    }
    const view = entry.view;
    view.name = report.name;
    view.address = address;
    view.lastSeen = now;
    view.pullsReported += report.pulls.length;
    this.#addPulls(report.pulls);
    const beat = report.heartbeat;
    if (beat) {
      const upstream = beat.fetched?.upstream ?? 0;
      // A counter that went down means the node restarted: its whole count is new.
      const delta = upstream >= entry.upstreamSeen && view.startedAt === beat.startedAt ? upstream - entry.upstreamSeen : upstream;
      entry.upstreamSeen = upstream;
      if (delta > 0) this.addWan(delta, now);
      Object.assign(view, beat);
    }
  }

  /** Bytes the seed itself fetched from upstream. */
  addWan(bytes: number, at = Date.now()): void {
    this.#bucket(at).wan += bytes;
  }

  nodes(): NodeView[] {
    const now = Date.now();
    for (const [id, entry] of this.#nodes) {
      if (now - entry.view.lastSeen > this.#forgetAfterMs) this.#nodes.delete(id);
    }
    return [...this.#nodes.values()]
      .map(({ view }) => ({ ...view, stale: now - view.lastSeen > this.#staleAfterMs }))
      .sort((a, b) => a.name.localeCompare(b.name) || a.id.localeCompare(b.id));
  }

  /** The buckets of the last hour (empty ones included), oldest first. */
  series(): SeriesPoint[] {
    const now = Date.now();
    const last = now - (now % this.#bucketMs);
    const first = this.#series[0]?.t ?? last;
    const byTime = new Map(this.#series.map((p) => [p.t, p]));
    const out: SeriesPoint[] = [];
    for (let t = Math.max(first, last - (this.#maxBuckets - 1) * this.#bucketMs); t <= last; t += this.#bucketMs) {
      out.push(byTime.get(t) ?? { t, pulled: 0, wan: 0 });
    }
    return out;
  }

  #addPulls(pulls: PullEvent[]): void {
    for (const pull of pulls) {
      if (pull.status < 300 && pull.bytes > 0) this.#bucket(pull.time).pulled += pull.bytes;
    }
  }

  #bucket(at: number): SeriesPoint {
    const t = at - (at % this.#bucketMs);
    const latest = this.#series.at(-1);
    if (latest?.t === t) return latest;
    let point = this.#series.find((p) => p.t === t);
    if (point) return point;
    point = { t, pulled: 0, wan: 0 };
    this.#series.push(point);
    this.#series.sort((a, b) => a.t - b.t);
    const oldest = Date.now() - this.#maxBuckets * this.#bucketMs;
    while (this.#series.length && (this.#series[0] as SeriesPoint).t < oldest) this.#series.shift();
    return point;
  }
}
