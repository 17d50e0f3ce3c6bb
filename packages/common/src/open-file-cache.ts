import { close, open } from 'node:fs';

/** An fd borrowed from the cache; release() hands it back (once). */
export interface OpenFile {
  readonly fd: number;
  release(): void;
}

interface Entry {
  readonly key: string;
  readonly opened: Promise<number>;
  fd: number | undefined;
  refs: number;
  /** Set once the file was removed: no new borrowers; closed when the last one releases. */
  retired: boolean;
  idleSince: number;
}

/**
 * Read-only file descriptors of stored blobs, shared by concurrent readers and kept open a
 * little while after the last one: a cached blob request then costs one pread instead of an
 * open, a read and a close, three thread-pool round trips that were most of the CPU (and of
 * the time to first byte) of serving small cached blobs under load. Reads use positions
 * (pread), so one fd serves any number of readers. Idle fds are bounded in number and age, and
 * an fd is closed only when nobody borrows it, so a read never hits a reused fd number.
 *
 * The idle bound is well above the distinct blobs a node reads in a burst (a 64-entry cache
 * thrashed on 200 small layers: every request paid an open and a close again) and far below
 * the fd limit Node raises itself to at start (the hard limit, 512Ki+ on common distributions).
 */
export class OpenFileCache {
  readonly #entries = new Map<string, Entry>();
  /** Open entries nobody borrows, least recently released first (Map keeps insertion order). */
  readonly #idle = new Map<string, Entry>();
  readonly #maxIdle: number;
  readonly #idleMs: number;
  #sweeper: NodeJS.Timeout | undefined;

  constructor(opts: { maxIdle?: number; idleMs?: number } = {}) {
    this.#maxIdle = opts.maxIdle ?? 1024;
    this.#idleMs = opts.idleMs ?? 10_000;
  }

  /** Open fds held right now (borrowed or idle). */
  get size(): number {
    let n = 0;
    for (const e of this.#entries.values()) if (e.fd !== undefined) n++;
    return n;
  }

  async acquire(key: string, path: string): Promise<OpenFile> {
    let entry = this.#entries.get(key);
    if (!entry || entry.retired) {
      const opened = new Promise<number>((resolve, reject) => open(path, 'r', (err, fd) => (err ? reject(err) : resolve(fd))));
      const created: Entry = { key, opened, fd: undefined, refs: 0, retired: false, idleSince: 0 };
      entry = created;
      this.#entries.set(key, created);
      opened.then(
        (fd) => {
          created.fd = fd;
          if (created.refs === 0) this.#closeIfDone(created); // every borrower gave up while it opened
        },
        () => {
          if (this.#entries.get(key) === created) this.#entries.delete(key);
        },
      );
    }
    entry.refs++;
    this.#idle.delete(key);
    let fd: number;
    try {
      fd = await entry.opened;
    } catch (err) {
      entry.refs--;
      throw err;
    }
    const borrowed = entry;
    let released = false;
    return {
      fd,
      release: () => {
        if (released) return;
        released = true;
        borrowed.refs--;
        if (borrowed.refs === 0) {
          borrowed.idleSince = Date.now();
          this.#closeIfDone(borrowed);
        }
      },
    };
  }

  /** The file is gone (removed, evicted, found missing): close its fd once the last reader is done. */
  retire(key: string): void {
    const entry = this.#entries.get(key);
    if (!entry) return;
    entry.retired = true;
    this.#entries.delete(key);
    this.#idle.delete(key);
    this.#closeIfDone(entry);
  }

  /** Closes every idle fd; borrowed ones close on release. */
  closeAll(): void {
    for (const entry of [...this.#entries.values()]) this.retire(entry.key);
    if (this.#sweeper) clearInterval(this.#sweeper);
    this.#sweeper = undefined;
  }

  #closeIfDone(entry: Entry): void {
    if (entry.refs > 0 || entry.fd === undefined) return;
    if (entry.retired) {
      this.#close(entry);
      return;
    }
    this.#idle.delete(entry.key);
    this.#idle.set(entry.key, entry);
    this.#trimIdle();
    this.#sweeper ??= setInterval(() => this.#sweep(), Math.max(1_000, this.#idleMs / 2)).unref();
  }

  #close(entry: Entry): void {
    const fd = entry.fd;
    if (fd === undefined) return;
    entry.fd = undefined;
    if (this.#entries.get(entry.key) === entry) this.#entries.delete(entry.key);
    if (this.#idle.get(entry.key) === entry) this.#idle.delete(entry.key);
    close(fd, () => undefined);
  }

  #trimIdle(): void {
    for (const entry of this.#idle.values()) {
      if (this.#idle.size <= this.#maxIdle) break;
      this.#close(entry);
    }
  }

  #sweep(): void {
    const cutoff = Date.now() - this.#idleMs;
    for (const entry of this.#idle.values()) {
      if (entry.idleSince > cutoff) break; // the rest were released later
      this.#close(entry);
    }
    if (this.#entries.size === 0 && this.#sweeper) {
      clearInterval(this.#sweeper);
      this.#sweeper = undefined;
    }
  }
}
