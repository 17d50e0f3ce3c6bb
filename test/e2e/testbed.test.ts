// The cluster testbed: the emulated WAN really limits the rate and adds the delay, stop() (and an
// interrupted process) leaves no namespace, veth, qdisc or relay behind, and a cluster on it pulls the
// image from upstream once.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { test } from 'node:test';
import { Testbed } from '../cluster/testbed.ts';
import { listLanNamespaces } from '@peerpull/demo/node-lan';
import { listLinkNamespaces, netnsUnavailable, type WanMode } from '../cluster/wan-link.ts';
import { REPO_ROOT } from '../fixtures/daemon.ts';
import { getImageLayout } from '../fixtures/images.ts';
import { HttpPool, getBlob } from '../fixtures/pull-client.ts';

const MiB = 1024 * 1024;
const REPOSITORY = 'library/wan';
const netnsMissing = netnsUnavailable();
const registryMissing = existsSync('/usr/bin/docker-registry') && existsSync('/usr/bin/skopeo') ? undefined : 'needs docker-registry and skopeo';

function refused(hostPort: string): Promise<boolean> {
  const [host, port] = hostPort.split(':') as [string, string];
  return new Promise((resolve) => {
    const s = net.connect(Number(port), host);
    s.once('connect', () => {
      s.destroy();
      resolve(false);
    });
    s.once('error', () => resolve(true));
  });
}

function linkExists(name: string): boolean {
  return spawnSync('ip', ['link', 'show', name], { stdio: 'ignore' }).status === 0;
}

for (const mode of ['netns', 'relay'] as WanMode[]) {
  const skip = (mode === 'netns' && netnsMissing) || registryMissing;
  test(`testbed (${mode}): the WAN limits the rate to about the configured one and adds the delay; stop() removes everything`, { timeout: 120_000, skip }, async (t) => {
    const image = await getImageLayout({ name: 'testbed-wan', layers: [16 * MiB] });
    const layer = image.manifests[0]?.layers[0];
    assert.ok(layer);
    const rate = 40e6; // bits per second
    const delayMs = 20;
    const tb = await Testbed.start({ wan: { rateBitsPerSecond: rate, delayMs, mode }, images: [{ image, repository: REPOSITORY }] });
    t.after(() => tb.stop());
    assert.equal(tb.link.mode, mode);

    // Latency: a request on a fresh connection costs the handshake round trip plus one round trip.
    const pool = new HttpPool();
    t.after(() => pool.close());
    const t0 = performance.now();
    const res = await fetch(`${tb.upstreamUrl}/v2/`);
    await res.arrayBuffer();
    const firstMs = performance.now() - t0;
    assert.ok(firstMs >= 4 * delayMs - 2, `first request took ${firstMs.toFixed(1)} ms, expected ≥ ${4 * delayMs} ms`);

    // Rate: one 16 MiB blob through the link.
    const t1 = performance.now();
    const blob = await getBlob({ registryUrl: tb.upstreamUrl, repository: REPOSITORY, digest: layer.digest, size: layer.size, pool }); // verifies the digest
    const seconds = (performance.now() - t1) / 1000;
    assert.equal(blob.bytes, layer.size);
    const measured = (layer.size * 8) / seconds;
    t.diagnostic(`${tb.describe()}: ${(measured / 1e6).toFixed(1)} Mbit/s for a ${(layer.size / MiB).toFixed(0)} MiB blob (configured ${(rate / 1e6).toFixed(0)})`);
    assert.ok(measured > rate * 0.7 && measured < rate * 1.3, `measured ${(measured / 1e6).toFixed(1)} Mbit/s, configured ${rate / 1e6} ±30 %`);
    assert.ok(tb.link.bytesDown >= layer.size, 'the relay counted the bytes');
    assert.equal(await tb.upstreamBytes(), layer.size + 2); // the blob, and `{}` for GET /v2/

    const { netns, vethHost } = tb.link;
    await tb.stop();
    assert.ok(await refused(tb.upstreamHost), 'the relay is closed');
    assert.ok(!tb.registry.process.running, 'the registry is stopped');
    if (mode === 'netns') {
      assert.ok(netns && vethHost);
      assert.ok(!listLinkNamespaces().includes(netns), `${netns} is still listed by ip netns list`);
      assert.ok(!linkExists(vethHost), `${vethHost} still exists`);
      assert.notEqual(spawnSync('tc', ['qdisc', 'show', 'dev', vethHost], { stdio: 'ignore' }).status, 0, 'the qdisc is gone with its device');
    }
  });
}

