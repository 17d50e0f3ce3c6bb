// End-to-end: real clients (skopeo, containerd) pull through a real `peerpull daemon` child process
// from a real distribution registry, with generated images (issue 3, "Tests (real peers)").
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { startRegistry } from '../fixtures/registry.ts';
import type { Registry } from '../fixtures/registry.ts';
import { registryEntry, startPeerpull } from '../fixtures/daemon.ts';
import type { DaemonProcess, PeerpullLogLine } from '../fixtures/daemon.ts';
import { getImageLayout, inspectRemote, MEDIA_TYPES, pushImage } from '../fixtures/images.ts';
import type { BuiltImage, RemoteManifest } from '../fixtures/images.ts';
import { copyToDir } from '../fixtures/skopeo.ts';
import { startContainerd } from '../fixtures/containerd.ts';
import type { Containerd } from '../fixtures/containerd.ts';
import { makeTempDir } from '../fixtures/processes.ts';
import { waitUntil } from '../fixtures/wait-until.ts';
import { rawRequest } from '../fixtures/raw-http.ts';
import { ociErrorCodes } from '../fixtures/oci-error.ts';
import { ConnectionRecorder, fileDigest, MiB, resetLog, storedBlobPath, tmpFiles } from './mirror-helpers.ts';

const BIG = { name: 'mirror-big', layers: [1 * MiB, 20 * MiB, 100 * MiB] };
const MULTI = {
  name: 'mirror-multi',
  layers: [512 * 1024, 2 * MiB],
  platforms: [
    { os: 'linux', architecture: 'amd64' },
    { os: 'linux', architecture: 'arm64', variant: 'v8' },
  ],
};
const HEAD_ONLY = { name: 'mirror-head-only', layers: [700 * 1024] };

interface Descriptor {
  mediaType?: string;
  digest: string;
  size: number;
}

/**
 * Checks a `skopeo copy ... dir:` result against the manifest the upstream serves: manifest.json is
 * byte-identical (same digest), every child manifest of an index too, and every config/layer file
 * exists with the right size and hashes to its digest. Returns the blob descriptors checked.
 */
function verifyDirCopy(dir: string, upstream: RemoteManifest): Descriptor[] {
  assert.equal(fileDigest(path.join(dir, 'manifest.json')), upstream.digest, 'manifest.json is the upstream manifest, byte for byte');
  const images: { config?: Descriptor; layers?: Descriptor[] }[] = [];
  const expectedFiles = new Set(['manifest.json', 'version']);
  if (upstream.manifest.manifests) {
    for (const child of upstream.manifest.manifests) {
      const file = `${child.digest.slice('sha256:'.length)}.manifest.json`;
      expectedFiles.add(file);
      assert.equal(fileDigest(path.join(dir, file)), child.digest, `child manifest ${child.digest}`);
      images.push(JSON.parse(fs.readFileSync(path.join(dir, file), 'utf8')));
    }
  } else {
    images.push(upstream.manifest);
  }
  const blobs = images.flatMap((m) => [m.config!, ...(m.layers ?? [])]);
  assert.ok(blobs.length >= 2);
  for (const blob of blobs) {
    const file = path.join(dir, blob.digest.slice('sha256:'.length));
    expectedFiles.add(path.basename(file));
    assert.equal(fs.statSync(file).size, blob.size, `size of ${blob.digest}`);
    assert.equal(fileDigest(file), blob.digest, `content of ${blob.digest}`);
  }
  assert.deepEqual(fs.readdirSync(dir).sort(), [...expectedFiles].sort(), 'no missing or extra files');
  return blobs;
}

/** Waits until the daemon has logged `count` more pull lines than `from` (its logger is async). */
async function pullsSince(d: DaemonProcess, from: number, count: number): Promise<PeerpullLogLine[]> {
  // Not asserted here: the caller's assertions on the lines say what is missing.
  await waitUntil(`${count} more pull lines`, () => d.pulls().length - from >= count, 3_000).catch(() => undefined);
  return d.pulls().slice(from);
}

