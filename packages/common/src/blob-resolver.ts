import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { statfs } from 'node:fs/promises';
import { PassThrough, type Readable } from 'node:stream';
import type { Logger } from 'pino';
import { DigestMismatchError, type BlobIngest } from './blob-ingest.ts';
import { EventEmitter } from 'node:events';
import { MISS_HEADER, SourceBusyError, SourceUnavailableError, type BlobLocator, type BlobSource, type SourceName } from './blob-source.ts';
import type { ContentStore } from './content-store.ts';
import type { Digest } from './digest.ts';
import type { MirrorMetrics } from './metrics.ts';
import { OciError } from './oci-error.ts';
import { UpstreamError } from './upstream-client.ts';

export interface BlobHandle {
  digest: Digest;
  /** Total size; undefined only while a fetch whose source sent no length is running. */
  size: number | undefined;
  /** Where the bytes come from: `local` when complete on disk, else the source filling it. */
  source: SourceName;
  /** A stream of bytes [start, end]; for an in-flight fetch it follows the file as it grows. */
  read(start?: number, end?: number): Readable;
  /** Bytes readable right now: the size when stored, the bytes written so far while fetching. */
  available(): number;
  /** Set when the bytes are streamed from a source without being stored (the disk is full): why. */
  uncached?: string;
  /** While fetching: the source whose answer is streaming in now (undefined while sources are still being asked). */
  streamingFrom?: () => SourceName | undefined;
}

/** One source tried during one fetch: what `peerpull explain` shows as "peer busy, seed timeout, upstream". */
export interface FetchAttempt {
  source: SourceName;
  outcome: 'ok' | 'miss' | 'busy' | 'failed' | 'broke';
  /** What the source said: which peer answered, the error. */
  detail?: string;
  ms: number;
}

/** How one fetch into the store went (emitted as `fetch-finished`). */
export interface FetchTrace {
  digest: Digest;
  registry: string;
  repository: string;
  startedAt: number;
  seconds: number;
  ok: boolean;
  /** The source that completed it (the last one tried when it failed). */
  source: SourceName;
  bytesBySource: Record<string, number>;
  attempts: FetchAttempt[];
}

/** A fetch running now (the dashboard's current transfers). */
export interface ActiveFetch {
  digest: Digest;
  registry: string;
  repository: string;
  source: SourceName;
  written: number;
  size: number | undefined;
  startedAt: number;
}

export interface BlobResolverOptions {
  store: ContentStore;
  /** Tried in order, after the local store. */
  sources: BlobSource[];
  logger: Logger;
  /** Attempts per source for one blob, each resuming where the last stopped. */
  attemptsPerSource?: number;
  /** Deadline for a source's size lookup (HEAD). */
  statTimeoutMs?: number;
  metrics?: MirrorMetrics;
}

interface Fetch {
  ingest: BlobIngest;
  source: SourceName;
  /** A fetch restarted after bad bytes from a peer is not restarted again. */
  isRetry: boolean;
  /** The source that answered and is streaming in now. */
  streaming?: SourceName | undefined;
}

const TAINT_MS = 10 * 60_000;
/** How long to keep going back to peers while sources answer "busy" before insisting. */
const BUSY_WINDOW_MS = 3_000;
const BUSY_PAUSE_MS = 150;

/**
 * Finds a blob: the local store, then each source in order. A miss starts one fetch per
 * digest that writes into the store while every concurrent client reads the growing file,
 * so N clients cost one transfer. A transfer that breaks resumes at the offset reached,
 * from the same source or the next, without the clients noticing.
 */
