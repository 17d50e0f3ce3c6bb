// Issue 8, `peerpull explain` and `peerpull cache` against real processes: after a mixed pull
// (one layer already on the node, one on a peer, one only upstream), explain names the right
// source for each layer; `cache verify` finds and removes a blob corrupted on disk; ls/rm/gc.
import assert from 'node:assert/strict';
import { existsSync, openSync, writeSync, closeSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { LayoutRegistry, pullImage, type ClusterNode } from '@peerpull/demo';
import type { CacheListing, ExplainReport } from '@peerpull/daemon';
import { makeTempDir } from '../fixtures/processes.ts';
import { addImage, getJson, metric, peerpull, randomLayer, scrape, startTestCluster, type TestCluster, type TestImage, waitObserved } from './observability-helpers.ts';

describe('explain and cache', () => {
  let tc: TestCluster;
  let base: TestImage; // layer A
  let mid: TestImage; // layer B
  let mixed: TestImage; // layers A, B, C
  let first: ClusterNode;
  let second: ClusterNode;
  let firstPeerId: string;

  before(async () => {
    const work = makeTempDir('pp-obs-explain-');
    const upstream = new LayoutRegistry();
    const [a, b, c] = [randomLayer(400_000), randomLayer(1_500_000), randomLayer(700_000)];
    base = addImage(upstream, work, 'library/base', 'v1', [a]);
    mid = addImage(upstream, work, 'library/mid', 'v1', [b]);
    mixed = addImage(upstream, work, 'library/mixed', 'v1', [a, b, c]);
    const host = await upstream.listen();
    tc = await startTestCluster(work, { daemons: 2, upstream, host, extraDaemonArgs: ['--peer-lookup-timeout', '1s'] });
    [first, second] = tc.daemons as [ClusterNode, ClusterNode];
    assert.ok(await tc.cluster.waitForPeers(15_000), 'the daemons found peers');
    firstPeerId = (await getJson<{ peerId: string }>(`${first.url}/api/v1/status`)).peerId;
  });

  after(async () => {
    await tc?.stop();
  });

  const ref = (image: TestImage): string => `${tc.host}/${image.repository}:${image.tag}`;
  const pull = (node: ClusterNode, image: TestImage) => pullImage({ registryUrl: node.url, repository: image.repository, tag: image.tag, ns: tc.host });

  test('explain names the right source for each layer after a mixed pull', async () => {
    const [a, b, c] = mixed.layers as [TestImage['layers'][0], TestImage['layers'][0], TestImage['layers'][0]];
    await pull(second, base); // A: already on the node that will pull
    await pull(first, mid); // B: on its peer
    // Before the pull: explain knows where each layer is, and pulls nothing.
    const beforeBytes = metric(await scrape(second), 'peerpull_bytes_fetched_total');
    const plan = await waitObserved('layer A stored on the second node, and its peer found holding layer B', async () => {
      const report = await getJson<ExplainReport>(`${second.url}/api/v1/explain?image=${encodeURIComponent(ref(mixed))}`);
      const aStored = report.layers.find((l) => l.digest === a.digest)?.local;
      return aStored && report.layers.find((l) => l.digest === b.digest)?.peers?.some((p) => p.id === firstPeerId) ? report : undefined;
    });
    const planned = Object.fromEntries(plan.layers.map((l) => [l.digest, l.where]));
    assert.deepEqual([planned[a.digest], planned[b.digest], planned[c.digest]], ['local', 'peers', 'upstream']);
    assert.equal(plan.layers.find((l) => l.digest === b.digest)?.seed?.state, 'stored', 'the seed has B (it fetched it for the peer)');
    assert.equal(plan.layers.find((l) => l.digest === c.digest)?.seed?.state, 'upstream', 'nobody has C: the seed would fetch it');
    assert.equal(plan.resolvedBy, 'sources', 'the node had not seen the image: only its manifest was fetched');
    assert.equal(metric(await scrape(second), 'peerpull_bytes_fetched_total'), beforeBytes, 'explain fetched no layer');

    const result = await pull(second, mixed);
    assert.equal(result.bySource.local, a.size + mixed.manifest.size, 'layer A (and the manifest explain fetched) came from the node itself');
    assert.equal(result.bySource.peer, b.size, 'layer B came from the peer');
    assert.equal(result.bySource.seed, c.size + mixed.config.size, 'layer C and the config came from the seed');

    // The client has its last byte while the store still syncs and renames the blob: wait for the store.
    const report = await waitObserved('every layer stored on the node', async () => {
      const r = await getJson<ExplainReport>(`${second.url}/api/v1/explain?image=${encodeURIComponent(ref(mixed))}`);
      return r.localBytes === r.totalBytes ? r : undefined;
    });
    assert.equal(report.image, ref(mixed));
    assert.equal(report.digest, mixed.manifest.digest);
    assert.equal(report.resolvedBy, 'cache');
    assert.equal(report.localBytes, report.totalBytes);
    const layer = (digest: string) => report.layers.find((l) => l.digest === digest) as ExplainReport['layers'][number];
    assert.deepEqual(report.layers.map((l) => l.kind), ['config', 'layer', 'layer', 'layer']);
    for (const l of report.layers) assert.equal(l.where, 'local');
    assert.equal(layer(a.digest).lastPull?.source, 'local');
    assert.equal(layer(b.digest).lastPull?.source, 'peer');
    assert.equal(layer(c.digest).lastPull?.source, 'seed');
    assert.equal(layer(mixed.config.digest).lastPull?.source, 'seed');
    // Why: B was fetched from the peer named; C was looked for among peers first, then came from the seed.
    const bFetch = layer(b.digest).lastFetch;
    assert.equal(bFetch?.source, 'peer');
    assert.deepEqual(bFetch?.attempts.map((t) => `${t.source}:${t.outcome}`), ['peer:ok']);
    assert.match(bFetch?.attempts[0]?.detail ?? '', new RegExp(`from peer ${firstPeerId.slice(0, 8)}`));
    const cFetch = layer(c.digest).lastFetch;
    assert.deepEqual(cFetch?.attempts.map((t) => `${t.source}:${t.outcome}`), ['peer:miss', 'seed:ok']);
    assert.match(cFetch?.attempts[0]?.detail ?? '', /no provider found in \d+ ms/);
    assert.equal(layer(a.digest).lastFetch?.source, 'seed', 'A was fetched from the seed when base:v1 was pulled');
    assert.ok(layer(b.digest).peers?.some((p) => p.id === firstPeerId), 'the peer still provides B');

    // The CLI says the same, for people and for scripts.
    const text = await peerpull(['explain', ref(mixed), '--daemon', second.url]);
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, new RegExp(`${mixed.manifest.digest.slice(7, 19)}`));
    assert.match(text.stdout, /config \+ 3 layers/);
    assert.match(text.stdout, /served from local/);
    assert.match(text.stdout, /served from peer/);
    assert.match(text.stdout, /served from seed/);
    assert.match(text.stdout, /peer doesn't have it \(no provider found in \d+ ms, \d+ ms\) → seed ok/);
    const json = JSON.parse((await peerpull(['explain', ref(mixed), '--daemon', second.url, '--json'])).stdout) as ExplainReport;
    assert.deepEqual(json.layers.map((l) => l.lastPull?.source), ['seed', 'local', 'peer', 'seed']);
    const missing = await peerpull(['explain', `${tc.host}/library/nothing:v1`, '--daemon', second.url]);
    assert.equal(missing.code, 4, 'an unknown image exits 4');
    const down = await peerpull(['explain', ref(mixed), '--daemon', 'http://127.0.0.1:9']);
    assert.equal(down.code, 3, 'an unreachable daemon exits 3');
  });

  test('cache verify finds and removes a blob corrupted on disk', async () => {
    const [a] = base.layers as [TestImage['layers'][0]];
    // Flip bytes in the middle of layer A's file on the second node: same size, wrong content.
    const file = path.join(second.dataDir, 'blobs', 'sha256', a.digest.slice(7, 9), a.digest.slice(7));
    assert.ok(existsSync(file));
    const fd = openSync(file, 'r+');
    writeSync(fd, Buffer.from('not the bytes you are looking for'), 0, undefined, 1000);
    closeSync(fd);

    const verify = await peerpull(['cache', 'verify', '--daemon', second.url]);
    assert.equal(verify.code, 1, `verify exits 1 when it found corrupt blobs: ${verify.stdout}${verify.stderr}`);
    assert.match(verify.stdout, new RegExp(`BAD ${a.digest} \\(390\\.6 KiB\\): content hashes to sha256:[0-9a-f]{64}; removed`));
    assert.match(verify.stdout, /1 did not match its digest and was removed/);
    assert.equal(existsSync(file), false, 'the corrupt file is gone');
    const listing = await getJson<CacheListing>(`${second.url}/api/v1/cache`);
    const baseEntry = listing.images.find((i) => i.image === ref(base));
    assert.equal(baseEntry?.complete, false, 'base:v1 is no longer complete on the node');
    assert.equal(baseEntry?.platforms[0]?.blobs.find((x) => x.digest === a.digest)?.present, false);

    const again = await peerpull(['cache', 'verify', '--daemon', second.url, '--json']);
    assert.equal(again.code, 0, again.stdout);
    const summary = JSON.parse(again.stdout) as { checked: number; bad: number; corrupt: unknown[] };
    assert.equal(summary.bad, 0);
    assert.ok(summary.checked >= 5);

    // The next pull fetches it again, correctly.
    const repull = await pull(second, base);
    assert.equal(repull.bySource.local ?? 0, base.manifest.size + base.config.size, 'layer A was fetched again');
    await waitObserved('base:v1 complete on the node again', async () => (await getJson<CacheListing>(`${second.url}/api/v1/cache`)).images.find((i) => i.image === ref(base))?.complete);
  });

  test('cache ls, rm and gc', async () => {
    const ls = await peerpull(['cache', 'ls', '--daemon', first.url]);
    assert.equal(ls.code, 0, ls.stderr);
    assert.match(ls.stdout, new RegExp(`${ref(mid).replace(/[.]/g, '\\.')}\\s+${mid.manifest.digest.slice(7, 19)}\\s+2/2 blobs`));
    const listing = JSON.parse((await peerpull(['cache', 'ls', '--daemon', first.url, '--json'])).stdout) as CacheListing;
    assert.deepEqual(listing.images.map((i) => [i.image, i.complete]), [[ref(mid), true]]);

    const rm = await peerpull(['cache', 'rm', ref(mid), '--daemon', first.url]);
    assert.equal(rm.code, 0, rm.stderr);
    assert.match(rm.stdout, /removed .*library\/mid:v1: 3 entries/);
    const after = await getJson<CacheListing>(`${first.url}/api/v1/cache`);
    assert.equal(after.images.length, 0);
    assert.equal(after.entries, 0);

    const notThere = await peerpull(['cache', 'rm', ref(mid), '--daemon', first.url]);
    assert.equal(notThere.code, 4, 'removing what is not cached exits 4');

    // rm of one image keeps the layers another cached image uses: base:v1 and mixed:v1 share A.
    const shared = JSON.parse((await peerpull(['cache', 'rm', ref(base), '--daemon', second.url, '--json'])).stdout) as { removed: { digest: string }[]; kept: number }[];
    assert.equal(shared[0]?.kept, 1);
    assert.ok(!shared[0]?.removed.some((r) => r.digest === base.layers[0]?.digest));

    const gc = await peerpull(['cache', 'gc', '--to', '0', '--daemon', second.url]);
    assert.equal(gc.code, 0, gc.stderr);
    assert.match(gc.stdout, /evicted \d+ least-recently-used entries/);
    assert.equal((await getJson<CacheListing>(`${second.url}/api/v1/cache`)).bytes, 0);
    assert.ok(metric(await scrape(second), 'peerpull_cache_evictions_total') >= 4);
  });

  test('usage errors exit 2; status --json names the node', async () => {
    const usage = await peerpull(['cache', 'frobnicate', '--daemon', second.url]);
    assert.equal(usage.code, 2);
    const status = await peerpull(['status', '--daemon', second.url, '--json']);
    assert.equal(status.code, 0);
    const doc = JSON.parse(status.stdout) as { daemon: { name: string; ready: boolean; version: string } };
    assert.equal(doc.daemon.name, 'node-2');
    assert.equal(doc.daemon.ready, true);
  });
});
