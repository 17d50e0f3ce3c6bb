// `pnpm bench:mirror`: the mirror benchmark of issue 3. One run, one generated image (layers of ~1, ~20 and
// ~100 MB of incompressible data) in a real distribution registry, pulled with a containerd-like HTTP client
// (test/fixtures/pull-client.ts: HEAD by tag, GET manifest by digest, config + layers 3 in flight, every body
// verified while it streams, bytes discarded):
//   direct  - straight from the registry;
//   cold    - through a freshly started daemon with an empty data dir (upstream = the registry), after
//             one untimed pull of a different image (a running daemon: JIT and upstream connection warm,
//             as the direct pulls are after their warm-up); the first pull after start is reported too;
//   warm    - through the same daemon again, once it has stored the blobs;
//   fan-out - N (default 100) concurrent clients GETting the warm 100 MB blob from the daemon, each verified;
//   link    - direct and cold again, with the registry behind a shaped link (default 1 Gbit/s, 5 ms each
//             way: test/fixtures/link-shaper.ts), the situation the cold target is about: on bare loopback
//             the upstream costs nothing, so cold vs direct only measures the daemon's own CPU.
// Prints MB/s (1 MB = 10^6 bytes), ratios, daemon CPU-seconds per GB (utime+stime from /proc/<pid>/stat)
// and peak RSS (/proc/<pid>/status VmRSS every 50 ms) against the issue's targets; writes
// bench-results/mirror.json. Exit status 0 when every measurement ran (a missed target is a finding);
// 1 when something failed (bad digest, error status, upstream traffic where there must be none).
//
// Environment: BENCH_REPS (default 3), BENCH_CLIENTS (100), BENCH_LINK (`1gbit,5ms`; `off` skips it),
// BENCH_BUDGET_S (150: optional repetitions are skipped past it), BENCH_LAUNCHER (1: the daemon runs
// through deploy/bin/peerpull, as installs run it; 0: plain node), BENCH_DAEMON_ENV (space-separated
// K=V for the daemon, e.g. MALLOC_MMAP_THRESHOLD_=131072), BENCH_DAEMON_NODE_OPTIONS (e.g. --cpu-prof
// --cpu-prof-dir=/tmp/prof), BENCH_ECHO=1 (daemon output on stderr).
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { REPO_ROOT, registryEntry, startPeerpull, type DaemonProcess } from '../fixtures/daemon.ts';
import { getImageLayout, pushImage } from '../fixtures/images.ts';
import { parseRate, startLinkShaper, type LinkShaper } from '../fixtures/link-shaper.ts';
import { HttpPool, getBlob, pullImage, type PullResult } from '../fixtures/pull-client.ts';
import { startRegistry, type Registry } from '../fixtures/registry.ts';
import { waitUntil } from '../fixtures/wait-until.ts';

const MiB = 1024 * 1024;
const IMAGE = { name: 'bench-mirror', layers: [1 * MiB, 20 * MiB, 100 * MiB] };
/** Pulled (untimed) by each fresh daemon before its cold pull: different blobs, the same code paths. */
const WARMUP_IMAGE = { name: 'bench-mirror-warmup', layers: [1 * MiB, 20 * MiB] };
const WARMUP_REPOSITORY = 'library/bench-mirror-warmup';
const REPOSITORY = 'library/bench-mirror';
const TAG = 'v1';
const REPS = Math.max(1, Number(process.env.BENCH_REPS ?? 3));
const CLIENTS = Math.max(1, Number(process.env.BENCH_CLIENTS ?? 100));
const BUDGET_MS = Number(process.env.BENCH_BUDGET_S ?? 150) * 1000;
const LINK = process.env.BENCH_LINK ?? '1gbit,5ms';
const CLK_TCK = 100; // USER_HZ
const RSS_SAMPLE_MS = 50;

const TARGETS = { coldOverDirect: 1.1, warmMBps: 1000, cpuSecondsPerGB: 1, rssMB: 200 };

const startedAt = Date.now();
const overBudget = (): boolean => Date.now() - startedAt > BUDGET_MS;
const log = (msg: string): void => void process.stderr.write(`[bench ${((Date.now() - startedAt) / 1000).toFixed(1)}s] ${msg}\n`);

