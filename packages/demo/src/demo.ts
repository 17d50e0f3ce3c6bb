import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { formatBytes, formatDuration } from '@peerpull/common';
import { CONTAINERD_BIN, CTR_BIN, startContainerd, type Containerd } from './containerd.ts';
import { REGISTRY_BIN, startRegistry, type Registry } from './distribution-registry.ts';
import { LayoutRegistry } from './layout-registry.ts';
import { LocalCluster, readCounters, type ClusterNode, type NodeCounters } from './local-cluster.ts';
import { installExitHandlers, makeTempDir } from './processes.ts';
import { pullImage } from './pull-client.ts';
import { pushImage, SKOPEO_BIN } from './skopeo.ts';
import { buildImageLayout } from './synthetic-image.ts';
import { WanLink } from './wan-link.ts';

export interface DemoOptions {
  cliPath: string;
  nodes: number;
  imageBytes: number;
  /** Emulated WAN to the upstream, bytes per second (0: unlimited). */
  wanRate: number;
  /** Added delay per direction, ms. */
  wanLatencyMs: number;
  p2p: boolean;
  keep: boolean;
  /**
   * The real distribution registry (docker-registry, image pushed with skopeo) in a network namespace
   * behind a tc-shaped veth, and a private containerd per node, instead of the embedded upstream and
   * the HTTP client. Falls back (and says so) where a piece is missing.
   */
  real?: boolean;
  out: NodeJS.WriteStream;
}

/** Where a node's bytes came from (what it fetched into its store). */
const SOURCES = ['peer', 'seed', 'upstream'] as const;
const REPOSITORY = 'library/demo';
const TAG = 'v1';

/** What the demo pulls from: counts the body bytes it sent (the WAN bytes that matter). */
interface DemoUpstream {
  /** The relay's `127.0.0.1:PORT`: what clients and the cluster use as the upstream. */
  host: string;
  description: string;
  bytesSent(): Promise<number>;
  stop(): Promise<void>;
}

