import {
  ManifestResolver,
  OciError,
  formatImageReference,
  formatPlatform,
  imagePlatforms,
  parseImageReference,
  parsePlatform,
  type BlobResolver,
  type ContentStore,
  type Digest,
  type FetchAttempt,
  type ImageBlob,
  type ImagePlatform,
  type Platform,
  type PullEvent,
  type RegistryAllowlist,
  type UpstreamRegistry,
} from '@peerpull/common';
import type { DaemonPeer } from './daemon-peer.ts';
import type { PullHistory } from './pull-history.ts';
import type { SeedClient } from './seed-client.ts';

export interface ExplainLayer {
  digest: Digest;
  size: number;
  mediaType: string;
  kind: 'config' | 'layer';
  /** Complete in this node's store. */
  local: boolean;
  /** Being fetched right now: from which source, how far. */
  fetching?: { source: string; written: number };
  /** Peers that provide it in the DHT (found within the lookup budget); null when P2P is off. */
  peers: { id: string; quarantined: boolean }[] | null;
  /** The seed the digest maps to: has it stored, would fetch it from upstream, is unreachable; null without a seed; absent when not asked (the layer is local). */
  seed?: { url: string; state: 'stored' | 'upstream' | 'not-found' | 'unreachable'; detail?: string } | null;
  /** Where a pull would get it now. */
  where: 'local' | 'peers' | 'seed' | 'upstream';
  /** The last client pull of it on this node (since the daemon started). */
  lastPull?: Pick<PullEvent, 'time' | 'source' | 'bytes' | 'ms' | 'client' | 'status'>;
  /** The last fetch of it into the store: what each source said. */
  lastFetch?: { time: number; ok: boolean; source: string; seconds: number; bytesBySource: Record<string, number>; attempts: FetchAttempt[] };
}

export interface ExplainReport {
  image: string;
  /** The digest the reference resolved to (the index's, for a multi-platform image). */
  digest: Digest;
  /** How the reference was resolved: this node's cached tag, or asking the sources (manifest only). */
  resolvedBy: 'cache' | 'sources';
  platform?: string;
  platforms: string[];
  manifestDigest: Digest;
  layers: ExplainLayer[];
  totalBytes: number;
  localBytes: number;
  p2p: boolean;
  seeds: number;
}

export interface ExplainerOptions {
  store: ContentStore;
  manifests: ManifestResolver;
  blobs: BlobResolver;
  allowlist: RegistryAllowlist;
  defaultRegistry: string;
  peer: DaemonPeer | undefined;
  seeds: SeedClient | undefined;
  history: PullHistory;
  /** DHT lookup budget per layer. */
  lookupBudgetMs?: number;
}

const CONCURRENCY = 4;

/**
 * `peerpull explain <image>`: for each layer of an image, where it is (this node, which
 * peers, the seed, or only upstream) and where the last pull got it from and why. Fetches
 * no layer: at most the manifest, when this node has never seen the image.
 */
export class Explainer {
  readonly #opts: ExplainerOptions;

  constructor(opts: ExplainerOptions) {
    this.#opts = opts;
  }

