// `node test/bench/soak.bench.ts`: a bounded soak. For SOAK_SECONDS (600), SOAK_WORKERS (20) keep-alive
// clients send a mix of requests to one daemon: cached blobs (whole and ranged), cached manifests by tag,
// blobs that exist nowhere (each one a miss that asks the upstream), malformed requests, and every
// SOAK_COLD_EVERY_S a cold blob (removed from the cache through the admin API, when it has one). Every
// SOAK_SAMPLE_S (10) it prints the daemon's RSS, its JS heap (used and reserved, from its metrics), the
// memory outside the heap (Buffers), open file descriptors and request counts; at the end it compares the
// first and last thirds and exits 1 if file descriptors grew by more than SOAK_MAX_FD_GROWTH (20), the live
// heap by more than SOAK_MAX_HEAP_GROWTH_MIB (8), RSS by more than SOAK_MAX_RSS_GROWTH_MIB (64), or any
// request got an unexpected answer. The live heap of a third is its lowest "heap used" sample (the one
// taken closest after a collection): the other samples count garbage. A leak of JS objects shows there;
// RSS alone also moves with how much heap V8 chooses to reserve.
// The daemon runs through the deployed launcher (deploy/bin/peerpull: glibc arenas bounded, a 4 MB young
// generation); SOAK_LAUNCHER=0 runs plain `node` to compare (V8 then grows and shrinks its reserved heap
// by ~100 MiB on its own, and RSS with it). SOAK_NODE_OPTIONS adds daemon Node options (e.g.
// --heapsnapshot-signal=SIGUSR2 to compare heap snapshots). The heap is capped at SOAK_HEAP_MB (256) as
// a container memory limit would cap it: without a cap V8 on a big machine defers collection and RSS
// measures garbage, not leaks.
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { REPO_ROOT, startPeerpull } from '../fixtures/daemon.ts';
import { getImageLayout, pushImage } from '../fixtures/images.ts';
import { startRegistry } from '../fixtures/registry.ts';
import { FaultProxy } from '../fixtures/fault-proxy.ts';
import { fdCount, rssMiB } from '../e2e/hardening-helpers.ts';

const SECONDS = Number(process.env.SOAK_SECONDS ?? 600);
const WORKERS = Number(process.env.SOAK_WORKERS ?? 20);
const SAMPLE_S = Number(process.env.SOAK_SAMPLE_S ?? 10);
const COLD_EVERY_S = Number(process.env.SOAK_COLD_EVERY_S ?? 30);
const MAX_FD_GROWTH = Number(process.env.SOAK_MAX_FD_GROWTH ?? 20);
const MAX_RSS_GROWTH = Number(process.env.SOAK_MAX_RSS_GROWTH_MIB ?? 64);
const MAX_HEAP_GROWTH = Number(process.env.SOAK_MAX_HEAP_GROWTH_MIB ?? 8);
const LAUNCHER = process.env.SOAK_LAUNCHER !== '0';
const HEAP_MB = Number(process.env.SOAK_HEAP_MB ?? 256);
const log = (line: string): void => void process.stdout.write(`${line}\n`);

const reg = await startRegistry();
const image = await getImageLayout({ name: 'soak', layers: [64_000, 512_000, 2_000_000, 4_000_000] });
await pushImage(image, `${reg.host}/library/soak:v1`);
const upstream = await FaultProxy.start(reg.url);
const NODE_OPTIONS = `--max-old-space-size=${HEAP_MB} ${process.env.SOAK_NODE_OPTIONS ?? ''}`.trim();
const daemon = await startPeerpull({ registries: [`${upstream.host}=${upstream.url}`], launcher: LAUNCHER, env: { NODE_OPTIONS } });
const pid = daemon.process.pid!;
const layers = image.manifests[0]!.layers;
const agent = new http.Agent({ keepAlive: true, maxSockets: WORKERS });

