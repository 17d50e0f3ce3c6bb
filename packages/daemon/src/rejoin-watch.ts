/** A connection as the watcher sees it (libp2p's `Connection`). */
export interface WatchedConnection<P> {
  remotePeer: P;
  status: string;
}

/** What the watcher needs of a libp2p node (an EventTarget in tests). */
export interface PeerConnections<P extends { toString(): string }> {
  addEventListener(type: 'connection:open' | 'connection:close', listener: (event: CustomEvent<WatchedConnection<P>>) => void): void;
  removeEventListener(type: 'connection:open' | 'connection:close', listener: (event: CustomEvent<WatchedConnection<P>>) => void): void;
  /** The connections to a peer libp2p still tracks (the one just closed is already gone). */
  getConnections(peer: P): WatchedConnection<P>[];
}

/** Rejoins within this window are handled together. */
const SETTLE_MS = 1_000;
/** At most one call per this interval, however many peers come back. */
const MIN_INTERVAL_MS = 60_000;

/**
 * Calls `onRejoin` when a watched peer (the seeds: stable members every node connects to) that
 * this node had lost comes back: a partition healed, a node's link came back, a seed restarted.
 * Records made meanwhile live only on the DHT servers each side could reach (and a restarted
 * seed lost the ones it held), so the caller announces its keys again.
 *
 * Watched per connection, not per peer (`peer:connect`/`peer:disconnect`): after a blackhole
 * partition the seed's side usually notices first, and when the link is back the seed redials
 * this node while this node's own end of the dead connection still looks open. The peer never
 * has zero connections here, so libp2p emits neither peer event. So a peer is lost when any of
 * its connections closes, and back when a connection to it opens, or, if another connection to
 * it was still open at that close, as soon as it answers a ping over it (the other connection
 * may be as dead as the closed one: then it is back at the next open).
 * At most one call per minute. Returns a function that stops watching.
 */
export function watchRejoins<P extends { toString(): string }>(
  libp2p: PeerConnections<P>,
  onRejoin: (peers: number) => void,
  opts: { watched: (peer: string) => boolean; ping: (peer: P) => Promise<unknown> },
): () => void {
  const lost = new Set<string>();
  let returned = 0;
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
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
  const back = (id: string): void => {
    if (stopped || !lost.delete(id)) return;
    returned++;
    if (!timer) {
      timer = setTimeout(fire, SETTLE_MS);
      timer.unref();
    }
  };
  const onClose = (event: CustomEvent<WatchedConnection<P>>): void => {
    const closed = event.detail;
    const id = String(closed.remotePeer);
    if (!opts.watched(id)) return;
    lost.add(id);
    const others = libp2p.getConnections(closed.remotePeer).filter((c) => c !== closed && c.status === 'open');
    if (others.length > 0) opts.ping(closed.remotePeer).then(() => back(id), () => undefined);
  };
  const onOpen = (event: CustomEvent<WatchedConnection<P>>): void => back(String(event.detail.remotePeer));
  libp2p.addEventListener('connection:close', onClose);
  libp2p.addEventListener('connection:open', onOpen);
  return () => {
    stopped = true;
    clearTimeout(timer);
    libp2p.removeEventListener('connection:close', onClose);
    libp2p.removeEventListener('connection:open', onOpen);
  };
}