test('testbed: an interrupted process leaves no namespace behind, WAN or node LAN (SIGINT handler)', { timeout: 60_000, skip: netnsMissing }, async () => {
  const script = `
    import { WanLink } from ${JSON.stringify(path.join(REPO_ROOT, 'packages/demo/src/wan-link.ts'))};
    import { NodeLan } from ${JSON.stringify(path.join(REPO_ROOT, 'packages/demo/src/node-lan.ts'))};
    const link = await WanLink.create({ rateBitsPerSecond: 10e6, delayMs: 5, mode: 'netns' });
    await link.shape();
    await link.expose(5000);
    const lan = NodeLan.create({ rateBitsPerSecond: 10e6 });
    const node = lan.addNode('n', 1);
    console.log(link.netns + ' ' + link.vethHost + ' ' + node.netns);
    setInterval(() => {}, 1000);
  `;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  const line = await new Promise<string>((resolve, reject) => {
    child.stdout.once('data', (b: Buffer) => resolve(b.toString().trim()));
    child.once('exit', (code) => reject(new Error(`exited with ${code}`)));
  });
  const [netns, veth, nodeNetns] = line.split(' ') as [string, string, string];
  assert.ok(listLinkNamespaces().includes(netns));
  assert.ok(listLanNamespaces().includes(nodeNetns));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  child.kill('SIGINT');
  assert.equal(await exited, 130);
  assert.ok(!listLinkNamespaces().includes(netns), `${netns} left behind`);
  assert.ok(!linkExists(veth), `${veth} left behind`);
  const lanPrefix = nodeNetns.slice(0, nodeNetns.lastIndexOf('-') + 1);
  assert.deepEqual(listLanNamespaces().filter((n) => n.startsWith(lanPrefix)), [], 'the node LAN is left behind');
});

test('testbed: a seed and two daemons behind the WAN pull the image from upstream once (containerd on node 1)', { timeout: 180_000, skip: registryMissing }, async (t) => {
  const image = await getImageLayout({ name: 'testbed-cluster', layers: [1 * MiB, 12 * MiB] });
  const tb = await Testbed.start({ wan: { rateBitsPerSecond: 200e6, delayMs: 10 }, images: [{ image, repository: REPOSITORY }] });
  t.after(() => tb.stop());
  const cluster = await tb.startCluster({ daemons: 2 });
  await cluster.waitForPeers(15_000);
  const [node1, node2] = cluster.daemons as [typeof cluster.daemons[0], typeof cluster.daemons[0]];
  const useContainerd = process.getuid?.() === 0 && existsSync('/usr/bin/containerd');
  const first = useContainerd
    ? (await tb.startContainerd(node1.url)).pull(tb.ref(REPOSITORY), { timeoutMs: 120_000 })
    : tb.pull(node1.url, REPOSITORY);
  await Promise.all([first, tb.pull(node2.url, REPOSITORY)]);
  assert.equal(await tb.upstreamBytes(), image.totalBytes);
  const counters = await cluster.counters();
  const served = (name: string) => Object.values(counters.get(name)?.served ?? {}).reduce((a, b) => a + b, 0);
  assert.equal(served('node-1'), image.totalBytes);
  assert.equal(served('node-2'), image.totalBytes);
});

test('testbed (node LAN): each node runs in its own namespace and its NIC limits the rate; stop() removes every namespace', { timeout: 120_000, skip: netnsMissing || registryMissing }, async (t) => {
  const image = await getImageLayout({ name: 'testbed-lan', layers: [12 * MiB] });
  const nic = 40e6; // bits per second, each way
  const tb = await Testbed.start({ wan: { rateBitsPerSecond: 0, delayMs: 1 }, nodeNic: { rateBitsPerSecond: nic, mode: 'netns' }, images: [{ image, repository: REPOSITORY }] });
  t.after(() => tb.stop());
  assert.match(tb.describe(), /own network namespace/);
  const cluster = await tb.startCluster({ daemons: 1, p2p: false });
  const [seed, node] = cluster.nodes as [typeof cluster.nodes[0], typeof cluster.nodes[0]];
  const lanNodes = tb.lan?.nodes ?? [];
  assert.equal(lanNodes.length, 2, 'the seed and the daemon each have a namespace');
  assert.ok(seed.url.includes((lanNodes[0] as { lanAddress: string }).lanAddress), `the seed serves on its LAN address (${seed.url})`);

  // The WAN is unlimited: what bounds the pull is the seed's and the daemon's 40 Mbit/s NICs.
  const t0 = performance.now();
  await tb.pull(node.url, REPOSITORY);
  const seconds = (performance.now() - t0) / 1000;
  const measured = (image.totalBytes * 8) / seconds;
  t.diagnostic(`${tb.describe()}: a ${(image.totalBytes / MiB).toFixed(0)} MiB pull at ${(measured / 1e6).toFixed(1)} Mbit/s (NIC ${(nic / 1e6).toFixed(0)})`);
  assert.ok(measured < nic * 1.15 && measured > nic * 0.5, `measured ${(measured / 1e6).toFixed(1)} Mbit/s through a ${nic / 1e6} Mbit/s NIC`);

  // `pplan-<pid>-<id>-<k>` for the nodes, `pplan-<pid>-<id>-core` for the bridges and routing.
  const first = lanNodes[0]?.netns ?? '';
  const prefix = first.slice(0, first.lastIndexOf('-') + 1);
  await tb.stop();
  assert.deepEqual(listLanNamespaces().filter((n) => n.startsWith(prefix)), [], 'no namespace of the LAN is left');
});
