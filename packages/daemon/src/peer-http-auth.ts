import { createHmac, timingSafeEqual } from 'node:crypto';
import type { ClusterKey } from '@peerpull/common';

/** `Authorization: PeerPull-HMAC peer=<peer id>, ts=<ms since the epoch>, sig=<hex>`. */
export const PEER_HTTP_AUTH_SCHEME = 'PeerPull-HMAC';
/** A signed request is accepted this long either side of the server's clock (nodes run NTP). */
const DEFAULT_WINDOW_MS = 30_000;
const MAX_PEER_ID_LENGTH = 128;

export type PeerHttpAuthResult = { ok: true; peer: string } | { ok: false; status: 401 | 403; reason: string };

/**
 * Authenticates HTTP data-plane requests between nodes with the cluster key: an HMAC-SHA256 of
 * the method, the path (with its query), the Range header, the time and the sender's peer id,
 * keyed by a key derived from the cluster key (HKDF, used for nothing else). A request without
 * it, signed with another key, altered on the way or older than the window is refused. The
 * peer id is what the sender claims (for logs and upload accounting): the HMAC proves cluster
 * membership, not which member. Nothing is encrypted: see docs/security.md.
 */
export class PeerHttpAuth {
  readonly #key: Buffer;
  readonly #windowMs: number;
  readonly #now: () => number;

  constructor(clusterKey: ClusterKey, opts: { windowMs?: number; now?: () => number } = {}) {
    this.#key = clusterKey.deriveKey('peerpull/peer-http-hmac/v1');
    this.#windowMs = opts.windowMs ?? DEFAULT_WINDOW_MS;
    this.#now = opts.now ?? Date.now;
  }

  /** The Authorization header for one request. */
  sign(request: { method: string; path: string; range?: string | undefined }, peer: string): string {
    const ts = this.#now();
    return `${PEER_HTTP_AUTH_SCHEME} peer=${peer}, ts=${ts}, sig=${this.#mac(request, peer, ts).toString('hex')}`;
  }

  verify(request: { method: string; path: string; range?: string | undefined }, authorization: string | undefined): PeerHttpAuthResult {
    if (!authorization) return { ok: false, status: 401, reason: 'no credentials' };
    const m = /^PeerPull-HMAC peer=([1-9A-HJ-NP-Za-km-z]+), ts=(\d{1,16}), sig=([0-9a-f]{64})$/.exec(authorization);
    if (!m || (m[1] as string).length > MAX_PEER_ID_LENGTH) return { ok: false, status: 401, reason: 'malformed credentials' };
    const [, peer, tsText, sigHex] = m as unknown as [string, string, string, string];
    const ts = Number(tsText);
    // Checked before the MAC too, but never reported differently to a sender without the key.
    const fresh = Math.abs(this.#now() - ts) <= this.#windowMs;
    const expected = this.#mac(request, peer, ts);
    const given = Buffer.from(sigHex, 'hex');
    if (!timingSafeEqual(given, expected)) return { ok: false, status: 403, reason: 'bad signature' };
    if (!fresh) return { ok: false, status: 403, reason: 'expired or clock skew beyond the window' };
    return { ok: true, peer };
  }

  #mac(request: { method: string; path: string; range?: string | undefined }, peer: string, ts: number): Buffer {
    return createHmac('sha256', this.#key)
      .update(`${request.method.toUpperCase()}\n${request.path}\n${request.range ?? ''}\n${ts}\n${peer}`)
      .digest();
  }
}
