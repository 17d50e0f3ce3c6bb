import type { PeerId } from '@libp2p/interface';
import type { Multiaddr } from '@multiformats/multiaddr';
import type { Logger } from '@peerpull/common';
import type { PeerNode } from '@peerpull/common/peer';
import { encodeLine, readLine } from './stream-json-line.ts';

/**
 * How a node learns a peer's HTTP data-plane address: asked once over libp2p (so the answer is
 * bound to the peer id by the noise handshake), then cached. A peer that does not serve HTTP
 * does not speak this protocol, and is fetched from over libp2p.
 */
export const HTTP_ADDRESS_PROTOCOL = '/peerpull/http-data/1.0.0';

const ASK_TIMEOUT_MS = 2_000;
const KNOWN_TTL_MS = 5 * 60_000;
/** A peer without HTTP (or that failed to answer) is asked again after this. */
const UNKNOWN_TTL_MS = 30_000;

interface Advertised {
  port: number;
  /** Omitted when the listener is on every interface: the asker uses the address it reached us at. */
  host?: string;
}

/** Answers peers' questions for this node's HTTP data port. */
export async function advertiseHttpDataPlane(node: PeerNode, address: { host: string; port: number }): Promise<void> {
  const unspecified = address.host === '0.0.0.0' || address.host === '::' || address.host === '';
  const answer: Advertised = unspecified ? { port: address.port } : { port: address.port, host: address.host };
  await node.libp2p.handle(HTTP_ADDRESS_PROTOCOL, async (stream) => {
    try {
      stream.send(encodeLine(answer));
      await stream.close();
    } catch {
      stream.abort(new Error('reply failed'));
    }
  });
}

/** Peers' HTTP data-plane origins (`http://host:port`), learned on first use. */
export class PeerHttpAddresses {
  readonly #node: PeerNode;
  readonly #logger: Logger;
  readonly #cache = new Map<string, { origin: string | undefined; until: number }>();

  constructor(node: PeerNode, logger: Logger) {
    this.#node = node;
    this.#logger = logger;
  }

  /** The peer's HTTP origin, or undefined when it does not serve HTTP. */
  async lookup(peer: PeerId, signal: AbortSignal): Promise<string | undefined> {
    const id = peer.toString();
    const cached = this.#cache.get(id);
    if (cached && cached.until > Date.now()) return cached.origin;
    let origin: string | undefined;
    try {
      origin = await this.#ask(peer, AbortSignal.any([signal, AbortSignal.timeout(ASK_TIMEOUT_MS)]));
    } catch (err) {
      if (signal.aborted) throw err;
      this.#logger.debug({ peer: id, err: (err as Error).message }, 'peer has no HTTP data plane; using libp2p');
    }
    this.#cache.set(id, { origin, until: Date.now() + (origin ? KNOWN_TTL_MS : UNKNOWN_TTL_MS) });
    return origin;
  }

  /** The address failed (refused, moved): ask again next time. */
  forget(peer: PeerId): void {
    this.#cache.delete(peer.toString());
  }

  async #ask(peer: PeerId, signal: AbortSignal): Promise<string | undefined> {
    const connection = await this.#node.libp2p.dial(peer, { signal });
    const stream = await connection.newStream(HTTP_ADDRESS_PROTOCOL, { signal });
    try {
      const { line } = await readLine(stream, signal);
      await stream.close().catch(() => stream.abort(new Error('closing')));
      const a = line as Partial<Advertised>;
      if (typeof a.port !== 'number' || !Number.isInteger(a.port) || a.port < 1 || a.port > 65535) throw new Error('invalid HTTP address answer');
      const host = typeof a.host === 'string' && a.host ? a.host : ipOf(connection.remoteAddr);
      if (!host) throw new Error(`no IP in ${connection.remoteAddr.toString()}`);
      return `http://${host.includes(':') ? `[${host}]` : host}:${a.port}`;
    } catch (err) {
      stream.abort(err as Error);
      throw err;
    }
  }
}

function ipOf(addr: Multiaddr): string | undefined {
  return addr.getComponents().find((c) => c.name === 'ip4' || c.name === 'ip6')?.value;
}
