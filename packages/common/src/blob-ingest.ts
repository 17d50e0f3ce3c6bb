import { EventEmitter, once } from 'node:events';
import type { FileHandle } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { DigestHasher, type Digest } from './digest.ts';

export type IngestState = 'writing' | 'complete' | 'failed';

const READ_CHUNK = 1024 * 1024;

/**
 * One blob being written to a temp file while its sha256 is computed. Readers follow the
 * file as it grows (so a cache miss streams to every waiting client at once), and all of
 * them read through the writer's own file handle, so the final rename cannot race them.
 */
export class BlobIngest extends EventEmitter {
  readonly digest: Digest;
  readonly tempPath: string;
  #handle: FileHandle;
  readonly #hasher = new DigestHasher();
  #state: IngestState = 'writing';
  #error: Error | undefined;
  #size: number | undefined;
  #readers = 0;
  #closed = false;
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

  get error(): Error | undefined {
    return this.#error;
  }

  /** Bytes written and hashed so far; the offset a resumed fetch continues from. */
  get written(): number {
    return this.#hasher.bytes;
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

  async write(chunk: Uint8Array, source: string): Promise<void> {
    if (this.#state !== 'writing') throw new Error(`ingest of ${this.digest} is ${this.#state}`);
    if (this.#size !== undefined && this.written + chunk.byteLength > this.#size) {
      throw new Error(`too many bytes for ${this.digest}: more than the announced ${this.#size}`);
    }
    let offset = 0;
    while (offset < chunk.byteLength) {
      const { bytesWritten } = await this.#handle.write(chunk, offset, chunk.byteLength - offset, this.written + offset);
      offset += bytesWritten;
    }
    this.#hasher.update(chunk);
    this.bytesBySource.set(source, (this.bytesBySource.get(source) ?? 0) + chunk.byteLength);
    this.emit('progress');
  }

  /** Verifies size and digest, then hands the file to the store to fsync and rename. */
  async complete(): Promise<void> {
    if (this.#state !== 'writing') return;
    if (this.#size !== undefined && this.written !== this.#size) {
      return this.fail(new Error(`truncated ${this.digest}: ${this.written} of ${this.#size} bytes`));
    }
    const actual = this.#hasher.digest();
    if (actual !== this.digest) {
      return this.fail(new DigestMismatchError(this.digest, actual));
    }
    this.#size = this.written;
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
    this.emit('progress');
    this.emit('done');
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
    this.#readers++;
    let position = start;
    let released = false;
    const release = (): void => {
      if (released) return;
      released = true;
      this.#readers--;
      this.#maybeClose();
    };
    const ingest = this;
    const stream = new Readable({
      highWaterMark: READ_CHUNK,
      async read() {
        try {
          for (;;) {
            const last = end ?? (ingest.#size !== undefined ? ingest.#size - 1 : Number.POSITIVE_INFINITY);
            // The blob's final byte (and the end of a stream that reaches it) is held back until
            // the digest verified: a client that got every byte of a wrong blob would otherwise
            // see a clean, complete response, and a failure now aborts it instead.
            const holdLast = ingest.#state !== 'complete' && ingest.#size !== undefined && last >= ingest.#size - 1;
            if (position > last && !holdLast) {
              this.push(null);
              return;
            }
            const available = Math.min(ingest.written, holdLast ? last : last + 1) - position;
            if (available > 0) {
              const buffer = Buffer.allocUnsafe(Math.min(available, READ_CHUNK));
              const { bytesRead } = await ingest.#handle.read(buffer, 0, buffer.length, position);
              if (bytesRead === 0) throw new Error(`short read on ${ingest.digest} at ${position}`);
              position += bytesRead;
              this.push(bytesRead === buffer.length ? buffer : buffer.subarray(0, bytesRead));
              return;
            }
            if (ingest.#state === 'failed') throw ingest.#error ?? new Error('ingest failed');
            if (ingest.#state === 'complete') {
              this.push(null);
              return;
            }
            await once(ingest, 'progress');
          }
        } catch (err) {
          this.destroy(err as Error);
        }
      },
      destroy(err, callback) {
        release();
        callback(err);
      },
    });
    stream.once('end', release);
    return stream;
  }

  #maybeClose(): void {
    if (this.#state === 'writing' || this.#readers > 0 || this.#closed) return;
    this.#closed = true;
    void this.#handle.close().catch(() => undefined);
  }
}

export class DigestMismatchError extends Error {
  constructor(expected: Digest, actual: Digest) {
    super(`digest mismatch: expected ${expected}, got ${actual}`);
    this.name = 'DigestMismatchError';
  }
}
