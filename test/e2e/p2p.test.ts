// Peer-to-peer layers over libp2p (issue 5) against real processes: distribution as the upstream,
// `peerpull seed` and `peerpull daemon` as separate processes on loopback, a containerd-like client.
// This file: one node feeds the others with the seed and the upstream down; nodes without the
// cluster key (or with another one) get nothing; a restarted node keeps its peer id and re-provides.
// The cluster scenarios run once per transport: libp2p streams, and the HTTP data plane (where the
// HTTP port itself must refuse requests not signed with the cluster key).
// p2p-burst.test.ts: six daemons pull one cold image at once. p2p-faults.test.ts: a peer that
// sends corrupt bytes, a peer killed mid-transfer.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { ClusterKey } from '@peerpull/common';
import { PEER_HTTP_PATH_PREFIX, PeerHttpAuth } from '@peerpull/daemon';
import { freePort } from '../fixtures/ports.ts';
import { registryEntry, startPeerpull, type DaemonProcess } from '../fixtures/daemon.ts';
import { getImageLayout, pushImage, type BuiltImage } from '../fixtures/images.ts';
import { getBlob, PullError } from '../fixtures/pull-client.ts';
import { startRegistry, type Registry } from '../fixtures/registry.ts';
import { waitUntil } from '../fixtures/wait-until.ts';
import {
  MB,
  PEER_TRANSPORTS,
  blobBytes,
  httpDataOrigin,
  blobsOf,
  logsWith,
  makeClusterKey,
  metricValue,
  p2pArgs,
  p2pMetrics,
  peerAddr,
  peerInfo,
  pullVia,
  stopAll,
  transportArgs,
  waitProvided,
  waitStored,
} from './p2p-helpers.ts';

const REPO = 'library/spread';
const TAG = 'v1';

/** The pull failed with `status` (the mirror's fast 404 sends containerd to its next host). */
async function assertPullFails(p: Promise<unknown>, status: number, who: string): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof PullError, `${who}: ${String(err)}`);
    assert.equal(err.status, status, `${who}: ${err.message}`);
    return true;
  });
}