/** One node's client: containerd, or the HTTP client that makes containerd's requests. */
interface NodeClient {
  description: string;
  /** Points the client at its node (containerd: hosts.toml with the node as the mirror). */
  attach(node: ClusterNode): void;
  pull(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * The demo: an upstream serving a generated image behind an emulated WAN, one seed and N daemons as
 * real processes, and a burst pull through every daemon at once. It prints where every byte came
 * from and how many crossed the WAN. Returns the exit code.
 */
export async function runDemo(opts: DemoOptions): Promise<number> {
  const say = (line = ''): void => void opts.out.write(`${line}\n`);
  // Ctrl-C: processes.ts kills every child (nodes, registry, containerds), deletes the network
  // namespace and the temp dirs synchronously, then exits 130. This listener only says so first.
  const onSignal = (): void => say('\ninterrupted: stopping everything');
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  installExitHandlers();
  const workDir = opts.keep ? mkdtempSync(path.join(tmpdir(), 'peerpull-demo-')) : makeTempDir('peerpull-demo-');
  let link: WanLink | undefined;
  let upstream: DemoUpstream | undefined;
  let cluster: LocalCluster | undefined;
  const clients: NodeClient[] = [];
  try {
    const sizes = [0.04, 0.3, 0.66].map((f) => Math.round(opts.imageBytes * f));
    say(`peerpull demo: 1 seed + ${opts.nodes} nodes on this machine, offline${opts.real ? ', real upstream registry and containerd' : ''}`);
    const image = await buildImageLayout(path.join(workDir, 'image'), { name: 'peerpull-demo', layers: sizes, tag: TAG });
    const imageBytes = image.totalBytes;

    const missing = opts.real ? [REGISTRY_BIN, SKOPEO_BIN].filter((bin) => !existsSync(bin)) : [];
    if (missing.length) {
      say(`--real needs ${missing.join(' and ')} (Debian: apt-get install docker-registry skopeo containerd)`);
      return 1;
    }
    link = opts.real
      ? await WanLink.create({ rateBitsPerSecond: opts.wanRate * 8, delayMs: opts.wanLatencyMs })
      : await WanLink.create({ rateBitsPerSecond: opts.wanRate * 8, delayMs: opts.wanLatencyMs, mode: 'relay', why: 'the embedded upstream runs inside this process; --real runs a registry in one' });
    upstream = opts.real ? await startRealUpstream(link, image, workDir) : await startEmbeddedUpstream(link, image.layoutDir);
    say(`  upstream   ${upstream.host}  ${upstream.description}, image ${REPOSITORY}:${TAG} = ${formatBytes(imageBytes)} in ${sizes.length} layers`);
    say(`  WAN        ${link.describe()}`);

    const clusterStarting = LocalCluster.start({ workDir, cliPath: opts.cliPath, upstream: { host: upstream.host, url: `http://${upstream.host}` }, daemons: opts.nodes, p2p: opts.p2p });
    const clientsStarting = Promise.allSettled(Array.from({ length: opts.nodes }, () => startClient(upstream as DemoUpstream, opts.real ?? false)));
    const [started, startedClients] = await Promise.all([clusterStarting.then((c) => ({ ok: c }), (err: unknown) => ({ err })), clientsStarting]);
    for (const c of startedClients) if (c.status === 'fulfilled') clients.push(c.value);
    if ('err' in started) throw started.err;
    cluster = started.ok;
    const failedClient = startedClients.find((c) => c.status === 'rejected');
    if (failedClient) throw failedClient.reason;
    const nodes = cluster.daemons;
    say(`  seed       ${cluster.seed?.host}`);
    nodes.forEach((d, i) => {
      clients[i]?.attach(d);
      say(`  ${d.name.padEnd(10)} ${d.host}  client: ${clients[i]?.description}`);
    });
    if (opts.p2p && !(await cluster.waitForPeers(10_000))) say('  (warning: not every node found a peer yet)');

    say(`\nPulling ${REPOSITORY}:${TAG} on all ${opts.nodes} nodes at the same moment (as containerd would)...`);
    const started0 = performance.now();
    const progress = new Progress(opts.out, nodes, imageBytes);
    const results = await Promise.allSettled(
      nodes.map(async (node, i) => {
        const t0 = performance.now();
        await (clients[i] as NodeClient).pull();
        const seconds = (performance.now() - t0) / 1000;
        progress.done(node.name, seconds);
        return seconds;
      }),
    ).finally(() => progress.stop());
    const wall = performance.now() - started0;
    const counters = await cluster.counters();

    say('\nbytes each node fetched, by source:');
    say('node        time      ' + SOURCES.map((s) => s.padStart(11)).join('') + '   result');
    let failed = 0;
    nodes.forEach((node, i) => {
      const r = results[i];
      const c = counters.get(node.name) as NodeCounters;
      const time = r?.status === 'fulfilled' ? formatDuration(r.value * 1000) : '-';
      const row = SOURCES.map((s) => formatBytes(c.fetched[s] ?? 0).padStart(11)).join('');
      if (r?.status === 'rejected') failed++;
      say(`${node.name.padEnd(12)}${time.padEnd(10)}${row}   ${r?.status === 'fulfilled' ? 'ok, verified' : `FAILED: ${(r?.reason as Error).message.split('\n')[0]}`}`);
    });
    const wanBytes = await upstream.bytesSent();
    const pulled = imageBytes * opts.nodes;
    say('');
    say(`cluster: ${opts.nodes} × ${formatBytes(imageBytes)} pulled in ${formatDuration(wall)}; the upstream sent ${formatBytes(wanBytes)}`);
    say(`         upstream bytes ÷ image bytes = ${(wanBytes / imageBytes).toFixed(2)} (1.00 = one WAN pull fed the whole cluster)`);
    say(`         WAN bytes saved: ${formatBytes(Math.max(0, pulled - wanBytes))} (${((1 - wanBytes / pulled) * 100).toFixed(0)} % of a direct pull on every node)`);
    const seed = counters.get('seed');
    if (seed) say(`         seed sent ${formatBytes(Object.values(seed.served).reduce((a, b) => a + b, 0) + seed.peerUploaded)} to nodes; nodes sent each other ${formatBytes([...counters.values()].reduce((a, c) => a + c.peerUploaded, 0) - seed.peerUploaded)} over P2P`);
    if (opts.keep) say(`\nlogs and data kept in ${workDir}`);
    if (failed) say(`\n${failed} node(s) failed: see the logs in ${workDir} (run with --keep to keep them)`);
    return failed ? 1 : 0;
  } catch (err) {
    say(`demo failed: ${(err as Error).message}`);
    return 1;
  } finally {
    await cluster?.stop().catch(() => undefined);
    await Promise.all(clients.map((c) => c.stop().catch(() => undefined)));
    await upstream?.stop().catch(() => undefined);
    await link?.stop().catch(() => undefined);
    if (!opts.keep) rmSync(workDir, { recursive: true, force: true });
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

/** The embedded LayoutRegistry on loopback, behind the link's relay (rate and delay in userspace). */
async function startEmbeddedUpstream(link: WanLink, layoutDir: string): Promise<DemoUpstream> {
  const registry = new LayoutRegistry();
  registry.addRepository(REPOSITORY, layoutDir);
  const port = Number((await registry.listen(link.serverHost)).split(':').pop());
  await link.shape();
  const host = await link.expose(port);
  return {
    host,
    description: 'embedded registry',
    bytesSent: async () => registry.bytesSent,
    stop: () => registry.close(),
  };
}

/**
 * The distribution registry on the far side of the link (in its network namespace when the link has
 * one), seeded with the image by skopeo before the link is shaped.
 */
async function startRealUpstream(link: WanLink, image: { layoutDir: string; tag: string }, workDir: string): Promise<DemoUpstream> {
  const registry: Registry = await startRegistry({ listenHost: link.serverHost, commandPrefix: link.commandPrefix, dataDir: path.join(workDir, 'upstream'), logFile: path.join(workDir, 'upstream.log') });
  try {
    await pushImage(image.layoutDir, `${registry.host}/${REPOSITORY}:${TAG}`, { tag: image.tag });
    await link.shape();
    const host = await link.expose(registry.port);
    registry.clearLog();
    return {
      host,
      description: `distribution registry (${REGISTRY_BIN}) at ${registry.host}`,
      async bytesSent() {
        await registry.flushLog();
        return registry.bytesSent({ method: 'GET' });
      },
      stop: async () => void (await registry.stop()),
    };
  } catch (err) {
    await registry.stop();
    throw err;
  }
}

/** A private containerd mirroring the upstream through the node (root and containerd needed), else the HTTP client. */
async function startClient(upstream: DemoUpstream, real: boolean): Promise<NodeClient> {
  const ref = `${upstream.host}/${REPOSITORY}:${TAG}`;
  if (real && process.getuid?.() === 0 && existsSync(CONTAINERD_BIN) && existsSync(CTR_BIN)) {
    const containerd: Containerd = await startContainerd();
    return {
      description: 'a private containerd (ctr image pull: fetch, verify, unpack)',
      attach: (node) => containerd.setMirrors(upstream.host, [node.url]),
      pull: async () => void (await containerd.pull(ref, { timeoutMs: 300_000 })),
      stop: async () => void (await containerd.stop()),
    };
  }
  const why = real ? ` (containerd needs root and ${CONTAINERD_BIN})` : '';
  let target: ClusterNode | undefined;
  return {
    description: `HTTP client making containerd's requests, verifying every digest${why}`,
    attach: (node) => void (target = node),
    pull: async () => void (await pullImage({ registryUrl: (target as ClusterNode).url, repository: REPOSITORY, tag: TAG, ns: upstream.host })),
    stop: async () => undefined,
  };
}

/** A live view on a terminal (redrawn in place); plain lines otherwise. */
class Progress {
  readonly #out: NodeJS.WriteStream;
  readonly #nodes: ClusterNode[];
  readonly #total: number;
  readonly #finished = new Set<string>();
  readonly #timer: NodeJS.Timeout | undefined;
  readonly #started = performance.now();
  #drawn = 0;

  constructor(out: NodeJS.WriteStream, nodes: ClusterNode[], total: number) {
    this.#out = out;
    this.#nodes = nodes;
    this.#total = total;
    if (out.isTTY) this.#timer = setInterval(() => void this.#draw(), 250);
  }

  done(name: string, seconds: number): void {
    this.#finished.add(name);
    if (!this.#out.isTTY) this.#out.write(`  ${name} done in ${formatDuration(seconds * 1000)}\n`);
  }

  stop(): void {
    clearInterval(this.#timer);
    if (this.#out.isTTY) void this.#draw();
  }

  async #draw(): Promise<void> {
    const served = await Promise.all(this.#nodes.map((n) => readCounters(n).then((c) => Object.values(c.served).reduce((a, b) => a + b, 0)).catch(() => 0)));
    const lines = this.#nodes.map((node, i) => {
      const bytes = this.#finished.has(node.name) ? this.#total : Math.min(this.#total, served[i] ?? 0);
      const width = 30;
      const filled = Math.round((bytes / this.#total) * width);
      const state = this.#finished.has(node.name) ? 'done' : formatDuration(performance.now() - this.#started);
      return `  ${node.name.padEnd(10)} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${formatBytes(bytes).padStart(10)}  ${state}`;
    });
    if (this.#drawn) this.#out.write(`\x1b[${this.#drawn}A`);
    this.#out.write(lines.map((l) => `${l}\x1b[K\n`).join(''));
    this.#drawn = lines.length;
  }
}
