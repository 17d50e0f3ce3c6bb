// Issue 8, metrics and health against real processes: an embedded upstream, a seed and two
// daemons with P2P. Metrics move as pulls happen (a pull from a peer counts on both ends), the
// Grafana dashboard uses only metrics that exist, and /readyz goes unready when every source is
// gone and ready again after, on the mirror and on the metrics listener.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { LayoutRegistry, pullImage } from '@peerpull/demo';
import { makeTempDir } from '../fixtures/processes.ts';
import { REPO_ROOT, addImage, declaredMetrics, getJson, metric, peerpull, randomLayer, scrape, startTestCluster, type TestCluster, type TestImage, waitObserved } from './observability-helpers.ts';

describe('metrics and health', () => {
  let tc: TestCluster;
  let image: TestImage;
  let upstreamPort: number;

  before(async () => {
    const work = makeTempDir('pp-obs-metrics-');
    const upstream = new LayoutRegistry();
    image = addImage(upstream, work, 'library/metrics', 'v1', [randomLayer(300_000), randomLayer(2_000_000)]);
    const host = await upstream.listen();
    upstreamPort = Number(host.split(':')[1]);
    tc = await startTestCluster(work, { daemons: 2, upstream, host, extraDaemonArgs: ['--peer-lookup-timeout', '1s'] });
    assert.ok(await tc.cluster.waitForPeers(15_000), 'the daemons found peers');
  });

  after(async () => {
    await tc?.stop();
  });

  test('metrics move as pulls happen; a pull from a peer counts on both ends', async () => {
    const [first, second] = tc.daemons as [typeof tc.daemons[0], typeof tc.daemons[0]];
    const before1 = await scrape(first);
    const before2 = await scrape(second);
    const seedBefore = await scrape(tc.seed);

    const pull1 = await pullImage({ registryUrl: first.url, repository: image.repository, tag: image.tag, ns: tc.host });
    assert.equal(pull1.bySource.peer ?? 0, 0, 'the first node has no peer to get it from');
    // The first node announces every blob it holds; the second pulls once it can find them all.
    const blobs = [image.config, ...image.layers];
    await waitObserved('the first node to provide every blob', async () => metric(await scrape(first), 'peerpull_peer_provide_seconds_count', { result: 'ok' }) >= blobs.length);

    const after1 = await scrape(first);
    assert.ok(metric(after1, 'peerpull_mirror_requests_total', { kind: 'blob', result: 'hit', source: 'seed' }) - metric(before1, 'peerpull_mirror_requests_total', { kind: 'blob', result: 'hit', source: 'seed' }) >= blobs.length);
    assert.equal(metric(after1, 'peerpull_bytes_served_total', { source: 'seed' }) - metric(before1, 'peerpull_bytes_served_total', { source: 'seed' }), image.config.size + image.layers.reduce((n, l) => n + l.size, 0));
    assert.ok(metric(after1, 'peerpull_tag_resolutions_total', { outcome: 'revalidated' }) > metric(before1, 'peerpull_tag_resolutions_total', { outcome: 'revalidated' }), 'the tag was resolved through the seed');
    assert.ok(metric(after1, 'peerpull_request_duration_seconds_count', { kind: 'blob' }) >= blobs.length);
    assert.ok(metric(after1, 'peerpull_peer_lookup_seconds_count') > 0, 'DHT lookups are timed');
    assert.ok(metric(after1, 'peerpull_advertised_keys') >= blobs.length);
    assert.ok(metric(after1, 'peerpull_dht_routing_table_size') >= 1);
    const seedAfter = await scrape(tc.seed);
    assert.ok(metric(seedAfter, 'peerpull_upstream_requests_total', { registry: tc.host, code: '200' }) > metric(seedBefore, 'peerpull_upstream_requests_total', { registry: tc.host, code: '200' }), 'the seed counts its upstream requests');
    assert.equal(metric(seedAfter, 'peerpull_bytes_fetched_total', { source: 'upstream' }) - metric(seedBefore, 'peerpull_bytes_fetched_total', { source: 'upstream' }), blobs.reduce((n, b) => n + b.size, 0), 'blob bytes over the WAN, once');

    const pull2 = await pullImage({ registryUrl: second.url, repository: image.repository, tag: image.tag, ns: tc.host });
    assert.equal(pull2.bySource.peer, blobs.reduce((n, b) => n + b.size, 0), 'the second node got every blob from its peer');
    const after2 = await scrape(second);
    const uploads = await scrape(first);
    const downloaded = metric(after2, 'peerpull_peer_transfers_total', { direction: 'download', outcome: 'ok' }) - metric(before2, 'peerpull_peer_transfers_total', { direction: 'download', outcome: 'ok' });
    const uploaded = metric(uploads, 'peerpull_peer_transfers_total', { direction: 'upload', outcome: 'ok' }) - metric(after1, 'peerpull_peer_transfers_total', { direction: 'upload', outcome: 'ok' });
    // The image manifest (by digest) comes from the peer too: one transfer more than the blobs.
    assert.equal(downloaded, blobs.length + 1, 'downloads counted on the receiving node');
    assert.equal(uploaded, blobs.length + 1, 'uploads counted on the sending node');
    assert.equal(metric(uploads, 'peerpull_peer_bytes_uploaded_total') - metric(after1, 'peerpull_peer_bytes_uploaded_total'), (pull2.bySource.peer ?? 0) + image.manifest.size);
    assert.equal(metric(after2, 'peerpull_bytes_fetched_total', { source: 'peer' }) - metric(before2, 'peerpull_bytes_fetched_total', { source: 'peer' }), pull2.bySource.peer);
    assert.ok(metric(after2, 'peerpull_mirror_requests_total', { kind: 'blob', result: 'hit', source: 'peer' }) >= blobs.length);
    assert.ok(metric(after2, 'peerpull_peer_lookup_seconds_count', { found: 'true' }) >= blobs.length);
    assert.equal(metric(after2, 'peerpull_ready'), 1);
    assert.equal(metric(after2, 'peerpull_build_info', { service: 'daemon' }), 1);
    await waitObserved('the store to hold the whole image', async () => metric(await scrape(second), 'peerpull_cache_bytes') >= image.totalBytes);
    assert.ok(metric(after2, 'peerpull_cache_max_bytes') > 0);
  });

  test('the Grafana dashboard is valid JSON and uses only metrics the daemon and the seed export', async () => {
    const dashboard = JSON.parse(readFileSync(path.join(REPO_ROOT, 'deploy/grafana/peerpull.json'), 'utf8')) as {
      title: string;
      uid: string;
      panels: { id: number; type: string; title: string; targets?: { expr: string }[] }[];
      templating: { list: { name: string }[] };
    };
    assert.equal(dashboard.uid, 'peerpull');
    const ids = dashboard.panels.map((p) => p.id);
    assert.equal(new Set(ids).size, ids.length, 'panel ids are unique');
    const exprs = dashboard.panels.flatMap((p) => (p.targets ?? []).map((t) => t.expr));
    assert.ok(exprs.length >= 20, 'the dashboard has queries');
    for (const p of dashboard.panels.filter((x) => x.type !== 'row')) assert.ok(p.targets?.length, `panel "${p.title}" has a query`);
    const declared = new Set([...declaredMetrics(await scrape(tc.daemons[0]!)), ...declaredMetrics(await scrape(tc.seed))]);
    const used = new Set(exprs.flatMap((e) => [...e.matchAll(/\bpeerpull_[a-z0-9_]+/g)].map((m) => m[0])));
    const missing = [...used].filter((name) => !declared.has(name) && !declared.has(name.replace(/_(bucket|sum|count)$/, '')));
    assert.deepEqual(missing, [], 'every metric the dashboard uses is exported');
    // And every metric the issue lists is on the dashboard.
    for (const name of ['peerpull_mirror_requests_total', 'peerpull_upstream_rate_limited_total', 'peerpull_upstream_ratelimit_remaining', 'peerpull_cache_evictions_total', 'peerpull_tag_resolutions_total', 'peerpull_dht_routing_table_size', 'peerpull_peer_provide_seconds_bucket', 'peerpull_peer_lookup_seconds_bucket', 'peerpull_peer_transfers_total', 'peerpull_peers_quarantined', 'peerpull_request_duration_seconds_bucket']) {
      assert.ok(used.has(name), `the dashboard shows ${name}`);
    }
    const vars = exprs.flatMap((e) => [...e.matchAll(/\$(\w+)/g)].map((m) => m[1] as string)).filter((v) => !v.startsWith('__'));
    const defined = new Set(dashboard.templating.list.map((v) => v.name));
    for (const v of vars) assert.ok(defined.has(v), `variable $${v} is defined`);
  });

  test('/readyz goes unready when every source is gone, and ready again after', async () => {
    const [node, other] = tc.daemons as [typeof tc.daemons[0], typeof tc.daemons[0]];
    const metricsBase = node.metricsUrl.replace(/\/metrics$/, '');
    const readyz = async (base: string): Promise<{ status: number; body: { status: string; reason?: string } }> => {
      const res = await fetch(`${base}/readyz`, { signal: AbortSignal.timeout(10_000) });
      return { status: res.status, body: (await res.json()) as { status: string; reason?: string } };
    };
    assert.equal((await readyz(node.url)).status, 200);
    assert.equal((await readyz(metricsBase)).status, 200);
    assert.equal((await fetch(`${metricsBase}/healthz`)).status, 200);

    // Peers alone keep it ready: the seed and the upstream go away, the other node stays.
    await tc.seed.stop();
    await tc.upstream.close();
    await new Promise((r) => setTimeout(r, 1_500));
    assert.equal((await readyz(node.url)).status, 200, 'ready while a peer is connected');

    // The last peer goes too: nothing is left to fetch from.
    await other.stop();
    const unready = await waitObserved('the daemon to say unready', async () => {
      const r = await readyz(node.url);
      return r.status === 503 ? r : undefined;
    });
    assert.equal(unready.body.status, 'unready');
    assert.match(unready.body.reason ?? '', /no source usable/);
    assert.match(unready.body.reason ?? '', /no peer connected/);
    assert.match(unready.body.reason ?? '', /no seed reachable/);
    assert.match(unready.body.reason ?? '', /no upstream reachable/);
    assert.equal((await readyz(metricsBase)).status, 503, 'the metrics listener says the same');
    assert.equal((await readyz(metricsBase)).body.reason, (await readyz(node.url)).body.reason);
    assert.equal((await fetch(`${metricsBase}/healthz`)).status, 200, 'alive all the same');
    assert.equal(metric(await scrape(node), 'peerpull_ready'), 0);
    const status = await peerpull(['status', '--daemon', node.url]);
    assert.equal(status.code, 1, `status exits 1 when not ready: ${status.stdout}${status.stderr}`);
    assert.match(status.stdout, /NOT READY: no source usable/);
    const statusJson = JSON.parse((await peerpull(['status', '--daemon', node.url, '--json'])).stdout) as { daemon: { ready: boolean; sources: { usable: boolean; peers: number } } };
    assert.equal(statusJson.daemon.ready, false);
    assert.equal(statusJson.daemon.sources.usable, false);

    // The upstream comes back: ready again.
    await tc.upstream.listen('127.0.0.1', upstreamPort);
    await waitObserved('the daemon to be ready again', async () => (await readyz(node.url)).status === 200);
    await waitObserved('the metrics listener to agree', async () => (await readyz(metricsBase)).status === 200);
    assert.equal(metric(await scrape(node), 'peerpull_ready'), 1);
    const statusAgain = await getJson<{ ready: boolean; sources: { upstreams: { reachable: boolean }[] } }>(`${node.url}/api/v1/status`);
    assert.equal(statusAgain.ready, true);
    assert.ok(statusAgain.sources.upstreams.some((u) => u.reachable));
    assert.equal((await peerpull(['status', '--daemon', node.url])).code, 0);
  });
});
