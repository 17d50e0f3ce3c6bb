// A network partition between two groups of nodes (issue 9): every daemon and the seed in a network
// namespace of its own (test/cluster/testbed.ts `nodeNic`), group A (the seed, node-1, node-2) and group B
// (node-3, node-4) on two bridges, the real distribution registry behind the emulated WAN. While the
// groups cannot reach each other, each keeps pulling: what its own side holds from its own peers, the rest
// from the seed (A) or the upstream (B, which has lost the seed), and no pull hangs. When the partition
// ends, a node of A finds a node of B through the DHT as the provider of an image only B holds.
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { test } from 'node:test';
import type { ClusterNode, NodeCounters } from '@peerpull/demo';
import { Testbed } from '../cluster/testbed.ts';
import { netnsUnavailable } from '../cluster/wan-link.ts';
import { listLanNamespaces } from '@peerpull/demo/node-lan';
import { getImageLayout, type BuiltImage } from '../fixtures/images.ts';
import { waitUntil } from '../fixtures/wait-until.ts';

const MiB = 1024 * 1024;
const A = 0;
const B = 1;
/** "No pull hangs": every pull in this test must finish well within this. */
const PULL_LIMIT_MS = 30_000;

const skip = netnsUnavailable() ?? (existsSync('/usr/bin/docker-registry') && existsSync('/usr/bin/skopeo') ? undefined : 'needs docker-registry and skopeo');

/** Blob bytes of an image (what a daemon's `fetched` counters count: config and layers, not the manifest). */
function blobBytes(image: BuiltImage): number {
  return image.totalBytes - image.manifestSize;
}