export class BlobResolver {
  readonly #store: ContentStore;
  readonly #sources: BlobSource[];
  /** Sources that look harder once, in a last-resort round (peers with a longer lookup). */
  readonly #searchingHarder: ReadonlySet<SourceName>;
  readonly #logger: Logger;
  readonly #attempts: number;
  readonly #statTimeoutMs: number;
  readonly #metrics: MirrorMetrics | undefined;
  readonly #fetches = new Map<Digest, Promise<Fetch>>();
  readonly #tainted = new Map<Digest, number>();
  readonly #active = new Map<Fetch, { locator: BlobLocator; startedAt: number }>();
  /** Set while the store's disk is full: misses are streamed from their sources without being stored. */
  #diskFull: { since: number; reason: string } | undefined;
  /**
   * `fetch-started` (locator): a node announces what it is downloading before it has it.
   * `fetch-finished` (FetchTrace): where a fetch got its bytes and what each source said.
   */
  readonly events = new EventEmitter();

  constructor(opts: BlobResolverOptions) {
    this.#store = opts.store;
    this.#sources = opts.sources;
    this.#searchingHarder = new Set(opts.sources.filter((s) => s.searchesHarder).map((s) => s.name));
    this.#logger = opts.logger;
    this.#attempts = opts.attemptsPerSource ?? 2;
    this.#statTimeoutMs = opts.statTimeoutMs ?? 10_000;
    this.#metrics = opts.metrics;
  }

  get inflight(): number {
    return this.#fetches.size;
  }

  /**
   * Waits (at most `timeoutMs`) for blobs that verified but are still being fsynced and renamed
   * into the store: clients may already have all their bytes, so a graceful stop keeps them.
   */
  async settle(timeoutMs = 5_000): Promise<void> {
    const fetches = await Promise.all([...this.#fetches.values()].map((f) => f.catch(() => undefined)));
    const finishing = fetches.filter((f) => f?.ingest.verified).map((f) => f!.ingest.done().catch(() => undefined));
    if (finishing.length === 0) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.all(finishing), new Promise((resolve) => (timer = setTimeout(resolve, timeoutMs)))]);
    clearTimeout(timer);
  }

