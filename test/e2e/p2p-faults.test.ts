// P2P faults (issue 5) against real processes: a peer whose stored blob is corrupt on disk (it
// serves wrong bytes), and a peer killed (SIGKILL) while another node streams a large blob from it;
// once per transport (libp2p streams, the HTTP data plane).
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import http from 'node:http';
import { after, before, describe, test } from 'node:test';
import { registryEntry, startPeerpull, type DaemonProcess } from '../fixtures/daemon.ts';
import { getImageLayout, pushImage, type BuiltImage } from '../fixtures/images.ts';
import { startRegistry, type Registry } from '../fixtures/registry.ts';
import { FaultProxy } from '../fixtures/fault-proxy.ts';
import { waitUntil } from '../fixtures/wait-until.ts';
import { storedBlobs } from './seed-helpers.ts';
import {
  MB,
  PEER_TRANSPORTS,
  metricValue,
  storedBlobPath,
  blobsOf,
  corruptStoredBlob,
  logsWith,
  makeClusterKey,
  p2pArgs,
  p2pMetrics,
  peerInfo,
  pullVia,
  fileDigest,
  stopAll,
  timeOf,
  transportArgs,
  waitProvided,
  waitStored,
} from './p2p-helpers.ts';

const TAG = 'v1';

interface StreamedBlob {
  status: number;
  headers: http.IncomingHttpHeaders;
  bytes: number;
  digest: string;
}

/**
 * One GET of a blob, hashed as it streams; onProgress sees the byte count after every chunk.
 * Rejects if the connection breaks.
 */
function streamBlob(url: string, headers: Record<string, string> = {}, onProgress?: (bytes: number) => void): Promise<StreamedBlob> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { headers: { 'user-agent': 'peerpull-e2e-p2p', ...headers }, agent: false }, (res) => {
      const hash = crypto.createHash('sha256');
      let bytes = 0;
      res.on('data', (chunk: Buffer) => {
        hash.update(chunk);
        bytes += chunk.length;
        onProgress?.(bytes);
      });
      res.once('end', () => {
        if (!res.complete) reject(new Error(`connection closed after ${bytes} bytes`));
        else resolve({ status: res.statusCode ?? 0, headers: res.headers, bytes, digest: `sha256:${hash.digest('hex')}` });
      });
      res.once('error', reject);
      res.once('aborted', () => reject(new Error(`aborted after ${bytes} bytes`)));
    });
    req.once('error', reject);
    req.setTimeout(30_000, () => req.destroy(new Error('no response for 30 s')));
  });
}

function blobUrl(d: DaemonProcess, reg: Registry, repository: string, digest: string): string {
  return `${d.url}/v2/${repository}/blobs/${digest}?ns=${encodeURIComponent(reg.host)}`;
}

