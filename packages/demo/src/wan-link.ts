// An emulated WAN between this machine's clients and an upstream registry: a rate limit and a delay.
//
// netns mode (root and `ip netns` available): the upstream runs in a network namespace of its own,
// reached over a veth pair whose two ends are shaped with `tc qdisc ... tbf` (the namespace end's egress
// carries the registry→client bytes, the host end's egress the client→registry bytes). `tc netem` is
// missing on these kernels, so the latency comes from a userspace relay on 127.0.0.1 that delays every
// chunk by `delayMs` in each direction, keeping the order, and holds back a new connection's first bytes
// for one round trip (the TCP handshake a real WAN would cost).
//
// relay mode (the fallback without root or `ip netns`): the upstream listens on loopback and the same
// relay also enforces the rate (one token bucket per direction, shared by every connection).
//
// Clients use the relay address (`expose()`), never the namespace address, so every byte that crosses
// the "WAN" is counted there (`bytesDown`, `bytesUp`). Every namespace, veth pair, qdisc and relay is
// removed by stop(), and also when this process exits or is interrupted (processes.ts onExitSync); names
// carry this process's id, and a new link removes the leftovers of processes that no longer exist.
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { formatRate, listNamespaces, netnsUnavailable, processExists, removeNamespace, run, tbfArgs, tryRun } from './netns.ts';
import { onExitSync } from './processes.ts';

export { netnsUnavailable } from './netns.ts';

export type WanMode = 'netns' | 'relay';

export interface WanLinkOptions {
  /** Link rate in bits per second (0: unlimited). */
  rateBitsPerSecond: number;
  /** Added delay per direction, in milliseconds (the round trip is twice this). */
  delayMs: number;
  /** `auto` (default): netns when possible, else the loopback relay. */
  mode?: 'auto' | WanMode;
  /** Why relay mode is asked for (shown by describe()). */
  why?: string;
}

export type CutMode = 'blackhole' | 'reset';

/** Names every link of this process starts with (`ip netns list` shows them while a link exists). */
export const NETNS_PREFIX = 'ppwan-';

let sequence = 0;

/** An emulated WAN link. Create with `WanLink.create()`, stop with `stop()`. */
export class WanLink {
  readonly mode: WanMode;
  readonly rateBitsPerSecond: number;
  readonly delayMs: number;
  /** Why netns mode was not used (relay mode only). */
  readonly fallbackReason: string | undefined;
  /** Where the upstream server must listen: the namespace's address, or 127.0.0.1. */
  readonly serverHost: string;
  /** The network namespace (netns mode). */
  readonly netns: string | undefined;
  /** The host end of the veth pair (netns mode); the namespace end is the same name ending in `n`. */
  readonly vethHost: string | undefined;
  readonly #relays: DelayRelay[] = [];
  readonly #down: TokenBucket | undefined;
  readonly #up: TokenBucket | undefined;
  #shaped = false;
  #stopped = false;
  #unhookExit: (() => void) | undefined;

  private constructor(opts: WanLinkOptions, mode: WanMode, net?: { netns: string; vethHost: string; serverHost: string }, fallbackReason?: string) {
    this.mode = mode;
    this.rateBitsPerSecond = opts.rateBitsPerSecond;
    this.delayMs = opts.delayMs;
    this.fallbackReason = fallbackReason;
    this.netns = net?.netns;
    this.vethHost = net?.vethHost;
    this.serverHost = net?.serverHost ?? '127.0.0.1';
    if (mode === 'relay' && opts.rateBitsPerSecond > 0) {
      this.#down = new TokenBucket(opts.rateBitsPerSecond / 8);
      this.#up = new TokenBucket(opts.rateBitsPerSecond / 8);
    }
    if (net) this.#unhookExit = onExitSync(() => removeNetns(net.netns, net.vethHost));
  }

  /** Creates the link (the namespace and veth pair in netns mode). Nothing is shaped until shape(). */
  static async create(opts: WanLinkOptions): Promise<WanLink> {
    const wanted = opts.mode ?? 'auto';
    if (wanted === 'relay') return new WanLink(opts, 'relay', undefined, opts.why ?? 'relay mode was asked for');
    const missing = netnsUnavailable();
    if (missing) {
      if (wanted === 'netns') throw new Error(`netns mode is not available: ${missing}`);
      return new WanLink(opts, 'relay', undefined, missing);
    }
    removeStaleLinks();
    try {
      return new WanLink(opts, 'netns', createNetns());
    } catch (err) {
      if (wanted === 'netns') throw err;
      return new WanLink(opts, 'relay', undefined, `creating a network namespace failed: ${(err as Error).message.split('\n')[0]}`);
    }
  }

