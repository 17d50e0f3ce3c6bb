import { createHash } from 'node:crypto';
import type { PeerId } from '@libp2p/interface';
import { CID } from 'multiformats/cid';
import * as Digests from 'multiformats/hashes/digest';
import { digestHex, type Digest, type Logger, type MirrorMetrics } from '@peerpull/common';
import type { PeerNode } from '@peerpull/common/peer';

const RAW_CODEC = 0x55;
const SHA2_256 = 0x12;
const PROVIDE_TIMEOUT_MS = 15_000;
/** After the first provider turns up from the network, how long to keep collecting more. */
const MORE_PROVIDERS_GRACE_MS = 20;

/** A blob's DHT key: CIDv1(raw, sha2-256 multihash of the digest's bytes). */
export function digestToCid(digest: Digest): CID {
  return CID.createV1(RAW_CODEC, Digests.create(SHA2_256, Buffer.from(digestHex(digest), 'hex')));
}

/** A tag's DHT key: nodes that cached `registry/repository:tag` provide it. */
export function tagToCid(key: string): CID {
  return CID.createV1(RAW_CODEC, Digests.create(SHA2_256, createHash('sha256').update(`peerpull-tag\0${key}`).digest()));
}

/**
 * Announces what this node holds (or is downloading) in the DHT and finds who holds a
 * digest, within a time budget: a lookup that finds nothing fast lets the pull move on.
 */
export class PeerRouting {
  readonly #node: PeerNode;
  readonly #logger: Logger;
  /** Every key this node announces, by id (a digest or `tag:<key>`). */
  readonly #provided = new Map<string, CID>();
  #reproviding: Promise<void> | undefined;
  readonly #metrics: MirrorMetrics | undefined;

  constructor(node: PeerNode, logger: Logger, metrics?: MirrorMetrics) {
    this.#node = node;
    this.#logger = logger;
    this.#metrics = metrics;
  }

  get providedCount(): number {
    return this.#provided.size;
  }

  isProviding(digest: Digest): boolean {
    return this.#provided.has(digest);
  }


  /** Fire and forget: a provide must never delay a pull. */
  provide(digest: Digest): void {
    this.#provideKey(digest, digestToCid(digest));
  }

  provideTag(key: string): void {
    this.#provideKey(`tag:${key}`, tagToCid(key));
  }

