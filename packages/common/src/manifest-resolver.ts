import type { Logger } from 'pino';
import type { SourceName } from './blob-source.ts';
import type { ContentStore, TagRecord } from './content-store.ts';
import { sha256Digest, type Digest } from './digest.ts';
import type { ManifestLocator, ManifestSource, TagResolution } from './manifest-source.ts';
import type { MirrorMetrics } from './metrics.ts';
import { sniffManifestMediaType } from './media-types.ts';
import { OciError } from './oci-error.ts';
import { SingleFlight } from './single-flight.ts';
import { UpstreamError } from './upstream-client.ts';
import { isNoSpaceError } from './blob-resolver.ts';

const LAST_PULLED_RESOLUTION_MS = 60_000;

export interface ResolvedManifest {
  digest: Digest;
  mediaType: string;
  body: Buffer;
  /** Who answered: `local` for the cache. */
  source: SourceName;
  /** Set when a tag was served from cache because every source failed: the mapping's age in ms. */
  staleAgeMs?: number;
}

export interface TagPolicy {
  /** Serve a cached tag without asking any source while younger than this. */
  ttlMs: number;
  /** How long a cached tag may still be served while every source fails. */
  maxStaleMs: number;
  /** An operator-pinned digest: the tag resolves to it without asking anyone, forever. */
  pinned?: Digest;
}

export interface ManifestResolverOptions {
  store: ContentStore;
  sources: ManifestSource[];
  /** Asked for a tag only when every source failed and the cache cannot answer (peers). */
  lastResortTagSources?: ManifestSource[];
  logger: Logger;
  tagPolicy: (locator: ManifestLocator, tag: string) => TagPolicy;
  /** Deadline for one source to answer one manifest or tag request. */
  sourceTimeoutMs?: number;
  now?: () => number;
  /** Counts tag resolutions by outcome (fresh/revalidated/stale/pinned/not_found/failed). */
  metrics?: MirrorMetrics;
}

/**
 * Manifests by digest are immutable: cached forever. Tags are mutable: served from cache
 * within their TTL, then revalidated (one coalesced request per tag), and served stale
 * when every source fails, so an upstream outage does not stop pulls of known images.
 */
export class ManifestResolver {
  readonly #store: ContentStore;
  readonly #sources: ManifestSource[];
  readonly #lastResort: ManifestSource[];
  readonly #logger: Logger;
  readonly #policy: (locator: ManifestLocator, tag: string) => TagPolicy;
  readonly #timeoutMs: number;
  readonly #now: () => number;
  readonly #metrics: MirrorMetrics | undefined;
  readonly #tagFlights = new SingleFlight<ResolvedManifest>();
  readonly #digestFlights = new SingleFlight<ResolvedManifest>();

  constructor(opts: ManifestResolverOptions) {
    this.#store = opts.store;
    this.#sources = opts.sources;
    this.#lastResort = opts.lastResortTagSources ?? [];
    this.#logger = opts.logger;
    this.#policy = opts.tagPolicy;
    this.#timeoutMs = opts.sourceTimeoutMs ?? 15_000;
    this.#now = opts.now ?? Date.now;
    this.#metrics = opts.metrics;
  }

  static tagKey(locator: ManifestLocator, tag: string): string {
    return `${locator.registry.host}/${locator.repository}:${tag}`;
  }

  async byTag(locator: ManifestLocator, tag: string): Promise<ResolvedManifest> {
    const key = ManifestResolver.tagKey(locator, tag);
    const policy = this.#policy(locator, tag);
    const count = (outcome: string): void => this.#metrics?.tagResolutions.inc({ outcome });
    if (policy.pinned) {
      count('pinned');
      return this.byDigest(locator, policy.pinned);
    }
    const cached = await this.#store.getTag(key);
    if (cached && this.#now() - cached.validatedAt < policy.ttlMs && this.#store.has(cached.digest)) {
      if (this.#now() - (cached.lastPulledAt ?? 0) > LAST_PULLED_RESOLUTION_MS) {
        await this.#store.putTag(key, { ...cached, lastPulledAt: this.#now() });
      }
      count('fresh');
      return this.#fromStore(cached.digest, 'local');
    }
    try {
      const manifest = await this.#tagFlights.run(key, () => this.#revalidate(locator, tag, key, cached, policy));
      count(manifest.staleAgeMs === undefined ? 'revalidated' : 'stale');
      return manifest;
    } catch (err) {
      count(err instanceof OciError && err.status === 404 ? 'not_found' : 'failed');
      throw err;
    }
  }

  /** Asks the sources now, whatever the TTL says (used by `refresh`). */
  async refreshTag(locator: ManifestLocator, tag: string): Promise<ResolvedManifest> {
    const key = ManifestResolver.tagKey(locator, tag);
    const cached = await this.#store.getTag(key);
    return this.#tagFlights.run(key, () => this.#revalidate(locator, tag, key, cached, { ttlMs: 0, maxStaleMs: 0 }));
  }