// ---- /proc ------------------------------------------------------------------------------------------

/** utime + stime of a process, in seconds. */
function cpuSeconds(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLK_TCK; // fields 14 and 15 of stat(5)
}

function statusMB(pid: number, key: 'VmRSS' | 'VmHWM'): number {
  const m = new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : 0;
}

class RssSampler {
  peakMB = 0;
  readonly #pid: number;
  readonly #timer: NodeJS.Timeout;
  constructor(pid: number) {
    this.#pid = pid;
    this.sample();
    this.#timer = setInterval(() => this.sample(), RSS_SAMPLE_MS);
  }
  sample(): void {
    try {
      this.peakMB = Math.max(this.peakMB, statusMB(this.#pid, 'VmRSS'));
    } catch {
      // gone
    }
  }
  stop(): number {
    clearInterval(this.#timer);
    this.sample();
    return this.peakMB;
  }
}

/** Busy fraction of all CPUs between two calls (includes this benchmark). */
function cpuBusyMeter(): () => number {
  const read = (): [number, number] => {
    const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
    const idle = f[3]! + (f[4] ?? 0);
    return [f.reduce((a, b) => a + b, 0), idle];
  };
  const [t0, i0] = read();
  return () => {
    const [t1, i1] = read();
    return t1 > t0 ? 1 - (i1 - i0) / (t1 - t0) : 0;
  };
}

// ---- stats ------------------------------------------------------------------------------------------

const ms = (s: number): string => `${(s * 1000).toFixed(0)} ms`;

function median(xs: number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

const mbps = (bytes: number, seconds: number): number => bytes / 1e6 / seconds;
const round = (x: number, digits = 3): number => Number(x.toFixed(digits));

interface PullSample {
  seconds: number;
  bytes: number;
  MBps: number;
  bySource: Record<string, number>;
}

function sample(r: PullResult): PullSample {
  return { seconds: round(r.seconds, 4), bytes: r.bytes, MBps: round(mbps(r.bytes, r.seconds), 1), bySource: r.bySource };
}

interface CpuSplit {
  registry: number;
  client: number;
  daemon: number;
}

interface FanOutRun {
  clients: number;
  seconds: number;
  bytes: number;
  aggregateMBps: number;
  perClientSeconds: { min: number; median: number; max: number };
  daemonCpuSeconds: number;
  cpuSecondsPerGB: number;
  rssBeforeMB: number;
  peakRssMB: number;
  sources: Record<string, number>;
}

// ---- helpers ----------------------------------------------------------------------------------------

function daemonEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const kv of (process.env.BENCH_DAEMON_ENV ?? '').split(/\s+/).filter(Boolean)) {
    const eq = kv.indexOf('=');
    if (eq <= 0) throw new Error(`BENCH_DAEMON_ENV: not K=V: ${kv}`);
    env[kv.slice(0, eq)] = kv.slice(eq + 1);
  }
  if (process.env.BENCH_DAEMON_NODE_OPTIONS) env.NODE_OPTIONS = process.env.BENCH_DAEMON_NODE_OPTIONS;
  return env;
}

async function startDaemon(registry: Registry, upstreamUrl = registry.url): Promise<DaemonProcess> {
  return startPeerpull({
    registries: [upstreamUrl === registry.url ? registryEntry(registry) : `${registry.host}=${upstreamUrl}`],
    defaultRegistry: registry.host,
    // As deployed: through deploy/bin/peerpull (its allocator and V8 settings); BENCH_LAUNCHER=0 runs plain node.
    launcher: process.env.BENCH_LAUNCHER !== '0',
    env: daemonEnv(),
    echo: process.env.BENCH_ECHO === '1',
  });
}

/** Waits until the daemon logged `blob stored` for n blobs (the client has its bytes before fsync + rename). */
async function waitForStored(d: DaemonProcess, n: number, timeoutMs = 60_000): Promise<void> {
  await waitUntil(`the daemon to store ${n} blobs`, () => d.logs().filter((l) => l.msg === 'blob stored').length >= n, timeoutMs);
}

function parseLink(text: string): { rate: number | undefined; latencyMs: number; label: string } | undefined {
  if (/^off$/i.test(text.trim())) return undefined;
  const [rate = 'unlimited', lat = '0ms'] = text.split(',').map((s) => s.trim());
  const m = /^(\d+(?:\.\d+)?)\s*ms$/.exec(lat);
  if (!m) throw new Error(`BENCH_LINK: bad latency ${lat} (e.g. 5ms)`);
  return { rate: parseRate(rate), latencyMs: Number(m[1]), label: `${rate}, ${m[1]} ms each way` };
}

/**
 * Seconds per GB to fault in memory never touched before, and to write memory already touched. A cold
 * pull writes the blob into new page-cache pages; a direct pull reads pages the registry's files
 * already have in the page cache. On a VM whose host hands memory out lazily (or takes freed memory
 * back), a new page costs far more than the copy into it, and that cost lands on the cold pull only.
 */
function memoryTouchCost(): { freshSecondsPerGB: number; warmSecondsPerGB: number } {
  const bytes = 256 * MiB;
  let t0 = performance.now();
  const b = Buffer.alloc(bytes, 1);
  const fresh = (performance.now() - t0) / 1000;
  t0 = performance.now();
  b.fill(2);
  const warm = (performance.now() - t0) / 1000;
  const perGB = 1e9 / bytes;
  return { freshSecondsPerGB: fresh * perGB, warmSecondsPerGB: warm * perGB };
}

/** CPU-seconds per GB of SHA-256 on this machine (OpenSSL, as the daemon hashes), on bytes already in memory. */
function sha256SecondsPerGB(): number {
  const b = Buffer.alloc(64 * MiB, 7);
  crypto.createHash('sha256').update(b).digest(); // warm-up
  const rounds = 4;
  const t0 = performance.now();
  for (let i = 0; i < rounds; i++) crypto.createHash('sha256').update(b).digest();
  return (performance.now() - t0) / 1000 / ((rounds * b.length) / 1e9);
}

// ---- the benchmark ----------------------------------------------------------------------------------

async function main(): Promise<number> {
  const memory = memoryTouchCost();
  const hashSecondsPerGB = sha256SecondsPerGB();
  const busy = cpuBusyMeter();
  const loadAtStart = os.loadavg();
  log(`node ${process.version}, ${os.cpus().length} CPUs, ${Math.round(os.totalmem() / 2 ** 30)} GiB RAM, load ${loadAtStart.map((l) => l.toFixed(2)).join(' ')}; reps=${REPS}, clients=${CLIENTS}`);
  const registry = await startRegistry();
  const image = await getImageLayout(IMAGE);
  await pushImage(image, `${registry.host}/${REPOSITORY}:${TAG}`);
  const manifest = image.manifests[0]!;
  const bigLayer = [...manifest.layers].sort((a, b) => b.size - a.size)[0]!;
  const blobCount = 1 + manifest.layers.length;
  log(`image pushed: ${manifest.digest}, ${image.totalBytes} bytes in ${blobCount} blobs; big layer ${bigLayer.size} bytes`);
  await pushImage(await getImageLayout(WARMUP_IMAGE), `${registry.host}/${WARMUP_REPOSITORY}:${TAG}`);

  const pull = async (url: string, ns?: string): Promise<PullResult> => {
    const r = await pullImage({ registryUrl: url, repository: REPOSITORY, tag: TAG, ...(ns ? { ns } : {}) });
    if (r.imageManifestDigest !== manifest.digest) throw new Error(`pulled manifest ${r.imageManifestDigest}, pushed ${manifest.digest}`);
    return r;
  };
  const warmUp = (url: string, ns: string): Promise<PullResult> => pullImage({ registryUrl: url, repository: WARMUP_REPOSITORY, tag: TAG, ns });
  /** CPU-seconds of the registry, this process (the client) and the daemon while `run` runs. */
  const cpuOf = async <T>(daemonPid: number | undefined, run: () => Promise<T>): Promise<{ result: T; cpu: CpuSplit }> => {
    const r0 = cpuSeconds(registry.process.pid!);
    const c0 = process.cpuUsage();
    const d0 = daemonPid ? cpuSeconds(daemonPid) : 0;
    const result = await run();
    const c = process.cpuUsage(c0);
    return {
      result,
      cpu: {
        registry: cpuSeconds(registry.process.pid!) - r0,
        client: (c.user + c.system) / 1e6,
        daemon: daemonPid ? cpuSeconds(daemonPid) - d0 : 0,
      },
    };
  };
  const upstreamBlobGets = async (): Promise<number> => {
    await registry.flushLog();
    return registry.countRequests({ method: 'GET', kind: 'blob' });
  };

  // -- direct: one untimed warm-up (connections, page cache, JIT), then REPS timed pulls.
  await pull(registry.url);
  const registryCpu0 = cpuSeconds(registry.process.pid!);
  const direct: PullSample[] = [];
  const directCpu: CpuSplit[] = [];
  for (let i = 0; i < REPS; i++) {
    const { result, cpu } = await cpuOf(undefined, () => pull(registry.url));
    direct.push(sample(result));
    directCpu.push(cpu);
  }
  const registryCpuPerGB = (cpuSeconds(registry.process.pid!) - registryCpu0) / (direct.reduce((n, s) => n + s.bytes, 0) / 1e9);
  log(`direct: ${direct.map((s) => s.seconds).join(', ')} s`);

  // -- cold + warm: a fresh daemon (fresh data dir) per repetition: one cold pull, then REPS warm pulls.
  const cold: PullSample[] = [];
  const coldCpu: CpuSplit[] = [];
  const warm: PullSample[] = [];
  const coldUpstreamBlobGets: number[] = [];
  let warmCpu = 0;
  let warmBytes = 0;
  let daemon: DaemonProcess | undefined;
  let firstAfterStart: PullSample | undefined;
  for (let rep = 0; rep < REPS; rep++) {
    if (rep > 0 && overBudget()) break;
    if (daemon) await daemon.stop();
    daemon = await startDaemon(registry);
    if (rep === 0) {
      // The first request a freshly started daemon serves: module compilation, JIT and the upstream
      // connection all happen inside it. Context only; the cold figure below is a running daemon's.
      firstAfterStart = sample(await pull(daemon.url, registry.host));
      await daemon.stop();
      daemon = await startDaemon(registry);
    }
    await warmUp(daemon.url, registry.host);
    await waitForStored(daemon, WARMUP_IMAGE.layers.length + 1);
    registry.clearLog();
    const { result: c, cpu } = await cpuOf(daemon.process.pid!, () => pull(daemon!.url, registry.host));
    cold.push(sample(c));
    coldCpu.push(cpu);
    coldUpstreamBlobGets.push(await upstreamBlobGets());
    await waitForStored(daemon, WARMUP_IMAGE.layers.length + 1 + blobCount);

    registry.clearLog();
    const cpu0 = cpuSeconds(daemon.process.pid!);
    for (let i = 0; i < REPS; i++) {
      const w = await pull(daemon.url, registry.host);
      warm.push(sample(w));
      warmBytes += w.bytes;
    }
    warmCpu += cpuSeconds(daemon.process.pid!) - cpu0;
    const leaked = await upstreamBlobGets();
    if (leaked > 0) throw new Error(`warm pulls caused ${leaked} blob GETs at the upstream`);
    log(`cold #${rep + 1}: ${c.seconds.toFixed(3)} s (upstream blob GETs ${coldUpstreamBlobGets.at(-1)}); warm: ${warm.slice(-REPS).map((s) => s.seconds).join(', ')} s`);
  }
  if (!daemon) throw new Error('no daemon ran');

  // -- fan-out: CLIENTS concurrent GETs of the warm big blob, each on its own connection, each verified.
  const fanOut: FanOutRun[] = [];
  const pid = daemon.process.pid!;
  registry.clearLog();
  for (let rep = 0; rep < REPS; rep++) {
    if (rep > 0 && overBudget()) break;
    const pool = new HttpPool({ keepAlive: false });
    const rssBeforeMB = statusMB(pid, 'VmRSS');
    const sampler = new RssSampler(pid);
    const cpu0 = cpuSeconds(pid);
    const t0 = performance.now();
    const results = await Promise.all(
      Array.from({ length: CLIENTS }, () =>
        getBlob({ registryUrl: daemon.url, repository: REPOSITORY, digest: bigLayer.digest, size: bigLayer.size, ns: registry.host, pool }),
      ),
    );
    const seconds = (performance.now() - t0) / 1000;
    const cpu = cpuSeconds(pid) - cpu0;
    const peakMB = sampler.stop();
    pool.close();
    const bytes = results.reduce((n, r) => n + r.bytes, 0);
    const sources: Record<string, number> = {};
    for (const r of results) sources[r.source ?? 'none'] = (sources[r.source ?? 'none'] ?? 0) + 1;
    const per = results.map((r) => r.seconds);
    fanOut.push({
      clients: CLIENTS,
      seconds: round(seconds),
      bytes,
      aggregateMBps: round(mbps(bytes, seconds), 1),
      perClientSeconds: { min: round(Math.min(...per)), median: round(median(per)), max: round(Math.max(...per)) },
      daemonCpuSeconds: round(cpu, 2),
      cpuSecondsPerGB: round(cpu / (bytes / 1e9)),
      rssBeforeMB: round(rssBeforeMB, 1),
      peakRssMB: round(peakMB, 1),
      sources,
    });
    log(`fan-out #${rep + 1}: ${CLIENTS} x ${bigLayer.size} bytes in ${seconds.toFixed(2)} s, daemon CPU ${cpu.toFixed(2)} s, RSS ${rssBeforeMB.toFixed(0)} -> peak ${peakMB.toFixed(0)} MB`);
  }
  const fanOutUpstream = await upstreamBlobGets();
  if (fanOutUpstream > 0) throw new Error(`the fan-out caused ${fanOutUpstream} blob GETs at the upstream`);
  const daemonHwmMB = statusMB(pid, 'VmHWM');
  await daemon.stop();

  // -- link: the registry behind a shaped link; direct vs cold (fresh daemon each time, upstream = the link).
  const link = parseLink(LINK);
  const linkDirect: PullSample[] = [];
  const linkCold: PullSample[] = [];
  if (link && !overBudget()) {
    const shaper: LinkShaper = await startLinkShaper({ targetPort: registry.port, rateBytesPerSecond: link.rate, latencyMs: link.latencyMs });
    try {
      await pull(shaper.url); // warm-up
      for (let rep = 0; rep < REPS; rep++) {
        if (rep > 0 && overBudget()) break;
        linkDirect.push(sample(await pull(shaper.url)));
        const d = await startDaemon(registry, shaper.url);
        await warmUp(d.url, registry.host);
        registry.clearLog();
        linkCold.push(sample(await pull(d.url, registry.host)));
        const gets = await upstreamBlobGets();
        if (gets !== blobCount) throw new Error(`cold pull over the link made ${gets} upstream blob GETs, expected ${blobCount}`);
        await d.stop();
        log(`link (${link.label}): direct ${linkDirect.at(-1)!.seconds} s, cold ${linkCold.at(-1)!.seconds} s`);
      }
    } finally {
      await shaper.close();
    }
  }
  await registry.stop();
  const busyFraction = busy();
  const loadAtEnd = os.loadavg();

  // ---- figures ----
  const imageBytes = direct[0]!.bytes;
  const directS = median(direct.map((s) => s.seconds));
  const coldS = median(cold.map((s) => s.seconds));
  const warmS = median(warm.map((s) => s.seconds));
  const warmMBps = median(warm.map((s) => s.MBps));
  const warmCpuPerGB = warmCpu / (warmBytes / 1e9);
  const fanOutMBps = median(fanOut.map((f) => f.aggregateMBps));
  const fanOutCpuPerGB = median(fanOut.map((f) => f.cpuSecondsPerGB));
  const peakRss = Math.max(...fanOut.map((f) => f.peakRssMB));
  const rssBefore = fanOut[0]!.rssBeforeMB;
  const coldRatio = coldS / directS;
  // The least wall time the CPU work of a pull allows: every process's CPU-seconds spread perfectly
  // over the machine's CPUs. When a pull's time is near its floor, the pull is CPU-bound here.
  const ncpu = os.cpus().length;
  const medianCpu = (xs: CpuSplit[]): CpuSplit => ({ registry: median(xs.map((x) => x.registry)), client: median(xs.map((x) => x.client)), daemon: median(xs.map((x) => x.daemon)) });
  const directCpuM = medianCpu(directCpu);
  const coldCpuM = medianCpu(coldCpu);
  const floor = (c: CpuSplit): number => (c.registry + c.client + c.daemon) / ncpu;
  const coldDaemonCpuPerGB = coldCpuM.daemon / (imageBytes / 1e9);
  // Any cache that verifies what it stores must at least hash every byte, on top of the registry's and the
  // client's work in a direct pull: that sum over the CPUs is the least time a cold pull can take here.
  const verifyingFloor = (directCpuM.registry + directCpuM.client + (hashSecondsPerGB * imageBytes) / 1e9) / ncpu;
  const cpuText = (c: CpuSplit): string => `registry ${ms(c.registry)} + client ${ms(c.client)} + daemon ${ms(c.daemon)}`;
  const linkDirectS = median(linkDirect.map((s) => s.seconds));
  const linkColdS = median(linkCold.map((s) => s.seconds));
  const linkRatio = linkColdS / linkDirectS;

  const verdict = (ok: boolean): string => (ok ? 'PASS' : 'MISS');
  const rows: [string, string, string, string][] = [
    ['direct pull (registry)', `${mbps(imageBytes, directS).toFixed(0)} MB/s`, ms(directS), ''],
    ['cold pull via daemon (running)', `${mbps(imageBytes, coldS).toFixed(0)} MB/s`, ms(coldS), ''],
    ...(firstAfterStart ? [['  (first pull after daemon start)', `${firstAfterStart.MBps.toFixed(0)} MB/s`, ms(firstAfterStart.seconds), 'context'] as [string, string, string, string]] : []),
    ['warm pull via daemon', `${warmMBps.toFixed(0)} MB/s`, ms(warmS), ''],
    [`${CLIENTS} clients x 100 MB blob, warm`, `${fanOutMBps.toFixed(0)} MB/s`, `${median(fanOut.map((f) => f.seconds)).toFixed(2)} s`, 'aggregate'],
    ['cold / direct (time), loopback', `${coldRatio.toFixed(2)}x`, `<= ${TARGETS.coldOverDirect}x`, verdict(coldRatio <= TARGETS.coldOverDirect)],
    [`  CPU floor, direct (${ncpu} CPUs)`, ms(floor(directCpuM)), '', 'context'],
    [`  CPU floor, cold (${ncpu} CPUs)`, ms(floor(coldCpuM)), `${(floor(coldCpuM) / directS).toFixed(2)}x direct`, 'context'],
    ['  daemon CPU, cold pulls', `${coldDaemonCpuPerGB.toFixed(2)} CPU-s/GB`, '', 'context'],
    ['  floor for any verifying cache (hash only)', ms(verifyingFloor), `${(verifyingFloor / directS).toFixed(2)}x direct`, 'context'],
  ];
  if (linkCold.length > 0) {
    rows.push(
      [`direct pull over link (${link!.label})`, `${mbps(imageBytes, linkDirectS).toFixed(0)} MB/s`, ms(linkDirectS), ''],
      ['cold pull via daemon over link', `${mbps(imageBytes, linkColdS).toFixed(0)} MB/s`, ms(linkColdS), ''],
      ['cold / direct (time), over link', `${linkRatio.toFixed(2)}x`, `<= ${TARGETS.coldOverDirect}x`, verdict(linkRatio <= TARGETS.coldOverDirect)],
    );
  }
  rows.push(
    ['warm / direct (time), loopback', `${(warmS / directS).toFixed(2)}x`, '', ''],
    ['warm pull throughput', `${warmMBps.toFixed(0)} MB/s`, `>= ${TARGETS.warmMBps} MB/s`, verdict(warmMBps >= TARGETS.warmMBps)],
    [`${CLIENTS}-client throughput`, `${fanOutMBps.toFixed(0)} MB/s`, `>= ${TARGETS.warmMBps} MB/s`, verdict(fanOutMBps >= TARGETS.warmMBps)],
    ['daemon CPU, warm pulls', `${warmCpuPerGB.toFixed(2)} CPU-s/GB`, `<= ${TARGETS.cpuSecondsPerGB}`, verdict(warmCpuPerGB <= TARGETS.cpuSecondsPerGB)],
    [`daemon CPU, ${CLIENTS} clients`, `${fanOutCpuPerGB.toFixed(2)} CPU-s/GB`, `<= ${TARGETS.cpuSecondsPerGB}`, verdict(fanOutCpuPerGB <= TARGETS.cpuSecondsPerGB)],
    [`daemon peak RSS, ${CLIENTS} clients`, `${peakRss.toFixed(0)} MB`, `<= ${TARGETS.rssMB} MB`, verdict(peakRss <= TARGETS.rssMB)],
    ['  (RSS just before the clients)', `${rssBefore.toFixed(0)} MB`, '', 'context'],
    ['(registry CPU, direct pulls)', `${registryCpuPerGB.toFixed(2)} CPU-s/GB`, '', 'context'],
  );
  const header = ['measurement', 'figure', 'target', 'result'];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]): string => `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(' | ')} |`;
  const table = [line(header), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...rows.map(line)].join('\n');

