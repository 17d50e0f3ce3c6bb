import { randomBytes } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { Level } from 'level';
import type { Logger, PullRecord } from '@peerpull/common';

export interface PullLogOptions {
  /** Its own LevelDB directory (not the content store's). */
  dir: string;
  /** Records older than this are deleted. */
  maxAgeMs: number;
  /** At most this many records are kept (the oldest go first). */
  maxEntries: number;
  logger: Logger;
}

export interface PullQuery {
  /** ms since the epoch. */
  since?: number;
  until?: number;
  /** Matches `registry/repository` (a tag or digest given is ignored: blob pulls have none). */
  image?: string;
  node?: string;
  source?: string;
  kind?: 'manifest' | 'blob';
  limit?: number;
}

const PRUNE_EVERY_MS = 60_000;
const DEFAULT_LIMIT = 1_000;
const MAX_LIMIT = 10_000;

/**
 * The cluster's pull audit log: every completed manifest or blob pull the daemons reported,
 * in time order, in a LevelDB of its own, bounded by age and by count.
 */
export class PullLog {
  readonly #db: Level<string, PullRecord>;
  readonly #opts: PullLogOptions;
  readonly #instance = randomBytes(3).toString('hex');
  #seq = 0;
  #count = 0;
  #timer: NodeJS.Timeout | undefined;
  #pruning: Promise<void> | undefined;

  private constructor(db: Level<string, PullRecord>, opts: PullLogOptions) {
    this.#db = db;
    this.#opts = opts;
  }

  static async open(opts: PullLogOptions): Promise<PullLog> {
    await mkdir(opts.dir, { recursive: true });
    const db = new Level<string, PullRecord>(opts.dir, { valueEncoding: 'json' });
    await db.open();
    const log = new PullLog(db, opts);
    for await (const _key of db.keys()) log.#count++;
    await log.prune();
    log.#timer = setInterval(() => void log.prune(), PRUNE_EVERY_MS);
    log.#timer.unref();
    return log;
  }

  get size(): number {
    return this.#count;
  }

  async append(records: PullRecord[]): Promise<void> {
    if (records.length === 0) return;
    const batch = this.#db.batch();
    for (const record of records) batch.put(`${timeKey(record.time)}:${this.#instance}:${(this.#seq++).toString(36).padStart(8, '0')}`, record);
    await batch.write();
    this.#count += records.length;
    if (this.#count > this.#opts.maxEntries * 1.05) void this.prune();
  }

  /** Matching records in time order; past `limit`, the newest `limit` of them. */
  async query(q: PullQuery): Promise<{ pulls: PullRecord[]; truncated: boolean }> {
    const limit = Math.min(MAX_LIMIT, Math.max(1, q.limit ?? DEFAULT_LIMIT));
    const image = q.image ? imageName(q.image) : undefined;
    const out: PullRecord[] = [];
    let truncated = false;
    const range = { gte: timeKey(q.since ?? 0), ...(q.until !== undefined ? { lt: timeKey(q.until + 1) } : {}) };
    for await (const record of this.#db.values(range)) {
      if (image && !`${record.registry}/${record.repository}`.includes(image)) continue;
      if (q.node && record.node !== q.node) continue;
      if (q.source && record.source !== q.source) continue;
      if (q.kind && record.kind !== q.kind) continue;
      out.push(record);
      if (out.length > limit) {
        out.shift();
        truncated = true;
      }
    }
    return { pulls: out, truncated };
  }

  /** The newest `n` records, newest first. */
  async recent(n: number): Promise<PullRecord[]> {
    const out: PullRecord[] = [];
    for await (const record of this.#db.values({ reverse: true, limit: n })) out.push(record);
    return out;
  }

  /** Deletes what is past the age limit, then the oldest beyond the count limit. */
  prune(): Promise<void> {
    this.#pruning ??= this.#prune().finally(() => (this.#pruning = undefined));
    return this.#pruning;
  }

  async #prune(): Promise<void> {
    try {
      const cutoff = Number.isFinite(this.#opts.maxAgeMs) ? Date.now() - this.#opts.maxAgeMs : 0;
      let excess = Math.max(0, this.#count - this.#opts.maxEntries);
      let batch = this.#db.batch();
      let pending = 0;
      let deleted = 0;
      for await (const key of this.#db.keys()) {
        if (excess <= 0 && key >= timeKey(cutoff)) break;
        batch.del(key);
        pending++;
        excess--;
        if (pending >= 1_000) {
          await batch.write();
          deleted += pending;
          pending = 0;
          batch = this.#db.batch();
        }
      }
      if (pending) await batch.write();
      else await batch.close();
      deleted += pending;
      this.#count -= deleted;
      if (deleted) this.#opts.logger.debug({ deleted, kept: this.#count }, 'pull log pruned');
    } catch (err) {
      this.#opts.logger.warn({ err: (err as Error).message }, 'could not prune the pull log');
    }
  }

  async close(): Promise<void> {
    clearInterval(this.#timer);
    await this.#pruning;
    await this.#db.close();
  }
}

function timeKey(ms: number): string {
  return Math.max(0, Math.floor(ms)).toString().padStart(15, '0');
}

/** `docker.io/library/nginx:1.27` → `docker.io/library/nginx`; `nginx` stays a substring to match. */
function imageName(text: string): string {
  const at = text.indexOf('@');
  const base = at >= 0 ? text.slice(0, at) : text;
  const colon = base.lastIndexOf(':');
  return colon > base.lastIndexOf('/') ? base.slice(0, colon) : base;
}
