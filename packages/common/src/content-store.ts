import { EventEmitter } from 'node:events';
import { mkdir, open, readdir, readFile, rename, rm, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { randomBytes } from 'node:crypto';
import { Level } from 'level';
import type { Logger } from 'pino';
import { BlobIngest, DigestMismatchError } from './blob-ingest.ts';
import { digestHex, isDigest, sha256Digest, type Digest } from './digest.ts';
import { FileRangeStream } from './file-range-stream.ts';
import { OpenFileCache } from './open-file-cache.ts';
import { SmallContentCache } from './small-content-cache.ts';

export type ContentKind = 'blob' | 'manifest';

export interface ContentInfo {
  digest: Digest;
  size: number;
  kind: ContentKind;
  /** Manifests keep the media type they were served with. */
  mediaType?: string;
  createdAt: number;
  lastAccess: number;
}

export interface TagRecord {
  digest: Digest;
  mediaType: string;
  size: number;
  /** When the upstream last confirmed this tag→digest mapping. */
  validatedAt: number;
  /** When a client last pulled this tag (updated at most once a minute). */
  lastPulledAt?: number;
}

export interface ContentStoreOptions {
  dir: string;
  /** Evict least-recently-used content above this many bytes. */
  maxBytes: number;
  logger: Logger;
}

const ACCESS_FLUSH_MS = 10_000;

/**
 * Content-addressed storage on disk with metadata in LevelDB.
 *
 * Crash safety: bytes go to a temp file while hashed; only a verified, fsynced file is
 * renamed into `blobs/`, and start-up deletes whatever is left in `tmp/`. So a file under
 * `blobs/` is always complete and correct, whatever moment the process was killed at.
 */
export class ContentStore extends EventEmitter {
  readonly dir: string;
  readonly #db: Level<string, string>;
  readonly #logger: Logger;
  readonly #index = new Map<Digest, ContentInfo>();
  readonly #leases = new Map<Digest, number>();
  readonly #dirtyAccess = new Set<Digest>();
  readonly #openFiles = new OpenFileCache();
  readonly #small = new SmallContentCache();
  /** Small content being read into #small (once per digest at a time). */
  readonly #smallLoading = new Set<Digest>();
  #maxBytes: number;
  #totalBytes = 0;
  #flushTimer: NodeJS.Timeout | undefined;
  #evictions = 0;

  private constructor(opts: ContentStoreOptions, db: Level<string, string>) {
    super();
    this.dir = opts.dir;
    this.#maxBytes = opts.maxBytes;
    this.#logger = opts.logger;
    this.#db = db;
  }

  static async open(opts: ContentStoreOptions): Promise<ContentStore> {
    await mkdir(join(opts.dir, 'blobs', 'sha256'), { recursive: true });
    await rm(join(opts.dir, 'tmp'), { recursive: true, force: true });
    await mkdir(join(opts.dir, 'tmp'), { recursive: true });
    const db = new Level<string, string>(join(opts.dir, 'meta'));
    await db.open();
    const store = new ContentStore(opts, db);
    await store.#loadIndex();
    store.#flushTimer = setInterval(() => void store.#flushAccess(), ACCESS_FLUSH_MS);
    store.#flushTimer.unref();
    return store;
  }

  async close(): Promise<void> {
    clearInterval(this.#flushTimer);
    this.#openFiles.closeAll();
    await this.#flushAccess();
    await this.#db.close();
  }

  get totalBytes(): number {
    return this.#totalBytes;
  }

  get maxBytes(): number {
    return this.#maxBytes;
  }

  get entries(): number {
    return this.#index.size;
  }

  get evictions(): number {
    return this.#evictions;
  }

  stat(digest: Digest): ContentInfo | undefined {
    return this.#index.get(digest);
  }

  has(digest: Digest): boolean {
    return this.#index.has(digest);
  }

  list(): ContentInfo[] {
    return [...this.#index.values()];
  }

  blobPath(digest: Digest): string {
    const hex = digestHex(digest);
    return join(this.dir, 'blobs', 'sha256', hex.slice(0, 2), hex);
  }

  /** Reads a complete blob (or a byte range of it); eviction skips it until the stream closes. */
  openRead(digest: Digest, start = 0, end?: number): Readable {
    const info = this.#index.get(digest);
    if (!info) throw new Error(`${digest} is not in the store`);
    this.#touch(info);
    const last = end ?? info.size - 1;
    const inMemory = this.#small.get(digest);
    if (inMemory) {
      // Leased like a file read, so eviction's rule stays simple: nothing being read is removed.
      this.#lease(digest);
      const stream = bufferStream(inMemory.subarray(start, last + 1));
      stream.once('close', () => this.#release(digest));
      return stream;
    }
    if (this.#small.fits(info.size)) this.#loadSmall(info);
    this.#lease(digest);
    // Piped into an HTTP response, it reads into pooled buffers (no per-read garbage).
    const path = this.blobPath(digest);
    const stream = new FileRangeStream({ name: path, acquire: () => this.#openFiles.acquire(digest, path) }, start, last);
    stream.once('close', () => this.#release(digest));
    stream.once('error', (err) => {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') void this.remove(digest, 'file missing');
    });
    return stream;
  }

  /** Reads small content (manifests) whole. */
  async readAll(digest: Digest): Promise<Buffer> {
    const info = this.#index.get(digest);
    if (!info) throw new Error(`${digest} is not in the store`);
    this.#touch(info);
    const inMemory = this.#small.get(digest);
    if (inMemory) return inMemory;
    try {
      const data = await readFile(this.blobPath(digest));
      if (data.length === info.size && this.#index.get(digest) === info) this.#small.set(digest, data);
      return data;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') await this.remove(digest, 'file missing');
      throw err;
    }
  }

  /** Stores small content already in memory, verifying its digest. */
  async putBuffer(digest: Digest, data: Buffer, meta: { kind: ContentKind; mediaType?: string }): Promise<void> {
    if (this.#index.has(digest)) return;
    const actual = sha256Digest(data);
    if (actual !== digest) throw new DigestMismatchError(digest, actual);
    const ingest = await this.createIngest(digest, meta);
    ingest.setSize(data.length);
    await ingest.write(data, 'buffer');
    await ingest.complete();
    await ingest.done();
  }

  /**
   * Opens a temp file for a new blob. Callers coalesce concurrent fetches of one digest
   * themselves (see BlobResolver); the bytes become visible to `has()` only after
   * `complete()` verified them.
   */
  async createIngest(digest: Digest, meta: { kind: ContentKind; mediaType?: string }): Promise<BlobIngest> {
    const tempPath = join(this.dir, 'tmp', `${digestHex(digest)}.${randomBytes(4).toString('hex')}`);
    const handle = await open(tempPath, 'w+');
    return new BlobIngest({
      digest,
      tempPath,
      handle,
      finalize: (ingest) => this.#finalize(ingest, meta),
      discard: (ingest) => unlink(ingest.tempPath).catch(() => undefined),
    });
  }

  async remove(digest: Digest, reason: string): Promise<boolean> {
    const info = this.#index.get(digest);
    if (!info) return false;
    this.#index.delete(digest);
    this.#totalBytes -= info.size;
    this.#dirtyAccess.delete(digest);
    this.#openFiles.retire(digest);
    this.#small.delete(digest);
    await unlink(this.blobPath(digest)).catch(() => undefined);
    await this.#db.del(`c!${digest}`).catch(() => undefined);
    this.#logger.info({ digest, size: info.size, reason }, 'removed from store');
    this.emit('removed', info, reason);
    return true;
  }

  /** Evicts least-recently-used content not being read until the total fits `targetBytes`. */
  async evict(targetBytes = this.#maxBytes): Promise<number> {
    if (this.#totalBytes <= targetBytes) return 0;
    const candidates = [...this.#index.values()]
      .filter((info) => !this.#leases.has(info.digest))
      .sort((a, b) => a.lastAccess - b.lastAccess);
    let freed = 0;
    for (const info of candidates) {
      if (this.#totalBytes <= targetBytes) break;
      if (this.#leases.has(info.digest)) continue;
      await this.remove(info.digest, 'evicted (cache size limit)');
      this.#evictions++;
      freed += info.size;
    }
    return freed;
  }

  async getTag(key: string): Promise<TagRecord | undefined> {
    const value = await this.#db.get(`t!${key}`);
    return value === undefined ? undefined : (JSON.parse(value) as TagRecord);
  }

  async putTag(key: string, record: TagRecord): Promise<void> {
    await this.#db.put(`t!${key}`, JSON.stringify(record));
    this.emit('tag', key, record);
  }

  async deleteTag(key: string): Promise<void> {
    await this.#db.del(`t!${key}`);
  }

  async listTags(): Promise<{ key: string; record: TagRecord }[]> {
    const out: { key: string; record: TagRecord }[] = [];
    for await (const [key, value] of this.#db.iterator({ gt: 't!', lt: 't~' })) {
      out.push({ key: key.slice(2), record: JSON.parse(value) as TagRecord });
    }
    return out;
  }

  async #finalize(ingest: BlobIngest, meta: { kind: ContentKind; mediaType?: string }): Promise<void> {
    const finalPath = this.blobPath(ingest.digest);
    if (this.#index.has(ingest.digest)) {
      // Someone else stored the same bytes meanwhile.
      await unlink(ingest.tempPath).catch(() => undefined);
      return;
    }
    await ingest.handle.sync();
    await mkdir(join(finalPath, '..'), { recursive: true });
    await rename(ingest.tempPath, finalPath);
    await syncDir(join(finalPath, '..'));
    const now = Date.now();
    const info: ContentInfo = { digest: ingest.digest, size: ingest.written, kind: meta.kind, createdAt: now, lastAccess: now };
    if (meta.mediaType) info.mediaType = meta.mediaType;
    await this.#db.put(`c!${ingest.digest}`, JSON.stringify(info));
    this.#index.set(ingest.digest, info);
    this.#totalBytes += info.size;
    // Copied into memory now, after the fetch, rather than by the first read of the next burst.
    if (this.#small.fits(info.size)) this.#loadSmall(info);
    this.emit('added', info);
    if (this.#totalBytes > this.#maxBytes) {
      // Protect the blob just written: its readers may not have leased it yet.
      this.#lease(info.digest);
      void this.evict().finally(() => this.#release(info.digest));
    }
  }

  async #loadIndex(): Promise<void> {
    const records = new Map<string, ContentInfo>();
    for await (const [key, value] of this.#db.iterator({ gt: 'c!', lt: 'c~' })) {
      records.set(key.slice(2), JSON.parse(value) as ContentInfo);
    }
    const root = join(this.dir, 'blobs', 'sha256');
    for (const prefix of await readdir(root)) {
      for (const name of await readdir(join(root, prefix)).catch(() => [] as string[])) {
        const digest = `sha256:${name}`;
        if (!isDigest(digest)) continue;
        const size = (await stat(join(root, prefix, name))).size;
        const record = records.get(digest);
        records.delete(digest);
        // A file is renamed into place only after verification, so it is trusted even if
        // the crash came before its metadata was written.
        const info: ContentInfo = record && record.size === size ? record : { digest, size, kind: 'blob', createdAt: Date.now(), lastAccess: 0 };
        if (!record || record.size !== size) await this.#db.put(`c!${digest}`, JSON.stringify(info));
        this.#index.set(digest, info);
        this.#totalBytes += size;
      }
    }
    for (const orphan of records.keys()) await this.#db.del(`c!${orphan}`);
    this.#logger.info({ entries: this.#index.size, bytes: this.#totalBytes }, 'content store loaded');
  }

  /** Reads small content into memory in the background; the current request streams from the file. */
  #loadSmall(info: ContentInfo): void {
    if (this.#smallLoading.has(info.digest)) return;
    this.#smallLoading.add(info.digest);
    readFile(this.blobPath(info.digest))
      .then((data) => {
        // Only what is still the stored content, whole (a removal may have raced the read).
        if (data.length === info.size && this.#index.get(info.digest) === info) this.#small.set(info.digest, data);
      })
      .catch(() => undefined) // the file request itself reports a missing file
      .finally(() => this.#smallLoading.delete(info.digest));
  }

  #touch(info: ContentInfo): void {
    info.lastAccess = Date.now();
    this.#dirtyAccess.add(info.digest);
  }

  async #flushAccess(): Promise<void> {
    if (this.#dirtyAccess.size === 0) return;
    const batch = this.#db.batch();
    for (const digest of this.#dirtyAccess) {
      const info = this.#index.get(digest);
      if (info) batch.put(`c!${digest}`, JSON.stringify(info));
    }
    this.#dirtyAccess.clear();
    await batch.write().catch((err: Error) => this.#logger.warn({ err: err.message }, 'could not persist access times'));
  }

  #lease(digest: Digest): void {
    this.#leases.set(digest, (this.#leases.get(digest) ?? 0) + 1);
  }

  #release(digest: Digest): void {
    const count = (this.#leases.get(digest) ?? 1) - 1;
    if (count <= 0) this.#leases.delete(digest);
    else this.#leases.set(digest, count);
  }
}

async function syncDir(path: string): Promise<void> {
  const handle = await open(path, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** A stream of bytes already in memory: one chunk, no I/O. */
function bufferStream(chunk: Buffer): Readable {
  let sent = false;
  return new Readable({
    read() {
      if (!sent) {
        sent = true;
        if (chunk.length > 0) this.push(chunk);
      }
      this.push(null);
    },
  });
}
