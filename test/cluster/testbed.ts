// The cluster testbed the end-to-end tests and the benchmarks share: a real upstream (the distribution
// registry) behind an emulated WAN, seeds and daemons as processes (LocalCluster), a distribution
// registry in proxy mode as the baseline, clients (the containerd-like HTTP client, or a private
// containerd), per-source byte counters, and one stop() that removes everything it started.
//
//   const tb = await Testbed.start({ wan: { rateBitsPerSecond: 100e6, delayMs: 25 }, images: [{ image, repository }] });
//   t.after(() => tb.stop());
//   const cluster = await tb.startCluster({ daemons: 3 });
//   await Promise.all(cluster.daemons.map((d) => tb.pull(d.url, repository)));
//   assert.equal(await tb.upstreamBytes(), image.totalBytes);
//
// The WAN (packages/demo/src/wan-link.ts): with root and `ip netns`, the registry runs in its own network
// namespace behind a veth pair shaped with tc tbf, and a userspace relay on 127.0.0.1 adds the delay;
// otherwise a loopback relay emulates both, and `describe()` says so.
//
// The LAN (`nodeNic`, packages/demo/src/node-lan.ts): off by default, the seed and the daemons share this
// machine's loopback, so the seed's upload costs nothing. With `nodeNic: { rateBitsPerSecond: 1e9 }` every
// node runs in a namespace of its own with a tc-shaped NIC on a bridge (one bridge per group of
// `ClusterSpec.groups`, routed to each other; partition() cuts two groups apart), and reaches the upstream
// through a second WAN relay on the LAN's uplink. Clients still reach each daemon's mirror API and metrics
// (`node.url`, `node.metricsUrl`) from here, over an unshaped management link. Without root or `ip netns`
// the nodes stay on loopback and describe() says so. No fixed ports. Whatever stop() misses (a test that
// throws before it, a killed run) is removed when the process exits.
import path from 'node:path';
import {
  HttpPool,
  LocalCluster,
  pullImage,
  type BuiltImage,
  type ClusterNode,
  type LocalClusterOptions,
  type NodeCounters,
  type PullResult,
} from '@peerpull/demo';
import { startContainerd, type Containerd } from '@peerpull/demo/containerd';
import { startRegistry, type Registry } from '@peerpull/demo/distribution-registry';
import { makeTempDir } from '@peerpull/demo/processes';
import { pushImage } from '@peerpull/demo/skopeo';
import { netnsUnavailable } from '@peerpull/demo/netns';
import { NodeLan } from '@peerpull/demo/node-lan';
import { WanLink, type WanLinkOptions } from '@peerpull/demo/wan-link';
import { CLI } from '../fixtures/daemon.ts';

export interface TestbedOptions {
  wan: WanLinkOptions;
  /** Images the upstream holds, pushed before the WAN is shaped. */
  images?: { image: BuiltImage; repository: string; tag?: string }[];
  /**
   * Each seed and daemon in its own network namespace behind a NIC shaped to this rate (0: unshaped).
   * `auto` (default) keeps the nodes on loopback when namespaces are not available; `netns` throws then.
   */
  nodeNic?: { rateBitsPerSecond: number; mode?: 'auto' | 'netns' };
  /** Default: a fresh temp dir, removed at exit. */
  workDir?: string;
  logLevel?: string;
}

export type ClusterSpec = Omit<LocalClusterOptions, 'workDir' | 'cliPath' | 'upstream' | 'place'> & {
  name?: string;
  /** With a node LAN: the group (bridge) of each daemon, by index (default 0); see partition(). */
  groups?: number[];
  /** With a node LAN: the seed's group (default 0). */
  seedGroup?: number;
};

/** Bytes by source, summed over a cluster's daemons. */
export interface ClusterBytes {
  /** What the daemons fetched into their stores, by source (upstream bytes crossed the WAN). */
  fetched: Record<string, number>;
  /** What the daemons served to their clients, by source (`local`: already stored). */
  served: Record<string, number>;
  /** What the seed sent: to daemons over HTTP plus over P2P. */
  seedUpload: number;
  /** What daemons sent each other over P2P. */
  peerUpload: number;
}

