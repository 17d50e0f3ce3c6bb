// `pnpm bench:lookup`: how fast a daemon finds who holds a blob (issue 5: "if no provider is found within a
// short budget (target ≤ 50 ms when the DHT has the record locally, ≤ 300 ms otherwise), move on").
// A seed and N daemons (default 6) as separate processes on loopback (LocalCluster), the embedded
// LayoutRegistry as the upstream. The last daemon (the measurer) joins late, so:
//   (a) local     keys provided AFTER it joined (node-3 pulls image L): their provider records were
//                 announced to it, so its lookup needs no network round trip;
//   (b) network   keys provided BEFORE it joined (node-1 and node-2 pull image R): it holds no record and
//                 must query the DHT;
//   (c) nobody    random digests nobody provides: the time until the lookup gives up.
// Each key is looked up through the measurer's admin API (`GET /api/v1/providers?digest=`), which runs the
// same lookup a pull runs (PeerRouting.lookup, budget --peer-lookup-timeout) and says when the first
// provider turned up and whether its record was held locally. Prints p50/p95/max against the targets and
// writes bench-results/peer-lookup.json.
//
// Flags: --daemons 6  --keys 40 (layers per image)  --rounds 3  --random 40  --out bench-results/peer-lookup.json  --keep
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { buildImageLayout, LayoutRegistry, LocalCluster, pullImage, type BuiltImage, type ClusterNode } from '@peerpull/demo';
import { CLI } from '../fixtures/daemon.ts';
import { machineInfo, startBench } from './bench-run.ts';

const bench = startBench({
  script: 'bench:lookup',
  out: 'bench-results/peer-lookup.json',
  options: {
    daemons: { type: 'string', default: '6' },
    keys: { type: 'string', default: '40' },
    rounds: { type: 'string', default: '3' },
    random: { type: 'string', default: '40' },
  },
});
const { args, startedAt, log } = bench;

const DAEMONS = Number(args.daemons);
const LAYERS = Number(args.keys);
const ROUNDS = Number(args.rounds);
const RANDOM_KEYS = Number(args.random);
if (DAEMONS < 4) throw new Error('--daemons: at least 4 (two holders of R, one of L, the measurer)');
const TARGETS = { local: 50, network: 300 } as const;

interface Lookup {
  digest: string;
  providers: string[];
  firstMs: number | null;
  ms: number;
  fromLocalRecord: boolean;
  budgetExhausted: boolean;
  budgetMs: number;
}

type Kind = 'local' | 'network' | 'nobody';

/** Blob keys of an image a pull provides: config, layers and the manifest. */
function keysOf(image: BuiltImage): string[] {
  const m = image.manifests[0];
  if (!m) throw new Error('no manifest');
  return [image.manifestDigest, m.configDigest, ...m.layers.map((l) => l.digest)];
}

async function lookup(node: ClusterNode, digest: string): Promise<Lookup> {
  const res = await fetch(`${node.url}/api/v1/providers?digest=${digest}`, { signal: AbortSignal.timeout(10_000) });
  if (res.status !== 200) throw new Error(`providers: HTTP ${res.status} ${await res.text()}`);
  return (await res.json()) as Lookup;
}

/** Waits until the node's DHT announcements finished (peerpull_peer_provide_seconds_count) for at least `count` keys. */
async function waitProvided(node: ClusterNode, count: number, timeoutMs = 30_000): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const text = await (await fetch(node.metricsUrl, { signal: AbortSignal.timeout(2_000) })).text();
    const done = [...text.matchAll(/^peerpull_peer_provide_seconds_count\{result="(ok|failed)"\} (\S+)$/gm)].reduce((n, m) => n + Number(m[2]), 0);
    if (done >= count || Date.now() > deadline) return done;
    await new Promise((r) => setTimeout(r, 100));
  }
}

function percentile(values: number[], p: number): number | undefined {
  if (!values.length) return undefined;
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)];
}

interface Summary {
  kind: Kind;
  lookups: number;
  found: number;
  fromLocalRecord: number;
  /** Time to the first provider (found lookups); for "nobody": time to give up. */
  p50: number | undefined;
  p95: number | undefined;
  max: number | undefined;
  /** The whole lookup, first provider + grace (what a pull waits before it opens the transfer). */
  wholeP50: number | undefined;
  wholeP95: number | undefined;
  budgetExhausted: number;
}

function summarize(kind: Kind, lookups: Lookup[]): Summary {
  const times = kind === 'nobody' ? lookups.map((l) => l.ms) : lookups.filter((l) => l.firstMs !== null).map((l) => l.firstMs as number);
  return {
    kind,
    lookups: lookups.length,
    found: lookups.filter((l) => l.providers.length > 0).length,
    fromLocalRecord: lookups.filter((l) => l.fromLocalRecord).length,
    p50: percentile(times, 50),
    p95: percentile(times, 95),
    max: percentile(times, 100),
    wholeP50: percentile(lookups.map((l) => l.ms), 50),
    wholeP95: percentile(lookups.map((l) => l.ms), 95),
    budgetExhausted: lookups.filter((l) => l.budgetExhausted).length,
  };
}

