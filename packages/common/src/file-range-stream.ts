import { close, open, read } from 'node:fs';
import { ServerResponse } from 'node:http';
import { Readable } from 'node:stream';

/** Bytes per read. */
const CHUNK = 256 * 1024;
/** Pooled buffers kept for reuse (at most CHUNK * POOL_MAX bytes stay allocated). */
const POOL_MAX = 64;
const pool: Buffer[] = [];

function takeBuffer(): Buffer {
  return pool.pop() ?? Buffer.allocUnsafeSlow(CHUNK);
}

function giveBuffer(buffer: Buffer): void {
  if (pool.length < POOL_MAX) pool.push(buffer);
}

/** How far a growing file may be read right now. */
export interface RangeLimit {
  /** Bytes below this offset may be read. */
  end: number;
  /** No byte beyond `end` will ever come: the stream ends there. */
  final: boolean;
  /** Set when the file will not grow any more because it failed: the stream errors once at `end`. */
  error?: Error | undefined;
}

/** A file still being written (an in-progress blob). */
export interface GrowingRange {
  limit(): RangeLimit;
  /** Resolves when limit() may have changed. */
  changed(): Promise<void>;
}

/**
 * A path (opened and closed by the stream), an fd it borrows and hands back with release(), or
 * a way to borrow one (an OpenFileCache) once the stream starts.
 */
export type FileRangeSource =
  | string
  | { fd: number; release: () => void; name: string }
  | { acquire: () => Promise<{ fd: number; release: () => void }>; name: string };

/**
 * A byte range of a file as a Readable, like fs.createReadStream: bytes [start, end] (inclusive),
 * or, for a file still being written, whatever a GrowingRange allows as it grows.
 *
 * Piped into an HTTP response (what Fastify does with a stream body), it does not allocate a
 * buffer per read: it reads into pooled buffers and reuses each one once the socket has
 * written it (the write callback), with at most a few buffers per response. With 100 clients
 * on one blob, per-read allocations are what made memory and CPU grow: GC had to collect
 * ~1 GB/s of dead 1 MiB buffers, and the garbage counted in RSS until it did.
 * Read any other way (data events, async iteration, piped elsewhere), it allocates as usual.
 */
export class FileRangeStream extends Readable {
  readonly name: string;
  readonly start: number;
  readonly #path: string | undefined;
  readonly #acquire: (() => Promise<{ fd: number; release: () => void }>) | undefined;
  #release: (() => void) | undefined;
  readonly #fixedEnd: number | undefined;
  readonly #growing: GrowingRange | undefined;
  #position: number;
  #fd: number | undefined;
  readonly #opened: Promise<number>;
  #resolveOpened!: (fd: number) => void;
  #rejectOpened!: (err: Error) => void;
  #fastPiped = false;
  #waitingToGrow = false;
  /** A read is running: closing the fd now could let it read another file that reuses the number. */
  #ioPending = false;
  #afterIo: (() => void) | undefined;