test('partition: two groups keep pulling from their own side and the upstream; the DHT heals when the partition ends', { timeout: 120_000, skip }, async (t) => {
  const names = ['own-a', 'own-b', 'cold-a', 'cold-b'] as const;
  const images = Object.fromEntries(
    await Promise.all(names.map(async (n, i) => [n, await getImageLayout({ name: `partition-${n}`, layers: [256 * 1024, (3 + i) * MiB] })] as const)),
  ) as Record<(typeof names)[number], BuiltImage>;
  const repo = (n: (typeof names)[number]) => `library/partition-${n}`;
  const tb = await Testbed.start({
    wan: { rateBitsPerSecond: 200e6, delayMs: 5 },
    nodeNic: { rateBitsPerSecond: 1e9, mode: 'netns' },
    images: names.map((n) => ({ image: images[n], repository: repo(n) })),
  });
  t.after(() => tb.stop());
  t.diagnostic(tb.describe());
  // Short deadlines so that a blackholed seed costs seconds, not the defaults' 12 s, per first request.
  // A longer provider-lookup budget than the default 300 ms: right after the heal a lookup must dial the
  // nodes it lost (new connections, noise handshakes), which on this shared 2-CPU machine sometimes takes
  // longer; what is tested is that the DHT finds them, not how fast.
  const extraDaemonArgs = ['--upstream-timeout', '4s', '--seed-timeout', '1s', '--peer-lookup-timeout', '2s'];
  const cluster = await tb.startCluster({ daemons: 4, groups: [A, A, B, B], seedGroup: A, extraDaemonArgs });
  const [node1, node2, node3, node4] = cluster.daemons as [ClusterNode, ClusterNode, ClusterNode, ClusterNode];
  const seed = cluster.seed as ClusterNode;
  const counters = async (): Promise<Map<string, NodeCounters>> => cluster.counters();
  const peersOf = async (node: ClusterNode): Promise<number> => (await counters()).get(node.name)?.peersConnected ?? 0;
  // Daemons join through the seed and meet each other through DHT queries (providing a blob, finding one).
  assert.ok(await cluster.waitForPeers(20_000), 'every daemon joined the DHT');

  const pull = async (node: ClusterNode, n: (typeof names)[number]): Promise<number> => {
    const t0 = performance.now();
    await tb.pull(node.url, repo(n), { idleTimeoutMs: PULL_LIMIT_MS, signal: AbortSignal.timeout(PULL_LIMIT_MS) });
    return performance.now() - t0;
  };
  // Each side holds one image before the cut.
  await Promise.all([pull(node1, 'own-a'), pull(node3, 'own-b')]);

  tb.partition(A, B);
  const before = await counters();
  tb.resetUpstreamBytes();
  const [[aOwn, aCold], [bOwn, bCold]] = await Promise.all([
    (async () => [await pull(node2, 'own-a'), await pull(node2, 'cold-a')])(),
    (async () => [await pull(node4, 'own-b'), await pull(node4, 'cold-b')])(),
  ]);
  t.diagnostic(`during the partition: A ${aOwn.toFixed(0)} + ${aCold.toFixed(0)} ms, B ${bOwn.toFixed(0)} + ${bCold.toFixed(0)} ms`);
  const during = await counters();
  const delta = (node: ClusterNode, source: string): number => (during.get(node.name)?.fetched[source] ?? 0) - (before.get(node.name)?.fetched[source] ?? 0);
  // Group A: its own image from node-1, the cold one through the seed; nothing from the upstream directly.
  assert.equal(delta(node2, 'peer'), blobBytes(images['own-a']), 'node-2 got own-a from its own side (node-1)');
  assert.equal(delta(node2, 'seed'), blobBytes(images['cold-a']), 'node-2 got cold-a through the seed');
  assert.equal(delta(node2, 'upstream'), 0);
  // Group B lost the seed: its own image from node-3, the cold one from the upstream.
  assert.equal(delta(node4, 'peer'), blobBytes(images['own-b']), 'node-4 got own-b from its own side (node-3)');
  assert.equal(delta(node4, 'upstream'), blobBytes(images['cold-b']), 'node-4 got cold-b from the upstream');
  assert.equal(delta(node4, 'seed'), 0, 'the seed is on the other side');
  // Over the WAN: the two cold images once each, and none of the images a side already held.
  const wan = await tb.upstreamBytes();
  const cold = images['cold-a'].totalBytes + images['cold-b'].totalBytes;
  assert.ok(wan >= cold && wan < cold + images['own-a'].manifestSize + images['own-b'].manifestSize + 1, `upstream sent ${wan} bytes during the partition, the cold images are ${cold}`);

  // The cut is real: the seed loses its connections to group B (libp2p's connection monitor drops them).
  await waitUntil('the seed to lose its peers in group B', async () => (await peersOf(seed)) <= 2, 40_000, 200);

  tb.heal(A, B);
  // Group B rejoins through its bootstrap target, the seed (retried in the background every 15 s).
  await waitUntil('group B to reconnect to the seed', async () => (await peersOf(seed)) >= 4, 30_000, 200);
  // cold-b is only in group B (node-4 fetched it from the upstream; the seed never saw it). The DHT heals:
  // node-4 sees its seed come back (packages/daemon/src/rejoin-watch.ts) and announces its keys again, and
  // node-1 finds B's provider. Within 30 s of the seed seeing group B again: the seed's return shows at
  // once, or when node-4's connection monitor gives up its dead connection (a ping interval and timeout).
  await waitUntil('node-4 to announce its keys again once group A is back', () => readFileSync(node4.logFile, 'utf8').includes('re-provided every key after rejoining peers'), 30_000, 200).catch((err: Error) => {
    const lines = readFileSync(node4.logFile, 'utf8').split('\n').filter((l) => /re-provid|gone are back|bootstrap|no peer/.test(l));
    assert.fail(`the DHT did not heal: ${err.message}; node-4's log: ${lines.slice(-5).join(' | ').slice(0, 500)}`);
  });
  const healed = await counters();
  tb.resetUpstreamBytes();
  const ms = await pull(node1, 'cold-b');
  const after = await counters();
  const fromPeers = (after.get(node1.name)?.fetched.peer ?? 0) - (healed.get(node1.name)?.fetched.peer ?? 0);
  t.diagnostic(`after the heal node-1 pulled cold-b in ${ms.toFixed(0)} ms, ${fromPeers} bytes from peers`);
  assert.equal(fromPeers, blobBytes(images['cold-b']), 'node-1 found a provider in group B for cold-b');
  // Only the manifest may cross the WAN (the seed resolves the tag with a GET); no blob does.
  const wanAfter = await tb.upstreamBytes();
  assert.ok(wanAfter <= images['cold-b'].manifestSize, `upstream sent ${wanAfter} bytes for an image group B holds`);

  const lanNamespaces = tb.lan?.nodes.map((n) => n.netns) ?? [];
  await tb.stop();
  const left = listLanNamespaces().filter((n) => lanNamespaces.some((m) => n === m));
  assert.deepEqual(left, [], 'stop() removed every node namespace');
});