async function main(): Promise<number> {
  const workDir = bench.makeWorkDir('pp-lookup-');
  const layers = Array.from({ length: LAYERS }, () => 1024);
  const [remote, local] = await Promise.all([
    buildImageLayout(path.join(workDir, 'image-r'), { name: 'lookup-r', layers, tag: 'v1' }),
    buildImageLayout(path.join(workDir, 'image-l'), { name: 'lookup-l', layers, tag: 'v1' }),
  ]);
  const registry = new LayoutRegistry();
  registry.addRepository('library/lookup-r', remote.layoutDir);
  registry.addRepository('library/lookup-l', local.layoutDir);
  const host = await registry.listen();
  const cluster = await LocalCluster.start({ workDir: path.join(workDir, 'cluster'), cliPath: CLI, upstream: { host, url: `http://${host}` }, daemons: DAEMONS - 1, seed: true, p2p: true });
  const lookups: Record<Kind, Lookup[]> = { local: [], network: [], nobody: [] };
  const failures: string[] = [];
  const loadBefore = os.loadavg();
  try {
    if (!(await cluster.waitForPeers(20_000))) log('warning: not every daemon found a peer in 20 s');
    const [n1, n2, n3] = cluster.daemons as [ClusterNode, ClusterNode, ClusterNode];
    const pull = (node: ClusterNode, repository: string): Promise<unknown> => pullImage({ registryUrl: node.url, repository, tag: 'v1', ns: host });
    // (b): R is provided by node-1 and node-2 before the measurer exists.
    await pull(n1, 'library/lookup-r');
    await pull(n2, 'library/lookup-r');
    const rKeys = keysOf(remote);
    log(`R provided: node-1 ${await waitProvided(n1, rKeys.length)}, node-2 ${await waitProvided(n2, rKeys.length)} of ${rKeys.length} keys`);
    const measurer = await cluster.addDaemon();
    await cluster.waitForPeers(20_000);
    // Let its routing table fill (the initial self-query) as a node that just joined would.
    await new Promise((r) => setTimeout(r, 1_000));
    // (a): L is provided by node-3 after the measurer joined; node-3 announces each record to the closest peers (here: all).
    await pull(n3, 'library/lookup-l');
    const lKeys = keysOf(local);
    log(`L provided: node-3 ${await waitProvided(n3, lKeys.length)} of ${lKeys.length} keys announced; measuring from ${measurer.name}`);
    const nobody = Array.from({ length: RANDOM_KEYS }, () => `sha256:${randomBytes(32).toString('hex')}`);
    for (let round = 1; round <= ROUNDS; round++) {
      for (const [kind, keys] of [['local', lKeys], ['network', rKeys], ['nobody', nobody]] as const) {
        for (const digest of keys) {
          try {
            lookups[kind].push(await lookup(measurer, digest));
          } catch (err) {
            failures.push(`${kind} ${digest}: ${(err as Error).message}`);
          }
        }
      }
      const s = (['local', 'network', 'nobody'] as const).map((k) => `${k} p50 ${summarize(k, lookups[k]).p50?.toFixed(1)} ms`);
      log(`round ${round}: ${s.join(', ')}`);
    }
  } finally {
    await cluster.stop();
    await registry.close();
  }
  const loadAfter = os.loadavg();
  const summaries = (['local', 'network', 'nobody'] as const).map((k) => summarize(k, lookups[k]));
  const budgetMs = lookups.nobody[0]?.budgetMs ?? lookups.local[0]?.budgetMs;

  const out = process.stdout;
  const { command } = bench;
  const f = (v: number | undefined, d = 1): string => (v === undefined || !Number.isFinite(v) ? '-' : v.toFixed(d));
  out.write(`\nPeer lookup latency (issue 5): ${command}\n`);
  out.write(`seed + ${DAEMONS} daemons on loopback; ${LAYERS + 2} keys per image; ${ROUNDS} round(s); lookup budget ${budgetMs} ms (--peer-lookup-timeout)\n`);
  out.write(`machine: ${os.cpus().length} × ${os.cpus()[0]?.model ?? '?'}, Linux ${os.release()}, Node ${process.version}; load average ${f(loadBefore[0])} before, ${f(loadAfter[0])} after; ${((Date.now() - startedAt) / 1000).toFixed(0)} s in all\n`);
  out.write('local: records announced to the measuring node; network: provided before it joined; nobody: random digests.\n');
  out.write('first provider ms (nobody: time to give up); whole = until the lookup returned (what a pull waits: from the network, the first\n');
  out.write('provider + a 20 ms grace for more; from a local record, at once).\n\n');
  out.write(`${'keys'.padEnd(8)} ${'lookups'.padStart(7)} ${'found'.padStart(6)} ${'local rec'.padStart(9)} ${'p50'.padStart(7)} ${'p95'.padStart(7)} ${'max'.padStart(7)} ${'whole p50'.padStart(9)} ${'whole p95'.padStart(9)}  target\n`);
  for (const s of summaries) {
    const target = s.kind === 'local' ? TARGETS.local : TARGETS.network;
    const verdict = s.p95 === undefined ? 'n/a' : s.p95 <= target ? 'PASS' : 'MISS';
    out.write(`${s.kind.padEnd(8)} ${String(s.lookups).padStart(7)} ${String(s.found).padStart(6)} ${String(s.fromLocalRecord).padStart(9)} ${f(s.p50).padStart(7)} ${f(s.p95).padStart(7)} ${f(s.max).padStart(7)} ${f(s.wholeP50).padStart(9)} ${f(s.wholeP95).padStart(9)}  p95 ≤ ${target} ms: ${verdict}\n`);
  }
  if (failures.length) out.write(`\nfailures:\n  ${failures.slice(0, 20).join('\n  ')}\n`);
  const json = {
    benchmark: 'peer-lookup',
    date: new Date().toISOString(),
    command,
    machine: machineInfo(loadBefore, loadAfter),
    daemons: DAEMONS,
    keysPerImage: LAYERS + 2,
    rounds: ROUNDS,
    budgetMs,
    targets: TARGETS,
    summaries,
    lookups,
    failures,
  };
  bench.writeResults(json, workDir);
  return failures.length ? 1 : 0;
}

process.exitCode = await main();
