// Load scenarios shared by hardening-load.test.ts (functional: everything succeeds, one upstream fetch, RSS
// bounded) and test/bench/load.bench.ts (the figures: time to first byte percentiles, peak RSS).
import crypto from 'node:crypto';
import http from 'node:http';
import { startRegistry, type Registry } from '../fixtures/registry.ts';
import { startPeerpull, type DaemonProcess } from '../fixtures/daemon.ts';
import { getImageLayout, pushImage, type BuiltImage } from '../fixtures/images.ts';
import { FaultProxy } from '../fixtures/fault-proxy.ts';
import { MiB } from './mirror-helpers.ts';
import { percentile, rssMiB, sampleMax } from './hardening-helpers.ts';

export interface Fetched {
  status: number;
  bytes: number;
  digest: string;
  /** ms from sending the request to the response headers / to the end of the body. */
  ttfbMs: number;
  totalMs: number;
  error?: string;
}

/** GET over a shared keep-alive agent, hashing the body; never rejects. */
export function fetchBlob(url: string, agent: http.Agent, timeoutMs = 120_000): Promise<Fetched> {
  const started = performance.now();
  return new Promise((resolve) => {
    const fail = (error: string) => resolve({ status: 0, bytes: 0, digest: '', ttfbMs: NaN, totalMs: performance.now() - started, error });
    const req = http.get(url, { agent, timeout: timeoutMs }, (res) => {
      const ttfbMs = performance.now() - started;
      const hash = crypto.createHash('sha256');
      let bytes = 0;
      res.on('data', (c: Buffer) => {
        hash.update(c);
        bytes += c.length;
      });
      res.once('end', () => resolve({ status: res.statusCode ?? 0, bytes, digest: `sha256:${hash.digest('hex')}`, ttfbMs, totalMs: performance.now() - started, ...(res.complete ? {} : { error: 'incomplete' }) }));
      res.once('error', (err) => fail(err.message));
    });
    req.once('timeout', () => req.destroy(new Error('timeout')));
    req.once('error', (err) => fail(err.message));
  });
}

export class LoadRig {
  reg!: Registry;
  upstream!: FaultProxy;
  daemon!: DaemonProcess;
  big!: BuiltImage;
  many!: BuiltImage;

  async setup(opts: { manyLayers: number; bigLayerBytes: number; daemonEnv?: NodeJS.ProcessEnv }): Promise<void> {
    this.reg = await startRegistry();
    [this.big, this.many] = await Promise.all([
      getImageLayout({ name: 'hardening-load-big', layers: [opts.bigLayerBytes] }),
      getImageLayout({ name: 'hardening-load-many', layers: Array.from({ length: opts.manyLayers }, (_, i) => 20_000 + i * 97) }),
    ]);
    await Promise.all([pushImage(this.big, `${this.reg.host}/library/big:v1`), pushImage(this.many, `${this.reg.host}/library/many:v1`)]);
    this.upstream = await FaultProxy.start(this.reg.url);
    // As installs run it (deploy/bin/peerpull: its allocator and V8 settings), since memory and latency are measured.
    this.daemon = await startPeerpull({ registries: [`${this.upstream.host}=${this.upstream.url}`], launcher: true, ...(opts.daemonEnv ? { env: opts.daemonEnv } : {}) });
  }

  async teardown(): Promise<void> {
    await this.daemon?.stop();
    await this.upstream?.close();
    await this.reg?.stop();
  }

  /** N clients at once for the one uncached big blob; the upstream throttled so that all of them join the one fetch. */
  async oneBlobManyClients(clients: number, upstreamBytesPerSecond = 2 * MiB): Promise<{ results: Fetched[]; upstreamGets: number; peakRssMiB: number; rssBeforeMiB: number; ms: number }> {
    const layer = this.big.manifests[0]!.layers[0]!;
    const pid = this.daemon.process.pid!;
    const rssBeforeMiB = rssMiB(pid);
    const peak = sampleMax(() => rssMiB(pid));
    this.upstream.throttleBytesPerSecond = upstreamBytesPerSecond;
    const agent = new http.Agent({ keepAlive: true, maxSockets: clients });
    const started = performance.now();
    const results = await Promise.all(Array.from({ length: clients }, () => fetchBlob(`${this.daemon.url}/v2/library/big/blobs/${layer.digest}`, agent)));
    const ms = performance.now() - started;
    agent.destroy();
    this.upstream.throttleBytesPerSecond = 0;
    return { results, upstreamGets: this.upstream.requestsFor(layer.digest, 'GET').length, peakRssMiB: peak.stop(), rssBeforeMiB, ms };
  }

  /**
   * Every layer of the many-layer image at once (distinct blobs), through a pool of `concurrency`
   * connections: new ones, or `agent`'s already open ones (containerd keeps its connections to a
   * mirror open between requests). `baseUrl`: another server to ask the same (a benchmark's baseline).
   */
  async manyBlobs(concurrency: number, agent?: http.Agent, baseUrl = this.daemon.url): Promise<{ results: Fetched[]; ms: number }> {
    const layers = this.many.manifests[0]!.layers;
    const pool = agent ?? new http.Agent({ keepAlive: true, maxSockets: concurrency });
    const started = performance.now();
    const results = await Promise.all(layers.map((l) => fetchBlob(`${baseUrl}/v2/library/many/blobs/${l.digest}`, pool)));
    const ms = performance.now() - started;
    if (!agent) pool.destroy();
    return { results, ms };
  }

  manyDigests(): string[] {
    return this.many.manifests[0]!.layers.map((l) => l.digest);
  }
}

export function ttfbSummary(results: Fetched[]): string {
  const t = results.map((r) => r.ttfbMs).filter((x) => Number.isFinite(x));
  return `TTFB p50 ${percentile(t, 50).toFixed(1)} ms, p90 ${percentile(t, 90).toFixed(1)} ms, p99 ${percentile(t, 99).toFixed(1)} ms, max ${Math.max(...t).toFixed(1)} ms`;
}