  /** Fetches running now, with their progress. */
  activeFetches(): ActiveFetch[] {
    return [...this.#active].map(([fetch, { locator, startedAt }]) => ({
      digest: locator.digest,
      registry: locator.registry.host,
      repository: locator.repository,
      source: fetch.source,
      written: fetch.ingest.written,
      size: fetch.ingest.size,
      startedAt,
    }));
  }

  /** Opens a blob for reading, starting a fetch on a miss. Throws OciError 404 when no source has it. */
  async open(locator: BlobLocator): Promise<BlobHandle> {
    const local = this.#localHandle(locator.digest);
    if (local) return local;
    if (this.#diskFull && !this.#fetches.has(locator.digest)) {
      const direct = await this.#directIfStillFull(locator);
      if (direct) return direct;
    }
    let fetch: Fetch;
    try {
      fetch = await this.#ensureFetch(locator);
    } catch (err) {
      // No room even for the temp file: serve it without the store.
      if (!isNoSpaceError(err)) throw err;
      this.#enterDiskFull(err);
      const direct = await this.#directIfStillFull(locator);
      if (direct) return direct;
      throw err;
    }
    try {
      await fetch.ingest.ready();
    } catch (err) {
      throw this.#missError(locator, err);
    }
    return this.#fetchHandle(fetch);
  }

  /**
   * Makes sure a blob ends up in the store (prefetch). Resolves with the running ingest to
   * watch its progress, or undefined when the blob is already stored.
   */
  async fetchToStore(locator: BlobLocator): Promise<BlobIngest | undefined> {
    const handle = await this.open(locator);
    if (handle.source === 'local') return undefined;
    return (await this.#fetches.get(locator.digest))?.ingest;
  }

  /** Size and source without downloading anything (HEAD). */
  async stat(locator: BlobLocator): Promise<{ size: number; source: SourceName }> {
    const info = this.#store.stat(locator.digest);
    if (info) return { size: info.size, source: 'local' };
    const inflight = await this.#fetches.get(locator.digest)?.catch(() => undefined);
    if (inflight?.ingest.size !== undefined && inflight.ingest.state !== 'failed') {
      return { size: inflight.ingest.size, source: inflight.source };
    }
    let lastError: unknown;
    for (const source of this.#sources) {
      try {
        const size = await source.size(locator, AbortSignal.timeout(this.#statTimeoutMs));
        if (size !== undefined) return { size, source: source.name };
      } catch (err) {
        lastError = err;
        this.#logger.debug({ digest: locator.digest, source: source.name, err: (err as Error).message }, 'blob stat failed at source');
      }
    }
    throw this.#missError(locator, lastError);
  }

  /**
   * True for a while after a fetch of this digest failed verification: clients may hold
   * bad bytes from it, so a Range request gets the whole blob (containerd then discards
   * its prefix) instead of a 206 that would complete a corrupt download.
   */
  mustResendWhole(digest: Digest): boolean {
    const at = this.#tainted.get(digest);
    if (at === undefined) return false;
    if (Date.now() - at < TAINT_MS) return true;
    this.#tainted.delete(digest);
    return false;
  }

  /** Marks a digest tainted; entries are kept in time order, so expired ones are dropped from the front. */
  #taint(digest: Digest): void {
    const now = Date.now();
    this.#tainted.delete(digest);
    this.#tainted.set(digest, now);
    for (const [d, at] of this.#tainted) {
      if (now - at < TAINT_MS) break;
      this.#tainted.delete(d);
    }
  }

  /** The blob if it is stored or being fetched right now; never starts a fetch (peers asking us). */
  async localOrInflight(digest: Digest): Promise<BlobHandle | undefined> {
    const local = this.#localHandle(digest);
    if (local) return local;
    const fetch = await this.#fetches.get(digest)?.catch(() => undefined);
    if (!fetch || fetch.ingest.state === 'failed') return undefined;
    return this.#fetchHandle(fetch);
  }

  #ensureFetch(locator: BlobLocator): Promise<Fetch> {
    const digest = locator.digest;
    let pending = this.#fetches.get(digest);
    if (!pending) {
      const created = this.#startFetch(locator);
      pending = created;
      this.#fetches.set(digest, created);
      const cleanup = (): void => {
        if (this.#fetches.get(digest) === created) this.#fetches.delete(digest);
      };
      created.then((fetch) => fetch.ingest.done().catch(() => undefined).finally(cleanup), cleanup);
    }
    return pending;
  }

  #localHandle(digest: Digest): BlobHandle | undefined {
    const info = this.#store.stat(digest);
    if (!info) return undefined;
    return {
      digest,
      size: info.size,
      source: 'local',
      read: (start = 0, end?: number) => this.#store.openRead(digest, start, end),
      available: () => info.size,
    };
  }

  #fetchHandle(fetch: Fetch): BlobHandle {
    const { ingest } = fetch;
    return {
      digest: ingest.digest,
      size: ingest.size,
      source: fetch.source,
      // Once complete, the ingest's file handle may be closed: read the stored file instead.
      read: (start = 0, end?: number) =>
        ingest.state === 'complete' && this.#store.has(ingest.digest)
          ? this.#store.openRead(ingest.digest, start, end)
          : ingest.createReader(start, end),
      available: () => (ingest.state === 'complete' ? (ingest.size ?? ingest.written) : ingest.written),
      streamingFrom: () => fetch.streaming,
    };
  }

  async #startFetch(locator: BlobLocator, isRetry = false): Promise<Fetch> {
    const ingest = await this.#store.createIngest(locator.digest, { kind: 'blob' });
    const fetch: Fetch = { ingest, source: this.#sources[0]?.name ?? 'upstream', isRetry };
    this.events.emit('fetch-started', locator);
    void this.#fill(fetch, locator);
    return fetch;
  }

  async #fill(fetch: Fetch, locator: BlobLocator): Promise<void> {
    const startedAt = Date.now();
    const attempts: FetchAttempt[] = [];
    this.#active.set(fetch, { locator, startedAt });
    try {
      await this.#fillFrom(fetch, locator, attempts);
    } finally {
      this.#active.delete(fetch);
      for (const source of this.#sources) source.fetchEnded?.(locator);
      const trace: FetchTrace = {
        digest: locator.digest,
        registry: locator.registry.host,
        repository: locator.repository,
        startedAt,
        seconds: (Date.now() - startedAt) / 1000,
        ok: fetch.ingest.state === 'complete',
        source: fetch.source,
        bytesBySource: Object.fromEntries(fetch.ingest.bytesBySource),
        attempts,
      };
      this.events.emit('fetch-finished', trace);
    }
  }

  async #fillFrom(fetch: Fetch, locator: BlobLocator, attempts: FetchAttempt[]): Promise<void> {
    const { ingest } = fetch;
    const started = performance.now();
    let lastError: unknown;
    const controller = new AbortController();
    // Bounded by time, not rounds: each round costs lookups and requests, and a client
    // gets no bytes meanwhile. After the window, sources must serve (insist).
    const busyUntil = performance.now() + BUSY_WINDOW_MS;
    let insist = false;
    // Peers a busy source named as receiving the blob: the next round asks them before any lookup.
    const hints: string[] = [];
    let lastResort = false;
    /** The last full round: every source failed and none said "not found" (the client's 404 says so). */
    let outage = false;
    let sourceBeforeLastResort: SourceName | undefined;
    rounds: for (;;) {
      let busy = false;
      let newHints = false;
      const roundStart = attempts.length;
      let refused = false; // the upstream answered (unauthorized, rate-limited, invalid): not an outage
      for (const source of lastResort ? this.#sources.filter((s) => this.#searchingHarder.has(s.name)) : this.#sources) {
        // "Busy" means: it has the blob but is shedding load. The sources before it (peers)
        // will have it shortly; the ones after it (upstream) would cost another WAN fetch.
        if (busy) break;
        // One try in the last-resort round: another would be another long lookup.
        for (let attempt = 0; attempt < (lastResort ? 1 : this.#attempts); attempt++) {
          fetch.source = source.name;
          const offset = ingest.written;
          const notes: string[] = [];
          const openedAt = performance.now();
          const tried = (outcome: FetchAttempt['outcome'], detail?: string): void => {
            const text = [...notes, ...(detail ? [detail] : [])].join('; ');
            attempts.push({ source: source.name, outcome, ...(text ? { detail: text.slice(0, 300) } : {}), ms: Math.round(performance.now() - openedAt) });
          };
          let opened;
          try {
            opened = await source.open(locator, offset, controller.signal, { insist, note: (d) => notes.push(d), ...(hints.length ? { hints } : {}), ...(lastResort ? { lastResort } : {}) });
          } catch (err) {
            lastError = err;
            tried(err instanceof SourceBusyError ? 'busy' : 'failed', (err as Error).message);
            if (err instanceof SourceBusyError) {
              busy = true;
              for (const id of err.providers) {
                if (hints.includes(id)) continue;
                hints.push(id);
                newHints = true;
              }
              break;
            }
            if (err instanceof SourceUnavailableError) {
              this.#logger.debug({ digest: locator.digest, source: source.name, err: err.message }, 'blob source unavailable');
              break;
            }
            this.#logger.warn({ digest: locator.digest, source: source.name, offset, err: (err as Error).message }, 'blob source failed');
            if (err instanceof UpstreamError && (err.kind === 'unauthorized' || err.kind === 'rate-limited' || err.kind === 'invalid')) {
              refused = true;
              break;
            }
            // A source that did not even answer within its deadline gets no second attempt: it would double the client's wait.
            if ((err as { cause?: { code?: string } }).cause?.code === 'UND_ERR_HEADERS_TIMEOUT') break;
            continue;
          }
          if (!opened) {
            tried('miss');
            break; // this source does not have it
          }
          fetch.streaming = source.name;
          try {
            if (opened.size !== undefined) ingest.setSize(opened.size);
            for await (const chunk of fromOffset(opened.body, offset - opened.offset)) {
              await ingest.write(chunk, source.name);
              this.#metrics?.bytesFetched.inc({ source: source.name }, chunk.length);
            }
            if (ingest.size !== undefined && ingest.written < ingest.size) {
              throw new Error(`${source.name} closed the stream at ${ingest.written} of ${ingest.size} bytes`);
            }
            await ingest.complete();
            if (ingest.state === 'failed' && isNoSpaceError(ingest.error)) this.#enterDiskFull(ingest.error);
            if (ingest.state === 'failed') tried('failed', isNoSpaceError(ingest.error) ? 'disk full' : 'bytes did not match the digest');
            else tried('ok');
            this.#finished(fetch, locator, started, attempts);
            return;
          } catch (err) {
            // An unread body (e.g. after a size mismatch) errors when destroyed (undici does): without a listener that kills the process.
            opened.body.on('error', () => undefined).destroy();
            fetch.streaming = undefined;
            lastError = err;
            tried('broke', (err as Error).message);
            this.#logger.warn({ digest: locator.digest, source: source.name, offset: ingest.written, err: (err as Error).message }, 'blob transfer broke; resuming');
            if ((err as Error).message.startsWith('size mismatch')) break;
            if (ingest.state !== 'writing') return;
            if (isNoSpaceError(err)) {
              // Another source would not help: the store cannot take the bytes. Later requests stream around it.
              this.#enterDiskFull(err);
              break rounds;
            }
          }
        }
      }
      if (busy && !insist) {
        // Someone has it but is shedding load (a seed already feeding peers, busy peers):
        // by now other nodes provide it, so go round again, peers first. Named providers are
        // asked at once: they are streaming it now, and each pause here delays the client.
        if (!newHints) await new Promise((resolve) => setTimeout(resolve, BUSY_PAUSE_MS));
        insist = performance.now() >= busyUntil;
        continue;
      }
      const round = attempts.slice(roundStart);
      if (!lastResort) outage = !busy && !refused && this.#outage(round);
      if (outage && !lastResort && this.#worthALastResort(round)) {
        lastResort = true;
        sourceBeforeLastResort = fetch.source;
        continue;
      }
      break;
    }
    // A failed fetch names the last source that failed in its round, not the peers asked again.
    if (sourceBeforeLastResort) fetch.source = sourceBeforeLastResort;
    if (ingest.written > 0 && !isNoSpaceError(lastError)) this.#taint(locator.digest);
    const error = lastError instanceof Error ? lastError : new Error(`no source has ${locator.digest}`);
    await ingest.fail(outage ? new SourcesFailedError(error) : error);
    this.#logger.warn({ digest: locator.digest, written: ingest.written, err: ingest.error?.message }, 'blob fetch failed at every source');
  }

  /**
   * A round without bytes in which every source that does not search harder (seed, upstream) failed
   * rather than said "not found": unreachable, erroring. What the searching sources (peers) said does not
   * count: their quick answer is not definitive.
   */
  #outage(round: FetchAttempt[]): boolean {
    const others = round.filter((a) => !this.#searchingHarder.has(a.source));
    return others.length > 0 && others.every((a) => a.outcome === 'failed' || a.outcome === 'broke');
  }

  /** An outage round in which a source that searches harder missed: ask it once more. A clean 404 upstream stays a fast miss. */
  #worthALastResort(round: FetchAttempt[]): boolean {
    return round.some((a) => this.#searchingHarder.has(a.source) && a.outcome === 'miss');
  }

  /** After complete(): on a verification failure, blame the sources that sent bytes and retry once without them. */
  #finished(fetch: Fetch, locator: BlobLocator, started: number, attempts: FetchAttempt[]): void {
    const { ingest } = fetch;
    this.#logFinished(ingest, locator, started, attempts);
    // Only bad bytes blame the sources: a store that failed to save (closing, disk) is not their fault.
    if (ingest.state !== 'failed' || !(ingest.error instanceof DigestMismatchError)) return;
    this.#taint(locator.digest);
    const contributors = [...ingest.bytesBySource.keys()];
    for (const source of this.#sources) {
      if (contributors.includes(source.name)) source.reportCorrupt?.(locator);
    }
    if (!fetch.isRetry && contributors.some((name) => name !== 'upstream')) {
      this.#logger.warn({ digest: locator.digest, contributors }, 'fetching again from other sources after bad bytes');
      this.#fetches.delete(locator.digest);
      const retry = this.#startFetch(locator, true);
      this.#fetches.set(locator.digest, retry);
      const cleanup = (): void => {
        if (this.#fetches.get(locator.digest) === retry) this.#fetches.delete(locator.digest);
      };
      retry.then((f) => f.ingest.done().catch(() => undefined).finally(cleanup), cleanup);
    }
  }

  #logFinished(ingest: BlobIngest, locator: BlobLocator, started: number, attempts: FetchAttempt[]): void {
    if (ingest.state === 'complete') {
      const seconds = (performance.now() - started) / 1000;
      // The attempts say where a slow fetch spent its time (busy sources, lookups that found nobody).
      this.#logger.info(
        { digest: locator.digest, registry: locator.registry.host, repository: locator.repository, bytes: ingest.written, bySource: Object.fromEntries(ingest.bytesBySource), seconds: Number(seconds.toFixed(3)), attempts },
        'blob stored',
      );
    } else {
      this.#logger.error({ digest: locator.digest, err: ingest.error?.message }, 'blob discarded: verification failed');
    }
  }

  /** The store's disk is full: until it has room again, misses are streamed from their sources, unstored. */
  #enterDiskFull(err: unknown): void {
    if (this.#diskFull) return;
    this.#diskFull = { since: Date.now(), reason: (err as Error).message };
    this.#logger.warn({ dir: this.#store.dir, err: (err as Error).message }, 'disk full: serving blobs from their sources without caching them until the store has room again');
  }

  /** A handle that streams from the sources when the disk is still too full for this blob; undefined once it has room. */
  async #directIfStillFull(locator: BlobLocator): Promise<BlobHandle | undefined> {
    const { size, source } = await this.stat(locator);
    let free = 0;
    let margin = DISK_FULL_MARGIN_BYTES;
    try {
      const fs = await statfs(this.#store.dir);
      free = fs.bavail * fs.bsize;
      margin = Math.min(DISK_FULL_MARGIN_BYTES, (fs.blocks * fs.bsize) / 10);
    } catch {
      free = 0;
    }
    if (free >= size + margin) {
      this.#logger.info({ dir: this.#store.dir, freeBytes: free, fullSeconds: Math.round((Date.now() - (this.#diskFull?.since ?? Date.now())) / 1000) }, 'disk has room again: caching blobs again');
      this.#diskFull = undefined;
      return undefined;
    }
    return {
      digest: locator.digest,
      size,
      source,
      uncached: 'disk full',
      read: (start = 0, end = size - 1) => this.#directStream(locator, size, start, end),
      available: () => 0,
    };
  }

  /**
   * Bytes [start, end] straight from the sources (resuming at the next source if one breaks off), stored
   * nowhere. A whole-blob read is hashed and its last chunk held back until the digest matched, so even
   * here no client gets a complete-looking wrong blob.
   */
  #directStream(locator: BlobLocator, size: number, start: number, end: number): Readable {
    const out = new PassThrough();
    const controller = new AbortController();
    out.once('close', () => controller.abort());
    const verify = start === 0 && end === size - 1;
    const hash = verify ? createHash('sha256') : undefined;
    const send = async (chunk: Buffer): Promise<void> => {
      if (!out.write(chunk)) await once(out, 'drain', { signal: controller.signal });
    };
    void (async () => {
      let position = start;
      let held: Buffer | undefined;
      let lastError: unknown;
      for (const source of this.#sources) {
        if (position > end || controller.signal.aborted) break;
        let opened;
        try {
          opened = await source.open(locator, position, controller.signal);
        } catch (err) {
          lastError = err;
          continue;
        }
        if (!opened) continue;
        try {
          for await (let chunk of fromOffset(opened.body, position - opened.offset)) {
            if (chunk.length > end - position + 1) chunk = chunk.subarray(0, end - position + 1);
            hash?.update(chunk);
            position += chunk.length;
            this.#metrics?.bytesFetched.inc({ source: source.name }, chunk.length);
            if (verify) {
              if (held) await send(held);
              held = chunk;
            } else {
              await send(chunk);
            }
            if (position > end) break;
          }
        } catch (err) {
          lastError = err;
        }
        opened.body.on('error', () => undefined).destroy();
      }
      if (controller.signal.aborted) return;
      if (position <= end) {
        out.destroy(lastError instanceof Error ? lastError : new Error(`no source could send ${locator.digest} from ${position}`));
        return;
      }
      if (hash) {
        const actual = `sha256:${hash.digest('hex')}`;
        if (actual !== locator.digest) {
          this.#logger.error({ digest: locator.digest, actual }, 'blob streamed without caching did not verify: response aborted');
          out.destroy(new Error(`digest mismatch: expected ${locator.digest}, got ${actual}`));
          return;
        }
      }
      out.end(held);
    })().catch((err: unknown) => out.destroy(err as Error));
    return out;
  }

  #missError(locator: BlobLocator, err: unknown): OciError {
    if (err instanceof UpstreamError && err.kind === 'rate-limited') {
      const headers: Record<string, string> = err.retryAfterMs !== undefined ? { 'retry-after': String(Math.ceil(err.retryAfterMs / 1000)) } : {};
      return new OciError(429, 'TOOMANYREQUESTS', `upstream ${err.registry} is rate limiting`, undefined, headers);
    }
    const why = err instanceof Error ? err.message : 'not found at any source';
    // A fast 404 makes containerd try its next host (ultimately the registry itself).
    return new OciError(404, 'BLOB_UNKNOWN', `blob ${locator.digest} unavailable: ${why}`, undefined, err instanceof SourcesFailedError ? { [MISS_HEADER]: 'unavailable' } : {});
  }
}

