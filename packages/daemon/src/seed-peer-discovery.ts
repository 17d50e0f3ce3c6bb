import { isIP } from 'node:net';
import type { Logger } from '@peerpull/common';

/**
 * Seeds are bootstrap peers: ask each for its peer id and port (`GET /api/v1/peer`) and dial
 * it at the host the seed URL names. Retries in the background until every seed answered.
 * Returns a function that stops retrying.
 */
export function seedPeerAddresses(seeds: string[], logger: Logger, onAddresses: (addrs: string[]) => void): () => void {
  const pending = new Set(seeds);
  let timer: NodeJS.Timeout | undefined;
  const round = async (): Promise<void> => {
    for (const seed of [...pending]) {
      try {
        const url = new URL(seed);
        const res = await fetch(new URL('/api/v1/peer', url), { signal: AbortSignal.timeout(2_000) });
        if (!res.ok) throw new Error(`HTTP ${res.status}`);
        const info = (await res.json()) as { peerId?: string; ports?: number[] };
        if (!info.peerId || !info.ports?.length) throw new Error('seed has no P2P address');
        const host = url.hostname.replace(/^\[|\]$/g, '');
        const proto = isIP(host) === 6 ? 'ip6' : isIP(host) === 4 ? 'ip4' : 'dns';
        onAddresses(info.ports.map((port) => `/${proto}/${host}/tcp/${port}/p2p/${info.peerId}`));
        pending.delete(seed);
      } catch (err) {
        logger.debug({ seed, err: (err as Error).message }, 'seed peer info not available yet');
      }
    }
    if (pending.size) {
      timer = setTimeout(() => void round(), 2_000);
      timer.unref();
    }
  };
  void round();
  return () => clearTimeout(timer);
}
