import { setTimeout as sleep } from 'node:timers/promises';
import { NotFoundError, type AbortOptions } from '@libp2p/interface';
import { BaseDatastore } from 'datastore-core/base';
import { Key, type KeyQuery, type Pair, type Query } from 'interface-datastore';

/** How far ahead of its pace a provider may be before it waits: a short burst, so a flood does not arrive as one CPU spike. */
const BURST_MS = 100;

/** Where kad-dht keeps provider records: `<prefix>/<multihash, base32>/<provider peer id>`. */
export const PROVIDER_RECORD_PREFIX = '/dht/provider';

export interface ProviderRecordLimits {
  /** Records one provider (a peer other than this node) may hold here. */
  perPeer: number;
  /** Records of all other providers together. */
  total: number;
  /** Records (new or refreshed) taken from one provider per second; faster senders are made to wait. */
  perPeerPerSecond: number;
  /** Called for each record refused, with the provider that announced it. */
  onRefused?: (peer: string, reason: 'per-peer' | 'total') => void;
}

/**
 * libp2p's datastore, in memory (as libp2p's default), with a bound on DHT provider records: any
 * cluster member may send ADD_PROVIDER for as many keys as it likes, and kad-dht stores every one
 * (it only prunes records older than their validity, hourly). Past a provider's own cap, or the
 * total, new records are dropped; refreshing a record already held is always accepted, and this
 * node's own records are never capped (they are bounded by its store).
 *
 * Each provider's records are also paced to `perPeerPerSecond` (after a burst of BURST_MS worth):
 * storing one waits for its turn, which holds up kad-dht's reading of that peer's stream, and so
 * bounds the CPU a flood of ADD_PROVIDER can take. What the sender writes meanwhile waits in
 * libp2p's buffer for the stream, which resets the stream past 4 MiB.
 *
 * Provider records are also indexed by key, so a provider lookup reads that key's records instead
 * of scanning every record held (the default memory store filters all entries by prefix).
 */
export class BoundedDatastore extends BaseDatastore {
  readonly #limits: ProviderRecordLimits;
  readonly #other = new Map<string, Uint8Array>();
  /** `<prefix>/<multihash>` → provider peer id → record. */
  readonly #providers = new Map<string, Map<string, Uint8Array>>();
  readonly #perPeer = new Map<string, number>();
  /** Provider → when its next record may be taken without waiting (GCRA), in ms since start. */
  readonly #nextTurn = new Map<string, number>();
  #othersTotal = 0;
  #selfTotal = 0;
  #refused = 0;
  /** This node's peer id: its own records are not capped. Set once the node exists. */
  self: string | undefined;

  constructor(limits: ProviderRecordLimits) {
    super();
    this.#limits = limits;
  }

  /** Provider records held, this node's own included. */
  get providerRecords(): number {
    return this.#othersTotal + this.#selfTotal;
  }

  /** Provider records refused since start. */
  get refusedRecords(): number {
    return this.#refused;
  }

  override async put(key: Key, val: Uint8Array, options?: AbortOptions): Promise<Key> {
    const record = parseProviderKey(key.toString());
    if (!record) {
      this.#other.set(key.toString(), val);
      return key;
    }
    if (record.peer !== this.self) await this.#turn(record.peer, options?.signal);
    let byPeer = this.#providers.get(record.cidKey);
    if (byPeer?.has(record.peer)) {
      byPeer.set(record.peer, val);
      return key;
    }
    const isSelf = record.peer === this.self;
    if (!isSelf) {
      const held = this.#perPeer.get(record.peer) ?? 0;
      const reason = held >= this.#limits.perPeer ? 'per-peer' : this.#othersTotal >= this.#limits.total ? 'total' : undefined;
      if (reason) {
        this.#refused++;
        this.#limits.onRefused?.(record.peer, reason);
        return key; // kad-dht sends no answer to ADD_PROVIDER: dropping is invisible to the sender
      }
      this.#perPeer.set(record.peer, held + 1);
      this.#othersTotal++;
    } else {
      this.#selfTotal++;
    }
    if (!byPeer) this.#providers.set(record.cidKey, (byPeer = new Map()));
    byPeer.set(record.peer, val);
    return key;
  }

