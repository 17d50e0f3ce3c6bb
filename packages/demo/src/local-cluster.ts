import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, mkdirSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { LOOPBACK_PLACEMENT, type NodePlacement } from './node-lan.ts';
import { trackChild } from './processes.ts';

export interface ClusterNode {
  name: string;
  role: 'seed' | 'daemon';
  /** `HOST:PORT` of the registry API (`127.0.0.1:PORT` unless placed on a LAN: see LocalClusterOptions.place). */
  host: string;
  url: string;
  metricsUrl: string;
  dataDir: string;
  logFile: string;
  process: ChildProcess;
  /** SIGTERM, then SIGKILL after a grace period. */
  stop(): Promise<void>;
  /** SIGKILL now. */
  kill(): Promise<void>;
}

export interface LocalClusterOptions {
  /** Where data dirs, logs and the cluster key go. */
  workDir: string;
  /** Path of the `peerpull` entry point (packages/cli/src/main.ts). */
  cliPath: string;
  /** The upstream registry: host as clients name it, and its endpoint URL. */
  upstream: { host: string; url: string };
  daemons: number;
  seed?: boolean;
  p2p?: boolean;
  logLevel?: string;
  extraDaemonArgs?: string[];
  extraSeedArgs?: string[];
  /**
   * Where each node runs (default: this machine, everything on 127.0.0.1). With node-lan.ts each node
   * gets a namespace: P2P and the seed's API listen on its LAN address, a daemon's mirror API and every
   * node's metrics on its local address (containerd's side of the node).
   */
  place?: (name: string, role: 'seed' | 'daemon') => NodePlacement;
}

export type SourceBytes = Record<string, number>;

export interface NodeCounters {
  /** Bytes this node fetched into its store, by source (upstream bytes are WAN bytes). */
  fetched: SourceBytes;
  /** Bytes this node sent to its clients (daemons: containerd; the seed: daemons). */
  served: SourceBytes;
  peerUploaded: number;
  peersConnected: number;
}

const READY = /"msg":"peerpull (daemon|seed) ready"/;

/**
 * A cluster on one machine: one seed and N daemons as real child processes, each with its
 * own data dir, on ports the OS picks. Used by `peerpull demo`, the tests and the benchmarks.
 */
export class LocalCluster {
  readonly seed: ClusterNode | undefined;
  readonly daemons: ClusterNode[];
  readonly clusterKeyFile: string | undefined;

  readonly #opts: LocalClusterOptions;

  private constructor(opts: LocalClusterOptions, seed: ClusterNode | undefined, daemons: ClusterNode[], clusterKeyFile: string | undefined) {
    this.#opts = opts;
    this.seed = seed;
    this.daemons = daemons;
    this.clusterKeyFile = clusterKeyFile;
  }

  static async start(opts: LocalClusterOptions): Promise<LocalCluster> {
    mkdirSync(opts.workDir, { recursive: true });
    const p2p = opts.p2p ?? true;
    let clusterKeyFile: string | undefined;
    if (p2p) {
      clusterKeyFile = path.join(opts.workDir, 'cluster-key');
      writeFileSync(clusterKeyFile, randomBytes(32).toString('base64'), { mode: 0o600 });
    }
    const started: ClusterNode[] = [];
    try {
      let seed: ClusterNode | undefined;
      if (opts.seed ?? true) {
        seed = await startNode(opts, 'seed', 'seed', clusterKeyFile);
        started.push(seed);
      }
      const daemons = await Promise.all(
        Array.from({ length: opts.daemons }, (_, i) => {
          const name = `node-${i + 1}`;
          return startNode(opts, 'daemon', name, clusterKeyFile, seed ? ['--seed', seed.url] : []).then((node) => {
            started.push(node);
            return node;
          });
        }),
      );
      return new LocalCluster(opts, seed, daemons, clusterKeyFile);
    } catch (err) {
      await Promise.all(started.map((n) => n.stop()));
      throw err;
    }
  }

  /** Starts one more daemon (a node joining the cluster), named `node-<N+1>`. */
  async addDaemon(): Promise<ClusterNode> {
    const name = `node-${this.daemons.length + 1}`;
    const node = await startNode(this.#opts, 'daemon', name, this.clusterKeyFile, this.seed ? ['--seed', this.seed.url] : []);
    this.daemons.push(node);
    return node;
  }

  get nodes(): ClusterNode[] {
    return [...(this.seed ? [this.seed] : []), ...this.daemons];
  }

  /** Waits until every daemon has at least one P2P peer (or the timeout passes). */
  async waitForPeers(timeoutMs = 10_000): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const counters = await Promise.all(this.daemons.map((d) => readCounters(d).catch(() => undefined)));
      if (counters.every((c) => c && c.peersConnected > 0)) return true;
      await new Promise((r) => setTimeout(r, 100));
    }
    return false;
  }

  /** Counters of every node still running (a node that was killed is left out). */
  async counters(): Promise<Map<string, NodeCounters>> {
    const live = this.nodes.filter((n) => n.process.exitCode === null && n.process.signalCode === null);
    const entries = await Promise.all(live.map(async (n) => [n.name, await readCounters(n)] as const));
    return new Map(entries);
  }

  /** Stops the daemons, then the seed (daemons report to the seed until they stop). */
  async stop(): Promise<void> {
    await Promise.all(this.daemons.map((n) => n.stop()));
    await this.seed?.stop();
  }
}