  const results = {
    date: new Date().toISOString(),
    machine: {
      nproc: os.cpus().length,
      cpu: os.cpus()[0]?.model,
      memGiB: round(os.totalmem() / 2 ** 30, 1),
      node: process.version,
      kernel: os.release(),
      loadavgStart: loadAtStart.map((l) => round(l, 2)),
      loadavgEnd: loadAtEnd.map((l) => round(l, 2)),
      cpuBusyDuringRun: round(busyFraction, 3),
      memoryFirstTouchSecondsPerGB: round(memory.freshSecondsPerGB),
      memoryRewriteSecondsPerGB: round(memory.warmSecondsPerGB),
      sha256SecondsPerGB: round(hashSecondsPerGB),
    },
    command: 'pnpm bench:mirror',
    env: { BENCH_REPS: REPS, BENCH_CLIENTS: CLIENTS, BENCH_LINK: LINK, BENCH_DAEMON_ENV: process.env.BENCH_DAEMON_ENV ?? '' },
    image: { layers: IMAGE.layers, bytesPerPull: imageBytes, blobs: blobCount, bigBlobBytes: bigLayer.size, manifestDigest: manifest.digest },
    direct: { medianSeconds: round(directS, 4), MBps: round(mbps(imageBytes, directS), 1), samples: direct, registryCpuSecondsPerGB: round(registryCpuPerGB), cpuSeconds: directCpuM, cpuFloorSeconds: round(floor(directCpuM), 4) },
    cold: { medianSeconds: round(coldS, 4), MBps: round(mbps(imageBytes, coldS), 1), samples: cold, upstreamBlobGetsPerPull: coldUpstreamBlobGets, firstAfterStart, cpuSeconds: coldCpuM, cpuFloorSeconds: round(floor(coldCpuM), 4), verifyingCacheFloorSeconds: round(verifyingFloor, 4), daemonCpuSecondsPerGB: round(coldDaemonCpuPerGB) },
    warm: { medianSeconds: round(warmS, 4), MBps: round(warmMBps, 1), samples: warm, daemonCpuSeconds: round(warmCpu, 2), cpuSecondsPerGB: round(warmCpuPerGB) },
    fanOut: { runs: fanOut, medianAggregateMBps: fanOutMBps, cpuSecondsPerGB: fanOutCpuPerGB, peakRssMB: peakRss, rssBeforeMB: rssBefore, daemonVmHWMMB: round(daemonHwmMB, 1) },
    link: link ? { config: LINK, direct: { medianSeconds: round(linkDirectS, 4), samples: linkDirect }, cold: { medianSeconds: round(linkColdS, 4), samples: linkCold } } : null,
    ratios: { coldOverDirectTime: round(coldRatio), coldOverDirectTimeOverLink: linkCold.length ? round(linkRatio) : null, warmOverDirectTime: round(warmS / directS) },
    targets: {
      coldOverDirect: { target: TARGETS.coldOverDirect, value: round(coldRatio), pass: coldRatio <= TARGETS.coldOverDirect },
      coldOverDirectOverLink: linkCold.length ? { target: TARGETS.coldOverDirect, value: round(linkRatio), pass: linkRatio <= TARGETS.coldOverDirect } : null,
      warmMBps: { target: TARGETS.warmMBps, value: round(warmMBps, 1), pass: warmMBps >= TARGETS.warmMBps },
      fanOutMBps: { target: TARGETS.warmMBps, value: round(fanOutMBps, 1), pass: fanOutMBps >= TARGETS.warmMBps },
      warmCpuSecondsPerGB: { target: TARGETS.cpuSecondsPerGB, value: round(warmCpuPerGB), pass: warmCpuPerGB <= TARGETS.cpuSecondsPerGB },
      fanOutCpuSecondsPerGB: { target: TARGETS.cpuSecondsPerGB, value: round(fanOutCpuPerGB), pass: fanOutCpuPerGB <= TARGETS.cpuSecondsPerGB },
      peakRssMB: { target: TARGETS.rssMB, value: round(peakRss, 1), pass: peakRss <= TARGETS.rssMB },
    },
    totalSeconds: round((Date.now() - startedAt) / 1000, 1),
    table,
  };
  const outDir = path.join(REPO_ROOT, 'bench-results');
  fs.mkdirSync(outDir, { recursive: true });
  fs.writeFileSync(path.join(outDir, 'mirror.json'), JSON.stringify(results, null, 2) + '\n');

