
/** What the watcher needs of a libp2p node (an EventTarget in tests). */
export interface PeerEvents {
  addEventListener(type: 'peer:connect' | 'peer:disconnect', listener: (event: CustomEvent) => void): void;
  removeEventListener(type: 'peer:connect' | 'peer:disconnect', listener: (event: CustomEvent) => void): void;
}

/** A peer must have been gone at least this long for its return to count as a rejoin (not a redial). */
const GONE_MS = 5_000;
/** Rejoins within this window are handled together. */
const SETTLE_MS = 1_000;
/** At most one call per this interval, however many peers come back. */
const MIN_INTERVAL_MS = 30_000;

/**
 * Calls `onRejoin` when peers this node had lost come back: a partition healed, a node's link
 * came back, the seed restarted. Records made on each side meanwhile live only on that side's
 * DHT servers, so the caller announces its keys again. Ordinary churn (a redial within seconds)
 * and first connections do not count. Returns a function that stops watching.
 */
export function watchRejoins(libp2p: PeerEvents, onRejoin: (peers: number) => void, now: () => number = Date.now): () => void {
  const lostAt = new Map<string, number>();
  let returned = 0;
  let timer: NodeJS.Timeout | undefined;
  let lastCall = Number.NEGATIVE_INFINITY;
  const fire = (): void => {
    timer = undefined;
    const wait = lastCall + MIN_INTERVAL_MS - now();
    if (wait > 0) {
      timer = setTimeout(fire, wait);
      timer.unref();
      return;
    }
    lastCall = now();
    const peers = returned;
    returned = 0;
    onRejoin(peers);
  };
  const onDisconnect = (event: CustomEvent): void => {
    lostAt.set(String(event.detail), now());
    if (lostAt.size > 10_000) lostAt.delete(lostAt.keys().next().value as string); // bounded: oldest first
  };
  const onConnect = (event: CustomEvent): void => {
    const id = String(event.detail);
    const since = lostAt.get(id);
    lostAt.delete(id);
    if (since === undefined || now() - since < GONE_MS) return;
    returned++;
    if (!timer) {
      timer = setTimeout(fire, SETTLE_MS);
      timer.unref();
    }
  };
  libp2p.addEventListener('peer:disconnect', onDisconnect);
  libp2p.addEventListener('peer:connect', onConnect);
  return () => {
    clearTimeout(timer);
    libp2p.removeEventListener('peer:disconnect', onDisconnect);
    libp2p.removeEventListener('peer:connect', onConnect);
  };
}
