import { createHash } from 'node:crypto';
import { Agent, type Dispatcher } from 'undici';
import { PEER_HEADER, type Logger, type MirrorMetrics, type UpstreamRegistry } from '@peerpull/common';

export interface SeedClientOptions {
  seeds: string[];
  logger: Logger;
  metrics: MirrorMetrics;
  /** Deadline to connect to a seed: a seed that is down is detected this fast. */
  timeoutMs: number;
  /**
   * Deadline for a connected seed to answer. A cold blob or a tag revalidation costs the seed its
   * own upstream round trip, so this is longer than the connect deadline: treating a slow seed
   * as down would send every node to the upstream at once, the one thing the seed exists to avoid.
   */
  responseTimeoutMs: number;
  /** A transfer with no bytes for this long is broken off. */
  idleTimeoutMs: number;
  /** How long a failed seed is skipped before it is tried again. */
  cooldownMs?: number;
  /** This daemon can get blobs from peers: the seed may answer "busy" to spread a burst. */
  peerCapable?: boolean;
}

interface SeedState {
  url: URL;
  downUntil: number;
}

/**
 * Talks to the cluster's seeds over their registry API (`?ns=` names the upstream).
 * Each key (a digest or a tag) has a preferred seed by rendezvous hashing, so one blob goes
 * through one seed and is fetched upstream once; a failing seed is skipped for a cooldown
 * and its keys move to the next seed in their order.
 */
export class SeedClient {
  readonly #seeds: SeedState[];
  readonly #dispatcher: Dispatcher;
  readonly #logger: Logger;
  readonly #metrics: MirrorMetrics;
  readonly #responseTimeoutMs: number;
  readonly #cooldownMs: number;
  readonly #peerCapable: boolean;
  /** This node's libp2p peer id, sent with every request: a busy seed names its recipients to the others. */
  #peerId: string | undefined;

  constructor(opts: SeedClientOptions) {
    this.#seeds = opts.seeds.map((s) => ({ url: new URL(s.replace(/\/+$/, '')), downUntil: 0 }));
    for (const seed of this.#seeds) {
      if (seed.url.protocol !== 'http:' && seed.url.protocol !== 'https:') throw new Error(`invalid seed URL ${seed.url.href}: expected http(s)://host:port`);
    }
    this.#logger = opts.logger;
    this.#metrics = opts.metrics;
    this.#responseTimeoutMs = opts.responseTimeoutMs;
    this.#cooldownMs = opts.cooldownMs ?? 5_000;
    this.#peerCapable = opts.peerCapable ?? false;
    this.#dispatcher = new Agent({
      connect: { timeout: opts.timeoutMs },
      headersTimeout: opts.responseTimeoutMs,
      bodyTimeout: opts.idleTimeoutMs,
      keepAliveTimeout: 30_000,
    });
    for (const seed of this.#seeds) this.#metrics.seedUp.set({ seed: seed.url.origin }, 1);
  }

  /** Known once the P2P node started (after this client is built). */
  set peerId(id: string) {
    this.#peerId = id;
  }

  get size(): number {
    return this.#seeds.length;
  }

  /**
   * Seeds to try for `key`, in rendezvous order, leaving out seeds in cooldown: a seed that
   * hangs must not cost every request the seed deadline. Once its cooldown ends it is tried again.
   */
  order(key: string): URL[] {
    const now = Date.now();
    return this.#seeds
      .filter((seed) => seed.downUntil <= now)
      .map((seed) => ({ seed, weight: createHash('sha256').update(`${seed.url.origin}\n${key}`).digest().readBigUInt64BE(0) }))
      .sort((a, b) => (a.weight < b.weight ? 1 : a.weight > b.weight ? -1 : 0))
      .map(({ seed }) => seed.url);
  }

  /** Each seed and whether it is in use (not in cooldown after a failure). */
  states(): { url: string; up: boolean }[] {
    const now = Date.now();
    return this.#seeds.map((s) => ({ url: s.url.href.replace(/\/$/, ''), up: s.downUntil <= now }));
  }

  /** Any seed not in cooldown? */
  available(): boolean {
    const now = Date.now();
    return this.#seeds.some((s) => s.downUntil <= now);
  }

  async request(
    seed: URL,
    registry: UpstreamRegistry,
    opts: { method: 'GET' | 'HEAD'; path: string; headers?: Record<string, string>; signal: AbortSignal; wholeRequestDeadline?: boolean },
  ): Promise<Dispatcher.ResponseData> {
    const signal = opts.wholeRequestDeadline ? AbortSignal.any([opts.signal, AbortSignal.timeout(this.#responseTimeoutMs)]) : opts.signal;
    try {
      const res = await this.#dispatcher.request({
        origin: seed.origin,
        path: `${seed.pathname.replace(/\/$/, '')}${opts.path}?ns=${encodeURIComponent(registry.host)}`,
        method: opts.method,
        headers: { 'user-agent': 'peerpull-daemon', ...(this.#peerCapable ? { 'x-peerpull-p2p': '1' } : {}), ...(this.#peerCapable && this.#peerId ? { [PEER_HEADER]: this.#peerId } : {}), ...opts.headers },
        signal,
      });
      if (res.statusCode >= 500 && res.headers['x-peerpull-busy'] === undefined) this.markDown(seed, `HTTP ${res.statusCode}`);
      else this.#markUp(seed);
      return res;
    } catch (err) {
      if (!opts.signal.aborted) this.markDown(seed, (err as Error).message);
      throw err;
    }
  }

  markDown(seed: URL, why: string): void {
    const state = this.#seeds.find((s) => s.url.origin === seed.origin);
    if (!state) return;
    const wasUp = state.downUntil <= Date.now();
    state.downUntil = Date.now() + this.#cooldownMs;
    this.#metrics.seedUp.set({ seed: seed.origin }, 0);
    if (wasUp) {
      this.#logger.warn({ seed: seed.origin, err: why, cooldownMs: this.#cooldownMs, othersAvailable: this.available() }, this.available() ? 'seed failed; using the next seed' : 'no seed reachable; pulling from upstream directly');
    }
  }

  #markUp(seed: URL): void {
    const state = this.#seeds.find((s) => s.url.origin === seed.origin);
    if (!state || state.downUntil === 0) return;
    state.downUntil = 0;
    this.#metrics.seedUp.set({ seed: seed.origin }, 1);
    this.#logger.info({ seed: seed.origin }, 'seed reachable again');
  }

  async close(): Promise<void> {
    await this.#dispatcher.close();
  }
}