for (const transport of PEER_TRANSPORTS) describe(`faulty peers (${transport})`, () => {
  const key = makeClusterKey();
  let reg: Registry;
  let proxy: FaultProxy;
  let seed: DaemonProcess;
  let nodes: DaemonProcess[] = [];
  let corruptImg: BuiltImage;
  let bigImg: BuiltImage;

  before(async () => {
    [reg, corruptImg, bigImg] = await Promise.all([
      startRegistry(),
      getImageLayout({ name: 'p2p-corrupt', layers: [1 * MB, 12 * MB] }),
      getImageLayout({ name: 'p2p-kill', layers: [40 * MB] }),
    ]);
    await pushImage(corruptImg, `${reg.host}/library/corrupt:${TAG}`);
    await pushImage(bigImg, `${reg.host}/library/kill:${TAG}`);
    // The upstream is reached through a proxy of ours, so a test can slow it down.
    proxy = await FaultProxy.start(reg.url);
    const upstream = `${reg.host}=${proxy.url}`;
    seed = await startPeerpull({ command: 'seed', registries: [upstream], defaultRegistry: reg.host, extraArgs: [...p2pArgs(key)] });
    nodes = await Promise.all(
      [0, 1, 2, 3].map(async () =>
        startPeerpull({
          registries: [upstream],
          defaultRegistry: reg.host,
          extraArgs: ['--seed', seed.url, ...p2pArgs(key), ...transportArgs(transport), '--peer-idle-timeout', '1s', '--log-level', 'debug'],
        }),
      ),
    );
    await waitUntil('every daemon to join through the seed', async () => (await Promise.all(nodes.map(p2pMetrics))).every((m) => m.connected >= 1), 15_000, 100);
  });

  after(async () => {
    await stopAll([...nodes, seed]);
    await proxy?.close();
    await reg?.stop();
  });

  test('a peer that serves corrupt bytes is detected and quarantined, and the image still pulls correctly', async () => {
    const [bad, puller] = nodes as [DaemonProcess, DaemonProcess];
    const repo = 'library/corrupt';
    const layer = corruptImg.manifests[0]!.layers.at(-1)!; // the 12 MB layer
    assert.equal((await pullVia(bad, reg, repo, TAG)).manifestDigest, corruptImg.manifestDigest);
    await waitProvided(bad, blobsOf(corruptImg).map((b) => b.digest));
    await waitStored(bad.dataDir, blobsOf(corruptImg).map((b) => b.digest));
    corruptStoredBlob(bad.dataDir, layer.digest);
    assert.notEqual(fileDigest(storedBlobPath(bad.dataDir, layer.digest)), layer.digest, 'the stored copy is corrupt now');
    const badId = peerInfo(bad).peerId;

    // Like kubelet/containerd: a failed pull is retried once.
    let firstAttempt = 'ok';
    let result;
    try {
      result = await pullVia(puller, reg, repo, TAG);
    } catch (err) {
      firstAttempt = (err as Error).message;
      result = await pullVia(puller, reg, repo, TAG);
    }
    assert.equal(result.manifestDigest, corruptImg.manifestDigest, 'the image pulled (every body verified by the client)');

    // Detected and blamed on the peer that sent the bytes.
    const quarantined = logsWith(puller, 'peer sent bytes that did not verify: quarantined', { digest: layer.digest });
    assert.deepEqual(quarantined.map((l) => l.peer), [badId], 'the corrupt peer was quarantined');
    assert.ok(logsWith(puller, 'blob discarded: verification failed', { digest: layer.digest }).length >= 1);
    const m = await p2pMetrics(puller);
    assert.ok(m.quarantined >= 1, `peerpull_peers_quarantined ${m.quarantined}`);
    assert.ok(m.transfers('download', 'corrupt') >= 1);
    assert.ok(metricValue(m.text, 'peerpull_peer_transfers_total', { direction: 'download', outcome: 'corrupt', transport }) >= 1, `the corrupt transfer came over ${transport}`);

    // Not asked again: no request to it after the quarantine, and it uploaded that blob once.
    const quarantinedAt = timeOf(quarantined[0]!);
    const laterAsks = logsWith(puller, 'fetching from peer', { peer: badId }).filter((l) => timeOf(l) > quarantinedAt);
    assert.deepEqual(laterAsks.map((l) => l.digest), [], 'the quarantined peer was not asked again');
    await waitUntil('the corrupt peer to log its upload', () => bad.logs().some((l) => /^blob upload/.test(l.msg) && l.digest === layer.digest), 3_000);
    assert.equal(bad.logs().filter((l) => /^blob upload/.test(l.msg) && l.digest === layer.digest).length, 1, 'the corrupt copy was sent once');
    // The client has the last byte once the digest verified; the store's fsync + rename (and this log line) follow.
    await waitUntil('the puller to store the blob', () => logsWith(puller, 'blob stored', { digest: layer.digest }).length > 0, 5_000);
    const stored = logsWith(puller, 'blob stored', { digest: layer.digest });
    assert.equal(stored.length, 1);
    assert.equal((stored[0]!.bySource as Record<string, number>).peer ?? 0, 0, `the good copy came from elsewhere: ${JSON.stringify(stored[0]!.bySource)}`);
    assert.ok(storedBlobs(puller.dataDir).every((b) => b.ok), 'every blob the puller stored verifies');

    // A client that resumes with Range after the failure gets the whole blob again (200), never a 206
    // that would complete a download whose prefix was wrong.
    const ranged = await streamBlob(blobUrl(puller, reg, repo, layer.digest), { range: 'bytes=1000-' });
    assert.equal(ranged.status, 200, 'Range after a failed verification: a full 200');
    assert.equal(ranged.digest, layer.digest);
    console.log(`# corrupt peer: first client attempt: ${firstAttempt.slice(0, 140)}; good copy from ${JSON.stringify(stored[0]!.bySource)}`);
  });

  test('a peer killed mid-transfer: the pull completes from another source without the client restarting', async () => {
    const [, , provider, puller] = nodes as [DaemonProcess, DaemonProcess, DaemonProcess, DaemonProcess];
    const repo = 'library/kill';
    const layer = bigImg.manifests[0]!.layers[0]!; // 40 MB
    proxy.throttleBytesPerSecond = 16 * MB; // the seed's upstream download takes ~2.5 s: the provider is still downloading
    try {
      // The provider starts downloading (through the seed) and announces the blob at once.
      let providerBytes = 0;
      const providerGet = streamBlob(blobUrl(provider, reg, repo, layer.digest), {}, (n) => (providerBytes = n)).catch((err: Error) => err);
      await waitProvided(provider, [layer.digest]);
      await waitUntil('the provider to have some bytes', () => providerBytes >= 2 * MB, 10_000);

      // The puller streams the blob from the provider; kill the provider once 10 MB came from it.
      const providerId = peerInfo(provider).peerId;
      let killed: Promise<unknown> | undefined;
      let bytesAtKill = 0;
      const result = await streamBlob(blobUrl(puller, reg, repo, layer.digest), {}, (n) => {
        if (killed || n < 10 * MB) return;
        const fromPeer = logsWith(puller, 'fetching from peer', { digest: layer.digest, peer: providerId, transport }).length > 0;
        if (!fromPeer) return;
        bytesAtKill = n;
        killed = provider.kill9();
      });
      assert.ok(killed, 'the provider was killed while the puller streamed the blob from it');
      await killed;
      await providerGet; // its own client's request died with it

      // One request, the right bytes.
      assert.equal(result.status, 200);
      assert.equal(result.bytes, layer.size);
      assert.equal(result.digest, layer.digest);
      await waitUntil('the puller to log the request', () => puller.pulls().some((p) => p.digest === layer.digest), 3_000);
      const requests = puller.pulls().filter((p) => p.digest === layer.digest);
      assert.deepEqual(requests.map((p) => `${p.method} ${p.status}`), ['GET 200'], 'the client made one request');

      // The transfer broke at the peer and resumed elsewhere at the right offset.
      await waitUntil('the puller to store the blob', () => logsWith(puller, 'blob stored', { digest: layer.digest }).length > 0, 5_000);
      const stored = logsWith(puller, 'blob stored', { digest: layer.digest });
      assert.equal(stored.length, 1);
      const bySource = stored[0]!.bySource as Record<string, number>;
      assert.ok((bySource.peer ?? 0) >= bytesAtKill - 2 * MB, `bytes from the killed peer: ${JSON.stringify(bySource)}`);
      assert.ok((bySource.seed ?? 0) + (bySource.upstream ?? 0) > 0, `the rest from the seed/upstream: ${JSON.stringify(bySource)}`);
      assert.equal(Object.values(bySource).reduce((a, b) => a + b, 0), layer.size, 'no byte fetched twice');
      assert.ok(logsWith(puller, 'blob transfer broke; resuming', { digest: layer.digest, source: 'peer' }).length >= 1);
      const m = await p2pMetrics(puller);
      assert.ok(m.transfers('download', 'failed') >= 1);
      console.log(`# killed peer after ${(bytesAtKill / MB).toFixed(1)} MB at the client: stored from ${JSON.stringify(bySource)}`);
    } finally {
      proxy.throttleBytesPerSecond = 0;
    }
  });
});
