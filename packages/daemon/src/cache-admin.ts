import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import {
  OciError,
  formatImageReference,
  imageDigests,
  isDigest,
  listLocalImages,
  parseImageReference,
  type ContentStore,
  type Digest,
  type LocalImage,
} from '@peerpull/common';

export interface CacheListing {
  images: LocalImage[];
  /** Content not part of any tagged image (pulled by digest, or left by an untagged image). */
  other: { entries: number; bytes: number };
  bytes: number;
  maxBytes: number;
  entries: number;
  evictions: number;
}

export interface RemovedContent {
  removed: { digest: Digest; size: number }[];
  images: string[];
  /** Blobs of the removed image kept because another cached image uses them. */
  kept: number;
}

export type VerifyEvent =
  | { type: 'start'; entries: number; bytes: number }
  | { type: 'progress'; checked: number; entries: number; bytesChecked: number; bytes: number }
  | { type: 'bad'; digest: Digest; size: number; reason: string; removed: boolean }
  | { type: 'done'; checked: number; bad: number; bytesChecked: number; seconds: number };

const VERIFY_CONCURRENCY = 2;

/**
 * What `peerpull cache` does, run inside the daemon (it holds the store's LevelDB lock, so a
 * second process could not open it): list, remove an image or a digest, evict now, verify.
 */
export class CacheAdmin {
  readonly #store: ContentStore;
  readonly #defaultRegistry: string;

  constructor(store: ContentStore, defaultRegistry: string) {
    this.#store = store;
    this.#defaultRegistry = defaultRegistry;
  }

  async list(): Promise<CacheListing> {
    const images = await listLocalImages(this.#store);
    const inImages = new Set<string>(images.flatMap((i) => imageDigests(i)));
    const other = this.#store.list().filter((info) => !inImages.has(info.digest));
    return {
      images,
      other: { entries: other.length, bytes: other.reduce((n, i) => n + i.size, 0) },
      bytes: this.#store.totalBytes,
      maxBytes: this.#store.maxBytes,
      entries: this.#store.entries,
      evictions: this.#store.evictions,
    };
  }

  /** Removes one digest, or an image (its tag, manifests and the blobs no other cached image uses). */
  async remove(target: string): Promise<RemovedContent> {
    if (isDigest(target)) {
      const info = this.#store.stat(target);
      if (!info) throw new OciError(404, 'BLOB_UNKNOWN', `${target} is not in this node's cache`);
      await this.#store.remove(target, 'removed by operator (peerpull cache rm)');
      return { removed: [{ digest: target, size: info.size }], images: [], kept: 0 };
    }
    let ref;
    try {
      ref = parseImageReference(target, this.#defaultRegistry);
    } catch (err) {
      throw new OciError(400, 'UNSUPPORTED', (err as Error).message);
    }
    const images = await listLocalImages(this.#store);
    const name = `${ref.registry}/${ref.repository}`;
    const matches = images.filter((i) => (ref.digest ? i.image.startsWith(`${name}:`) && i.digest === ref.digest : i.image === `${name}:${ref.tag}`));
    if (matches.length === 0) throw new OciError(404, 'MANIFEST_UNKNOWN', `${formatImageReference(ref)} is not in this node's cache`);
    const others = new Set<string>(images.filter((i) => !matches.includes(i)).flatMap((i) => imageDigests(i)));
    const removed: RemovedContent['removed'] = [];
    let kept = 0;
    for (const digest of new Set(matches.flatMap((i) => imageDigests(i)))) {
      if (others.has(digest)) {
        kept++;
        continue;
      }
      const info = this.#store.stat(digest);
      if (info && (await this.#store.remove(digest, 'removed by operator (peerpull cache rm)'))) removed.push({ digest, size: info.size });
    }
    for (const image of matches) await this.#store.deleteTag(image.image);
    return { removed, images: matches.map((i) => i.image), kept };
  }

  /** Evicts least-recently-used content now, down to `targetBytes` (default: the cache-size limit). */
  async gc(targetBytes = this.#store.maxBytes): Promise<{ evicted: number; freedBytes: number; bytes: number; targetBytes: number }> {
    const before = this.#store.evictions;
    const freedBytes = await this.#store.evict(targetBytes);
    return { evicted: this.#store.evictions - before, freedBytes, bytes: this.#store.totalBytes, targetBytes };
  }

  /** Re-hashes every stored blob; removes (and reports) each one that does not match its digest. */
  async verify(emit: (event: VerifyEvent) => void, signal?: AbortSignal): Promise<void> {
    const started = performance.now();
    const entries = this.#store.list();
    const bytes = entries.reduce((n, i) => n + i.size, 0);
    emit({ type: 'start', entries: entries.length, bytes });
    let checked = 0;
    let bytesChecked = 0;
    let bad = 0;
    let lastProgress = performance.now();
    const queue = [...entries];
    const worker = async (): Promise<void> => {
      for (let info = queue.shift(); info && !signal?.aborted; info = queue.shift()) {
        if (!this.#store.has(info.digest)) continue; // evicted meanwhile
        const problem = await this.#check(info.digest, info.size);
        checked++;
        bytesChecked += info.size;
        if (problem) {
          bad++;
          const removed = await this.#store.remove(info.digest, `verify: ${problem}`);
          emit({ type: 'bad', digest: info.digest, size: info.size, reason: problem, removed });
        }
        if (performance.now() - lastProgress > 500) {
          lastProgress = performance.now();
          emit({ type: 'progress', checked, entries: entries.length, bytesChecked, bytes });
        }
      }
    };
    await Promise.all(Array.from({ length: VERIFY_CONCURRENCY }, worker));
    emit({ type: 'done', checked, bad, bytesChecked, seconds: (performance.now() - started) / 1000 });
  }

  async #check(digest: Digest, size: number): Promise<string | undefined> {
    const hash = createHash('sha256');
    let read = 0;
    try {
      for await (const chunk of createReadStream(this.#store.blobPath(digest), { highWaterMark: 1024 * 1024 }) as AsyncIterable<Buffer>) {
        hash.update(chunk);
        read += chunk.length;
      }
    } catch (err) {
      return (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'file missing' : `unreadable: ${(err as Error).message}`;
    }
    if (read !== size) return `size is ${read} bytes, expected ${size}`;
    const actual = `sha256:${hash.digest('hex')}`;
    return actual === digest ? undefined : `content hashes to ${actual}`;
  }
}
