// Issue 8, the pull audit log and the dashboard against real processes: three daemons pull one
// image at once; the seed's log lists every pull with the source each daemon served it from;
// `peerpull pulls` shows it; the dashboard, in a real headless Chromium, shows the nodes and the
// image with no console errors (screenshot: test-artifacts/dashboard.png); and losing the seed
// loses records, never pulls.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { LayoutRegistry, pullImage, type ClusterNode } from '@peerpull/demo';
import type { PullRecord } from '@peerpull/common';
import type { ClusterView } from '@peerpull/seed';
import { makeTempDir } from '../fixtures/processes.ts';
import { waitUntil } from '../fixtures/wait-until.ts';
import { REPO_ROOT, addImage, getJson, metric, nodePullLines, peerpull, randomLayer, scrape, startTestCluster, type TestCluster, type TestImage, waitObserved } from './observability-helpers.ts';

const CHROMIUM = '/usr/bin/chromium';
const ARTIFACTS = path.join(REPO_ROOT, 'test-artifacts');

/** Why the dashboard test cannot run here, or undefined when it can. */
function chromiumUnavailable(): string | undefined {
  if (!existsSync(CHROMIUM)) return `${CHROMIUM} is not installed (apt-get install chromium; scripts/setup.sh --system does)`;
  try {
    execFileSync(CHROMIUM, ['--version'], { stdio: 'pipe', timeout: 20_000 });
  } catch (err) {
    return `${CHROMIUM} does not run: ${(err as Error).message}`;
  }
  return undefined;
}