for (const transport of PEER_TRANSPORTS) describe(`a cluster of five daemons and a seed; strangers without the key (${transport})`, () => {
  const key = makeClusterKey();
  const otherKey = makeClusterKey();
  let reg: Registry;
  let img: BuiltImage;
  let seed: DaemonProcess;
  let nodes: DaemonProcess[] = [];
  let noKey: DaemonProcess;
  let wrongKey: DaemonProcess;

  before(async () => {
    [reg, img] = await Promise.all([startRegistry(), getImageLayout({ name: 'p2p-spread', layers: [1 * MB, 20 * MB, 50 * MB] })]);
    await pushImage(img, `${reg.host}/${REPO}:${TAG}`);
    reg.clearLog();
    seed = await startPeerpull({ command: 'seed', registries: [registryEntry(reg)], extraArgs: [...p2pArgs(key), '--log-level', 'debug'] });
    const daemon = async (keyFile: string | undefined, extra: string[] = []): Promise<DaemonProcess> =>
      startPeerpull({ registries: [registryEntry(reg)], extraArgs: ['--seed', seed.url, ...p2pArgs(keyFile), ...transportArgs(transport), '--log-level', 'debug', ...extra] });
    nodes = await Promise.all([0, 1, 2, 3, 4].map(() => daemon(key)));
    // Strangers: both know the seed (its /api/v1/peer names its P2P address) and one also dials A directly.
    [noKey, wrongKey] = await Promise.all([daemon(undefined), daemon(otherKey, ['--bootstrap', peerAddr(nodes[0]!)])]);
    // Every keyed daemon has joined through the seed.
    await waitUntil('the daemons to connect to the seed', async () => (await Promise.all(nodes.map(p2pMetrics))).every((m) => m.connected >= 1), 15_000, 100);
  });

  after(async () => {
    await stopAll([...nodes, noKey, wrongKey, seed]);
    await reg?.stop();
  });

  test('A pulls; then B..E pull with the seed and the upstream stopped: every blob byte comes from peers', async () => {
    const [a, ...others] = nodes as [DaemonProcess, ...DaemonProcess[]];
    const first = await pullVia(a, reg, REPO, TAG);
    assert.equal(first.manifestDigest, img.manifestDigest);
    // A announced every blob, the manifest and the tag (the seed, a DHT server, holds the records too).
    await waitProvided(a, [...blobsOf(img).map((b) => b.digest), img.manifestDigest, `tag:${reg.host}/${REPO}:${TAG}`]);

    await seed.stop();
    await reg.stop();

    const started = performance.now();
    const results = await Promise.all(others.map((d) => pullVia(d, reg, REPO, TAG)));
    const seconds = (performance.now() - started) / 1000;
    const bytes = blobBytes(img);
    for (const [i, r] of results.entries()) {
      const d = others[i]!;
      assert.equal(r.manifestDigest, img.manifestDigest, `${d.host} got the image`);
      assert.deepEqual(Object.keys(r.bySource).filter((s) => s !== 'peer' && s !== 'local'), [], `${d.host} served only peer/local bytes: ${JSON.stringify(r.bySource)}`);
      const m = await p2pMetrics(d);
      assert.equal(m.fetched.peer, bytes, `${d.host}: bytes_fetched_total{source="peer"} is the image's blob bytes`);
      assert.equal(m.fetched.seed, 0, `${d.host}: nothing from the seed`);
      assert.equal(m.fetched.upstream, 0, `${d.host}: nothing from the upstream`);
    }
    const uploaded = (await Promise.all(nodes.map(p2pMetrics))).map((m) => m.uploaded);
    assert.ok(uploaded[0]! > 0, 'A uploaded to peers');
    assert.ok(uploaded.reduce((s, n) => s + n, 0) >= others.length * bytes, `the daemons uploaded what B..E fetched: ${uploaded.join(', ')}`);
    // Every peer byte moved over the transport chosen (HTTP: no silent fallback to libp2p).
    const over = (await Promise.all(nodes.map(p2pMetrics))).reduce((n, m) => n + m.uploadedOver(transport), 0);
    assert.equal(over, uploaded.reduce((s, n) => s + n, 0), `uploads over ${transport}`);
    const fetches = others.flatMap((d) => logsWith(d, 'fetching from peer'));
    assert.deepEqual([...new Set(fetches.map((l) => l.transport))], [transport], `B..E fetched over ${transport}`);
    console.log(`# B..E pulled ${(bytes / MB).toFixed(1)} MB each from peers in ${seconds.toFixed(2)} s; uploaded by A..E: ${uploaded.map((n) => (n / MB).toFixed(1)).join(', ')} MB`);
  });

  test('a node without the cluster key and a node with another key cannot connect or fetch anything', async () => {
    // Both were started with the seed URL; wrongKey also with A's address. Give them a few bootstrap rounds.
    await waitUntil('the wrong-key node to try its bootstrap peers', () => logsWith(wrongKey, 'bootstrap dial failed').length >= 2, 10_000, 100);
    assert.ok(noKey.logs().some((l) => l.msg.startsWith('no --cluster-key-file: P2P is off')), 'the node without a key runs without P2P');
    assert.throws(() => peerInfo(noKey), 'no libp2p node without a key');
    const stranger = peerInfo(wrongKey);
    assert.notEqual(stranger.cluster, peerInfo(nodes[0]!).cluster, 'another key, another cluster fingerprint');

    // The seed and the upstream are down (previous test): with no peer reachable, a miss is a 404.
    const strangers = [['no key', noKey], ['another key', wrongKey]] as const;
    await Promise.all(
      strangers.flatMap(([who, d]) => [
        assertPullFails(pullVia(d, reg, REPO, TAG), 404, who),
        ...blobsOf(img).map((b) => assertPullFails(getBlob({ registryUrl: d.url, repository: REPO, digest: b.digest, ns: reg.host, size: b.size }), 404, `${who}: blob ${b.digest}`)),
      ]),
    );
    for (const [who, d] of strangers) {
      const m = await p2pMetrics(d);
      assert.equal(m.connected, 0, `${who}: no peer connected`);
      assert.equal(m.fetched.peer + m.fetched.seed + m.fetched.upstream, 0, `${who}: nothing fetched`);
    }
    // The handshake failed on both sides: no keyed node ever saw the stranger connect.
    const aId = peerInfo(nodes[0]!).peerId;
    const dials = logsWith(wrongKey, 'bootstrap dial failed');
    assert.ok(dials.some((l) => String(l.target).endsWith(`/p2p/${aId}`)), 'the stranger dialed A and failed');
    const dialErrors = dials.map((l) => String(l.err));
    for (const d of [...nodes, seed]) {
      assert.equal(d.logs().filter((l) => l.msg === 'peer connected' && l.peer === stranger.peerId).length, 0, `${d.host} never connected to the stranger`);
    }
    for (const d of nodes) {
      const m = await p2pMetrics(d);
      assert.ok(m.connected <= nodes.length - 1, `${d.host}: only keyed daemons connected (${m.connected})`);
    }
    const uploadsToStranger = nodes.flatMap((d) => d.logs().filter((l) => /upload/.test(l.msg) && l.peer === stranger.peerId));
    assert.deepEqual(uploadsToStranger, [], 'no blob went to the stranger');
    console.log(`# stranger dial errors: ${[...new Set(dialErrors.map((e) => e.slice(0, 80)))].join(' | ')}`);
  });

  if (transport === 'http') {
    test('the HTTP data port serves nothing to a request not signed with the cluster key', async () => {
      const a = nodes[0]!;
      const origin = httpDataOrigin(a);
      const layer = blobsOf(img).at(-1)!; // A holds it (first test)
      const path = `${PEER_HTTP_PATH_PREFIX}${layer.digest}`;
      const get = async (headers: Record<string, string>): Promise<{ status: number; bytes: number; code: string | undefined }> => {
        const res = await fetch(`${origin}${path}`, { headers, signal: AbortSignal.timeout(10_000) });
        const body = Buffer.from(await res.arrayBuffer());
        const code = res.headers.get('content-type') === 'application/json' ? (JSON.parse(body.toString()) as { errors: { code: string }[] }).errors[0]?.code : undefined;
        return { status: res.status, bytes: body.length, code };
      };
      const stranger = '12D3KooWStrangerWithoutTheKey';
      const none = await get({});
      assert.equal(none.status, 401, 'no credentials');
      assert.equal(none.code, 'UNAUTHORIZED');
      assert.ok(none.bytes < 200, 'an error body, no blob bytes');
      const other = new PeerHttpAuth(ClusterKey.load(otherKey));
      const wrong = await get({ authorization: other.sign({ method: 'GET', path }, stranger) });
      assert.equal(wrong.status, 403, 'signed with another cluster key');
      assert.equal(wrong.code, 'DENIED');
      assert.ok(wrong.bytes < 200, 'an error body, no blob bytes');
      // The same request signed with the cluster key gets the blob: the refusals above are the key's doing.
      const member = new PeerHttpAuth(ClusterKey.load(key));
      const ok = await get({ authorization: member.sign({ method: 'GET', path }, stranger) });
      assert.equal(ok.status, 200);
      assert.equal(ok.bytes, layer.size);
      assert.ok(logsWith(a, 'peer HTTP request refused').length >= 2, 'A logged the refusals');
    });
  }
});

