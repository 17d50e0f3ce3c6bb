import type { Digest } from './digest.ts';

/**
 * The bytes of small stored content (manifests, image configs, small layers), kept in memory
 * by digest, least recently used dropped first. A hit is served without a thread-pool read:
 * under a burst of cached requests that round trip was the largest cost per request left
 * (~0.1 ms of main-thread time each on a VM, where waking a pool thread is expensive). The
 * bytes are copies of verified files, so they are as trustworthy as the files; the store
 * drops an entry when it removes the file.
 */
export class SmallContentCache {
  readonly maxBytes: number;
  readonly maxEntryBytes: number;
  readonly #entries = new Map<Digest, Buffer>();
  #bytes = 0;

  constructor(opts: { maxBytes?: number; maxEntryBytes?: number } = {}) {
    this.maxBytes = opts.maxBytes ?? 16 * 1024 * 1024;
    this.maxEntryBytes = Math.min(opts.maxEntryBytes ?? 256 * 1024, this.maxBytes);
  }

  get bytes(): number {
    return this.#bytes;
  }

  /** Whether content of this size is kept at all. */
  fits(size: number): boolean {
    return size <= this.maxEntryBytes;
  }

  get(digest: Digest): Buffer | undefined {
    const data = this.#entries.get(digest);
    if (data) {
      // Most recently used last.
      this.#entries.delete(digest);
      this.#entries.set(digest, data);
    }
    return data;
  }

  set(digest: Digest, data: Buffer): void {
    if (!this.fits(data.length)) return;
    this.delete(digest);
    this.#entries.set(digest, data);
    this.#bytes += data.length;
    for (const [key, value] of this.#entries) {
      if (this.#bytes <= this.maxBytes) break;
      this.#entries.delete(key);
      this.#bytes -= value.length;
    }
  }

  delete(digest: Digest): void {
    const data = this.#entries.get(digest);
    if (!data) return;
    this.#entries.delete(digest);
    this.#bytes -= data.length;
  }
}
