// An emulated cluster LAN: every node (a daemon, the seed) runs in a network namespace of its own with a
// shaped "NIC", so that what a node can upload and download is bounded as on a real cluster (on loopback
// the seed feeds any number of nodes for free), and groups of nodes can be partitioned from each other.
//
//   root namespace (the test runner, the WAN relay)
//     │ uplink veth 10.X.0.1 ⇄ 10.X.0.2, route 10.X.0.0/17 via the core
//   core namespace: routes between the groups (ip_forward is on in this namespace only)
//     ├─ bridge br0 10.X.1.1/24 ── veth ⇄ eth0 10.X.1.10 (node ns) ── veth ...   group 0
//     └─ bridge br1 10.X.2.1/24 ── veth ⇄ eth0 10.X.2.10 (node ns) ── ...        group 1
//   each node namespace also has an unshaped management veth to the root namespace (10.X.128+.0/30):
//   the mirror API and metrics listen there, because containerd sits on the node itself and its bytes
//   never cross the node's NIC; the test runner plays that containerd.
//
// A node's NIC is `tc tbf` on both ends of its LAN veth (the node end's egress is its upload, the bridge
// end's egress its download). partition() drops everything routed between two groups with `ip rule
// ... blackhole` in the core (silently, like a dead link: open connections hang until their deadlines);
// heal() removes the rules. The /16 is picked at random in 10.0.0.0/8 among those no address or route of
// the root namespace uses. Every namespace carries this process's id; stop() (or this process's exit,
// or a later NodeLan of another process once this one is gone) deletes them, and their veths with them.
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { formatRate, listNamespaces, netnsUnavailable, processExists, removeNamespace, run, tbfArgs, tryRun } from './netns.ts';
import { onExitSync } from './processes.ts';

/** Names every LAN namespace of this project starts with (`ip netns list` shows them while a LAN exists). */
export const LAN_NETNS_PREFIX = 'pplan-';

export interface NodeLanOptions {
  /** Each node's NIC rate in bits per second, in each direction (0: unshaped). */
  rateBitsPerSecond: number;
}

/** Where a node runs and the addresses its listeners use. */
export interface NodePlacement {
  /** Prefix that runs a command there (`ip netns exec <ns>`; empty: this namespace). */
  commandPrefix: string[];
  /** The node's LAN address: P2P and the seed's API listen here, peers and daemons connect to it. */
  lanAddress: string;
  /** Where the test runner reaches the node's mirror API and metrics (the unshaped management link). */
  localAddress: string;
}

export interface LanNode extends NodePlacement {
  name: string;
  group: number;
  netns: string;
}

/** Nodes on this machine's loopback, without a LAN (the fallback). */
export const LOOPBACK_PLACEMENT: NodePlacement = { commandPrefix: [], lanAddress: '127.0.0.1', localAddress: '127.0.0.1' };

let sequence = 0;

export class NodeLan {
  readonly rateBitsPerSecond: number;
  /** The root namespace's address on the LAN: what the nodes reach the test runner's relays at. */
  readonly uplinkAddress: string;
  readonly #net: number; // the X of 10.X.0.0/16
  readonly #prefix: string; // namespace names: `${prefix}core`, `${prefix}<k>`
  readonly #ifBase: string; // root-side interface names: `${ifBase}u`, `${ifBase}m<k>`
  readonly #core: string;
  readonly #groups = new Set<number>();
  readonly #nodes: LanNode[] = [];
  readonly #partitions = new Set<string>();
  #stopped = false;
  readonly #unhookExit: () => void;

  private constructor(opts: NodeLanOptions, net: number, prefix: string, ifBase: string) {
    this.rateBitsPerSecond = opts.rateBitsPerSecond;
    this.#net = net;
    this.#prefix = prefix;
    this.#ifBase = ifBase;
    this.#core = `${prefix}core`;
    this.uplinkAddress = `10.${net}.0.1`;
    this.#unhookExit = onExitSync(() => this.#remove());
  }

  /** Creates the core namespace and the uplink. Throws when namespaces cannot be used (see netnsUnavailable). */
  static create(opts: NodeLanOptions): NodeLan {
    const missing = netnsUnavailable();
    if (missing) throw new Error(`a LAN of network namespaces is not available: ${missing}`);
    removeStaleLans();
    const pid = process.pid.toString(36);
    const id = `${(sequence++ % 36).toString(36)}${randomBytes(1).toString('hex').slice(0, 1)}`;
    const lan = new NodeLan(opts, pickNet(), `${LAN_NETNS_PREFIX}${pid}-${id}-`, `pl${pid}${id}`);
    try {
      lan.#createCore();
    } catch (err) {
      lan.#remove();
      lan.#unhookExit();
      throw err;
    }
    return lan;
  }

