import { EventEmitter, once } from 'node:events';
import type { FileHandle } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { DigestHasher, type Digest } from './digest.ts';
import { FileRangeStream } from './file-range-stream.ts';

export type IngestState = 'writing' | 'complete' | 'failed';

/** Bytes are copied into buffers of this size and written with one writev per batch. */
const STAGE_BYTES = 1024 * 1024;
/** write() waits while more than this is accepted but not yet on disk. */
const MAX_UNFLUSHED = 8 * STAGE_BYTES;
/** Buffers per writev (well under IOV_MAX). */
const MAX_BATCH = 16;

// Staging buffers are shared by all ingests and reused rather than allocated and freed per
// stage (less allocator and GC churn; at most STAGE_POOL_MAX MiB stay allocated).
const STAGE_POOL_MAX = 16;
const stagePool: Buffer[] = [];

function takeStageBuffer(wanted: number): Buffer {
  if (wanted < 64 * 1024) return Buffer.allocUnsafeSlow(Math.max(1, wanted));
  return stagePool.pop() ?? Buffer.allocUnsafeSlow(STAGE_BYTES);
}

/** Returns a (possibly sliced) staging buffer to the pool once nothing refers to its bytes any more. */
function returnStageBuffer(buffer: Buffer): void {
  const whole = buffer.buffer;
  if (buffer.byteOffset === 0 && whole.byteLength === STAGE_BYTES && stagePool.length < STAGE_POOL_MAX) {
    stagePool.push(Buffer.from(whole, 0, STAGE_BYTES));
  }
}

/**
 * One blob being written to a temp file while its sha256 is computed. Readers follow the
 * file as it grows (so a cache miss streams to every waiting client at once), and all of
 * them read through the writer's own file handle, so the final rename cannot race them.
 *
 * write() hashes and copies the bytes into staging buffers and returns; one background
 * flusher writes whatever has accumulated with a single writev, so the source keeps
 * streaming while the disk writes (instead of one thread-pool round trip per network
 * chunk). Readers see only flushed bytes.
 */
export class BlobIngest extends EventEmitter {
  readonly digest: Digest;
  readonly tempPath: string;
  #handle: FileHandle;
  readonly #hasher = new DigestHasher();
  #state: IngestState = 'writing';
  /** Size and digest checked: readers may have every byte while the store fsyncs and renames. */
  #verified = false;
  #error: Error | undefined;
  #size: number | undefined;
  #readers = 0;
  #closed = false;
  /** Bytes on disk (readers may read below this). */
  #flushed = 0;
  /** The staging buffer being filled, and how much of it is used. */
  #stage: Buffer | undefined;
  #stageUsed = 0;
  /** Filled staging buffers waiting for the flusher. */
  readonly #queue: Buffer[] = [];
  #flusherRunning = false;
  #writeError: Error | undefined;
  #finalize: (ingest: BlobIngest) => Promise<void>;
  #discard: (ingest: BlobIngest) => Promise<void>;
  /** Where the bytes written so far came from, for logs and metrics. */
  readonly bytesBySource = new Map<string, number>();

  constructor(opts: {
    digest: Digest;
    tempPath: string;
    handle: FileHandle;
    finalize: (ingest: BlobIngest) => Promise<void>;
    discard: (ingest: BlobIngest) => Promise<void>;
  }) {
    super();
    this.setMaxListeners(0);
    this.digest = opts.digest;
    this.tempPath = opts.tempPath;
    this.#handle = opts.handle;
    this.#finalize = opts.finalize;
    this.#discard = opts.discard;
  }

  get state(): IngestState {
    return this.#state;
  }

  /** Every byte is on disk (not yet fsynced) and matched the digest. */
  get verified(): boolean {
    return this.#verified;
  }

  get error(): Error | undefined {
    return this.#error;
  }

  /** Bytes accepted and hashed so far (some may still be on their way to disk); the offset a resumed fetch continues from. */
  get written(): number {
    return this.#hasher.bytes;
  }

  /** Bytes on disk so far. */
  get flushed(): number {
    return this.#flushed;
  }

  /** Total size once a source has told us. */
  get size(): number | undefined {
    return this.#size;
  }

  get handle(): FileHandle {
    return this.#handle;
  }