  async explain(imageText: string, platformText?: string): Promise<ExplainReport> {
    let ref;
    let wanted: Platform | undefined;
    try {
      ref = parseImageReference(imageText, this.#opts.defaultRegistry);
      wanted = platformText ? parsePlatform(platformText) : undefined;
    } catch (err) {
      throw new OciError(400, 'UNSUPPORTED', (err as Error).message);
    }
    const registry = this.#opts.allowlist.lookup(ref.registry);
    if (!registry) throw new OciError(400, 'UNSUPPORTED', `registry ${ref.registry} is not in this node's allowlist`);
    const locator = { registry, repository: ref.repository };

    let digest: Digest;
    let mediaType: string;
    let resolvedBy: ExplainReport['resolvedBy'] = 'cache';
    const cachedTag = ref.tag && !ref.digest ? await this.#opts.store.getTag(ManifestResolver.tagKey(locator, ref.tag)) : undefined;
    if (cachedTag && this.#opts.store.has(cachedTag.digest)) {
      digest = cachedTag.digest;
      mediaType = cachedTag.mediaType;
    } else {
      resolvedBy = ref.digest && this.#opts.store.has(ref.digest) ? 'cache' : 'sources';
      const manifest = ref.digest ? await this.#opts.manifests.byDigest(locator, ref.digest) : await this.#opts.manifests.byTag(locator, ref.tag as string);
      digest = manifest.digest;
      mediaType = manifest.mediaType;
    }

    let platforms = await imagePlatforms(this.#opts.store, digest, mediaType);
    const names = platforms.map((p) => p.platform).filter((p): p is string => p !== undefined);
    let chosen: ImagePlatform | undefined;
    if (names.length > 0) {
      const want = wanted ?? nodePlatform();
      chosen = platforms.find((p) => p.platform && platformMatchesText(want, p.platform));
      if (!chosen) throw new OciError(404, 'MANIFEST_UNKNOWN', `${formatImageReference(ref)} has no ${formatPlatform(want)} image (it has ${names.join(', ')})`);
      if (!chosen.present) {
        // The platform manifest is needed to know the layers: fetch it (a few KB), never a layer.
        await this.#opts.manifests.byDigest(locator, chosen.digest);
        platforms = await imagePlatforms(this.#opts.store, digest, mediaType);
        chosen = platforms.find((p) => p.digest === chosen?.digest);
      }
    } else {
      chosen = platforms[0];
    }
    if (!chosen) throw new OciError(404, 'MANIFEST_UNKNOWN', `cannot read the manifest of ${formatImageReference(ref)}`);

    const layers = await mapLimit(chosen.blobs, CONCURRENCY, (blob) => this.#layer(registry, ref.repository, blob));
    const report: ExplainReport = {
      image: formatImageReference(ref),
      digest,
      resolvedBy,
      platforms: names,
      manifestDigest: chosen.digest,
      layers,
      totalBytes: layers.reduce((n, l) => n + l.size, 0),
      localBytes: layers.filter((l) => l.local).reduce((n, l) => n + l.size, 0),
      p2p: this.#opts.peer !== undefined,
      seeds: this.#opts.seeds?.size ?? 0,
    };
    if (chosen.platform) report.platform = chosen.platform;
    return report;
  }

  async #layer(registry: UpstreamRegistry, repository: string, blob: ImageBlob): Promise<ExplainLayer> {
    const local = this.#opts.store.has(blob.digest);
    const [inflight, peers, seed] = await Promise.all([
      local ? undefined : this.#opts.blobs.localOrInflight(blob.digest),
      this.#peers(blob.digest),
      local ? Promise.resolve(undefined) : this.#seed(registry, repository, blob.digest),
    ]);
    const where: ExplainLayer['where'] = local ? 'local' : peers && peers.some((p) => !p.quarantined) ? 'peers' : seed?.state === 'stored' ? 'seed' : 'upstream';
    const layer: ExplainLayer = { digest: blob.digest, size: blob.size, mediaType: blob.mediaType, kind: blob.kind, local, peers, where };
    if (seed !== undefined) layer.seed = seed;
    if (inflight && inflight.source !== 'local') layer.fetching = { source: inflight.source, written: inflight.available() };
    const history = this.#opts.history.get(blob.digest);
    if (history?.lastPull) {
      const { time, source, bytes, ms, client, status } = history.lastPull;
      layer.lastPull = { time, source, bytes, ms, status, ...(client ? { client } : {}) };
    }
    if (history?.lastFetch) {
      const t = history.lastFetch;
      layer.lastFetch = { time: t.startedAt, ok: t.ok, source: t.source, seconds: t.seconds, bytesBySource: t.bytesBySource, attempts: t.attempts };
    }
    return layer;
  }

  async #peers(digest: Digest): Promise<ExplainLayer['peers']> {
    const peer = this.#opts.peer;
    if (!peer) return null;
    const quarantined = new Set(peer.blobSource.quarantinedPeers());
    const found = await peer.routing.findProviders(digest, this.#opts.lookupBudgetMs ?? 1_500, 8);
    return found.map((id) => ({ id: id.toString(), quarantined: quarantined.has(id.toString()) }));
  }

  /** Asks the digest's seed with a HEAD: `x-peerpull-source: local` means it has it stored. */
  async #seed(registry: UpstreamRegistry, repository: string, digest: Digest): Promise<NonNullable<ExplainLayer['seed']> | null> {
    const client = this.#opts.seeds;
    if (!client) return null;
    const url = client.order(digest)[0];
    if (!url) return null;
    const seedUrl = url.href.replace(/\/$/, '');
    try {
      const res = await client.request(url, registry, { method: 'HEAD', path: `/v2/${repository}/blobs/${digest}`, signal: AbortSignal.timeout(5_000), wholeRequestDeadline: true });
      await res.body.dump().catch(() => undefined);
      if (res.statusCode === 404) return { url: seedUrl, state: 'not-found' };
      if (res.statusCode !== 200) return { url: seedUrl, state: 'unreachable', detail: `HTTP ${res.statusCode}` };
      return { url: seedUrl, state: res.headers['x-peerpull-source'] === 'local' ? 'stored' : 'upstream' };
    } catch (err) {
      return { url: seedUrl, state: 'unreachable', detail: (err as Error).message };
    }
  }
}

/** The platform this node runs (what containerd would pick from an index). */
export function nodePlatform(): Platform {
  const arch: Record<string, string> = { x64: 'amd64', arm64: 'arm64', arm: 'arm', ia32: '386', ppc64: 'ppc64le', s390x: 's390x' };
  return { os: 'linux', architecture: arch[process.arch] ?? process.arch };
}

function platformMatchesText(want: Platform, have: string): boolean {
  const p = parsePlatform(have);
  return want.os === p.os && want.architecture === p.architecture && (!want.variant || want.variant === p.variant);
}

async function mapLimit<T, R>(items: T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        out[i] = await fn(items[i] as T);
      }
    }),
  );
  return out;
}
