/** What the watcher needs of a libp2p node (an EventTarget in tests). */
export interface PeerEvents {
  addEventListener(type: 'peer:connect' | 'peer:disconnect', listener: (event: CustomEvent) => void): void;
  removeEventListener(type: 'peer:connect' | 'peer:disconnect', listener: (event: CustomEvent) => void): void;
}

/** Rejoins within this window are handled together. */
const SETTLE_MS = 1_000;
/** At most one call per this interval, however many peers come back. */
const MIN_INTERVAL_MS = 60_000;

/**
 * Calls `onRejoin` when a watched peer (the seeds: stable members every node connects to) that
 * this node had lost comes back: a partition healed, a node's link came back, a seed restarted.
 * Records made meanwhile live only on the DHT servers each side could reach (and a restarted
 * seed lost the ones it held), so the caller announces its keys again. The time a peer was gone
 * is not a criterion: a connection to a blackholed peer can look open until just before the heal.
 * At most one call per minute. Returns a function that stops watching.
 */
export function watchRejoins(
  libp2p: PeerEvents,
  onRejoin: (peers: number) => void,
  opts: { watched: (peer: string) => boolean },
): () => void {
  const lost = new Set<string>();
  let returned = 0;
  let timer: NodeJS.Timeout | undefined;
  let lastCall = Number.NEGATIVE_INFINITY;
  const fire = (): void => {
    timer = undefined;
    const wait = lastCall + MIN_INTERVAL_MS - Date.now();
    if (wait > 0) {
      timer = setTimeout(fire, wait);
      timer.unref();
      return;
    }
    lastCall = Date.now();
    const peers = returned;
    returned = 0;
    onRejoin(peers);
  };
  const onDisconnect = (event: CustomEvent): void => {
    const id = String(event.detail);
    if (opts.watched(id)) lost.add(id);
  };
  const onConnect = (event: CustomEvent): void => {
    const id = String(event.detail);
    if (!lost.delete(id)) return;
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
