import type { PeerId } from '@libp2p/interface';
import {
  SourceBusyError,
  type BlobLocator,
  type BlobSource,
  type Digest,
  type Logger,
  type OpenOptions,
  type SourceBody,
} from '@peerpull/common';
import type { PeerRouting } from './peer-routing.ts';
import { isPeerStall, type PeerTransfer, type PeerTransportName } from './peer-transfer.ts';

export interface PeerBlobSourceOptions {
  /** How bytes move: libp2p streams, or the HTTP data plane. */
  transfer: PeerTransfer;
  routing: PeerRouting;
  logger: Logger;
  /** Provider lookup budget; a miss moves on to the seed. */
  lookupBudgetMs: number;
  /** Budget of one more lookup when the seed and the upstream failed too, before the client's 404 (0: none). */
  lastResortLookupMs: number;
  /** Deadline to open a stream to a peer and get its answer. */
  connectTimeoutMs: number;
  /** A peer that sends nothing for this long is dropped and the transfer resumes elsewhere. */
  idleTimeoutMs: number;
  /** How long a peer that sent bad bytes is not asked again. */
  quarantineMs: number;
  onTransfer?: (outcome: 'ok' | 'busy' | 'stalled' | 'failed' | 'corrupt', transport: PeerTransportName) => void;
}

/**
 * Blobs from other nodes, found through the DHT. Prefers providers not recently busy,
 * skips quarantined ones (bad bytes) and recently failed ones (stalled, vanished).
 */
export class PeerBlobSource implements BlobSource {
  readonly name = 'peer' as const;
  readonly #opts: PeerBlobSourceOptions;
  readonly #quarantined = new Map<string, number>();
  readonly #failed = new Map<string, number>();
  readonly #busy = new Map<string, number>();
  /** Who sent us bytes of a digest, to blame if they do not verify (while its fetch runs). */
  readonly #servedBy = new Map<Digest, Set<string>>();
  /** The transport each peer last served over, to count a corrupt blob under it. */
  readonly #transportOf = new Map<string, PeerTransportName>();

  readonly searchesHarder: boolean;

  constructor(opts: PeerBlobSourceOptions) {
    this.#opts = opts;
    // An offline site: a provider the quick lookup missed (a busy DHT, a node that just announced) is the only way.
    this.searchesHarder = opts.lastResortLookupMs > opts.lookupBudgetMs;
  }

  quarantinedPeers(): string[] {
    const now = Date.now();
    return [...this.#quarantined].filter(([, until]) => until > now).map(([peer]) => peer);
  }

  async open(locator: BlobLocator, offset: number, signal: AbortSignal, opts: OpenOptions = {}): Promise<SourceBody | undefined> {
    const tried = new Set<string>();
    let sawBusy = false;
    // Peers the seed named as receiving the blob: no lookup needed, and they are the shallowest providers.
    if (opts.hints?.length) {
      const hinted = this.#usable(await this.#opts.routing.knownPeers(opts.hints));
      if (hinted.length) {
        const got = await this.#tryPeers(hinted, locator, offset, signal, opts, 'named by the seed', tried);
        if ('body' in got) return got;
        sawBusy ||= got.busy;
      }
    }
    const lookupStarted = performance.now();
    const budgetMs = opts.lastResort ? this.#opts.lastResortLookupMs : this.#opts.lookupBudgetMs;
    const providers = (await this.#candidates(locator.digest, budgetMs, signal)).filter((p) => !tried.has(p.toString()));
    const lookupMs = Math.round(performance.now() - lookupStarted);
    if (providers.length === 0 && tried.size === 0) opts?.note?.(`no provider found in ${lookupMs} ms${opts.lastResort ? ' (last resort)' : ''}`);
    const got = await this.#tryPeers(providers, locator, offset, signal, opts, `found in ${lookupMs} ms`, tried);
    if ('body' in got) return got;
    if (sawBusy || got.busy) throw new SourceBusyError('every provider is busy');
    return undefined;
  }

  /** Asks each peer in turn; the first that serves wins. */
  async #tryPeers(
    peers: PeerId[],
    locator: BlobLocator,
    offset: number,
    signal: AbortSignal,
    opts: OpenOptions,
    how: string,
    tried: Set<string>,
  ): Promise<SourceBody | { busy: boolean }> {
    let sawBusy = false;
    for (const peer of peers) {
      const id = peer.toString();
      tried.add(id);
      try {
        const answer = await this.#opts.transfer.open(peer, { digest: locator.digest, offset, ...(opts.insist ? { insist: true } : {}) }, {
          signal,
          connectTimeoutMs: this.#opts.connectTimeoutMs,
          idleTimeoutMs: this.#opts.idleTimeoutMs,
        });
        if (!('header' in answer)) {
          if (answer.status === 'busy') {
            sawBusy = true;
            this.#busy.set(id, Date.now());
            this.#opts.onTransfer?.('busy', answer.transport);
          }
          opts?.note?.(`peer ${shortPeer(id)} ${answer.status}`);
          continue;
        }
        let served = this.#servedBy.get(locator.digest);
        if (!served) this.#servedBy.set(locator.digest, (served = new Set()));
        served.add(id);
        const transport = answer.transport;
        this.#transportOf.set(id, transport);
        answer.body.once('error', (err: Error) => {
          this.#failed.set(id, Date.now());
          this.#opts.onTransfer?.(isPeerStall(err) ? 'stalled' : 'failed', transport);
        });
        answer.body.once('end', () => this.#opts.onTransfer?.('ok', transport));
        this.#opts.logger.debug({ digest: locator.digest, peer: id, transport, offset, complete: answer.header.complete }, 'fetching from peer');
        opts?.note?.(`from peer ${shortPeer(id)} (${how}${transport === 'http' ? ', over HTTP' : ''}${answer.header.complete ? '' : ', still downloading it'})`);
        return { size: answer.header.size ?? undefined, offset, body: answer.body };
      } catch (err) {
        this.#failed.set(id, Date.now());
        this.#opts.onTransfer?.('failed', this.#transportOf.get(id) ?? 'libp2p');
        opts?.note?.(`peer ${shortPeer(id)} failed: ${(err as Error).message}`);
        this.#opts.logger.debug({ digest: locator.digest, peer: id, err: (err as Error).message }, 'peer request failed');
      }
    }
    return { busy: sawBusy };
  }