  /** Runs a command on the far side of the link: `[...commandPrefix, cmd, ...args]`. */
  get commandPrefix(): string[] {
    return this.netns ? ['ip', 'netns', 'exec', this.netns] : [];
  }

  /**
   * Applies the rate limit (call it after seeding the upstream with content, which should not take
   * WAN time). In netns mode: tbf on both veth ends; in relay mode: the relay's token buckets.
   */
  async shape(): Promise<void> {
    if (this.#shaped || this.rateBitsPerSecond <= 0) return;
    this.#shaped = true;
    if (this.mode === 'netns' && this.netns && this.vethHost) {
      const tbf = tbfArgs(this.rateBitsPerSecond);
      run('tc', ['qdisc', 'replace', 'dev', this.vethHost, 'root', ...tbf]);
      run('ip', ['netns', 'exec', this.netns, 'tc', 'qdisc', 'replace', 'dev', vethPeer(this.vethHost), 'root', ...tbf]);
    }
  }

  /** Whether the rate limit is applied. */
  get shaped(): boolean {
    return this.#shaped;
  }

  /**
   * Starts a relay on `listenHost` (default 127.0.0.1; node-lan.ts gives its uplink address, for nodes in
   * namespaces) to `port` on the far side; returns its `HOST:PORT`, the address clients use for the
   * upstream. Every relay shares the link's rate and is cut with it.
   */
  async expose(port: number, listenHost = '127.0.0.1'): Promise<string> {
    if (this.#stopped) throw new Error('the WAN link is stopped');
    const relay = new DelayRelay({ host: this.serverHost, port }, this.delayMs, () => (this.#shaped ? this.#down : undefined), () => (this.#shaped ? this.#up : undefined));
    const relayPort = await relay.listen(listenHost);
    this.#relays.push(relay);
    return `${listenHost}:${relayPort}`;
  }

  /** Bytes sent from the upstream side to clients, as delivered by the relays (headers included). */
  get bytesDown(): number {
    return this.#relays.reduce((n, r) => n + r.bytesDown, 0);
  }

  get bytesUp(): number {
    return this.#relays.reduce((n, r) => n + r.bytesUp, 0);
  }

  /**
   * Cuts the link: `blackhole` (default) stops every byte in both directions, as a dead WAN does
   * (connections hang until their deadlines); `reset` refuses new connections and resets open ones.
   */
  cut(mode: CutMode = 'blackhole'): void {
    for (const r of this.#relays) r.cut(mode);
  }

  /** Undoes cut(): held bytes flow again and new connections are relayed. */
  restore(): void {
    for (const r of this.#relays) r.restore();
  }

  /** One line for the output: what emulates the WAN here. */
  describe(): string {
    const rate = this.rateBitsPerSecond > 0 ? `${formatRate(this.rateBitsPerSecond)}` : 'unlimited rate';
    if (this.mode === 'netns') {
      return `netns ${this.netns} behind veth ${this.vethHost} (${this.serverHost}), tc tbf ${rate} each way, +${this.delayMs} ms each way by a userspace delay relay`;
    }
    return `loopback relay emulating ${rate} and +${this.delayMs} ms each way in userspace (no network namespace: ${this.fallbackReason})`;
  }

  /** Closes the relays and removes the namespace, the veth pair and its qdiscs. Idempotent. */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    await Promise.all(this.#relays.map((r) => r.close()));
    if (this.netns && this.vethHost) removeNetns(this.netns, this.vethHost);
    this.#unhookExit?.();
  }
}

// ---- namespaces -----------------------------------------------------------------------------------

/** `pw<id>h` -> `pw<id>n`. */
function vethPeer(vethHost: string): string {
  return `${vethHost.slice(0, -1)}n`;
}

/** Namespaces of this project's links, whatever process made them. */
export function listLinkNamespaces(): string[] {
  return listNamespaces(NETNS_PREFIX);
}

/** `ppwan-<pid base36>-<id>`; veth `pw<pid36>x<id>h`. */
function linkNames(): { netns: string; vethHost: string } {
  const pid = process.pid.toString(36);
  const id = `${(sequence++ % 1296).toString(36)}${randomBytes(1).toString('hex')}`;
  const veth = `pw${pid}x${id}h`;
  if (veth.length > 15) throw new Error(`veth name too long: ${veth}`);
  return { netns: `${NETNS_PREFIX}${pid}-${id}`, vethHost: veth };
}

/** A /30 in 198.18.0.0/15 (reserved for benchmarks) not used by any address on this host. */
function pickSubnet(): { host: string; ns: string } {
  const used = new Set<number>();
  const out = spawnSync('ip', ['-4', '-o', 'addr', 'show'], { encoding: 'utf8' }).stdout ?? '';
  for (const m of out.matchAll(/inet (198\.1[89])\.(\d+)\.(\d+)\//g)) {
    used.add((((Number(m[1]!.slice(-1)) - 8) * 256 + Number(m[2])) * 256 + Number(m[3])) >> 2);
  }
  for (let attempt = 0; attempt < 100; attempt++) {
    const block = randomBytes(2).readUInt16BE(0) & 0x7fff;
    if (used.has(block)) continue;
    const addr = (i: number): string => {
      const n = block * 4 + i;
      return `198.${18 + (n >> 16)}.${(n >> 8) & 255}.${n & 255}`;
    };
    return { host: addr(1), ns: addr(2) };
  }
  throw new Error('no free /30 in 198.18.0.0/15');
}

function createNetns(): { netns: string; vethHost: string; serverHost: string } {
  const { netns, vethHost } = linkNames();
  const vethNs = vethPeer(vethHost);
  const subnet = pickSubnet();
  try {
    run('ip', ['netns', 'add', netns]);
    run('ip', ['link', 'add', vethHost, 'type', 'veth', 'peer', 'name', vethNs]);
    run('ip', ['link', 'set', vethNs, 'netns', netns]);
    run('ip', ['addr', 'add', `${subnet.host}/30`, 'dev', vethHost]);
    run('ip', ['link', 'set', vethHost, 'up']);
    run('ip', ['netns', 'exec', netns, 'ip', 'addr', 'add', `${subnet.ns}/30`, 'dev', vethNs]);
    run('ip', ['netns', 'exec', netns, 'ip', 'link', 'set', vethNs, 'up']);
    run('ip', ['netns', 'exec', netns, 'ip', 'link', 'set', 'lo', 'up']);
  } catch (err) {
    removeNetns(netns, vethHost);
    throw err;
  }
  return { netns, vethHost, serverHost: subnet.ns };
}

/** Kills what runs in the namespace, deletes it and the veth pair (and with them their qdiscs). */
function removeNetns(netns: string, vethHost: string): void {
  removeNamespace(netns);
  // Deleting the namespace destroys its veth end and so the pair; this covers a half-made link.
  if (tryRun('ip', ['link', 'show', vethHost])) tryRun('ip', ['link', 'del', vethHost]);
}

/** Removes links left by processes of this project that no longer exist (e.g. killed with SIGKILL). */
function removeStaleLinks(): void {
  for (const netns of listLinkNamespaces()) {
    const m = /^ppwan-([0-9a-z]+)-([0-9a-z]+)$/.exec(netns);
    if (!m) continue;
    const pid = parseInt(m[1] as string, 36);
    if (pid === process.pid || processExists(pid)) continue;
    removeNetns(netns, `pw${m[1]}x${m[2]}h`);
  }
}

// ---- the relay ------------------------------------------------------------------------------------

/** A link's capacity in one direction, shared by every connection: chunks depart in arrival order. */
class TokenBucket {
  readonly #bytesPerMs: number;
  #nextFree = 0;

  constructor(bytesPerSecond: number) {
    this.#bytesPerMs = bytesPerSecond / 1000;
  }

  /** Reserves the link for `bytes` arriving at `now`; returns when the last byte has left. */
  reserve(bytes: number, now: number): number {
    const start = Math.max(now, this.#nextFree);
    this.#nextFree = start + bytes / this.#bytesPerMs;
    return this.#nextFree;
  }
}

interface Pipe {
  flush(): void;
}

/** A TCP relay that delays every chunk by `delayMs` (and, given a bucket, limits the rate), in order. */
class DelayRelay {
  readonly #target: { host: string; port: number };
  readonly #delayMs: number;
  readonly #down: () => TokenBucket | undefined;
  readonly #up: () => TokenBucket | undefined;
  readonly #server: net.Server;
  readonly #sockets = new Set<net.Socket>();
  readonly #pipes = new Set<Pipe>();
  #cut: CutMode | undefined;
  bytesDown = 0;
  bytesUp = 0;

  constructor(target: { host: string; port: number }, delayMs: number, down: () => TokenBucket | undefined, up: () => TokenBucket | undefined) {
    this.#target = target;
    this.#delayMs = delayMs;
    this.#down = down;
    this.#up = up;
    this.#server = net.createServer({ noDelay: true, allowHalfOpen: true }, (client) => this.#accept(client));
  }

  listen(host: string): Promise<number> {
    return new Promise((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(0, host, () => {
        const address = this.#server.address();
        if (!address || typeof address === 'string') reject(new Error('no relay address'));
        else resolve(address.port);
      });
    });
  }

  get frozen(): boolean {
    return this.#cut === 'blackhole';
  }

  cut(mode: CutMode): void {
    this.#cut = mode;
    if (mode === 'reset') for (const s of this.#sockets) s.resetAndDestroy();
  }

  restore(): void {
    this.#cut = undefined;
    for (const p of this.#pipes) p.flush();
  }

  async close(): Promise<void> {
    for (const s of this.#sockets) s.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  #accept(client: net.Socket): void {
    if (this.#cut === 'reset') {
      client.resetAndDestroy();
      return;
    }
    const upstream = new net.Socket({ allowHalfOpen: true });
    let connecting = false;
    // Half-open on both sides: each direction ends on its own once its delayed bytes are delivered.
    // A socket that fails takes the other one with it.
    for (const s of [client, upstream]) {
      this.#sockets.add(s);
      s.once('close', (hadError) => {
        this.#sockets.delete(s);
        if (hadError) (s === client ? upstream : client).destroy();
      });
      s.on('error', () => {
        client.destroy();
        upstream.destroy();
      });
    }
    const connect = (): void => {
      if (connecting || client.destroyed) return;
      if (this.frozen) {
        setTimeout(connect, 50);
        return;
      }
      connecting = true;
      upstream.setNoDelay(true);
      upstream.connect(this.#target.port, this.#target.host, () => toUpstream.flush());
      toUpstream.flush();
    };
    // A real connection costs a round trip (the handshake) before the first request byte leaves:
    // nothing reaches the upstream before 3 one-way delays after the client connected.
    const handshakeDone = performance.now() + 3 * this.#delayMs;
    const toUpstream = this.#pipe(client, upstream, this.#up, (n) => (this.bytesUp += n), () => connecting, false, handshakeDone);
    this.#pipe(upstream, client, this.#down, (n) => (this.bytesDown += n), () => true, true, 0);
    connect();
  }

  #pipe(src: net.Socket, dst: net.Socket, bucket: () => TokenBucket | undefined, count: (n: number) => void, writable: () => boolean, destroySrcWhenDstCloses: boolean, notBefore: number): Pipe {
    const queue: { at: number; chunk: Buffer }[] = [];
    const high = 1024 * 1024;
    let queued = 0;
    let ended = false;
    let timer: NodeJS.Timeout | undefined;
    let draining = false;
    const flush = (): void => {
      if (timer || draining || this.frozen || dst.destroyed || !writable()) return;
      while (queue.length > 0) {
        const item = queue[0] as { at: number; chunk: Buffer };
        const wait = item.at - performance.now();
        if (wait > 0.5) {
          timer = setTimeout(() => {
            timer = undefined;
            flush();
          }, wait);
          break;
        }
        queue.shift();
        queued -= item.chunk.length;
        count(item.chunk.length);
        if (!dst.write(item.chunk)) {
          draining = true;
          dst.once('drain', () => {
            draining = false;
            flush();
          });
          break;
        }
      }
      if (queued < high / 2 && src.isPaused()) src.resume();
      if (ended && queue.length === 0 && !dst.writableEnded) dst.end();
    };
    src.on('data', (chunk: Buffer) => {
      const now = performance.now();
      const departs = bucket()?.reserve(chunk.length, now) ?? now;
      queue.push({ at: Math.max(departs + this.#delayMs, notBefore), chunk });
      queued += chunk.length;
      if (queued >= high) src.pause();
      flush();
    });
    src.once('end', () => {
      ended = true;
      flush();
    });
    const pipe = { flush };
    this.#pipes.add(pipe);
    dst.once('close', () => {
      clearTimeout(timer);
      this.#pipes.delete(pipe);
      // Bytes still coming cannot be delivered: a client that went away ends the upstream
      // transfer; an upstream that closed leaves the client to the other direction's end().
      if (ended || src.destroyed) return;
      if (destroySrcWhenDstCloses) src.destroy();
      else src.pause();
    });
    return pipe;
  }
}