  get nodes(): readonly LanNode[] {
    return this.#nodes;
  }

  /** Adds a node to `group` (0-based): its namespace, its shaped NIC on the group's bridge, its management link. */
  addNode(name: string, group = 0): LanNode {
    if (this.#stopped) throw new Error('the LAN is stopped');
    if (!Number.isInteger(group) || group < 0 || group > 126) throw new Error(`group must be 0..126: ${group}`);
    const k = this.#nodes.length;
    const inGroup = this.#nodes.filter((n) => n.group === group).length;
    if (inGroup > 240 || k > 8000) throw new Error('too many nodes');
    if (!this.#groups.has(group)) this.#addGroup(group);
    const netns = `${this.#prefix}${k}`;
    const x = this.#net;
    const lanAddress = `10.${x}.${group + 1}.${10 + inGroup}`;
    const mgmt = 128 * 256 + k * 4; // offset of the node's /30 in 10.X.0.0/16
    const mgmtAddr = (i: number): string => `10.${x}.${(mgmt + i) >> 8}.${(mgmt + i) & 255}`;
    const port = `n${k}`; // the node's bridge port, in the core namespace
    const rootEnd = `${this.#ifBase}m${k.toString(36)}`;
    run('ip', ['netns', 'add', netns]);
    const node: LanNode = { name, group, netns, commandPrefix: ['ip', 'netns', 'exec', netns], lanAddress, localAddress: mgmtAddr(2) };
    this.#nodes.push(node); // removed by stop() from here on, even if the rest fails
    const inNs = (...args: string[]) => run('ip', ['-n', netns, ...args]);
    inNs('link', 'set', 'lo', 'up');
    run('ip', ['-n', this.#core, 'link', 'add', port, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', netns]);
    run('ip', ['-n', this.#core, 'link', 'set', port, 'master', `br${group}`]);
    run('ip', ['-n', this.#core, 'link', 'set', port, 'up']);
    inNs('addr', 'add', `${lanAddress}/24`, 'dev', 'eth0');
    inNs('link', 'set', 'eth0', 'up');
    inNs('route', 'add', 'default', 'via', `10.${x}.${group + 1}.1`);
    run('ip', ['link', 'add', rootEnd, 'type', 'veth', 'peer', 'name', 'mgmt0', 'netns', netns]);
    run('ip', ['addr', 'add', `${mgmtAddr(1)}/30`, 'dev', rootEnd]);
    run('ip', ['link', 'set', rootEnd, 'up']);
    inNs('addr', 'add', `${mgmtAddr(2)}/30`, 'dev', 'mgmt0');
    inNs('link', 'set', 'mgmt0', 'up');
    if (this.rateBitsPerSecond > 0) {
      const tbf = tbfArgs(this.rateBitsPerSecond);
      run('ip', ['netns', 'exec', netns, 'tc', 'qdisc', 'replace', 'dev', 'eth0', 'root', ...tbf]);
      run('ip', ['netns', 'exec', this.#core, 'tc', 'qdisc', 'replace', 'dev', port, 'root', ...tbf]);
    }
    return node;
  }

  /** Drops every packet between the two groups, both ways, until heal(). */
  partition(a: number, b: number): void {
    for (const [from, to] of [[a, b], [b, a]] as const) {
      const rule = this.#rule(from, to);
      if (this.#partitions.has(rule.join(' '))) continue;
      run('ip', ['-n', this.#core, 'rule', 'add', ...rule]);
      this.#partitions.add(rule.join(' '));
    }
  }

  /** Ends a partition(): the groups reach each other again. */
  heal(a: number, b: number): void {
    for (const [from, to] of [[a, b], [b, a]] as const) {
      const rule = this.#rule(from, to);
      if (!this.#partitions.delete(rule.join(' '))) continue;
      run('ip', ['-n', this.#core, 'rule', 'del', ...rule]);
    }
  }

  /** One line for the output. */
  describe(): string {
    const rate = this.rateBitsPerSecond > 0 ? `tc tbf ${formatRate(this.rateBitsPerSecond)} each way` : 'unshaped';
    return `each node in its own network namespace on 10.${this.#net}.0.0/16, NIC ${rate}; mirror API and metrics on an unshaped management link`;
  }

  /** Kills what runs in the namespaces and deletes them (and every veth, bridge, qdisc and rule). Idempotent. */
  stop(): void {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#remove();
    this.#unhookExit();
  }

  #rule(from: number, to: number): string[] {
    return ['from', `10.${this.#net}.${from + 1}.0/24`, 'to', `10.${this.#net}.${to + 1}.0/24`, 'blackhole'];
  }

  #createCore(): void {
    const core = this.#core;
    const uplink = `${this.#ifBase}u`;
    run('ip', ['netns', 'add', core]);
    run('ip', ['-n', core, 'link', 'set', 'lo', 'up']);
    run('ip', ['netns', 'exec', core, 'sysctl', '-q', '-w', 'net.ipv4.ip_forward=1']);
    run('ip', ['link', 'add', uplink, 'type', 'veth', 'peer', 'name', 'up0', 'netns', core]);
    run('ip', ['addr', 'add', `${this.uplinkAddress}/30`, 'dev', uplink]);
    run('ip', ['link', 'set', uplink, 'up']);
    run('ip', ['-n', core, 'addr', 'add', `10.${this.#net}.0.2/30`, 'dev', 'up0']);
    run('ip', ['-n', core, 'link', 'set', 'up0', 'up']);
    // The groups' subnets (10.X.1.0 .. 10.X.127.255); the management links are connected routes.
    run('ip', ['route', 'add', `10.${this.#net}.0.0/17`, 'via', `10.${this.#net}.0.2`, 'dev', uplink]);
  }

  #addGroup(group: number): void {
    const bridge = `br${group}`;
    run('ip', ['-n', this.#core, 'link', 'add', bridge, 'type', 'bridge']);
    run('ip', ['-n', this.#core, 'addr', 'add', `10.${this.#net}.${group + 1}.1/24`, 'dev', bridge]);
    run('ip', ['-n', this.#core, 'link', 'set', bridge, 'up']);
    this.#groups.add(group);
  }

  #remove(): void {
    for (const n of this.#nodes) removeNamespace(n.netns);
    removeNamespace(this.#core);
    // Deleting a namespace destroys its veth ends and so their root-side peers; this covers half-made ones.
    for (const name of [`${this.#ifBase}u`, ...this.#nodes.map((_, k) => `${this.#ifBase}m${k.toString(36)}`)]) {
      if (tryRun('ip', ['link', 'show', name])) tryRun('ip', ['link', 'del', name]);
    }
  }
}

/** Namespaces of this project's LANs, whatever process made them. */
export function listLanNamespaces(): string[] {
  return listNamespaces(LAN_NETNS_PREFIX);
}

/** A /16 in 10.0.0.0/8 that no address or route of this namespace touches. */
function pickNet(): number {
  const text = [['-4', '-o', 'addr', 'show'], ['-4', 'route', 'show', 'table', 'all']]
    .map((args) => spawnSync('ip', args, { encoding: 'utf8', timeout: 10_000 }).stdout ?? '')
    .join('\n');
  const used = new Set<number>();
  for (const m of text.matchAll(/\b10\.(\d+)\.\d+\.\d+(?:\/(\d+))?/g)) {
    // A route wider than a /16 (e.g. a VPN's 10.0.0.0/8): better no LAN than a shadowed one.
    if (m[2] !== undefined && Number(m[2]) < 16) throw new Error(`this host routes ${m[0]}; not creating a test LAN inside 10.0.0.0/8`);
    used.add(Number(m[1]));
  }
  for (let attempt = 0; attempt < 200; attempt++) {
    const x = 16 + ((randomBytes(1)[0] as number) % 239); // 10.16 .. 10.254
    if (!used.has(x)) return x;
  }
  throw new Error('no free /16 in 10.0.0.0/8');
}

/** Removes LANs left by processes of this project that no longer exist (e.g. killed with SIGKILL). */
function removeStaleLans(): void {
  const stale = new Set<string>();
  for (const netns of listLanNamespaces()) {
    const m = /^pplan-([0-9a-z]+)-([0-9a-z]+)-/.exec(netns);
    if (!m) continue;
    const pid = parseInt(m[1] as string, 36);
    if (pid === process.pid || processExists(pid)) continue;
    stale.add(netns);
  }
  // Nodes first, then the core (its veths' root-side peers go with it).
  for (const netns of [...stale].sort((a, b) => Number(a.endsWith('-core')) - Number(b.endsWith('-core')))) removeNamespace(netns);
}