describe('a restarted node', () => {
  const key = makeClusterKey();
  let reg: Registry;
  let img: BuiltImage;
  let holder: DaemonProcess;
  let fresh: DaemonProcess | undefined;

  before(async () => {
    [reg, img] = await Promise.all([startRegistry(), getImageLayout({ name: 'p2p-restart', layers: [2 * MB, 6 * MB] })]);
    await pushImage(img, `${reg.host}/library/restart:${TAG}`);
    // No seed and no bootstrap: nobody else can hold DHT records of its blobs. A fixed port: the restart must keep its address.
    holder = await startPeerpull({ registries: [registryEntry(reg)], extraArgs: [...p2pArgs(key, await freePort()), '--log-level', 'debug'] });
  });

  after(async () => {
    await stopAll([holder, fresh]);
    await reg?.stop();
  });

  test('keeps its peer id and re-provides what it holds', async () => {
    const r = await pullVia(holder, reg, 'library/restart', TAG);
    assert.equal(r.manifestDigest, img.manifestDigest);
    const before = peerInfo(holder);
    await reg.stop();
    await waitStored(holder.dataDir, blobsOf(img).map((b) => b.digest)); // a kill -9 before the fsync + rename loses the blob, by design

    await holder.kill9();
    await holder.restart();
    const afterRestart = peerInfo(holder);
    assert.equal(afterRestart.peerId, before.peerId, 'same peer id after the restart (key persisted in the data dir)');
    assert.deepEqual(afterRestart.addrs, before.addrs, 'same P2P address');
    const keys = [...blobsOf(img).map((b) => b.digest), img.manifestDigest];
    await waitProvided(holder, keys);

    // A node that joins now, through the restarted node only, with the upstream down: the only way
    // to find the blobs is the restarted node's own new provider records.
    fresh = await startPeerpull({
      registries: [registryEntry(reg)],
      extraArgs: [...p2pArgs(key), '--bootstrap', `${afterRestart.addrs[0]}/p2p/${afterRestart.peerId}`, '--log-level', 'debug'],
    });
    await waitUntil('the new node to connect', async () => (await p2pMetrics(fresh!)).connected >= 1, 10_000, 50);
    // The admin API runs the lookup a pull runs: the restarted node is found under its old peer id
    // (once it is in the new node's routing table: until then a DHT query has nobody to ask).
    await waitUntil('the restarted node in the new node\'s routing table', async () => metricValue((await p2pMetrics(fresh!)).text, 'peerpull_dht_routing_table_size') >= 1, 10_000, 50);
    const providers = async (digest: string): Promise<{ status: number; body: { providers: string[]; firstMs: number | null; ms: number; budgetMs: number } }> => {
      const res = await fetch(`${fresh!.url}/api/v1/providers?digest=${digest}&budget=2000`, { signal: AbortSignal.timeout(5_000) });
      return { status: res.status, body: (await res.json()) as never };
    };
    // Right after joining, the new node's first query can run before the restarted node answers it: ask until it does.
    let found = await providers(keys[0]!);
    await waitUntil('a lookup that finds the restarted node', async () => (found = await providers(keys[0]!)).body.providers.length > 0, 10_000, 200);
    assert.equal(found.status, 200);
    assert.deepEqual(found.body.providers, [before.peerId], 'GET /api/v1/providers names the restarted node');
    assert.ok(found.body.firstMs !== null && found.body.firstMs <= found.body.ms && found.body.ms < 2_000, JSON.stringify(found.body));
    const unknown = await providers(`sha256:${'0'.repeat(64)}`);
    assert.deepEqual(unknown.body.providers, [], 'nobody provides an unknown digest');
    assert.equal(unknown.body.firstMs, null);
    assert.equal((await providers('sha256:nothex')).status, 400);
    const pulled = await pullVia(fresh, reg, 'library/restart', TAG);
    assert.equal(pulled.manifestDigest, img.manifestDigest);
    const m = await p2pMetrics(fresh);
    assert.equal(m.fetched.peer, blobBytes(img), 'every blob byte came from the restarted peer');
    assert.equal(m.fetched.upstream + m.fetched.seed, 0);
    const from = new Set(logsWith(fresh, 'fetching from peer').map((l) => l.peer));
    assert.deepEqual([...from], [before.peerId], 'fetched from the restarted node, under its old peer id');
  });
});
