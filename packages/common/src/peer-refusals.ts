import type { Logger } from './logger.ts';

/** What a peer can be refused for going over a limit. */
export type PeerRefusalKind = 'provider-records' | 'connections' | 'uploads';

const WARN_EVERY_MS = 10 * 60_000;

/**
 * Refusals of what peers asked for beyond a limit: counted, and warned about once per peer and
 * kind every 10 minutes, so a flood costs one log line, not thousands.
 */
export class PeerRefusals {
  readonly #logger: Logger;
  readonly #onRefused: ((kind: PeerRefusalKind) => void) | undefined;
  readonly #counts: Record<PeerRefusalKind, number> = { 'provider-records': 0, connections: 0, uploads: 0 };
  readonly #warned = new Map<string, number>();

  constructor(logger: Logger, onRefused?: (kind: PeerRefusalKind) => void) {
    this.#logger = logger;
    this.#onRefused = onRefused;
  }

  note(kind: PeerRefusalKind, peer: string, details: Record<string, unknown> = {}): void {
    this.#counts[kind]++;
    this.#onRefused?.(kind);
    const key = `${kind} ${peer}`;
    const now = Date.now();
    if (now - (this.#warned.get(key) ?? 0) < WARN_EVERY_MS) return;
    if (this.#warned.size >= 1_000) this.#warned.clear(); // many identities: memory stays bounded, at worst more lines
    this.#warned.set(key, now);
    // A legitimate node pulling several images at once can reach the upload cap: not worth a warning.
    const level = kind === 'uploads' ? 'info' : 'warn';
    this.#logger[level]({ peer, kind, ...details }, `peer over its ${kind} limit: refused (further refusals are counted in peerpull_peer_refusals_total, not logged)`);
  }

  counts(): Record<PeerRefusalKind, number> {
    return { ...this.#counts };
  }
}