  /** Records the total size a source announced; a source that disagrees is lying. */
  setSize(size: number): void {
    if (this.#size === undefined) {
      this.#size = size;
      this.emit('progress');
    } else if (this.#size !== size) {
      throw new Error(`size mismatch for ${this.digest}: ${size} announced, ${this.#size} expected`);
    }
  }

  /**
   * Accepts the next bytes: hashes them and copies them for the flusher (the caller may
   * reuse `chunk` at once). Waits only while too much is not yet on disk.
   */
  async write(chunk: Uint8Array, source: string): Promise<void> {
    if (this.#state !== 'writing') throw new Error(`ingest of ${this.digest} is ${this.#state}`);
    if (this.#writeError) throw this.#writeError;
    if (this.#size !== undefined && this.written + chunk.byteLength > this.#size) {
      throw new Error(`too many bytes for ${this.digest}: more than the announced ${this.#size}`);
    }
    this.#hasher.update(chunk);
    this.bytesBySource.set(source, (this.bytesBySource.get(source) ?? 0) + chunk.byteLength);
    let offset = 0;
    while (offset < chunk.byteLength) {
      if (!this.#stage) {
        const left = this.#size !== undefined ? this.#size - (this.written - chunk.byteLength + offset) : STAGE_BYTES;
        this.#stage = takeStageBuffer(Math.min(STAGE_BYTES, left));
        this.#stageUsed = 0;
      }
      const n = Math.min(chunk.byteLength - offset, this.#stage.length - this.#stageUsed);
      this.#stage.set(chunk.subarray(offset, offset + n), this.#stageUsed);
      this.#stageUsed += n;
      offset += n;
      if (this.#stageUsed === this.#stage.length) this.#takeStage();
    }
    this.#kick();
    while (this.written - this.#flushed > MAX_UNFLUSHED && this.#flusherRunning) await once(this, 'flushed');
    if (this.#writeError) throw this.#writeError;
  }

  #kick(): void {
    if (this.#flusherRunning || this.#writeError) return;
    this.#flusherRunning = true;
    void this.#flush();
  }

  #takeStage(): void {
    if (!this.#stage || this.#stageUsed === 0) return;
    this.#queue.push(this.#stageUsed === this.#stage.length ? this.#stage : this.#stage.subarray(0, this.#stageUsed));
    this.#stage = undefined;
    this.#stageUsed = 0;
  }

  /** Writes queued (and, once the queue is empty, partly filled) staging buffers until nothing is left. */
  async #flush(): Promise<void> {
    // #flusherRunning is cleared in the same synchronous step as the last "nothing left" check,
    // so a write() never leaves bytes behind a flusher that is about to stop.
    try {
      while (this.#state !== 'failed') {
        if (this.#queue.length === 0) this.#takeStage();
        if (this.#queue.length === 0) break;
        const batch = this.#queue.splice(0, MAX_BATCH);
        let bytes = 0;
        for (const b of batch) bytes += b.length;
        let done = 0;
        while (done < bytes) {
          const { bytesWritten } = await this.#handle.writev(skipBytes(batch, done), this.#flushed + done);
          if (bytesWritten <= 0) throw new Error(`write of ${this.digest} made no progress`);
          done += bytesWritten;
        }
        this.#flushed += bytes;
        for (const b of batch) returnStageBuffer(b);
        this.emit('progress');
        this.emit('flushed');
      }
    } catch (err) {
      this.#writeError = err as Error;
    } finally {
      this.#flusherRunning = false;
      this.emit('flushed');
    }
  }

  /** Resolves when every accepted byte is on disk; rejects if a write failed. */
  async #drain(): Promise<void> {
    while (!this.#writeError && this.#state !== 'failed' && (this.#flusherRunning || this.#flushed < this.written)) {
      this.#kick();
      if (!this.#flusherRunning) break;
      await once(this, 'flushed');
    }
    if (this.#writeError) throw this.#writeError;
    if (this.#state === 'writing' && this.#flushed !== this.written) throw new Error(`ingest of ${this.digest}: ${this.written - this.#flushed} bytes not flushed`);
  }

  /** Verifies size and digest, then hands the file to the store to fsync and rename. */
  async complete(): Promise<void> {
    if (this.#state !== 'writing') return;
    try {
      await this.#drain();
    } catch (err) {
      return this.fail(err as Error);
    }
    if (this.#state !== 'writing') return;
    if (this.#size !== undefined && this.written !== this.#size) {
      return this.fail(new Error(`truncated ${this.digest}: ${this.written} of ${this.#size} bytes`));
    }
    const actual = this.#hasher.digest();
    if (actual !== this.digest) {
      return this.fail(new DigestMismatchError(this.digest, actual));
    }
    this.#size = this.written;
    // Readers get the last byte now: the bytes are verified, and the fsync + rename that follow
    // (~0.1-0.3 s for a 100 MB blob on a slow disk) only decide whether the cache keeps them.
    this.#verified = true;
    this.emit('progress');
    try {
      await this.#finalize(this);
    } catch (err) {
      return this.fail(err as Error);
    }
    this.#state = 'complete';
    this.emit('progress');
    this.emit('done');
    this.#maybeClose();
  }

  async fail(err: Error): Promise<void> {
    if (this.#state !== 'writing') return;
    this.#state = 'failed';
    this.#error = err;
    for (const b of this.#queue.splice(0)) returnStageBuffer(b);
    if (this.#stage) returnStageBuffer(this.#stage);
    this.#stage = undefined;
    this.emit('progress');
    this.emit('done');
    while (this.#flusherRunning) await once(this, 'flushed'); // an in-flight write must not race the close
    await this.#discard(this).catch(() => undefined);
    this.#maybeClose();
  }

  /** Resolves once the size is known or the ingest ended; rejects if it failed before any byte. */
  async ready(): Promise<void> {
    while (this.#state === 'writing' && this.#size === undefined && this.written === 0) {
      await once(this, 'progress');
    }
    if (this.#state === 'failed' && this.written === 0) throw this.#error;
  }

  async done(): Promise<void> {
    if (this.#state === 'writing') await once(this, 'done');
    if (this.#state === 'failed') throw this.#error;
  }

  /** A stream of bytes [start, end] (inclusive; end defaults to the last byte) that waits for bytes not yet written. */
  createReader(start = 0, end?: number): Readable {
    if (this.#closed) {
      // The file handle is gone: this ingest ended before the reader came.
      const err = this.#error ?? new Error(`ingest of ${this.digest} already ended; read the stored blob instead`);
      return new Readable({ read() { this.destroy(err); } });
    }
    this.#readers++;
    let released = false;
    const release = (): void => {
      if (released) return;
      released = true;
      this.#readers--;
      this.#maybeClose();
    };
    const ingest = this;
    // Reads through the writer's own fd (released, not closed, when the stream ends); piped into
    // an HTTP response it reuses pooled buffers (see FileRangeStream).
    return new FileRangeStream({ fd: this.#handle.fd, release, name: this.tempPath }, start, {
      limit() {
        const last = end ?? (ingest.#size !== undefined ? ingest.#size - 1 : Number.POSITIVE_INFINITY);
        // The blob's final byte (and the end of a stream that reaches it) is held back until
        // the digest verified: a client that got every byte of a wrong blob would otherwise
        // see a clean, complete response, and a failure now aborts it instead.
        const holdLast = !ingest.#verified && ingest.#size !== undefined && last >= ingest.#size - 1;
        if (!holdLast && ingest.#flushed > last) return { end: last + 1, final: true };
        const readable = Math.min(ingest.#flushed, holdLast ? last : last + 1);
        if (ingest.#state === 'failed') return { end: readable, final: false, error: ingest.#error ?? new Error('ingest failed') };
        return { end: readable, final: ingest.#verified };
      },
      changed: () => once(ingest, 'progress').then(() => undefined),
    });
  }

  #maybeClose(): void {
    if (this.#state === 'writing' || this.#readers > 0 || this.#closed) return;
    this.#closed = true;
    void this.#handle.close().catch(() => undefined);
  }
}

/** The buffers with their first `skip` bytes removed (after a partial writev). */
function skipBytes(buffers: Buffer[], skip: number): Buffer[] {
  if (skip === 0) return buffers;
  const out: Buffer[] = [];
  for (const b of buffers) {
    if (skip >= b.length) {
      skip -= b.length;
      continue;
    }
    out.push(skip > 0 ? b.subarray(skip) : b);
    skip = 0;
  }
  return out;
}

export class DigestMismatchError extends Error {
  constructor(expected: Digest, actual: Digest) {
    super(`digest mismatch: expected ${expected}, got ${actual}`);
    this.name = 'DigestMismatchError';
  }
}