function nodeArgs(opts: LocalClusterOptions, role: 'seed' | 'daemon', name: string, clusterKeyFile: string | undefined, at: NodePlacement): string[] {
  return [
    '--listen', `${role === 'seed' ? at.lanAddress : at.localAddress}:0`,
    '--metrics-listen', `${at.localAddress}:0`,
    '--data', path.join(opts.workDir, name),
    '--registry', `${opts.upstream.host}=${opts.upstream.url}`,
    '--default-registry', opts.upstream.host,
    '--log-level', opts.logLevel ?? 'info',
    ...(clusterKeyFile ? ['--cluster-key-file', clusterKeyFile, '--p2p-listen', `/ip4/${at.lanAddress}/tcp/0`] : []),
    ...(role === 'daemon' ? ['--node-name', name] : []),
    ...((role === 'seed' ? opts.extraSeedArgs : opts.extraDaemonArgs) ?? []),
  ];
}

/** Places the node, then starts it with its role's arguments plus `extra`. */
async function startNode(opts: LocalClusterOptions, role: 'seed' | 'daemon', name: string, clusterKeyFile: string | undefined, extra: string[] = []): Promise<ClusterNode> {
  const at = opts.place?.(name, role) ?? LOOPBACK_PLACEMENT;
  const args = [...nodeArgs(opts, role, name, clusterKeyFile, at), ...extra];
  const logFile = path.join(opts.workDir, `${name}.log`);
  const log = createWriteStream(logFile);
  // `ip netns exec` execs the command, so the child's pid is the node's (CPU meters, kill -9).
  const argv = [...at.commandPrefix, process.execPath, opts.cliPath, role, ...args];
  const child = spawn(argv[0] as string, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
  trackChild(child); // SIGKILLed if this process exits or is interrupted before stop()
  child.stderr.pipe(log, { end: false });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const ready = new Promise<{ address: string; metricsAddress: string }>((resolve, reject) => {
    const lines = createInterface({ input: child.stdout });
    const timer = setTimeout(() => reject(new Error(`${name} did not become ready in 30 s (see ${logFile})`)), 30_000);
    lines.on('line', (line) => {
      log.write(`${line}\n`);
      if (READY.test(line)) {
        clearTimeout(timer);
        const doc = JSON.parse(line) as { address: string; metricsAddress: string };
        resolve(doc);
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${name} exited with code ${code} before it was ready (see ${logFile})`));
    });
  });
  const stop = async (signal: NodeJS.Signals): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill(signal);
    const grace = setTimeout(() => child.kill('SIGKILL'), 5_000);
    await exited;
    clearTimeout(grace);
    log.end();
  };
  let address: { address: string; metricsAddress: string };
  try {
    address = await ready;
  } catch (err) {
    await stop('SIGKILL');
    throw err;
  }
  return {
    name,
    role,
    host: address.address,
    url: `http://${address.address}`,
    metricsUrl: `http://${address.metricsAddress}/metrics`,
    dataDir: path.join(opts.workDir, name),
    logFile,
    process: child,
    stop: () => stop('SIGTERM'),
    kill: () => stop('SIGKILL'),
  };
}

/** Reads the per-source byte counters from a node's Prometheus endpoint. */
export async function readCounters(node: Pick<ClusterNode, 'metricsUrl'>): Promise<NodeCounters> {
  const text = await (await fetch(node.metricsUrl, { signal: AbortSignal.timeout(2_000) })).text();
  const bySource = (metric: string): SourceBytes => {
    const out: SourceBytes = {};
    for (const m of text.matchAll(new RegExp(`^${metric}\\{source="(\\w+)"\\} (\\S+)$`, 'gm'))) out[m[1] as string] = Number(m[2]);
    return out;
  };
  const single = (metric: string): number => Number(new RegExp(`^${metric} (\\S+)$`, 'm').exec(text)?.[1] ?? 0);
  /** Every sample of the metric, whatever its labels. */
  const total = (metric: string): number => [...text.matchAll(new RegExp(`^${metric}(?:\\{[^}]*\\})? (\\S+)$`, 'gm'))].reduce((n, m) => n + Number(m[1]), 0);
  return {
    fetched: bySource('peerpull_bytes_fetched_total'),
    served: bySource('peerpull_bytes_served_total'),
    peerUploaded: total('peerpull_peer_bytes_uploaded_total'),
    peersConnected: single('peerpull_peers_connected'),
  };
}
