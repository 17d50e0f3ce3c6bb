import type { FetchTrace, PullEvent } from '@peerpull/common';

export interface BlobHistory {
  /** The last time a client pulled it, and which source served that pull. */
  lastPull?: PullEvent;
  /** The last time it was fetched into the store: from where, and what each source said. */
  lastFetch?: FetchTrace;
}

/**
 * What this node remembers about recent pulls, per digest, for `peerpull explain`: where the
 * last pull got each blob from and why. In memory and bounded (the oldest are forgotten), so
 * it starts empty after a restart.
 */
export class PullHistory {
  readonly #max: number;
  readonly #entries = new Map<string, BlobHistory>();

  constructor(max = 10_000) {
    this.#max = max;
  }

  recordPull(event: PullEvent): void {
    if (!event.digest || event.status >= 300) return;
    this.#update(event.digest, (h) => (h.lastPull = event));
  }

  recordFetch(trace: FetchTrace): void {
    this.#update(trace.digest, (h) => (h.lastFetch = trace));
  }

  get(digest: string): BlobHistory | undefined {
    return this.#entries.get(digest);
  }

  #update(digest: string, change: (h: BlobHistory) => void): void {
    const entry = this.#entries.get(digest) ?? {};
    this.#entries.delete(digest); // re-insert: Map order is the eviction order
    change(entry);
    this.#entries.set(digest, entry);
    if (this.#entries.size > this.#max) {
      const oldest = this.#entries.keys().next().value;
      if (oldest !== undefined) this.#entries.delete(oldest);
    }
  }
}
