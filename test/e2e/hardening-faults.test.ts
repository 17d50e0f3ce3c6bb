// Hardening, faults of the node itself: kill -9 at random moments during 20 concurrent pulls (repeated; the
// count is PEERPULL_KILL_ROUNDS, 10 here and 50 in test/bench/kill9.bench.ts), and a full disk (a 30 MiB
// tmpfs as the data dir): the daemon keeps serving by streaming from the upstream without caching, says so,
// and leaves no partial file.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { startRegistry, type Registry } from '../fixtures/registry.ts';
import { startPeerpull, type DaemonProcess } from '../fixtures/daemon.ts';
import { getImageLayout, pushImage, type BuiltImage, type BuiltLayer } from '../fixtures/images.ts';
import { makeTempDir } from '../fixtures/processes.ts';
import { FaultProxy } from '../fixtures/fault-proxy.ts';
import { waitUntil } from '../fixtures/wait-until.ts';
import { rawRequest } from '../fixtures/raw-http.ts';
import { corruptStoredBlobs, download, MiB, storedBlobPath, tmpFiles } from './mirror-helpers.ts';
import { CrashLoop } from './crash-loop.ts';
import { fetchLikeContainerd } from './hardening-helpers.ts';

const KILL_ROUNDS = Number(process.env.PEERPULL_KILL_ROUNDS ?? 10);
const isRoot = process.getuid?.() === 0;

describe(`hardening: kill -9 during 20 concurrent pulls, ${KILL_ROUNDS} times`, () => {
  const loop = new CrashLoop({ rounds: KILL_ROUNDS, clients: 20 });

  before(async () => loop.setup());
  after(async () => loop.teardown());

  test('after every kill: blobs/ holds only verified files, tmp/ is emptied at start-up, cache verify finds nothing, the pulls complete on retry', async (t) => {
    const { rounds, kills } = await loop.run();
    for (const r of rounds) t.diagnostic(`round ${r.round}: kill after ${r.killAfterMs} ms, ${r.completedBeforeKill}/20 pulls done, ${r.storedAfterKill} stored, ${r.tmpAfterKill} partial; cache verify: ${r.verifyBad ?? 'n/a'} bad; retry ${r.retryOk}/20`);
    t.diagnostic(`${kills} kill -9 in ${rounds.length} rounds (${rounds.filter((r) => r.tmpAfterKill > 0).length} rounds killed mid-download)`);
    assert.equal(rounds.length, KILL_ROUNDS);
    for (const r of rounds) {
      assert.deepEqual(r.corruptAfterKill, [], `round ${r.round}: every file under blobs/ hashes to its name`);
      assert.equal(r.tmpAfterRestart, 0, `round ${r.round}: start-up emptied tmp/`);
      if (r.verifyBad !== undefined) assert.equal(r.verifyBad, 0, `round ${r.round}: cache verify found no bad blob`);
      assert.deepEqual(r.retryFailures, [], `round ${r.round}: retried pulls`);
      assert.equal(r.retryOk, 20, `round ${r.round}: all 20 pulls completed on retry`);
    }
    // The kills must have landed mid-transfer at least sometimes, or the test proves little.
    assert.ok(rounds.some((r) => r.tmpAfterKill > 0), 'some kills interrupted a download (partial files in tmp/)');
    assert.ok(rounds.some((r) => r.completedBeforeKill < 20), 'some kills interrupted pulls');
  });
});

