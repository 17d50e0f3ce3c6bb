import { createHash } from 'node:crypto';
import type { PeerId } from '@libp2p/interface';
import { CID } from 'multiformats/cid';
import * as Digests from 'multiformats/hashes/digest';
import { digestHex, type Digest, type Logger, type MirrorMetrics, type PeerNode } from '@peerpull/common';

const RAW_CODEC = 0x55;
const SHA2_256 = 0x12;
const PROVIDE_TIMEOUT_MS = 15_000;
/** After the first provider turns up, how long to keep collecting more. */
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
  readonly #provided = new Set<string>();
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

  #provideKey(id: string, cid: CID): void {
    if (this.#provided.has(id)) return;
    this.#provided.add(id);
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

  /** Up to `max` providers other than this node, found within `budgetMs`. */
  async findProviders(digest: Digest, budgetMs: number, max = 8, signal?: AbortSignal): Promise<PeerId[]> {
    return this.findProvidersOf(digestToCid(digest), budgetMs, max, signal);
  }

  async findProvidersOf(cid: CID, budgetMs: number, max = 8, signal?: AbortSignal): Promise<PeerId[]> {
    const lookupStarted = performance.now();
    const self = this.#node.peerId;
    const found: PeerId[] = [];
    const seen = new Set<string>();
    const deadline = AbortSignal.timeout(budgetMs);
    // Once one provider is known, wait only briefly for others: a lookup must not cost the whole budget.
    const enough = new AbortController();
    let grace: NodeJS.Timeout | undefined;
    const combined = AbortSignal.any([deadline, enough.signal, ...(signal ? [signal] : [])]);
    try {
      for await (const provider of this.#node.libp2p.contentRouting.findProviders(cid, { signal: combined })) {
        const id = provider.id.toString();
        if (provider.id.equals(self) || seen.has(id)) continue;
        seen.add(id);
        if (provider.multiaddrs.length) await this.#node.libp2p.peerStore.merge(provider.id, { multiaddrs: provider.multiaddrs }).catch(() => undefined);
        found.push(provider.id);
        if (found.length >= max) break;
        grace ??= setTimeout(() => enough.abort(), MORE_PROVIDERS_GRACE_MS);
      }
    } catch (err) {
      if (!combined.aborted) this.#logger.debug({ key: cid.toString(), err: (err as Error).message }, 'provider lookup failed');
    } finally {
      clearTimeout(grace);
    }
    this.#metrics?.peerLookupSeconds.observe({ found: found.length > 0 ? 'true' : 'false' }, (performance.now() - lookupStarted) / 1000);
    return found;
  }
}