  /** Waits until `peer` may store another record: one per 1/rate s, after a burst of BURST_MS worth. */
  async #turn(peer: string, signal: AbortSignal | undefined): Promise<void> {
    const interval = 1000 / this.#limits.perPeerPerSecond;
    const now = performance.now();
    if (this.#nextTurn.size > 10_000) {
      for (const [p, at] of this.#nextTurn) if (at < now) this.#nextTurn.delete(p); // idle senders: forget them
    }
    const at = Math.max(this.#nextTurn.get(peer) ?? now, now);
    this.#nextTurn.set(peer, at + interval);
    const wait = at - now - BURST_MS; // up to BURST_MS ahead is the burst
    if (wait > 0) await sleep(wait, undefined, signal ? { signal } : {});
  }

  override get(key: Key): Uint8Array {
    const s = key.toString();
    const record = parseProviderKey(s);
    const value = record ? this.#providers.get(record.cidKey)?.get(record.peer) : this.#other.get(s);
    if (value === undefined) throw new NotFoundError();
    return value;
  }

  override has(key: Key): boolean {
    const s = key.toString();
    const record = parseProviderKey(s);
    return record ? (this.#providers.get(record.cidKey)?.has(record.peer) ?? false) : this.#other.has(s);
  }

  override delete(key: Key): void {
    const s = key.toString();
    const record = parseProviderKey(s);
    if (!record) {
      this.#other.delete(s);
      return;
    }
    const byPeer = this.#providers.get(record.cidKey);
    if (!byPeer?.delete(record.peer)) return;
    if (byPeer.size === 0) this.#providers.delete(record.cidKey);
    if (record.peer === this.self) {
      this.#selfTotal--;
      return;
    }
    this.#othersTotal--;
    const held = (this.#perPeer.get(record.peer) ?? 1) - 1;
    if (held > 0) this.#perPeer.set(record.peer, held);
    else this.#perPeer.delete(record.peer);
  }

  override *_all(q: Query): Generator<Pair> {
    for (const [key, value] of this.#entries(q.prefix)) yield { key: new Key(key), value };
  }

  override *_allKeys(q: KeyQuery): Generator<Key> {
    for (const [key] of this.#entries(q.prefix)) yield new Key(key);
  }

  /** Entries that may match `prefix` (the base class then filters them exactly). */
  *#entries(prefix: string | undefined): Generator<[string, Uint8Array]> {
    // One key's providers, `<prefix>/<multihash>` (kad-dht's getProviders): read from the index.
    const rest = prefix?.startsWith(`${PROVIDER_RECORD_PREFIX}/`) ? prefix.slice(PROVIDER_RECORD_PREFIX.length + 1) : '';
    if (rest.length > 0 && !rest.includes('/')) {
      for (const [peer, value] of this.#providers.get(prefix as string) ?? []) yield [`${prefix}/${peer}`, value];
      return;
    }
    yield* this.#other;
    if (prefix === undefined || prefix.startsWith(PROVIDER_RECORD_PREFIX) || PROVIDER_RECORD_PREFIX.startsWith(prefix)) {
      for (const [cidKey, byPeer] of this.#providers) for (const [peer, value] of byPeer) yield [`${cidKey}/${peer}`, value];
    }
  }
}

function parseProviderKey(key: string): { cidKey: string; peer: string } | undefined {
  if (!key.startsWith(`${PROVIDER_RECORD_PREFIX}/`)) return undefined;
  const slash = key.lastIndexOf('/');
  if (slash <= PROVIDER_RECORD_PREFIX.length) return undefined; // `<prefix>/<multihash>` alone: not a record
  return { cidKey: key.slice(0, slash), peer: key.slice(slash + 1) };
}