  const busyNote = busyFraction > 0.9 || loadAtStart[0]! > os.cpus().length
    ? `\nNOTE: the machine was busy (load ${loadAtStart[0]!.toFixed(1)} at start, ${loadAtEnd[0]!.toFixed(1)} at the end, CPUs ${(busyFraction * 100).toFixed(0)}% busy): other processes competed for the CPUs; times are pessimistic.\n`
    : '';
  process.stdout.write(
    `\nMirror benchmark (issue 3): image ${(imageBytes / 1e6).toFixed(1)} MB in ${blobCount} blobs; medians of ${direct.length} direct, ` +
      `${cold.length} cold (fresh daemons), ${warm.length} warm pulls, ${fanOut.length} fan-out runs${linkCold.length ? `, ${linkCold.length} over the link` : ''}; MB = 10^6 bytes\n\n` +
      `${table}\n\n` +
      `fan-out per-client seconds (min/median/max): ${fanOut.map((f) => `${f.perClientSeconds.min}/${f.perClientSeconds.median}/${f.perClientSeconds.max}`).join('; ')}\n` +
      `daemon VmHWM at the end: ${daemonHwmMB.toFixed(0)} MB; upstream blob GETs per cold pull: ${coldUpstreamBlobGets.join(', ')}\n` +
      `CPU per pull (medians): direct ${cpuText(directCpuM)}; cold ${cpuText(coldCpuM)}. The floor is their sum / ${ncpu} CPUs: a pull cannot be faster here\n` +
      `sha256 on this CPU: ${hashSecondsPerGB.toFixed(2)} s/GB; a cache that verifies every byte adds at least that to a direct pull's CPU (the "floor for any verifying cache" row)\n` +
      `memory on this machine: first touch ${memory.freshSecondsPerGB.toFixed(2)} s/GB, rewrite ${memory.warmSecondsPerGB.toFixed(2)} s/GB (a cold pull fills new page-cache pages; a direct pull reads warm ones)\n` +
      `machine: load ${loadAtStart[0]!.toFixed(2)} -> ${loadAtEnd[0]!.toFixed(2)}, CPUs ${(busyFraction * 100).toFixed(0)}% busy during the run (this benchmark included)\n` +
      busyNote +
      `results: ${path.relative(process.cwd(), path.join(outDir, 'mirror.json'))} (${results.totalSeconds} s total)\n`,
  );
  return 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`\nbench:mirror FAILED: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