describe('pull audit log and dashboard', () => {
  let tc: TestCluster;
  let image: TestImage;
  let other: TestImage;

  before(async () => {
    const work = makeTempDir('pp-obs-pulls-');
    const upstream = new LayoutRegistry();
    image = addImage(upstream, work, 'library/burst', 'v1', [randomLayer(200_000), randomLayer(3_000_000), randomLayer(1_000_000)]);
    other = addImage(upstream, work, 'team/other', '2.0', [randomLayer(500_000)]);
    const host = await upstream.listen();
    tc = await startTestCluster(work, { daemons: 3, upstream, host });
    assert.ok(await tc.cluster.waitForPeers(15_000), 'the daemons found peers');
  });

  after(async () => {
    await tc?.stop();
  });

  test("the audit log lists a burst's pulls with the right sources", async () => {
    const results = await Promise.all(tc.daemons.map((d) => pullImage({ registryUrl: d.url, repository: image.repository, tag: image.tag, ns: tc.host })));
    const blobs = [image.config, ...image.layers];
    // Each daemon logs one line per request with the source that served it: that is the truth to compare with.
    // (Logs are written asynchronously: wait for one manifest GET and one GET per blob on each node.)
    const expected = await waitObserved('every node\'s request log', () => {
      const lines = tc.daemons
        .flatMap((d) => nodePullLines(d).filter((l) => l.method === 'GET' && l.repository === image.repository).map((l) => `${d.name} ${l.kind} ${l.digest} ${l.source} ${l.bytes} ${l.status}`))
        .sort();
      return lines.length >= tc.daemons.length * (1 + blobs.length) ? lines : undefined;
    });
    assert.equal(expected.length, tc.daemons.length * (1 + blobs.length));
    const logged = await waitObserved('every pull in the seed\'s log', async () => {
      const { pulls } = await getJson<{ pulls: PullRecord[] }>(`${tc.seed.url}/api/v1/pulls?image=${encodeURIComponent(`${tc.host}/${image.repository}`)}&since=5m`);
      return pulls.length >= expected.length ? pulls : undefined;
    });
    assert.deepEqual(logged.map((p) => `${p.node} ${p.kind} ${p.digest} ${p.source} ${p.bytes} ${p.status}`).sort(), expected);
    for (const p of logged) {
      assert.equal(p.registry, tc.host);
      assert.ok(p.time > Date.now() - 60_000 && p.time <= Date.now());
      assert.ok(p.ms >= 0);
      assert.equal(p.client, '127.0.0.1');
    }
    // One WAN fetch fed the cluster: every blob byte came from the seed or a peer, never the upstream directly.
    assert.ok(!logged.some((p) => p.source === 'upstream'));
    const blobBytes = logged.filter((p) => p.kind === 'blob').reduce((n, p) => n + p.bytes, 0);
    assert.equal(blobBytes, tc.daemons.length * blobs.reduce((n, b) => n + b.size, 0));
    for (const [i, d] of tc.daemons.entries()) {
      const mine = logged.filter((p) => p.node === d.name && p.kind === 'blob');
      for (const source of ['seed', 'peer']) {
        assert.equal(mine.filter((p) => p.source === source).reduce((n, p) => n + p.bytes, 0), results[i]?.bySource[source] ?? 0, `${d.name}: bytes from ${source} match what the client saw`);
      }
    }

    // Filters, and the CLI.
    const onlyNode2 = await getJson<{ pulls: PullRecord[] }>(`${tc.seed.url}/api/v1/pulls?node=node-2&image=library/burst`);
    assert.equal(onlyNode2.pulls.length, 1 + blobs.length);
    assert.ok(onlyNode2.pulls.every((p) => p.node === 'node-2'));
    assert.equal((await getJson<{ pulls: PullRecord[] }>(`${tc.seed.url}/api/v1/pulls?since=${Date.now() + 60_000}`)).pulls.length, 0);
    assert.equal((await fetch(`${tc.seed.url}/api/v1/pulls?since=yesterday-ish`)).status, 400);
    const cli = await peerpull(['pulls', '--seed', tc.seed.url, '--image', `${tc.host}/library/burst:v1`, '--json']);
    assert.equal(cli.code, 0, cli.stderr);
    assert.equal((JSON.parse(cli.stdout) as { pulls: PullRecord[] }).pulls.length, expected.length);
    const table = await peerpull(['pulls', '--since', '10m', '--node', 'node-1'], { PEERPULL_SEED: tc.seed.url });
    assert.equal(table.code, 0, table.stderr);
    assert.match(table.stdout, /TIME\s+NODE\s+IMAGE\s+WHAT\s+SOURCE\s+SIZE\s+TOOK/);
    assert.match(table.stdout, new RegExp(`node-1\\s+${tc.host.replace(/\./g, '\\.')}/library/burst\\s+blob ${image.layers[1]?.digest.slice(7, 19)}\\s+(seed|peer)\\s+2\\.9 MiB`));
  });

  test('the dashboard shows the nodes and images of the cluster in a real browser, with no console errors', async (t) => {
    const why = chromiumUnavailable();
    if (why) {
      t.skip(`no Chromium: ${why}`);
      return;
    }
    await pullImage({ registryUrl: tc.daemons[0]!.url, repository: other.repository, tag: other.tag, ns: tc.host });
    // The seed hears every node's heartbeat (every 5 s) and the images they hold.
    await waitUntil('every node and both images on the seed', async () => {
      const view = await getJson<ClusterView>(`${tc.seed.url}/api/v1/cluster`);
      const burst = view.images.find((i) => i.image.endsWith('/library/burst:v1'));
      const second = view.images.find((i) => i.image.endsWith('/team/other:2.0'));
      return view.nodes.length === 3 && burst?.holders.length === 4 && second?.holders.some((h) => h.node === 'node-1') ? view : undefined;
    }, 20_000, 100);

    const { chromium } = await import('playwright-core');
    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run'],
    });
    try {
      const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
      const problems: string[] = [];
      page.on('console', (m) => {
        if (m.type() === 'error' || m.type() === 'warning') problems.push(`console ${m.type()}: ${m.text()}`);
      });
      page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
      page.on('requestfailed', (req) => problems.push(`request failed: ${req.url()} ${req.failure()?.errorText ?? ''}`));
      page.on('response', (res) => {
        if (res.status() >= 400) problems.push(`HTTP ${res.status()}: ${res.url()}`);
      });
      const response = await page.goto(tc.seed.url, { waitUntil: 'load' });
      assert.equal(response?.status(), 200);
      assert.match(response?.headers()['content-security-policy'] ?? '', /default-src 'none'/, 'nothing may load from elsewhere');
      await page.waitForSelector('#nodes tbody tr[data-node="node-3"]', { timeout: 10_000 });
      const nodes = await page.$$eval('#nodes tbody tr[data-node]', (rows) => rows.map((r) => r.getAttribute('data-node')));
      assert.deepEqual(nodes, ['node-1', 'node-2', 'node-3']);
      const states = await page.$$eval('#nodes tbody tr[data-node] .badge', (els) => els.map((e) => e.textContent));
      assert.deepEqual(states, ['ready', 'ready', 'ready']);
      const peers = await page.$$eval('#nodes tbody tr[data-node="node-1"] td:nth-child(3) .chip', (els) => els.map((e) => e.textContent));
      assert.ok(peers.includes('node-2') && peers.includes('node-3') && peers.includes('seed'), `node-1's peers by name: ${peers.join(', ')}`);
      const images = await page.$$eval('#images tbody tr', (rows) => rows.map((r) => ({ image: r.querySelector('td')?.textContent ?? '', holders: Array.from(r.querySelectorAll('.chip'), (c) => c.textContent) })));
      const burst = images.find((i) => i.image.endsWith('/library/burst:v1'));
      assert.deepEqual(burst?.holders, ['seed', 'node-1', 'node-2', 'node-3']);
      assert.ok(images.find((i) => i.image.endsWith('/team/other:2.0'))?.holders.includes('node-1'));
      const pulls = await page.$$eval('#pulls tbody tr', (rows) => rows.length);
      assert.ok(pulls >= 10, 'the recent pull log is shown');
      const saved = await page.textContent('#saved-total');
      assert.match(saved ?? '', /saved of .* pulled/);
      assert.ok(await page.isHidden('#login'), 'no admin token needed: no login form');
      // It refreshes itself.
      const first = await page.textContent('#updated');
      await page.waitForFunction((before) => document.getElementById('updated')?.textContent !== before, first, { timeout: 10_000 });
      mkdirSync(ARTIFACTS, { recursive: true });
      await page.screenshot({ path: path.join(ARTIFACTS, 'dashboard.png'), fullPage: true });
      assert.deepEqual(problems, [], 'no console errors, failed requests or HTTP errors');
    } finally {
      await browser.close();
    }
  });

  test('losing the seed loses records, never pulls', async () => {
    const node = tc.daemons[2] as ClusterNode;
    await tc.seed.stop();
    const result = await pullImage({ registryUrl: node.url, repository: other.repository, tag: other.tag, ns: tc.host });
    assert.equal(result.blobs, 2, 'the pull works without the seed');
    await waitObserved('the records to be dropped', async () => metric(await scrape(node), 'peerpull_pull_reports_total', { outcome: 'dropped' }) >= 3);
    const status = await getJson<{ ready: boolean; errors: { msg: string }[] }>(`${node.url}/api/v1/status`);
    assert.equal(status.ready, true, 'peers and the upstream are still there');
    assert.ok(status.errors.some((e) => /could not report pulls to the seed/.test(e.msg)), 'the last errors say so');
  });
});
