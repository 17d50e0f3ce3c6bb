import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { formatBytes, formatDuration } from '@peerpull/common';
import { LayoutRegistry } from './layout-registry.ts';
import { LocalCluster, readCounters, type ClusterNode, type NodeCounters } from './local-cluster.ts';
import { pullImage, type PullResult } from './pull-client.ts';
import { buildImageLayout } from './synthetic-image.ts';

export interface DemoOptions {
  cliPath: string;
  nodes: number;
  imageBytes: number;
  /** Emulated WAN to the embedded upstream, bytes per second (0: unlimited). */
  wanRate: number;
  wanLatencyMs: number;
  p2p: boolean;
  keep: boolean;
  out: NodeJS.WriteStream;
}

/** Where a node's bytes came from (what it fetched into its store). */
const SOURCES = ['peer', 'seed', 'upstream'] as const;

/**
 * The demo: an embedded upstream serving a generated image behind an emulated WAN, one seed
 * and N daemons as real processes, and a burst pull through every daemon at once. It prints
 * where every byte came from and how many crossed the WAN. Returns the exit code.
 */
export async function runDemo(opts: DemoOptions): Promise<number> {
  const say = (line = ''): void => void opts.out.write(`${line}\n`);
  const workDir = mkdtempSync(path.join(tmpdir(), 'peerpull-demo-'));
  const upstream = new LayoutRegistry({ rateBytesPerSecond: opts.wanRate, latencyMs: opts.wanLatencyMs });
  let cluster: LocalCluster | undefined;
  let interrupted = false;
  const onSignal = (): void => {
    interrupted = true;
    say('\ninterrupted: stopping everything');
    void cleanup().then(() => process.exit(130));
  };
  const cleanup = async (): Promise<void> => {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await cluster?.stop().catch(() => undefined);
    await upstream.close().catch(() => undefined);
    if (!opts.keep) rmSync(workDir, { recursive: true, force: true });
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    const sizes = [0.04, 0.3, 0.66].map((f) => Math.round(opts.imageBytes * f));
    say(`peerpull demo: 1 seed + ${opts.nodes} nodes on this machine, offline`);
    const image = await buildImageLayout(path.join(workDir, 'image'), { name: 'peerpull-demo', layers: sizes, tag: 'v1' });
    const imageBytes = image.totalBytes;
    upstream.addRepository('library/demo', image.layoutDir);
    const upstreamHost = await upstream.listen();
    const wan = opts.wanRate ? `${((opts.wanRate * 8) / 1e6).toFixed(0)} Mbit/s, ${opts.wanLatencyMs} ms` : 'unlimited';
    say(`  upstream   ${upstreamHost}  embedded registry, image library/demo:v1 = ${formatBytes(imageBytes)} in ${sizes.length} layers, WAN ${wan}`);
    cluster = await LocalCluster.start({ workDir, cliPath: opts.cliPath, upstream: { host: upstreamHost, url: `http://${upstreamHost}` }, daemons: opts.nodes, p2p: opts.p2p });
    say(`  seed       ${cluster.seed?.host}`);
    for (const d of cluster.daemons) say(`  ${d.name.padEnd(10)} ${d.host}`);
    if (opts.p2p && !(await cluster.waitForPeers(10_000))) say('  (warning: not every node found a peer yet)');
    if (interrupted) return 130;

    say(`\nPulling library/demo:v1 on all ${opts.nodes} nodes at the same moment (as containerd would)...`);
    const started = performance.now();
    const progress = new Progress(opts.out, cluster.daemons, imageBytes);
    const results = await Promise.allSettled(
      cluster.daemons.map(async (node) => {
        const result = await pullImage({ registryUrl: node.url, repository: 'library/demo', tag: 'v1', ns: upstreamHost });
        progress.done(node.name, result);
        return result;
      }),
    ).finally(() => progress.stop());
    const wall = performance.now() - started;
    const counters = await cluster.counters();

    say('\nbytes each node fetched, by source:');
    say('node        time      ' + SOURCES.map((s) => s.padStart(11)).join('') + '   result');
    let failed = 0;
    cluster.daemons.forEach((node, i) => {
      const r = results[i];
      const c = counters.get(node.name) as NodeCounters;
      const time = r?.status === 'fulfilled' ? formatDuration(r.value.seconds * 1000) : '-';
      const row = SOURCES.map((s) => formatBytes(c.fetched[s] ?? 0).padStart(11)).join('');
      if (r?.status === 'rejected') failed++;
      say(`${node.name.padEnd(12)}${time.padEnd(10)}${row}   ${r?.status === 'fulfilled' ? 'ok, verified' : `FAILED: ${(r?.reason as Error).message}`}`);
    });
    const wanBytes = upstream.bytesSent;
    const pulled = imageBytes * opts.nodes;
    say('');
    say(`cluster: ${opts.nodes} × ${formatBytes(imageBytes)} pulled in ${formatDuration(wall)}; the upstream sent ${formatBytes(wanBytes)}`);
    say(`         upstream bytes ÷ image bytes = ${(wanBytes / imageBytes).toFixed(2)} (1.00 = one WAN pull fed the whole cluster)`);
    say(`         WAN bytes saved: ${formatBytes(Math.max(0, pulled - wanBytes))} (${((1 - wanBytes / pulled) * 100).toFixed(0)} % of a direct pull on every node)`);
    const seed = counters.get('seed');
    if (seed) say(`         seed sent ${formatBytes(Object.values(seed.served).reduce((a, b) => a + b, 0))} to nodes; nodes sent each other ${formatBytes([...counters.values()].reduce((a, c) => a + c.peerUploaded, 0))} over P2P`);
    if (opts.keep) say(`\nlogs and data kept in ${workDir}`);
    if (failed) say(`\n${failed} node(s) failed: see the logs in ${workDir} (run with --keep to keep them)`);
    return failed ? 1 : 0;
  } catch (err) {
    say(`demo failed: ${(err as Error).message}`);
    return 1;
  } finally {
    await cleanup();
  }
}

/** A live view on a terminal (redrawn in place); plain lines otherwise. */
class Progress {
  readonly #out: NodeJS.WriteStream;
  readonly #nodes: ClusterNode[];
  readonly #total: number;
  readonly #finished = new Map<string, PullResult>();
  readonly #timer: NodeJS.Timeout | undefined;
  readonly #started = performance.now();
  #drawn = 0;

  constructor(out: NodeJS.WriteStream, nodes: ClusterNode[], total: number) {
    this.#out = out;
    this.#nodes = nodes;
    this.#total = total;
    if (out.isTTY) this.#timer = setInterval(() => void this.#draw(), 250);
  }

  done(name: string, result: PullResult): void {
    this.#finished.set(name, result);
    if (!this.#out.isTTY) this.#out.write(`  ${name} done in ${formatDuration(result.seconds * 1000)}\n`);
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