  constructor(source: FileRangeSource, start: number, end: number | GrowingRange) {
    super({ highWaterMark: CHUNK });
    this.start = start;
    this.#position = start;
    if (typeof end === 'number') this.#fixedEnd = end + 1;
    else this.#growing = end;
    this.#opened = new Promise<number>((resolve, reject) => {
      this.#resolveOpened = resolve;
      this.#rejectOpened = reject;
    });
    this.#opened.catch(() => undefined);
    if (typeof source === 'string') {
      this.name = source;
      this.#path = source;
    } else if ('acquire' in source) {
      this.name = source.name;
      this.#acquire = source.acquire;
    } else {
      this.name = source.name;
      this.#release = source.release;
      this.#fd = source.fd;
      this.#resolveOpened(source.fd);
    }
  }

  override _construct(callback: (error?: Error | null) => void): void {
    if (this.#acquire) {
      this.#acquire().then(
        ({ fd, release }) => {
          this.#fd = fd;
          this.#release = release;
          this.#resolveOpened(fd);
          callback();
        },
        (err: Error) => {
          this.#rejectOpened(err);
          callback(err);
        },
      );
      return;
    }
    if (this.#path === undefined) return callback();
    open(this.#path, 'r', (err, fd) => {
      if (err) {
        this.#rejectOpened(err);
        callback(err);
        return;
      }
      this.#fd = fd;
      this.#resolveOpened(fd);
      callback();
    });
  }

  #limit(): RangeLimit {
    return this.#growing ? this.#growing.limit() : { end: this.#fixedEnd!, final: true };
  }

  /** Calls `then` once the file grew (or failed, or completed); false if it is not growing any more. */
  #waitToGrow(then: () => void): void {
    if (this.#waitingToGrow || !this.#growing) return;
    this.#waitingToGrow = true;
    this.#growing.changed().then(
      () => {
        this.#waitingToGrow = false;
        if (!this.destroyed) then();
      },
      (err: Error) => this.destroy(err),
    );
  }

  override _read(): void {
    const fd = this.#fd;
    if (fd === undefined || this.#waitingToGrow) return;
    const limit = this.#limit();
    const n = Math.min(CHUNK, limit.end - this.#position);
    if (n <= 0) {
      if (limit.final) this.push(null);
      else if (limit.error) this.destroy(limit.error);
      else this.#waitToGrow(() => this._read());
      return;
    }
    const buffer = Buffer.allocUnsafe(n);
    this.#readAt(fd, buffer, n, (err, bytesRead) => {
      if (this.destroyed) return;
      if (err) return this.destroy(err);
      if (bytesRead === 0) return this.destroy(new Error(`short read on ${this.name} at ${this.#position}`));
      this.#position += bytesRead;
      this.push(bytesRead === n ? buffer : buffer.subarray(0, bytesRead));
    });
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    const fd = this.#fd;
    this.#fd = undefined;
    if (fd === undefined) return callback(err);
    const done = (): void => {
      if (this.#release) {
        this.#release();
        callback(err);
      } else {
        close(fd, () => callback(err));
      }
    };
    if (this.#ioPending) this.#afterIo = done;
    else done();
  }

  #readAt(fd: number, buffer: Buffer, n: number, done: (err: Error | null, bytesRead: number) => void): void {
    this.#ioPending = true;
    read(fd, buffer, 0, n, this.#position, (err, bytesRead) => {
      this.#ioPending = false;
      const after = this.#afterIo;
      this.#afterIo = undefined;
      after?.();
      done(err, bytesRead);
    });
  }

  override pipe<T extends NodeJS.WritableStream>(destination: T, options?: { end?: boolean }): T {
    // Only a ServerResponse is known to be done with a chunk when its write callback runs (the
    // socket wrote it); a Transform, say, calls back while the chunk still sits in its buffer.
    if (!(destination instanceof ServerResponse) || this.#fastPiped || this.readableFlowing !== null || this.listenerCount('data') > 0) {
      return super.pipe(destination, options);
    }
    this.#fastPiped = true;
    destination.emit('pipe', this);
    this.#opened.then(
      () => this.#pump(destination, options?.end !== false),
      () => undefined, // _construct failed: the stream emits the error
    );
    return destination;
  }

  #pump(res: ServerResponse, endDestination: boolean): void {
    let reading = false;
    let inflight = 0;
    let waitingForDrain = false;
    let finished = false;
    const finish = (): void => {
      finished = true;
      res.removeListener('close', onClose);
      this.once('end', () => {
        if (endDestination) res.end();
      });
      this.push(null);
      this.resume(); // no data is buffered: this only lets 'end' (and then 'close') happen
    };
    const onClose = (): void => {
      if (!finished) this.destroy();
    };
    res.once('close', onClose);
    const step = (): void => {
      waitingForDrain = false;
      if (finished || reading || this.destroyed || this.#waitingToGrow) return;
      const fd = this.#fd;
      if (fd === undefined) return;
      const limit = this.#limit();
      const n = Math.min(CHUNK, limit.end - this.#position);
      if (n <= 0) {
        if (limit.final) {
          if (inflight === 0) finish();
        } else if (limit.error) {
          this.destroy(limit.error);
        } else {
          this.#waitToGrow(step);
        }
        return;
      }
      const buffer = takeBuffer();
      reading = true;
      this.#readAt(fd, buffer, n, (err, bytesRead) => {
        reading = false;
        if (err || bytesRead === 0 || this.destroyed || res.destroyed) {
          giveBuffer(buffer);
          if (err) this.destroy(err);
          else if (bytesRead === 0) this.destroy(new Error(`short read on ${this.name} at ${this.#position}`));
          else this.destroy();
          return;
        }
        this.#position += bytesRead;
        inflight++;
        const ok = res.write(bytesRead === buffer.length ? buffer : buffer.subarray(0, bytesRead), (writeErr) => {
          inflight--;
          // After an error the socket may still hold the buffer: let it go to the GC instead.
          if (writeErr) return;
          giveBuffer(buffer);
          if (!waitingForDrain) step();
        });
        if (ok) step();
        else if (!waitingForDrain) {
          waitingForDrain = true;
          res.once('drain', step);
        }
      });
    };
    step();
  }
}
