// `pnpm bench:peer`: peer transfer over libp2p vs HTTP (issue 5). One image with one large layer
// (default 256 MB of incompressible data), served by the embedded LayoutRegistry as the upstream, pulled
// through real daemons (LocalCluster, separate processes on loopback) with the verifying blob client.
//   HTTP    seed + 1 daemon, P2P off. The seed is warmed first (a GET through the seed); then the daemon,
//           cold, fetches the blob from the seed over HTTP and streams it to the client.
//           sender = the seed, receiver = the daemon.
//   libp2p  seed + 2 daemons, P2P on. node-1 pulls the blob (from the seed); the seed is stopped and the
//           upstream closed, so node-1 is the only source; node-2 then pulls it over a libp2p stream
//           (checked: node-2's fetched{source="peer"} counter = blob size).
//           sender = node-1, receiver = node-2.
//   peer-http  the same as libp2p, with both daemons on the HTTP data plane (--peer-transport http
//           --peer-http-listen): node-2 fetches from node-1 over cluster-key-authenticated HTTP (checked:
//           node-1's peer_bytes_uploaded_total{transport="http"} = blob size).
// In both runs the receiver does the same work besides the transport (hash, write to disk, serve the bytes
// to the client), so the difference between the rows is the transport. Each run is repeated (--reps, fresh
// cluster every time); CPU is utime+stime from /proc/<pid>/stat over the measured transfer only.
// Prints a table (medians) and writes bench-results/peer-transfer.json.
//
// Flags: --size 256MB  --reps 3  --transports http,libp2p,peer-http  --out bench-results/peer-transfer.json  --keep
import os from 'node:os';
import path from 'node:path';
import { buildImageLayout, getBlob, LayoutRegistry, LocalCluster, readCounters, type BuiltImage } from '@peerpull/demo';
import { CLI } from '../fixtures/daemon.ts';
import { ProcessMeter } from '../cluster/proc-stats.ts';
import { parseSize } from '@peerpull/common';
import { machineInfo, startBench } from './bench-run.ts';

const bench = startBench({
  script: 'bench:peer',
  out: 'bench-results/peer-transfer.json',
  options: {
    size: { type: 'string', default: '256MB' },
    reps: { type: 'string', default: '3' },
    transports: { type: 'string', default: 'http,libp2p,peer-http' },
  },
});
const { args, startedAt, log } = bench;

const MB = 1e6;
const REPOSITORY = 'library/peer-transfer';
const LAYER_BYTES = parseSize(args.size as string);
const REPS = Number(args.reps);

/** http: seed → daemon; libp2p and peer-http: daemon → daemon. */
type Transport = 'http' | 'libp2p' | 'peer-http';
const TRANSPORTS = (args.transports as string).split(',') as Transport[];
for (const t of TRANSPORTS) if (!['http', 'libp2p', 'peer-http'].includes(t)) throw new Error(`unknown transport ${t}`);

interface Sample {
  transport: Transport;
  rep: number;
  bytes: number;
  seconds: number;
  mbPerSecond: number;
  senderCpuSeconds: number;
  receiverCpuSeconds: number;
  senderCpuPerGB: number;
  receiverCpuPerGB: number;
  /** The x-peerpull-source header of the measured GET, and the receiver's fetched-by-source counters. */
  source: string | undefined;
  fetched: Record<string, number>;
  /** GETs needed (libp2p: a 404 when no provider was found yet is retried). */
  attempts?: number;
}

interface Layer {
  digest: string;
  size: number;
}

async function startUpstream(image: BuiltImage): Promise<{ registry: LayoutRegistry; host: string }> {
  const registry = new LayoutRegistry();
  registry.addRepository(REPOSITORY, image.layoutDir);
  const host = await registry.listen();
  return { registry, host };
}

/** Measures one GET of the layer through `registryUrl` while metering the sender and receiver processes. */
async function measured(registryUrl: string, ns: string, layer: Layer, sender: number | undefined, receiver: number | undefined) {
  const s = new ProcessMeter([sender]);
  const r = new ProcessMeter([receiver]);
  const t0 = performance.now();
  const got = await getBlob({ registryUrl, repository: REPOSITORY, digest: layer.digest, size: layer.size, ns, idleTimeoutMs: 60_000 });
  const seconds = (performance.now() - t0) / 1000;
  const sc = s.stop().cpuSeconds;
  const rc = r.stop().cpuSeconds;
  const gb = got.bytes / 1e9;
  return { bytes: got.bytes, seconds, mbPerSecond: got.bytes / MB / seconds, senderCpuSeconds: sc, receiverCpuSeconds: rc, senderCpuPerGB: sc / gb, receiverCpuPerGB: rc / gb, source: got.source };
}

