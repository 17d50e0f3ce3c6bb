import type { FetchTrace, PullEvent } from '@peerpull/common';

export interface BlobHistory {
  /** The last time a client pulled it, and which source served that pull. */
  lastPull?: PullEvent;
  /** The last time it was fetched into the store: from where, and what each source said. */
  lastFetch?: FetchTrace;
}

export interface PullHistoryLimits {
  /** Digests pulled or fetched into the store. */
  max?: number;
  /** Digests whose only record is a failed fetch (no source had them). */
  maxFailed?: number;
}

/**
 * What this node remembers about recent pulls, per digest, for `peerpull explain`: where the
 * last pull got each blob from and why. In memory and bounded (the oldest are forgotten), so
 * it starts empty after a restart. Digests that were never served (a miss everywhere, often a
 * digest that exists nowhere) have their own smaller bound, so a stream of misses can neither
 * push out the history of real pulls nor hold 10,000 failure traces.
 */
export class PullHistory {
  readonly #max: number;
  readonly #maxFailed: number;
  readonly #entries = new Map<string, BlobHistory>();
  readonly #failed = new Map<string, BlobHistory>();

  constructor(limits: PullHistoryLimits = {}) {
    this.#max = limits.max ?? 10_000;
    this.#maxFailed = limits.maxFailed ?? 1_000;
  }

  /** Digests remembered, served and failed-only. */
  get size(): { served: number; failed: number } {
    return { served: this.#entries.size, failed: this.#failed.size };
  }

  recordPull(event: PullEvent): void {
    if (!event.digest || event.status >= 300) return;
    this.#update(event.digest, true, (h) => (h.lastPull = event));
  }

  recordFetch(trace: FetchTrace): void {
    this.#update(trace.digest, trace.ok, (h) => (h.lastFetch = trace));
  }

  get(digest: string): BlobHistory | undefined {
    return this.#entries.get(digest) ?? this.#failed.get(digest);
  }

  #update(digest: string, served: boolean, change: (h: BlobHistory) => void): void {
    const failed = this.#failed.get(digest);
    if (failed && served) this.#failed.delete(digest);
    const known = this.#entries.get(digest);
    const [map, max] = known || served ? [this.#entries, this.#max] : [this.#failed, this.#maxFailed];
    const entry = known ?? failed ?? {};
    map.delete(digest); // re-insert: Map order is the eviction order
    change(entry);
    map.set(digest, entry);
    if (map.size > max) {
      const oldest = map.keys().next().value;
      if (oldest !== undefined) map.delete(oldest);
    }
  }
}