describe('mirror: skopeo and containerd pull through peerpull daemon', () => {
  let reg: Registry;
  let big: BuiltImage;
  let multi: BuiltImage;
  let headOnly: BuiltImage;
  /** For skopeo (no ?ns=): the upstream is the default registry. Tags always revalidate (--tag-ttl 0s). */
  let dS: DaemonProcess;
  /** For containerd: the default registry is a decoy that must never be contacted, so only ?ns= can reach the upstream. */
  let dC: DaemonProcess;
  let decoy: ConnectionRecorder;
  const containerds: Containerd[] = [];
  const upstreamManifests = new Map<string, RemoteManifest>();

  const ref = (host: string, name: string) => `${host}/library/${name}:v1`;
  const newContainerd = async (): Promise<Containerd> => {
    const ctd = await startContainerd({ mirrors: { [reg.host]: [dC.url] } });
    containerds.push(ctd);
    return ctd;
  };

  before(async () => {
    [reg, big, multi, headOnly, decoy] = await Promise.all([
      startRegistry(),
      getImageLayout(BIG),
      getImageLayout(MULTI),
      getImageLayout(HEAD_ONLY),
      ConnectionRecorder.start(),
    ]);
    const daemons = Promise.all([
      startPeerpull({ registries: [registryEntry(reg)], extraArgs: ['--tag-ttl', '0s'] }),
      startPeerpull({ registries: [registryEntry(reg), `${decoy.host}=http://${decoy.host}`], defaultRegistry: decoy.host }),
    ]);
    await pushImage(big, ref(reg.host, 'big'));
    await Promise.all([
      pushImage(big, ref(reg.host, 'big-docker'), { format: 'v2s2' }),
      pushImage(multi, ref(reg.host, 'multi')),
      pushImage(multi, ref(reg.host, 'multi-docker'), { format: 'v2s2' }),
      pushImage(headOnly, ref(reg.host, 'head-only')),
    ]);
    for (const name of ['big', 'big-docker', 'multi', 'multi-docker', 'head-only']) {
      upstreamManifests.set(name, await inspectRemote(ref(reg.host, name)));
    }
    [dS, dC] = await daemons;
  });

  after(async () => {
    for (const ctd of containerds) await ctd.stop();
    await Promise.all([dS?.stop(), dC?.stop()]);
    await reg?.stop();
    await decoy?.close();
  });

  test('skopeo copies every image through the daemon (default registry, no ?ns=) byte-identical to the upstream', async (t) => {
    const cases = [
      { name: 'big', all: false, mediaType: MEDIA_TYPES.ociManifest, digest: big.manifestDigest },
      { name: 'multi', all: true, mediaType: MEDIA_TYPES.ociIndex, digest: multi.manifestDigest },
      { name: 'big-docker', all: false, mediaType: MEDIA_TYPES.dockerManifest },
      { name: 'multi-docker', all: true, mediaType: MEDIA_TYPES.dockerManifestList },
    ];
    const fetchedByDaemon = new Set<string>();
    for (const c of cases) {
      const upstream = upstreamManifests.get(c.name)!;
      assert.equal(upstream.mediaType, c.mediaType, `${c.name} is pushed as ${c.mediaType}`);
      if (c.digest) assert.equal(upstream.digest, c.digest);
      const viaDaemon = await inspectRemote(ref(dS.host, c.name));
      assert.equal(viaDaemon.digest, upstream.digest, `${c.name}: same manifest digest through the daemon`);
      assert.deepEqual(viaDaemon.rawBytes, upstream.rawBytes);

      const out = path.join(makeTempDir('pp-mirror-copy-'), c.name);
      const t0 = performance.now();
      await copyToDir(ref(dS.host, c.name), out, { all: c.all });
      t.diagnostic(`${c.name}: skopeo copy through the daemon in ${(performance.now() - t0).toFixed(0)} ms`);
      const blobs = verifyDirCopy(out, upstream);
      for (const b of blobs) fetchedByDaemon.add(b.digest);
      if (c.name === 'big') {
        assert.deepEqual(blobs.map((b) => b.size).slice(1).map((s) => Math.round(s / MiB)), [1, 20, 100], 'layers of ~1, ~20, ~100 MB');
      }
      if (c.all) assert.equal(upstream.manifest.manifests?.length, 2, 'both platforms copied');
      fs.rmSync(out, { recursive: true, force: true });
    }

    // The daemon really served them: every request it logged was for the upstream (the default
    // registry), none failed, and every blob the copies contain is now in its store.
    const pulls = dS.pulls();
    assert.ok(pulls.length > 0);
    assert.deepEqual([...new Set(pulls.map((p) => p.registry))], [reg.host]);
    assert.deepEqual(pulls.filter((p) => (p.status as number) >= 400), []);
    await waitUntil('every blob the daemon fetched to be stored', () => [...fetchedByDaemon].every((digest) => fs.existsSync(storedBlobPath(dS.dataDir, digest))), 5_000); // fsync + rename follow the last byte
    for (const digest of fetchedByDaemon) {
      assert.equal(fileDigest(storedBlobPath(dS.dataDir, digest)), digest, `stored ${digest}`);
    }
    await reg.flushLog();
    assert.equal(reg.countRequests({ queryIncludes: 'ns=' }), 0, 'the daemon never forwards ?ns= upstream');
  });

  test('HEAD on manifests and blobs: Docker-Content-Digest, Content-Length, Content-Type, no body; an uncached blob is not downloaded', async () => {
    const upstream = upstreamManifests.get('head-only')!;
    const layer = headOnly.manifests[0]!.layers[0]!;
    await resetLog(reg);
    for (const target of ['/v2/library/head-only/manifests/v1', `/v2/library/head-only/manifests/${upstream.digest}`]) {
      const res = await rawRequest(dS.host, 'HEAD', target, { headers: { accept: MEDIA_TYPES.ociManifest } });
      assert.equal(res.status, 200, target);
      assert.equal(res.headers['docker-content-digest'], upstream.digest);
      assert.equal(res.headers['content-length'], String(upstream.rawBytes.length));
      assert.equal(res.headers['content-type'], MEDIA_TYPES.ociManifest);
      assert.equal(res.body.length, 0, 'no body after a HEAD response');
    }

    const blob = await rawRequest(dS.host, 'HEAD', `/v2/library/head-only/blobs/${layer.digest}`);
    assert.equal(blob.status, 200);
    assert.equal(blob.headers['docker-content-digest'], layer.digest);
    assert.equal(blob.headers['content-length'], String(layer.size));
    assert.equal(blob.headers['content-type'], 'application/octet-stream');
    assert.equal(blob.headers['content-encoding'], undefined);
    assert.equal(blob.body.length, 0, 'no body after a HEAD response');

    await reg.flushLog();
    assert.equal(reg.countRequests({ method: 'HEAD', kind: 'blob', pathIncludes: layer.digest }), 1, 'the size came from an upstream HEAD');
    assert.equal(reg.countRequests({ method: 'GET', kind: 'blob', pathIncludes: layer.digest }), 0, 'HEAD did not download the blob');
    assert.equal(fs.existsSync(storedBlobPath(dS.dataDir, layer.digest)), false);
    assert.deepEqual(tmpFiles(dS.dataDir), []);

    // Once cached, HEAD is answered locally with the same headers.
    const get = await rawRequest(dS.host, 'GET', `/v2/library/head-only/blobs/${layer.digest}`);
    assert.equal(get.status, 200);
    // The last byte goes out once the digest verified; the fsync + rename into the store follow.
    await waitUntil('stored after the GET', () => fs.existsSync(storedBlobPath(dS.dataDir, layer.digest)), 5_000);
    assert.equal(fileDigest(storedBlobPath(dS.dataDir, layer.digest)), layer.digest);
    // The fetch settles (metadata written) just after the rename: until then HEAD still names the fetch's source.
    await waitUntil('HEAD answered locally once stored', async () => (await rawRequest(dS.host, 'HEAD', `/v2/library/head-only/blobs/${layer.digest}`)).headers['x-peerpull-source'] === 'local', 5_000);
    await resetLog(reg);
    const cached = await rawRequest(dS.host, 'HEAD', `/v2/library/head-only/blobs/${layer.digest}`);
    assert.equal(cached.status, 200);
    assert.equal(cached.headers['content-length'], String(layer.size));
    assert.equal(cached.headers['x-peerpull-source'], 'local');
    assert.equal(cached.body.length, 0);
    await reg.flushLog();
    assert.equal(reg.countRequests({ kind: 'blob' }), 0);
  });

  test('containerd (hosts.toml lists the daemon as mirror) pulls and unpacks through it; the daemon served HEAD-by-tag, manifest and blobs for ?ns=', async (t) => {
    const ctd = await newContainerd();
    const image = ref(reg.host, 'big');
    const m = big.manifests[0]!;
    const blobs = [m.configDigest, ...m.layers.map((l) => l.digest)];
    const from = dC.pulls().length;
    await resetLog(reg);
    const t0 = performance.now();
    await ctd.pull(image);
    t.diagnostic(`containerd pull + unpack of ${(big.totalBytes / MiB).toFixed(0)} MiB through the daemon: ${(performance.now() - t0).toFixed(0)} ms`);
    await reg.flushLog();

    const ls = await ctd.ctr(['image', 'ls']);
    assert.match(ls.stdout, new RegExp(`${image.replace(/[.]/g, '\\.')}\\s+\\S+\\s+${big.manifestDigest}`));
    const snapshots = (await ctd.ctr(['snapshots', 'ls'])).stdout.trim().split('\n').slice(1);
    assert.equal(snapshots.length, 3, 'three layers unpacked');

    const pulls = await pullsSince(dC, from, 2 + blobs.length);
    const served = (p: PeerpullLogLine) => p.status === 200 && p.registry === reg.host && p.repository === 'library/big';
    assert.ok(pulls.some((p) => served(p) && p.method === 'HEAD' && p.kind === 'manifest' && p.reference === 'v1' && p.digest === big.manifestDigest), 'HEAD by tag');
    assert.ok(pulls.some((p) => served(p) && p.method === 'GET' && p.kind === 'manifest' && p.reference === big.manifestDigest), 'GET manifest by digest');
    for (const digest of blobs) {
      assert.ok(pulls.some((p) => served(p) && p.method === 'GET' && p.kind === 'blob' && p.digest === digest), `GET blob ${digest}`);
    }
    assert.deepEqual(pulls.filter((p) => p.registry !== reg.host), [], 'every request named the upstream with ?ns= (none fell to the default registry)');
    assert.equal(decoy.connections, 0);

    // containerd never fell back to the registry itself; the daemon fetched each blob exactly once.
    assert.equal(reg.accessLog().filter((e) => /containerd/i.test(e.userAgent)).length, 0, 'no direct requests from containerd');
    for (const digest of blobs) {
      assert.equal(reg.countRequests({ method: 'GET', kind: 'blob', pathIncludes: digest }), 1, `one upstream GET of ${digest}`);
    }
  });

  test('a second pull (new containerd) is served from the cache: zero blob GETs reach the upstream', async () => {
    for (const ctd of containerds.splice(0)) await ctd.stop();
    const ctd = await newContainerd();
    const image = ref(reg.host, 'big');
    const m = big.manifests[0]!;
    const from = dC.pulls().length;
    await resetLog(reg);
    await ctd.pull(image);
    await reg.flushLog();
    assert.match((await ctd.ctr(['image', 'ls'])).stdout, new RegExp(big.manifestDigest));

    assert.equal(reg.countRequests({ method: 'GET', kind: 'blob' }), 0, 'no upstream blob GETs');
    assert.equal(reg.countRequests({ method: 'GET', kind: 'manifest' }), 0, 'no upstream manifest GETs');
    const pulls = await pullsSince(dC, from, 2 + 1 + m.layers.length);
    const blobPulls = pulls.filter((p) => p.kind === 'blob' && p.method === 'GET');
    assert.deepEqual(
      blobPulls.map((p) => [p.digest, p.status, p.source]).sort(),
      [m.configDigest, ...m.layers.map((l) => l.digest)].map((d) => [d, 200, 'local']).sort(),
      'containerd fetched every blob again, from the daemon, which served it locally',
    );
  });

  test('upstream stopped: cached images still pull (tags included, stale-if-error); uncached ones get a 404 within 2 s', async (t) => {
    let t0 = performance.now();
    await reg.stop();
    t.diagnostic(`registry stopped in ${(performance.now() - t0).toFixed(0)} ms`);
    try {
      // skopeo by tag: the tag TTL is 0, so the daemon tries to revalidate, fails, and serves the cached mapping.
      const out = path.join(makeTempDir('pp-mirror-down-'), 'big');
      t0 = performance.now();
      await copyToDir(ref(dS.host, 'big'), out);
      t.diagnostic(`skopeo copy by tag with the upstream down: ${(performance.now() - t0).toFixed(0)} ms`);
      verifyDirCopy(out, upstreamManifests.get('big')!);
      const byTag = await rawRequest(dS.host, 'GET', '/v2/library/big/manifests/v1', { headers: { accept: MEDIA_TYPES.ociManifest } });
      assert.equal(byTag.status, 200);
      assert.equal(byTag.headers['docker-content-digest'], big.manifestDigest);
      assert.match(byTag.headers.warning ?? '', /stale/i, 'says it is stale');
      assert.match(byTag.headers.age ?? '', /^\d+$/);

      // containerd: HEAD by tag, manifest and blobs all from the daemon (the registry is down, so
      // a single request the daemon failed would fail the pull).
      const ctd = await newContainerd();
      const from = dC.pulls().length;
      t0 = performance.now();
      await ctd.pull(ref(reg.host, 'big'));
      t.diagnostic(`containerd pull with the upstream down: ${(performance.now() - t0).toFixed(0)} ms`);
      assert.match((await ctd.ctr(['image', 'ls'])).stdout, new RegExp(big.manifestDigest));
      const pulls = await pullsSince(dC, from, 5);
      assert.ok(pulls.some((p) => p.method === 'HEAD' && p.reference === 'v1' && p.status === 200));

      // Uncached: a prompt 404 (containerd would fall back to its next host), never a hang.
      const missingDigest = `sha256:${'0123456789abcdef'.repeat(4)}`;
      const cases: [string, string, string][] = [
        ['GET', '/v2/library/never-pulled/manifests/v1', 'MANIFEST_UNKNOWN'],
        ['HEAD', '/v2/library/never-pulled/manifests/v1', ''],
        ['GET', `/v2/library/never-pulled/manifests/${missingDigest}`, 'MANIFEST_UNKNOWN'],
        ['GET', `/v2/library/big/blobs/${missingDigest}`, 'BLOB_UNKNOWN'],
        ['HEAD', `/v2/library/big/blobs/${missingDigest}`, ''],
      ];
      const answers = await Promise.all(cases.map(([method, target]) => rawRequest(dS.host, method, target, { timeoutMs: 5_000 })));
      for (const [i, [method, target, code]] of cases.entries()) {
        const res = answers[i]!;
        t.diagnostic(`${method} ${target.slice(0, 60)}: ${res.status} in ${res.ms.toFixed(0)} ms`);
        assert.equal(res.status, 404, `${method} ${target}`);
        assert.ok(res.ms < 2_000, `${method} ${target} took ${res.ms.toFixed(0)} ms`);
        if (code) assert.deepEqual(ociErrorCodes(res.body), [code]);
        // A blob miss while every source failed says so (a seed's daemons then look harder among their peers).
        if (target.includes('/blobs/') && method === 'GET') assert.equal(res.headers['x-peerpull-miss'], 'unavailable', `${method} ${target}`);
      }
      assert.equal(fs.existsSync(storedBlobPath(dS.dataDir, missingDigest)), false);
    } finally {
      await reg.restart();
    }
    // Back up: tags revalidate with the upstream again.
    const res = await rawRequest(dS.host, 'GET', '/v2/library/multi/manifests/v1', { headers: { accept: MEDIA_TYPES.ociIndex } });
    assert.equal(res.status, 200);
    assert.equal(res.headers.warning, undefined, 'fresh again once the upstream answers');
  });
});

test('at --log-level warn the daemon still says where it listens, and logs nothing per request', async () => {
  const reg = await startRegistry();
  // The fixture learns the daemon's ports from its ready line: the warn-level daemon starting at all shows it was printed.
  const [warn, info] = await Promise.all(['warn', 'info'].map((level) => startPeerpull({ registries: [registryEntry(reg)], extraArgs: ['--log-level', level] })));
  try {
    // The same logged request on both (a manifest miss); the info-level daemon is the control that it is logged at all.
    const target = '/v2/library/never-pushed/manifests/v1';
    assert.equal((await rawRequest(warn!.host, 'GET', target)).status, 404);
    assert.equal((await rawRequest(info!.host, 'GET', target)).status, 404);
    await waitUntil('the info-level daemon to log the request', () => info!.pulls().length > 0);
    assert.deepEqual(warn!.logs().filter((l) => Number(l.level) < 40 && l.msg !== 'peerpull daemon ready'), [], 'no info or debug line but the ready line');
  } finally {
    await Promise.all([warn?.stop(), info?.stop()]);
    await reg.stop();
  }
});
