// P2P burst (issue 5): six daemons pull one cold ~100 MB image at the same moment through a seed
// with `--peer-fanout 2`. The upstream must see each blob once, the seed must send each blob to at
// most two daemons, and the rest must travel between the daemons; once per transport (libp2p streams,
// the HTTP data plane).
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { registryEntry, startPeerpull, type DaemonProcess } from '../fixtures/daemon.ts';
import { getImageLayout, pushImage, type BuiltImage } from '../fixtures/images.ts';
import { startRegistry, type Registry } from '../fixtures/registry.ts';
import { waitUntil } from '../fixtures/wait-until.ts';
import { MB, PEER_TRANSPORTS, blobBytes, blobsOf, makeClusterKey, p2pArgs, p2pMetrics, pullVia, stopAll, transportArgs } from './p2p-helpers.ts';

const REPO = 'library/burst';
const TAG = 'v1';
const DAEMONS = 6;
const FANOUT = 2;

for (const transport of PEER_TRANSPORTS) describe(`burst: six daemons pull one cold image at once (${transport})`, () => {
  const key = makeClusterKey();
  let reg: Registry;
  let img: BuiltImage;
  let seed: DaemonProcess;
  let daemons: DaemonProcess[] = [];

  before(async () => {
    [reg, img] = await Promise.all([startRegistry(), getImageLayout({ name: 'p2p-burst', layers: [5 * MB, 45 * MB, 50 * MB] })]);
    await pushImage(img, `${reg.host}/${REPO}:${TAG}`);
    reg.clearLog();
    seed = await startPeerpull({ command: 'seed', registries: [registryEntry(reg)], extraArgs: [...p2pArgs(key), '--peer-fanout', String(FANOUT)] });
    daemons = await Promise.all(
      Array.from({ length: DAEMONS }, async () =>
        startPeerpull({ registries: [registryEntry(reg)], extraArgs: ['--seed', seed.url, ...p2pArgs(key), ...transportArgs(transport), '--log-level', 'debug'] }),
      ),
    );
    await waitUntil('every daemon to join through the seed', async () => (await Promise.all(daemons.map(p2pMetrics))).every((m) => m.connected >= 1), 15_000, 100);
  });

  after(async () => {
    await stopAll([...daemons, seed]);
    await reg?.stop();
  });

  test('the upstream sees each blob once, the seed sends each blob to at most two daemons, the rest comes from peers', async () => {
    const started = performance.now();
    const results = await Promise.all(daemons.map((d) => pullVia(d, reg, REPO, TAG)));
    const seconds = (performance.now() - started) / 1000;
    for (const r of results) assert.equal(r.manifestDigest, img.manifestDigest);
    const blobs = blobsOf(img);
    const bytes = blobBytes(img);

    // Upstream: one GET per blob, ever.
    await reg.flushLog();
    for (const b of blobs) {
      const gets = reg.accessLog().filter((e) => e.method === 'GET' && e.kind === 'blob' && e.reference === b.digest);
      assert.equal(gets.length, 1, `upstream GETs of ${b.digest}: ${gets.map((e) => e.status).join(', ')}`);
    }
    assert.equal(reg.bytesSent({ kind: 'blob' }), bytes, 'upstream blob bytes = the image once');

    // Seed: each blob sent (GET 200/206) to at most FANOUT daemons; 503 "busy" answers send no blob.
    await waitUntil('the seed to log its blob requests', () => blobs.every((b) => seed.pulls().some((p) => p.digest === b.digest && p.status === 200)), 3_000);
    const seedPulls = seed.pulls().filter((p) => p.kind === 'blob' && p.method === 'GET');
    const perBlob = blobs.map((b) => {
      const mine = seedPulls.filter((p) => p.digest === b.digest);
      return { digest: b.digest, sent: mine.filter((p) => p.status === 200 || p.status === 206).length, busy: mine.filter((p) => p.status === 503).length };
    });
    for (const b of perBlob) assert.ok(b.sent >= 1 && b.sent <= FANOUT, `seed sent ${b.digest} ${b.sent} times (busy ${b.busy})`);

    // Daemons: nothing from the upstream; beyond what the seed sent, every byte came from a peer.
    const metrics = await Promise.all(daemons.map(p2pMetrics));
    const sum = (f: (m: (typeof metrics)[number]) => number): number => metrics.reduce((n, m) => n + f(m), 0);
    for (const [i, m] of metrics.entries()) {
      assert.equal(m.fetched.upstream, 0, `daemon ${i}: nothing from the upstream`);
      assert.ok(m.fetched.peer + m.fetched.seed >= bytes, `daemon ${i} fetched the image (${m.fetched.peer} from peers, ${m.fetched.seed} from the seed)`);
    }
    const fromSeed = sum((m) => m.fetched.seed);
    const fromPeers = sum((m) => m.fetched.peer);
    assert.ok(fromSeed <= FANOUT * bytes, `seed bytes ${fromSeed} <= ${FANOUT} x image`);
    assert.ok(fromPeers >= DAEMONS * bytes - fromSeed, `peer bytes ${fromPeers} cover the rest`);
    assert.ok(sum((m) => m.uploaded) >= fromPeers, 'peers uploaded what peers fetched');
    assert.equal(sum((m) => m.uploadedOver(transport)), sum((m) => m.uploaded), `every peer upload went over ${transport}`);
    const seedServed = (await seed.metrics()).split('\n').filter((l) => l.startsWith('peerpull_bytes_served_total')).reduce((n, l) => n + Number(l.split(' ').pop()), 0);
    console.log(
      `# ${transport} burst of ${DAEMONS} x ${(bytes / MB).toFixed(1)} MB: all done in ${seconds.toFixed(2)} s; upstream ${(reg.bytesSent({ kind: 'blob' }) / bytes).toFixed(2)} x image; ` +
        `seed served ${(seedServed / bytes).toFixed(2)} x image (blobs sent ${perBlob.map((b) => `${b.sent}/${b.busy} busy`).join(', ')}); ` +
        `daemons fetched ${(fromPeers / MB).toFixed(1)} MB from peers, ${(fromSeed / MB).toFixed(1)} MB from the seed`,
    );
  });
});