export class Testbed {
  readonly link: WanLink;
  /** The registry's name, and its address as seen from this namespace: the relay (`127.0.0.1:PORT`). */
  readonly upstreamHost: string;
  readonly upstreamUrl: string;
  /** Each node in its own namespace with a shaped NIC (undefined: every node on loopback). */
  readonly lan: NodeLan | undefined;
  /** Why the nodes are on loopback although `nodeNic` was asked for. */
  readonly lanFallbackReason: string | undefined;
  /** The upstream's URL for the nodes: a relay on the LAN's uplink, or upstreamUrl. */
  readonly #nodeUpstreamUrl: string;
  /** The registry process (on the far side of the link). */
  readonly registry: Registry;
  readonly workDir: string;
  readonly #logLevel: string | undefined;
  readonly #clusters: LocalCluster[] = [];
  readonly #proxies: Registry[] = [];
  readonly #containerds: Containerd[] = [];
  #clusterSeq = 0;
  #stopped = false;

  private constructor(link: WanLink, registry: Registry, upstreamHost: string, lan: { lan?: NodeLan; upstreamUrl?: string; fallbackReason?: string }, workDir: string, logLevel: string | undefined) {
    this.link = link;
    this.registry = registry;
    this.upstreamHost = upstreamHost;
    this.upstreamUrl = `http://${upstreamHost}`;
    this.lan = lan.lan;
    this.lanFallbackReason = lan.fallbackReason;
    this.#nodeUpstreamUrl = lan.upstreamUrl ?? this.upstreamUrl;
    this.workDir = workDir;
    this.#logLevel = logLevel;
  }

  static async start(opts: TestbedOptions): Promise<Testbed> {
    const workDir = opts.workDir ?? makeTempDir('pp-testbed-');
    const link = await WanLink.create(opts.wan);
    let registry: Registry | undefined;
    let lan: NodeLan | undefined;
    try {
      registry = await startRegistry({
        listenHost: link.serverHost,
        commandPrefix: link.commandPrefix,
        dataDir: path.join(workDir, 'upstream'),
        logFile: path.join(workDir, 'upstream.log'),
      });
      for (const { image, repository, tag } of opts.images ?? []) {
        await pushImage(image, `${registry.host}/${repository}:${tag ?? image.tag}`, { tag: image.tag });
      }
      await link.shape();
      const upstreamHost = await link.expose(registry.port);
      let fallbackReason: string | undefined;
      let lanUpstreamUrl: string | undefined;
      if (opts.nodeNic) {
        fallbackReason = netnsUnavailable();
        if (fallbackReason && opts.nodeNic.mode === 'netns') throw new Error(`nodeNic: ${fallbackReason}`);
        if (!fallbackReason) {
          lan = NodeLan.create({ rateBitsPerSecond: opts.nodeNic.rateBitsPerSecond });
          lanUpstreamUrl = `http://${await link.expose(registry.port, lan.uplinkAddress)}`;
        }
      }
      registry.clearLog();
      return new Testbed(link, registry, upstreamHost, { lan, upstreamUrl: lanUpstreamUrl, fallbackReason }, workDir, opts.logLevel);
    } catch (err) {
      lan?.stop();
      await registry?.stop();
      await link.stop();
      throw err;
    }
  }

  /** What emulates the WAN, and (with nodeNic) the nodes' LAN: one line each. */
  describe(): string {
    const lan = this.lan
      ? `\nLAN: ${this.lan.describe()}`
      : this.lanFallbackReason
        ? `\nLAN: none, every node on loopback (the seed's and the peers' upload is free): no network namespaces here (${this.lanFallbackReason})`
        : '';
    return `${this.link.describe()}${lan}`;
  }