function request(method: string, p: string, headers: Record<string, string> = {}): Promise<{ status: number; digest: string }> {
  return new Promise((resolve) => {
    const req = http.request({ host: '127.0.0.1', port: daemon.port, method, path: p, headers, agent, timeout: 30_000 }, (res) => {
      const hash = crypto.createHash('sha256');
      res.on('data', (c: Buffer) => hash.update(c));
      res.once('end', () => resolve({ status: res.statusCode ?? 0, digest: `sha256:${hash.digest('hex')}` }));
      res.once('error', () => resolve({ status: -1, digest: '' }));
    });
    req.once('timeout', () => req.destroy(new Error('timeout')));
    req.once('error', () => resolve({ status: -1, digest: '' }));
    req.end();
  });
}

const counts = new Map<string, number>();
let unexpected = 0;
const count = (kind: string, ok: boolean): void => {
  counts.set(kind, (counts.get(kind) ?? 0) + 1);
  if (!ok) {
    unexpected++;
    if (unexpected <= 10) log(`unexpected answer for ${kind}`);
  }
};

const deadline = Date.now() + SECONDS * 1000;
let missSeq = 0;
async function worker(id: number): Promise<void> {
  for (let i = 0; Date.now() < deadline; i++) {
    const pick = (i * 7 + id) % 20;
    const l = layers[(i + id) % layers.length]!;
    if (pick < 9) {
      const r = await request('GET', `/v2/library/soak/blobs/${l.digest}`);
      count('blob', r.status === 200 && r.digest === l.digest);
    } else if (pick < 12) {
      const r = await request('GET', `/v2/library/soak/blobs/${l.digest}`, { range: 'bytes=1000-1999' });
      count('range', r.status === 206);
    } else if (pick < 15) {
      const r = await request('HEAD', '/v2/library/soak/manifests/v1', { accept: 'application/vnd.oci.image.manifest.v1+json' });
      count('manifest', r.status === 200);
    } else if (pick < 18) {
      const digest = `sha256:${crypto.createHash('sha256').update(`soak-miss-${missSeq++}`).digest('hex')}`;
      const r = await request('GET', `/v2/library/soak/blobs/${digest}`);
      count('miss', r.status === 404);
    } else {
      const r = await request('GET', ['/v2/a/../b/manifests/x', '/v2/a/blobs/sha256:zz', '/v2/a/manifests/%2e%2e', `/v2/${'a'.repeat(300)}/manifests/x`][i % 4]!);
      count('bad', r.status === 400);
    }
  }
}

async function coldLoop(): Promise<void> {
  for (let n = 0; Date.now() + COLD_EVERY_S * 1000 < deadline; n++) {
    await new Promise((r) => setTimeout(r, COLD_EVERY_S * 1000));
    const l = layers[n % layers.length]!;
    const rm = await fetch(`${daemon.url}/api/v1/cache/rm`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ target: l.digest }) }).catch(() => undefined);
    count('cold-rm', rm === undefined || rm.status < 500);
  }
}

// The daemon's JS heap in use and its memory outside the heap (Buffers), from its default metrics.
async function heapMiB(): Promise<{ heap: number; heapTotal: number; external: number }> {
  const text = await (await fetch(daemon.metricsUrl, { signal: AbortSignal.timeout(5_000) })).text();
  const metric = (name: string): number => Number(new RegExp(`^peerpull_${name} ([0-9.e+]+)$`, 'm').exec(text)?.[1] ?? 'NaN') / 2 ** 20;
  return { heap: metric('nodejs_heap_size_used_bytes'), heapTotal: metric('nodejs_heap_size_total_bytes'), external: metric('nodejs_external_memory_bytes') };
}

const samples: { t: number; rss: number; heap: number; heapTotal: number; external: number; fds: number; requests: number }[] = [];
const total = (): number => [...counts.values()].reduce((a, b) => a + b, 0);
const sampler = setInterval(() => {
  const t = Math.round((SECONDS * 1000 - (deadline - Date.now())) / 1000);
  const rss = rssMiB(pid);
  const fds = fdCount(pid);
  const requests = total();
  void heapMiB()
    .catch(() => ({ heap: NaN, heapTotal: NaN, external: NaN }))
    .then(({ heap, heapTotal, external }) => {
      samples.push({ t, rss, heap, heapTotal, external, fds, requests });
      log(`t=${String(t).padStart(4)} s  RSS ${rss.toFixed(0).padStart(4)} MiB  heap used/total ${heap.toFixed(0).padStart(3)}/${heapTotal.toFixed(0).padStart(3)} MiB  external ${external.toFixed(0).padStart(3)} MiB  fds ${String(fds).padStart(4)}  requests ${requests}`);
    });
}, SAMPLE_S * 1000);