  async size(locator: BlobLocator, signal: AbortSignal): Promise<number | undefined> {
    for (const peer of await this.#candidates(locator.digest, this.#opts.lookupBudgetMs, signal)) {
      try {
        const answer = await this.#opts.transfer.open(peer, { digest: locator.digest, offset: 0, head: true }, {
          signal,
          connectTimeoutMs: this.#opts.connectTimeoutMs,
          idleTimeoutMs: this.#opts.idleTimeoutMs,
        });
        if ('header' in answer && answer.header.size !== null) return answer.header.size;
      } catch {
        this.#failed.set(peer.toString(), Date.now());
      }
    }
    return undefined;
  }

  reportCorrupt(locator: BlobLocator): void {
    const until = Date.now() + this.#opts.quarantineMs;
    for (const peer of this.#servedBy.get(locator.digest) ?? []) {
      this.#quarantined.set(peer, until);
      this.#opts.onTransfer?.('corrupt', this.#transportOf.get(peer) ?? 'libp2p');
      this.#opts.logger.warn({ digest: locator.digest, peer, quarantineMs: this.#opts.quarantineMs }, 'peer sent bytes that did not verify: quarantined');
    }
    this.#servedBy.delete(locator.digest);
  }

  /** Who served a blob matters only until it verified or failed: forgetting it keeps the map to the fetches running. */
  fetchEnded(locator: BlobLocator): void {
    this.#servedBy.delete(locator.digest);
  }

  async #candidates(digest: Digest, budgetMs: number, signal: AbortSignal): Promise<PeerId[]> {
    const providers = this.#usable(await this.#opts.routing.findProviders(digest, budgetMs, 8, signal));
    // Not-recently-busy providers first, so a burst spreads out instead of piling on one node.
    const now = Date.now();
    const busyRecently = (p: PeerId): number => (now - (this.#busy.get(p.toString()) ?? 0) < 2_000 ? 1 : 0);
    return providers.sort((a, b) => busyRecently(a) - busyRecently(b));
  }

  /** Leaves out quarantined peers (bad bytes) and recently failed ones (stalled, vanished). */
  #usable(peers: PeerId[]): PeerId[] {
    const now = Date.now();
    return peers.filter((p) => {
      const id = p.toString();
      return (this.#quarantined.get(id) ?? 0) < now && now - (this.#failed.get(id) ?? 0) > 30_000;
    });
  }
}

/** `12D3KooW…ab12cd`: enough to tell peers apart in a one-line explanation. */
export function shortPeer(id: string): string {
  return id.length > 16 ? `${id.slice(0, 8)}…${id.slice(-6)}` : id;
}
