import type { Logger, ManifestLocator, ManifestSource, TagResolution } from '@peerpull/common';
import type { PeerNode } from '@peerpull/common/peer';
import { requestTag } from './blob-protocol.ts';
import { tagToCid, type PeerRouting } from './peer-routing.ts';

/**
 * Tags as other nodes last saw them: the last resort when the seed, the upstream and this
 * node's cache all fail (an offline site where another node pulled the image). The newest
 * answer among a few peers wins; its age bounds it by the max-stale policy.
 */
export class PeerTagSource implements ManifestSource {
  readonly name = 'peer' as const;
  readonly #node: PeerNode;
  readonly #routing: PeerRouting;
  readonly #logger: Logger;
  readonly #lookupBudgetMs: number;

  constructor(opts: { node: PeerNode; routing: PeerRouting; logger: Logger; lookupBudgetMs: number }) {
    this.#node = opts.node;
    this.#routing = opts.routing;
    this.#logger = opts.logger;
    this.#lookupBudgetMs = opts.lookupBudgetMs;
  }

  async resolveTag(locator: ManifestLocator, tag: string, signal: AbortSignal): Promise<TagResolution | undefined> {
    const key = `${locator.registry.host}/${locator.repository}:${tag}`;
    const providers = await this.#routing.findProvidersOf(tagToCid(key), this.#lookupBudgetMs, 3, signal);
    const answers = await Promise.all(
      providers.map((peer) =>
        requestTag(this.#node, peer, key, { signal, timeoutMs: 2_000 }).catch((err: Error) => {
          this.#logger.debug({ peer: peer.toString(), tag: key, err: err.message }, 'peer tag request failed');
          return undefined;
        }),
      ),
    );
    const newest = answers.filter((a) => a !== undefined).sort((a, b) => b.validatedAt - a.validatedAt)[0];
    if (!newest) return undefined;
    return { digest: newest.digest, mediaType: newest.mediaType, size: undefined, ageMs: Math.max(0, Date.now() - newest.validatedAt) };
  }

  async fetch(): Promise<undefined> {
    return undefined;
  }
}
