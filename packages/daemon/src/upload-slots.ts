/**
 * The blob server's upload slots. Past `total` a request is answered "busy" (the burst then fans
 * out as a tree), unless it insists after being told "busy" everywhere. Past `perPeer` for the
 * requesting peer it is refused even when it insists: any member can set `insist`, and one peer
 * must not take every slot.
 */
export class UploadSlots {
  readonly #total: number;
  readonly #perPeer: number;
  readonly #byPeer = new Map<string, number>();
  #active = 0;

  constructor(limits: { total: number; perPeer: number }) {
    this.#total = limits.total;
    this.#perPeer = limits.perPeer;
  }

  get active(): number {
    return this.#active;
  }

  get perPeerLimit(): number {
    return this.#perPeer;
  }

  /** Why `peer` cannot have a slot now, or undefined if it can. */
  refusal(peer: string, insist: boolean): 'busy' | 'peer-limit' | undefined {
    if ((this.#byPeer.get(peer) ?? 0) >= this.#perPeer) return 'peer-limit';
    if (this.#active >= this.#total && !insist) return 'busy';
    return undefined;
  }

  /** Takes a slot (after `refusal` said yes, with no await in between); returns its release. */
  take(peer: string): () => void {
    this.#active++;
    this.#byPeer.set(peer, (this.#byPeer.get(peer) ?? 0) + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#active--;
      const left = (this.#byPeer.get(peer) ?? 1) - 1;
      if (left > 0) this.#byPeer.set(peer, left);
      else this.#byPeer.delete(peer);
    };
  }
}