async function runHttp(image: BuiltImage, layer: Layer, rep: number, workDir: string): Promise<Sample> {
  const { registry, host } = await startUpstream(image);
  const cluster = await LocalCluster.start({ workDir: path.join(workDir, `http-${rep}`), cliPath: CLI, upstream: { host, url: `http://${host}` }, daemons: 1, seed: true, p2p: false });
  try {
    const seed = cluster.seed;
    const daemon = cluster.daemons[0];
    if (!seed || !daemon) throw new Error('cluster without a seed or a daemon');
    await getBlob({ registryUrl: seed.url, repository: REPOSITORY, digest: layer.digest, size: layer.size, ns: host }); // warm the seed
    const m = await measured(daemon.url, host, layer, seed.process.pid, daemon.process.pid);
    const fetched = (await readCounters(daemon)).fetched;
    if ((fetched.seed ?? 0) !== layer.size) throw new Error(`http: daemon fetched ${JSON.stringify(fetched)}, expected ${layer.size} from the seed`);
    return { transport: 'http', rep, ...m, fetched };
  } finally {
    await cluster.stop();
    await registry.close();
  }
}

async function runPeer(transport: 'libp2p' | 'peer-http', image: BuiltImage, layer: Layer, rep: number, workDir: string): Promise<Sample> {
  const { registry, host } = await startUpstream(image);
  let upstreamOpen = true;
  const cluster = await LocalCluster.start({
    workDir: path.join(workDir, `${transport}-${rep}`),
    cliPath: CLI,
    upstream: { host, url: `http://${host}` },
    daemons: 2,
    seed: true,
    p2p: true,
    ...(transport === 'peer-http' ? { extraDaemonArgs: ['--peer-transport', 'http', '--peer-http-listen', '127.0.0.1:0'] } : {}),
  });
  try {
    if (!(await cluster.waitForPeers(20_000))) log('  warning: not every daemon found a peer in 20 s');
    const [sender, receiver] = cluster.daemons;
    if (!sender || !receiver) throw new Error('cluster without two daemons');
    await getBlob({ registryUrl: sender.url, repository: REPOSITORY, digest: layer.digest, size: layer.size, ns: host }); // node-1 holds it
    // node-2 must be connected to node-1 (not only to the seed) before the seed goes away.
    const deadline = Date.now() + 10_000;
    while ((await readCounters(receiver)).peersConnected < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    await cluster.seed?.stop();
    await registry.close();
    upstreamOpen = false;
    // A provider lookup that misses is a fast 404; retry (fresh meters) rather than lose the run, and record it.
    let m: Awaited<ReturnType<typeof measured>> | undefined;
    let attempts = 0;
    for (;;) {
      attempts++;
      try {
        m = await measured(receiver.url, host, layer, sender.process.pid, receiver.process.pid);
        break;
      } catch (err) {
        if (attempts >= 3 || !/HTTP 404/.test((err as Error).message)) throw err;
        log(`  ${transport} rep ${rep}: attempt ${attempts} got a 404 (no provider found yet); retrying in 1 s`);
        await new Promise((r) => setTimeout(r, 1_000));
      }
    }
    const fetched = (await readCounters(receiver)).fetched;
    if ((fetched.peer ?? 0) !== layer.size) throw new Error(`${transport}: node-2 fetched ${JSON.stringify(fetched)}, expected ${layer.size} from a peer`);
    const wire = transport === 'peer-http' ? 'http' : 'libp2p';
    const metrics = await (await fetch(sender.metricsUrl, { signal: AbortSignal.timeout(2_000) })).text();
    const over = Number(new RegExp(`^peerpull_peer_bytes_uploaded_total\\{transport="${wire}"\\} (\\S+)$`, 'm').exec(metrics)?.[1] ?? 0);
    if (over < layer.size) throw new Error(`${transport}: node-1 uploaded ${over} bytes over ${wire}, expected ${layer.size}`);
    return { transport, rep, ...m, fetched, attempts };
  } finally {
    await cluster.stop();
    if (upstreamOpen) await registry.close();
  }
}

const median = (values: number[]): number => {
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
};

interface Summary {
  transport: Transport;
  runs: number;
  mbPerSecond: number;
  senderCpuPerGB: number;
  receiverCpuPerGB: number;
  mbPerSecondRange: [number, number];
}

function summarize(samples: Sample[], transport: Transport): Summary | undefined {
  const own = samples.filter((s) => s.transport === transport);
  if (!own.length) return undefined;
  const mbs = own.map((s) => s.mbPerSecond);
  return {
    transport,
    runs: own.length,
    mbPerSecond: median(mbs),
    senderCpuPerGB: median(own.map((s) => s.senderCpuPerGB)),
    receiverCpuPerGB: median(own.map((s) => s.receiverCpuPerGB)),
    mbPerSecondRange: [Math.min(...mbs), Math.max(...mbs)],
  };
}

async function main(): Promise<number> {
  const workDir = bench.makeWorkDir('pp-peer-');
  const image = await buildImageLayout(path.join(workDir, 'image'), { name: 'peer-transfer-bench', layers: [LAYER_BYTES], tag: 'v1' });
  const built = image.manifests[0]?.layers[0];
  if (!built) throw new Error('no layer built');
  const layer: Layer = { digest: built.digest, size: built.size };
  log(`layer ${(layer.size / MB).toFixed(1)} MB (${layer.digest.slice(0, 19)}…); ${REPS} rep(s) per transport`);
  const loadBefore = os.loadavg();
  const samples: Sample[] = [];
  const failures: string[] = [];
  for (let rep = 1; rep <= REPS; rep++) {
    for (const transport of TRANSPORTS) {
      try {
        const s = transport === 'http' ? await runHttp(image, layer, rep, workDir) : await runPeer(transport, image, layer, rep, workDir);
        samples.push(s);
        log(`${transport.padEnd(6)} rep ${rep}: ${s.mbPerSecond.toFixed(0)} MB/s, sender ${s.senderCpuPerGB.toFixed(2)} CPU-s/GB, receiver ${s.receiverCpuPerGB.toFixed(2)} CPU-s/GB (source ${s.source ?? '?'}${s.attempts && s.attempts > 1 ? `, ${s.attempts} attempts` : ''})`);
      } catch (err) {
        failures.push(`${transport} rep ${rep}: ${(err as Error).message}`);
        log(`${transport} rep ${rep} FAILED: ${(err as Error).stack}`);
      }
    }
  }
  const loadAfter = os.loadavg();
  const seconds = (Date.now() - startedAt) / 1000;
  const http = summarize(samples, 'http');
  const p2p = summarize(samples, 'libp2p');
  const peerHttp = summarize(samples, 'peer-http');
  const ratio = (a: Summary | undefined, b: Summary | undefined) => a && b ? {
    mbPerSecond: a.mbPerSecond / b.mbPerSecond,
    senderCpuPerGB: a.senderCpuPerGB / b.senderCpuPerGB,
    receiverCpuPerGB: a.receiverCpuPerGB / b.receiverCpuPerGB,
  } : undefined;
  const ratios = ratio(p2p, http);
  const peerRatios = ratio(p2p, peerHttp);

  const out = process.stdout;
  const { command } = bench;
  const machine = `${os.cpus().length} × ${os.cpus()[0]?.model ?? '?'}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, Linux ${os.release()}, Node ${process.version}`;
  out.write(`\nPeer transfer, libp2p vs HTTP (issue 5): ${command}\n`);
  out.write(`one ${(layer.size / MB).toFixed(1)} MB layer; ${REPS} run(s) per transport, fresh cluster each; medians (MB/s range in brackets)\n`);
  out.write(`machine: ${machine}; load average ${loadBefore[0]?.toFixed(1)} before, ${loadAfter[0]?.toFixed(1)} after; ${seconds.toFixed(0)} s in all\n`);
  out.write('http: warm seed -> cold daemon (P2P off); libp2p / peer-http: node-1 -> cold node-2 with the seed and upstream gone,\n');
  out.write('over a libp2p stream / over the HTTP data plane between daemons (--peer-transport http).\n');
  out.write('The receiver side includes, in every row, the daemon\'s receive path (hash + write to disk + serve the bytes to the\n');
  out.write('client), and MB/s is end to end at the client; so the difference between the rows is the transport.\n\n');
  const f = (v: number | undefined, d: number): string => (v === undefined || !Number.isFinite(v) ? '-' : v.toFixed(d));
  out.write(`${'transport'.padEnd(16)} ${'MB/s'.padStart(18)} ${'sender CPU-s/GB'.padStart(16)} ${'receiver CPU-s/GB'.padStart(18)}\n`);
  for (const s of [http, p2p, peerHttp]) {
    if (!s) continue;
    out.write(`${s.transport.padEnd(16)} ${`${f(s.mbPerSecond, 0)} [${f(s.mbPerSecondRange[0], 0)}-${f(s.mbPerSecondRange[1], 0)}]`.padStart(18)} ${f(s.senderCpuPerGB, 2).padStart(16)} ${f(s.receiverCpuPerGB, 2).padStart(18)}\n`);
  }
  const ratioRow = (name: string, r: ReturnType<typeof ratio>): void => {
    if (r) out.write(`${name.padEnd(16)} ${`${f(r.mbPerSecond, 2)}×`.padStart(18)} ${`${f(r.senderCpuPerGB, 2)}×`.padStart(16)} ${`${f(r.receiverCpuPerGB, 2)}×`.padStart(18)}\n`);
  };
  ratioRow('libp2p÷http', ratios);
  ratioRow('libp2p÷peer-http', peerRatios);
  if (failures.length) out.write(`\nfailures:\n  ${failures.join('\n  ')}\n`);

  const json = {
    benchmark: 'peer-transfer',
    date: new Date().toISOString(),
    command,
    machine: machineInfo(loadBefore, loadAfter),
    layer,
    reps: REPS,
    seconds,
    note: 'receiver CPU includes the daemon receive path (hash + write to disk + serve to the client) in both transports',
    summary: { http, libp2p: p2p, peerHttp, ratios, libp2pOverPeerHttp: peerRatios },
    samples,
    failures,
  };
  bench.writeResults(json, workDir);
  return failures.length ? 1 : 0;
}

process.exitCode = await main();