describe('hardening: disk full (a 30 MiB tmpfs as the data dir)', { skip: isRoot ? false : 'needs root (mount -t tmpfs)' }, () => {
  let reg: Registry;
  let image: BuiltImage;
  let upstream: FaultProxy;
  let daemon: DaemonProcess;
  let mountDir: string;
  let filler: string;

  const layers = (): BuiltLayer[] => image.manifests[0]!.layers;
  const url = (digest: string) => `${daemon.url}/v2/library/full/blobs/${digest}`;

  async function fetchBlob(digest: string, size: number): Promise<{ digest: string; attempts: number; uncached: string[]; sources: string[] }> {
    const r = await fetchLikeContainerd(url(digest), size);
    return { digest: r.digest, attempts: r.attempts, uncached: r.responses.flatMap((x) => (x.uncached ? [x.uncached] : [])), sources: r.responses.map((x) => String(x.source)) };
  }

  before(async () => {
    mountDir = makeTempDir('pp-diskfull-');
    const mounted = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=30m', 'tmpfs', mountDir], { encoding: 'utf8' });
    assert.equal(mounted.status, 0, `mount tmpfs: ${mounted.stderr}`);
    [reg, image] = await Promise.all([startRegistry(), getImageLayout({ name: 'hardening-diskfull', layers: [200_000, 9 * MiB, 7 * MiB] })]);
    await pushImage(image, `${reg.host}/library/full:v1`);
    upstream = await FaultProxy.start(reg.url);
    daemon = await startPeerpull({ registries: [`${upstream.host}=${upstream.url}`], dataDir: path.join(mountDir, 'data') });
    // Leave about 5 MiB free: the manifest, the config and the small layer fit, the big layers do not.
    filler = path.join(mountDir, 'filler');
    const { bavail, bsize } = fs.statfsSync(mountDir);
    fs.writeFileSync(filler, Buffer.alloc(Math.max(0, bavail * bsize - 5 * MiB)));
  });

  after(async () => {
    await daemon?.stop();
    await upstream?.close();
    await reg?.stop();
    if (mountDir) spawnSync('umount', ['-l', mountDir]);
  });

  test('pulls still succeed, streamed from the upstream without caching; the daemon says so; no partial file is left', async (t) => {
    const m = image.manifests[0]!;
    const manifest = await rawRequest(daemon.host, 'GET', '/v2/library/full/manifests/v1', { headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } });
    assert.equal(manifest.status, 200);
    assert.equal(manifest.headers['docker-content-digest'], image.manifestDigest);
    const config = await download(url(m.configDigest));
    assert.equal(config.digest, m.configDigest);
    const small = await fetchBlob(layers()[0]!.digest, layers()[0]!.size);
    assert.equal(small.digest, layers()[0]!.digest);

    const results = [];
    for (const l of layers().slice(1)) {
      const r = await fetchBlob(l.digest, l.size);
      t.diagnostic(`${(l.size / MiB).toFixed(0)} MiB layer: ${r.attempts} attempt(s), sources ${r.sources.join(',')}, uncached: ${r.uncached.join(',') || 'no'}`);
      assert.equal(r.digest, l.digest, 'the client assembled the right bytes');
      results.push(r);
    }
    assert.ok(results.every((r) => r.attempts <= 2), 'at most one broken attempt (the one that found the disk full)');
    assert.ok(results.some((r) => r.uncached.includes('disk full')), 'responses say they were not cached (X-Peerpull-Uncached)');
    const logs = daemon.logs();
    assert.ok(logs.some((l) => l.level >= 40 && /disk full/.test(l.msg)), 'a warning says the disk is full and blobs are served without caching');
    // No partial file anywhere, nothing wrong stored, the daemon still up.
    await waitUntil(() => `tmp/ empty: ${tmpFiles(daemon.dataDir).join(', ')}`, () => tmpFiles(daemon.dataDir).length === 0, 5_000);
    for (const l of layers().slice(1)) assert.equal(fs.existsSync(storedBlobPath(daemon.dataDir, l.digest)), false, 'the big layers are not in the store');
    assert.equal(fs.existsSync(storedBlobPath(daemon.dataDir, layers()[0]!.digest)), true, 'the small layer that fitted is');
    assert.deepEqual(corruptStoredBlobs(daemon.dataDir), []);
    const healthy = await rawRequest(daemon.host, 'GET', '/v2/');
    assert.equal(healthy.status, 200);
    // HEAD and Range requests also work meanwhile.
    const big = layers()[2]!;
    const head = await rawRequest(daemon.host, 'HEAD', `/v2/library/full/blobs/${big.digest}`);
    assert.equal(head.headers['content-length'], String(big.size));
    const range = await download(url(big.digest), { headers: { range: 'bytes=100-199' }, keepBody: true });
    assert.equal(range.status, 206);
    assert.equal(range.bytes, 100);

    // Room again: the next miss is cached as usual.
    fs.rmSync(filler);
    const again = await download(url(big.digest));
    assert.equal(again.digest, big.digest);
    assert.equal(again.headers['x-peerpull-uncached'], undefined, 'cached again once there is room');
    await waitUntil('stored', () => fs.existsSync(storedBlobPath(daemon.dataDir, big.digest)), 5_000);
    assert.ok(daemon.logs().some((l) => /room again/.test(l.msg)), 'and it says so');
  });
});