  /** A seed (unless `seed: false`) and N daemons using the upstream through the WAN. Stopped by stop(). */
  async startCluster(spec: ClusterSpec): Promise<LocalCluster> {
    const { name = `cluster-${++this.#clusterSeq}`, groups = [], seedGroup = 0, ...options } = spec;
    const lan = this.lan;
    const cluster = await LocalCluster.start({
      logLevel: this.#logLevel,
      ...options,
      workDir: path.join(this.workDir, name),
      cliPath: CLI,
      // The registry keeps its name (what clients send as ?ns=); nodes on the LAN reach it at its LAN relay.
      upstream: { host: this.upstreamHost, url: this.#nodeUpstreamUrl },
      place: lan
        ? (node, role) => lan.addNode(`${name}/${node}`, role === 'seed' ? seedGroup : (groups[Number(/^node-(\d+)$/.exec(node)?.[1] ?? 1) - 1] ?? 0))
        : undefined,
    });
    this.#clusters.push(cluster);
    return cluster;
  }

  /**
   * A distribution registry in proxy mode on the LAN side of the WAN (the baseline). With the node LAN it
   * runs in a node namespace of its own, so its NIC bounds what it serves as it bounds the seed. Stopped by stop().
   */
  async startProxy(): Promise<Registry> {
    const name = `proxy-${this.#proxies.length + 1}`;
    const at = this.lan?.addNode(name);
    const proxy = await startRegistry({
      proxyRemoteUrl: this.#nodeUpstreamUrl,
      logFile: path.join(this.workDir, `${name}.log`),
      ...(at ? { listenHost: at.lanAddress, commandPrefix: at.commandPrefix } : {}),
    });
    this.#proxies.push(proxy);
    return proxy;
  }

  /** A private containerd whose mirror for the upstream is `mirrorUrl` (a daemon, a proxy). Stopped by stop(). */
  async startContainerd(mirrorUrl?: string): Promise<Containerd> {
    const containerd = await startContainerd({ mirrors: { [this.upstreamHost]: mirrorUrl ? [mirrorUrl] : [] } });
    this.#containerds.push(containerd);
    return containerd;
  }

  /** The image reference containerd pulls (`127.0.0.1:PORT/<repository>:<tag>`). */
  ref(repository: string, tag = 'v1'): string {
    return `${this.upstreamHost}/${repository}:${tag}`;
  }

  /**
   * Pulls through `registryUrl` (a daemon, a proxy, or the upstream itself) with containerd's request
   * sequence, verifying every digest. `?ns=` is sent unless the URL is the upstream's.
   */
  async pull(registryUrl: string, repository: string, opts: { tag?: string; idleTimeoutMs?: number; signal?: AbortSignal } = {}): Promise<PullResult> {
    const pool = new HttpPool(); // each client its own connections, as separate nodes have
    try {
      return await pullImage({
        registryUrl,
        repository,
        tag: opts.tag ?? 'v1',
        ns: registryUrl === this.upstreamUrl ? undefined : this.upstreamHost,
        maxConcurrent: 3,
        pool,
        idleTimeoutMs: opts.idleTimeoutMs,
        signal: opts.signal,
      });
    } finally {
      pool.close();
    }
  }

  /** Body bytes the upstream registry sent (GETs, from its access log) since start or the last reset. */
  async upstreamBytes(): Promise<number> {
    await this.registry.flushLog();
    return this.registry.bytesSent({ method: 'GET' });
  }

  resetUpstreamBytes(): void {
    this.registry.clearLog();
  }

  /** Cuts the WAN (see WanLink.cut); restoreWan() undoes it. */
  cutWan(mode: 'blackhole' | 'reset' = 'blackhole'): void {
    this.link.cut(mode);
  }

  restoreWan(): void {
    this.link.restore();
  }

  /** Drops every packet between two groups of nodes (ClusterSpec.groups), both ways; needs the node LAN. */
  partition(groupA: number, groupB: number): void {
    if (!this.lan) throw new Error('partition() needs the node LAN (nodeNic) and network namespaces');
    this.lan.partition(groupA, groupB);
  }

  /** Ends partition(). */
  heal(groupA: number, groupB: number): void {
    this.lan?.heal(groupA, groupB);
  }

  /** Stops everything this testbed started, in reverse order, and removes the WAN link. Idempotent. */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    const settle = (ps: Promise<unknown>[]) => Promise.allSettled(ps);
    await settle(this.#containerds.map((c) => c.stop()));
    await settle(this.#clusters.map((c) => c.stop()));
    await settle(this.#proxies.map((p) => p.stop()));
    await settle([this.registry.stop()]);
    this.lan?.stop();
    await this.link.stop();
  }
}

/** Sums a cluster's counters by source. */
export function clusterBytes(counters: Map<string, NodeCounters>, daemons: ClusterNode[]): ClusterBytes {
  const out: ClusterBytes = { fetched: {}, served: {}, seedUpload: 0, peerUpload: 0 };
  const add = (into: Record<string, number>, from: Record<string, number>) => {
    for (const [k, v] of Object.entries(from)) into[k] = (into[k] ?? 0) + v;
  };
  const names = new Set(daemons.map((d) => d.name));
  for (const [name, c] of counters) {
    if (name === 'seed') {
      out.seedUpload += Object.values(c.served).reduce((a, b) => a + b, 0) + c.peerUploaded;
    } else if (names.has(name)) {
      add(out.fetched, c.fetched);
      add(out.served, c.served);
      out.peerUpload += c.peerUploaded;
    }
  }
  return out;
}