log(`soak: ${SECONDS} s, ${WORKERS} workers, daemon pid ${pid} (${LAUNCHER ? 'deploy/bin/peerpull' : 'plain node'}, NODE_OPTIONS ${NODE_OPTIONS})`);
await Promise.all([...Array.from({ length: WORKERS }, (_, i) => worker(i)), coldLoop()]);
clearInterval(sampler);
agent.destroy();

samples.sort((a, b) => a.t - b.t); // heap scrapes may answer out of order
const third = Math.max(1, Math.floor(samples.length / 3));
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
const first = samples.slice(0, third);
const last = samples.slice(-third);
const liveHeap = (xs: typeof samples): number => Math.min(...xs.map((s) => s.heap).filter((h) => !Number.isNaN(h)));
const growth = (of: (xs: typeof samples) => number): { from: number; to: number; by: number } => ({ from: of(first), to: of(last), by: of(last) - of(first) });
const rss = growth((xs) => median(xs.map((s) => s.rss)));
const heap = growth(liveHeap);
const heapTotal = growth((xs) => median(xs.map((s) => s.heapTotal)));
const external = growth((xs) => median(xs.map((s) => s.external)));
const fds = growth((xs) => median(xs.map((s) => s.fds)));
const summary = { seconds: SECONDS, workers: WORKERS, launcher: LAUNCHER, nodeOptions: NODE_OPTIONS, requests: Object.fromEntries(counts), unexpected, rssGrowthMiB: rss.by, liveHeapGrowthMiB: heap.by, heapTotalGrowthMiB: heapTotal.by, externalGrowthMiB: external.by, fdGrowth: fds.by, samples };
const line = (name: string, g: { from: number; to: number; by: number }, unit: string): string =>
  `${name.padEnd(30)} ${g.from.toFixed(0).padStart(5)} -> ${g.to.toFixed(0).padStart(5)} ${unit}  (${g.by >= 0 ? '+' : ''}${g.by.toFixed(0)})`;
log(`\n${total()} requests (${JSON.stringify(Object.fromEntries(counts))}), ${unexpected} unexpected answers`);
log('first third -> last third:');
log(line('RSS (median)', rss, 'MiB'));
log(line('live JS heap (lowest used)', heap, 'MiB'));
log(line('JS heap reserved (median)', heapTotal, 'MiB'));
log(line('outside the heap (median)', external, 'MiB'));
log(line('file descriptors (median)', fds, ''));
fs.mkdirSync(path.join(REPO_ROOT, 'bench-results'), { recursive: true });
fs.writeFileSync(path.join(REPO_ROOT, 'bench-results', 'soak.json'), `${JSON.stringify(summary, null, 2)}\n`);
await daemon.stop();
await upstream.close();
await reg.stop();
const problems = [
  ...(samples.length === 0 ? ['no samples'] : []),
  ...(unexpected > 0 ? [`${unexpected} unexpected answers`] : []),
  ...(fds.by > MAX_FD_GROWTH ? [`file descriptors grew by ${fds.by} (> ${MAX_FD_GROWTH})`] : []),
  ...(!(heap.by <= MAX_HEAP_GROWTH) ? [`the live JS heap grew by ${heap.by.toFixed(0)} MiB (> ${MAX_HEAP_GROWTH}): objects are kept`] : []),
  ...(rss.by > MAX_RSS_GROWTH ? [`RSS grew by ${rss.by.toFixed(0)} MiB (> ${MAX_RSS_GROWTH})${heap.by <= MAX_HEAP_GROWTH ? ' with a flat live heap: native memory or V8 reserving more heap' : ''}`] : []),
];
log(problems.length === 0 ? 'soak: OK' : `soak: FAILED (${problems.join('; ')})`);
process.exit(problems.length === 0 ? 0 : 1);