  async byDigest(locator: ManifestLocator, digest: Digest): Promise<ResolvedManifest> {
    if (this.#store.has(digest)) return this.#fromStore(digest, 'local');
    return this.#digestFlights.run(digest, () => this.#fetchByDigest(locator, digest));
  }

  async #revalidate(locator: ManifestLocator, tag: string, key: string, cached: TagRecord | undefined, policy: TagPolicy): Promise<ResolvedManifest> {
    let lastError: unknown;
    let notFound = false;
    for (const source of this.#sources) {
      if (!source.resolveTag) continue;
      let resolution: TagResolution | undefined;
      let manifest: ResolvedManifest;
      try {
        resolution = await source.resolveTag(locator, tag, AbortSignal.timeout(this.#timeoutMs));
        if (!resolution) {
          notFound = true;
          continue;
        }
        manifest = resolution.body
          ? await this.#storeManifest(resolution.digest, resolution.body, resolution.mediaType, source.name)
          : await this.byDigest(locator, resolution.digest);
      } catch (err) {
        lastError = err;
        this.#logger.warn({ registry: locator.registry.host, repository: locator.repository, tag, source: source.name, err: (err as Error).message }, 'tag resolution failed at source');
        continue;
      }
      const validatedAt = this.#now() - (resolution.ageMs ?? 0);
      try {
        await this.#store.putTag(key, { digest: manifest.digest, mediaType: manifest.mediaType, size: manifest.body.length, validatedAt, lastPulledAt: this.#now() });
      } catch (err) {
        if (!isNoSpaceError(err)) throw err;
        this.#logger.warn({ tag: key, err: (err as Error).message }, 'disk full: tag resolved without caching it');
      }
      if (cached && cached.digest !== manifest.digest) {
        this.#logger.info({ tag: key, from: cached.digest, to: manifest.digest, source: source.name }, 'tag moved');
      }
      return manifest;
    }
    if (notFound && lastError === undefined) {
      throw new OciError(404, 'MANIFEST_UNKNOWN', `manifest unknown: ${key}`);
    }
    const age = cached ? this.#now() - cached.validatedAt : undefined;
    if (cached && age !== undefined && age <= policy.maxStaleMs && this.#store.has(cached.digest)) {
      this.#logger.warn({ tag: key, digest: cached.digest, ageMs: age, err: (lastError as Error | undefined)?.message }, 'serving stale tag: every source failed');
      return { ...(await this.#fromStore(cached.digest, 'local')), staleAgeMs: age };
    }
    const lastResort = await this.#askLastResort(locator, tag, key, policy);
    if (lastResort) return lastResort;
    throw unavailable(`manifest ${key}`, lastError);
  }

  /** Every source and our own cache failed: ask peers what they last saw (offline sites). */
  async #askLastResort(locator: ManifestLocator, tag: string, key: string, policy: TagPolicy): Promise<ResolvedManifest | undefined> {
    for (const source of this.#lastResort) {
      try {
        const resolution = await source.resolveTag?.(locator, tag, AbortSignal.timeout(this.#timeoutMs));
        if (!resolution) continue;
        const ageMs = resolution.ageMs ?? 0;
        if (ageMs > policy.maxStaleMs) continue;
        const manifest = await this.byDigest(locator, resolution.digest);
        this.#logger.warn({ tag: key, digest: manifest.digest, ageMs, source: source.name }, 'serving tag as a peer last saw it: every source failed');
        return { ...manifest, staleAgeMs: ageMs };
      } catch (err) {
        this.#logger.debug({ tag: key, source: source.name, err: (err as Error).message }, 'last-resort tag resolution failed');
      }
    }
    return undefined;
  }

  async #fetchByDigest(locator: ManifestLocator, digest: Digest): Promise<ResolvedManifest> {
    let lastError: unknown;
    for (const source of this.#sources) {
      try {
        const content = await source.fetch(locator, digest, AbortSignal.timeout(this.#timeoutMs));
        if (!content) continue;
        return await this.#storeManifest(digest, content.body, content.mediaType, source.name);
      } catch (err) {
        lastError = err;
        this.#logger.warn({ registry: locator.registry.host, repository: locator.repository, digest, source: source.name, err: (err as Error).message }, 'manifest fetch failed at source');
      }
    }
    if (lastError === undefined) throw new OciError(404, 'MANIFEST_UNKNOWN', `manifest unknown: ${digest}`);
    throw unavailable(`manifest ${digest}`, lastError);
  }

  async #storeManifest(digest: Digest, body: Buffer, mediaType: string, source: SourceName): Promise<ResolvedManifest> {
    const actual = sha256Digest(body);
    if (actual !== digest) {
      throw new Error(`manifest from ${source} does not match its digest: expected ${digest}, got ${actual}`);
    }
    try {
      await this.#store.putBuffer(digest, body, { kind: 'manifest', mediaType });
    } catch (err) {
      // Verified above: with the disk full it is still served, only not cached.
      if (!isNoSpaceError(err)) throw err;
      this.#logger.warn({ digest, err: (err as Error).message }, 'disk full: manifest served without caching it');
    }
    return { digest, mediaType, body, source };
  }

  async #fromStore(digest: Digest, source: SourceName): Promise<ResolvedManifest> {
    const body = await this.#store.readAll(digest);
    const info = this.#store.stat(digest);
    const mediaType = info?.mediaType ?? sniffManifestMediaType(body) ?? 'application/vnd.oci.image.manifest.v1+json';
    return { digest, mediaType, body, source };
  }
}

function unavailable(what: string, err: unknown): OciError {
  if (err instanceof UpstreamError && err.kind === 'rate-limited') {
    const headers: Record<string, string> = err.retryAfterMs !== undefined ? { 'retry-after': String(Math.ceil(err.retryAfterMs / 1000)) } : {};
    return new OciError(429, 'TOOMANYREQUESTS', `upstream ${err.registry} is rate limiting`, undefined, headers);
  }
  // A prompt 404 lets containerd fall back to its next host.
  return new OciError(404, 'MANIFEST_UNKNOWN', `${what} unavailable: ${err instanceof Error ? err.message : 'no source answered'}`);
}