/** Every source failed and none said it does not have the blob (the sources were unreachable or erroring). */
class SourcesFailedError extends Error {
  override name = 'SourcesFailedError';

  constructor(cause: Error) {
    super(cause.message, { cause });
  }
}

/** Free space beyond a blob's size (at most; 10 % of a smaller disk) before the store takes new blobs again after it was full. */
const DISK_FULL_MARGIN_BYTES = 64 * 1024 * 1024;

/** The disk (or the quota) is full. */
export function isNoSpaceError(err: unknown): boolean {
  const e = err as { code?: string; message?: string; cause?: unknown } | undefined;
  if (e?.code === 'ENOSPC' || e?.code === 'EDQUOT') return true;
  // LevelDB reports it as an IO error with the OS message.
  return /No space left on device|ENOSPC|Disk quota exceeded/.test(e?.message ?? '') || (e?.cause !== undefined && e.cause !== err && isNoSpaceError(e.cause));
}

/** The body from `skip` bytes in: a source that ignored the requested offset resends the prefix. */
async function* fromOffset(body: Readable, skip: number): AsyncIterable<Buffer> {
  for await (const chunk of body as AsyncIterable<Buffer>) {
    if (skip >= chunk.length) {
      skip -= chunk.length;
      continue;
    }
    yield skip > 0 ? chunk.subarray(skip) : chunk;
    skip = 0;
  }
}