  unprovide(digest: Digest): void {
    if (!this.#provided.delete(digest)) return;
    this.#node.libp2p.contentRouting.cancelReprovide(digestToCid(digest), { signal: AbortSignal.timeout(PROVIDE_TIMEOUT_MS) }).catch(() => undefined);
  }

  /**
   * Announces every key again, a few at a time, in the background: after a network partition
   * heals, the other side's DHT servers hold none of the records made meanwhile.
   */
  reprovideAll(concurrency = 8): Promise<void> {
    this.#reproviding ??= (async () => {
      const keys = [...this.#provided.entries()];
      const started = performance.now();
      let ok = 0;
      for (let i = 0; i < keys.length; i += concurrency) {
        const batch = keys.slice(i, i + concurrency).filter(([id]) => this.#provided.has(id));
        const results = await Promise.allSettled(batch.map(([, cid]) => this.#node.libp2p.contentRouting.provide(cid, { signal: AbortSignal.timeout(PROVIDE_TIMEOUT_MS) })));
        ok += results.filter((r) => r.status === 'fulfilled').length;
      }
      this.#logger.info({ keys: keys.length, ok, ms: Math.round(performance.now() - started) }, 're-provided every key after rejoining peers');
    })().finally(() => (this.#reproviding = undefined));
    return this.#reproviding;
  }

  #provideKey(id: string, cid: CID): void {
    if (this.#provided.has(id)) return;
    this.#provided.set(id, cid);
    const started = performance.now();
    this.#node.libp2p.contentRouting.provide(cid, { signal: AbortSignal.timeout(PROVIDE_TIMEOUT_MS) }).then(
      () => {
        this.#metrics?.peerProvideSeconds.observe({ result: 'ok' }, (performance.now() - started) / 1000);
        this.#logger.debug({ key: id, ms: Math.round(performance.now() - started) }, 'provided');
      },
      (err: Error) => {
        this.#metrics?.peerProvideSeconds.observe({ result: 'failed' }, (performance.now() - started) / 1000);
        this.#logger.debug({ key: id, err: err.message }, 'provide failed (will be re-provided)');
      },
    );
  }

  /**
   * The peers among `ids` (peer id strings, e.g. named by the seed) that this node can dial: connected
   * or in its peer store. Itself and unknown ids are left out; the order of `ids` is kept.
   */
  async knownPeers(ids: readonly string[]): Promise<PeerId[]> {
    const self = this.#node.peerId.toString();
    const known = new Map<string, PeerId>(this.#node.libp2p.getPeers().map((p) => [p.toString(), p]));
    if (ids.some((id) => id !== self && !known.has(id))) {
      for (const peer of await this.#node.libp2p.peerStore.all().catch(() => [])) known.set(peer.id.toString(), peer.id);
    }
    return ids.filter((id) => id !== self).flatMap((id) => known.get(id) ?? []);
  }

  /** Up to `max` providers other than this node, found within `budgetMs`. */
  async findProviders(digest: Digest, budgetMs: number, max = 8, signal?: AbortSignal): Promise<PeerId[]> {
    return this.findProvidersOf(digestToCid(digest), budgetMs, max, signal);
  }

  async findProvidersOf(cid: CID, budgetMs: number, max = 8, signal?: AbortSignal): Promise<PeerId[]> {
    return (await this.lookup(cid, budgetMs, max, signal)).providers;
  }

  /**
   * Up to `max` providers of a key other than this node, found within `budgetMs`, and how the lookup
   * went: when the first provider turned up, and whether this node already held its record
   * (a DHT server keeps the records peers announce to it; then no network round trip is needed).
   */
  async lookup(cid: CID, budgetMs: number, max = 8, signal?: AbortSignal): Promise<ProviderLookup> {
    const lookupStarted = performance.now();
    const self = this.#node.peerId;
    const found: PeerId[] = [];
    const seen = new Set<string>();
    let firstMs: number | null = null;
    let fromLocalRecord = false;
    const deadline = AbortSignal.timeout(budgetMs);
    // Once one provider is known, wait only briefly for others: a lookup must not cost the whole budget.
    const enough = new AbortController();
    let grace: NodeJS.Timeout | undefined;
    const combined = AbortSignal.any([deadline, enough.signal, ...(signal ? [signal] : [])]);
    try {
      // The DHT's own events (not libp2p's content routing): they say which peer answered, so a record held here is told apart.
      outer: for await (const event of this.#node.libp2p.services.dht.findProviders(cid, { signal: combined })) {
        if (event.name !== 'PROVIDER') continue;
        for (const provider of event.providers) {
          const id = provider.id.toString();
          if (provider.id.equals(self) || seen.has(id)) continue;
          seen.add(id);
          if (provider.multiaddrs.length) await this.#node.libp2p.peerStore.merge(provider.id, { multiaddrs: provider.multiaddrs }).catch(() => undefined);
          found.push(provider.id);
          if (firstMs === null) {
            firstMs = performance.now() - lookupStarted;
            fromLocalRecord = event.from.equals(self);
          }
          if (found.length >= max) break outer;
          grace ??= setTimeout(() => enough.abort(), MORE_PROVIDERS_GRACE_MS);
        }
        // Records held here are every provider that announced the key to this node, one of the closest
        // to it: the network would only repeat them, so waiting the grace for it costs 20 ms for nothing.
        if (found.length > 0 && event.from.equals(self)) break;
      }
    } catch (err) {
      if (!combined.aborted) this.#logger.debug({ key: cid.toString(), err: (err as Error).message }, 'provider lookup failed');
    } finally {
      clearTimeout(grace);
    }
    const ms = performance.now() - lookupStarted;
    this.#metrics?.peerLookupSeconds.observe({ found: found.length > 0 ? 'true' : 'false' }, ms / 1000);
    return { providers: found, firstMs, ms, fromLocalRecord, budgetExhausted: deadline.aborted && found.length === 0 };
  }
}

export interface ProviderLookup {
  providers: PeerId[];
  /** Milliseconds until the first provider turned up; null when none did. */
  firstMs: number | null;
  /** Milliseconds the whole lookup took (first provider + the grace for more, or the budget, or until the DHT query ended). */
  ms: number;
  /** The first provider came from a record this node held itself. */
  fromLocalRecord: boolean;
  /** Nothing found and the lookup ran out of budget (rather than the DHT query ending). */
  budgetExhausted: boolean;
}
