// Proves the shared e2e fixtures against the real programs (docker-registry 2.8, skopeo 1.9, containerd 1.6).
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { freePort } from '../fixtures/ports.ts';
import { makeTempDir, run, spawnManaged } from '../fixtures/processes.ts';
import { parseAccessLine, startRegistry } from '../fixtures/registry.ts';
import type { Registry } from '../fixtures/registry.ts';
import {
  MEDIA_TYPES,
  buildImageLayout,
  getImageLayout,
  hostPlatform,
  inspectRemote,
  pushImage,
  sha256,
  writeLayer,
} from '../fixtures/images.ts';
import type { BuiltImage } from '../fixtures/images.ts';
import { copyToDir, skopeoCopy } from '../fixtures/skopeo.ts';
import { startContainerd } from '../fixtures/containerd.ts';
import type { Containerd } from '../fixtures/containerd.ts';

const MiB = 1024 * 1024;
const TWO_LAYERS = { name: 'fixtures-two-layers', layers: [1 * MiB, 5 * MiB] };
const MULTI = {
  name: 'fixtures-multi',
  layers: [256 * 1024],
  platforms: [
    { os: 'linux', architecture: 'amd64' },
    { os: 'linux', architecture: 'arm64', variant: 'v8' },
  ],
};

function fileDigest(file: string): string {
  return sha256(fs.readFileSync(file));
}

describe('ports and processes', () => {
  test('freePort returns distinct bindable ports', async () => {
    const a = await freePort();
    const b = await freePort();
    assert.ok(a > 0 && a < 65536);
    assert.notEqual(a, b);
  });

  test('spawnManaged captures lines, waits, escalates to SIGKILL', async () => {
    const p = spawnManaged('sh', ['-c', 'echo hello; echo oops >&2; trap "" TERM; echo ready; exec sleep 30']);
    assert.equal(await p.waitForLine(/^ready$/, 5_000), 'ready');
    // stdout and stderr are separate pipes: their relative order is not preserved
    assert.equal(await p.waitForLine((l, s) => s === 'stderr' && l === 'oops', 5_000), 'oops');
    assert.deepEqual(p.stdoutLines, ['hello', 'ready']);
    assert.deepEqual(p.stderrLines, ['oops']);
    await assert.rejects(p.waitForLine(/never/, 100), /timed out/);
    const t0 = Date.now();
    const info = await p.stop('SIGTERM', 300); // TERM is ignored -> SIGKILL after 300 ms
    assert.equal(info.signal, 'SIGKILL');
    assert.ok(Date.now() - t0 < 3_000);
    assert.equal(p.running, false);
    await assert.rejects(p.waitForLine(/never/, 1_000, { fromNow: true }), /exited/);
  });

  test('run() rejects with stderr; makeTempDir makes a dir', async () => {
    await assert.rejects(run('sh', ['-c', 'echo boom >&2; exit 3']), /exit code 3[\s\S]*boom/);
    const d = makeTempDir('pp-test-');
    assert.ok(fs.statSync(d).isDirectory());
  });
});

describe('images', () => {
  test('layers are deterministic, valid gzip tarballs; 100 MB in well under 2 s', async (t) => {
    const dir = makeTempDir('pp-layer-');
    const a = await writeLayer(path.join(dir, 'a'), { seed: 's', fileName: 'f.bin', size: 100_000 });
    const b = await writeLayer(path.join(dir, 'b'), { seed: 's', fileName: 'f.bin', size: 100_000 });
    const c = await writeLayer(path.join(dir, 'c'), { seed: 't', fileName: 'f.bin', size: 100_000 });
    assert.equal(a.digest, b.digest);
    assert.notEqual(a.digest, c.digest);
    assert.equal(a.digest, fileDigest(path.join(dir, 'a')));
    const listing = await run('tar', ['-tvzf', path.join(dir, 'a')]);
    assert.match(listing.stdout, /root\/root\s+100000 .* f\.bin/);

    const t0 = performance.now();
    const big = await writeLayer(path.join(dir, 'big'), { seed: 'big', fileName: 'big.bin', size: 100 * MiB });
    const ms = performance.now() - t0;
    t.diagnostic(`100 MiB layer generated in ${ms.toFixed(0)} ms`);
    assert.ok(ms < 2_000, `100 MiB layer took ${ms} ms`);
    assert.ok(big.size >= 100 * MiB && big.size < 100 * MiB * 1.01, 'incompressible');
  });

  test('buildImageLayout writes a consistent OCI layout', async () => {
    const img = await buildImageLayout(makeTempDir('pp-layout-'), { name: 'layout-check', layers: [1000, 0] });
    assert.equal(img.mediaType, MEDIA_TYPES.ociManifest);
    const index = JSON.parse(fs.readFileSync(path.join(img.layoutDir, 'index.json'), 'utf8'));
    assert.equal(index.manifests[0].digest, img.manifestDigest);
    let total = 0;
    for (const f of fs.readdirSync(path.join(img.layoutDir, 'blobs/sha256'))) {
      const p = path.join(img.layoutDir, 'blobs/sha256', f);
      assert.equal(fileDigest(p), `sha256:${f}`);
      total += fs.statSync(p).size;
    }
    assert.equal(total, img.totalBytes);
    const again = await getImageLayout({ name: 'layout-check', layers: [1000, 0] });
    assert.equal(again.manifestDigest, img.manifestDigest, 'same spec, same bytes');
    assert.equal(await getImageLayout({ name: 'layout-check', layers: [1000, 0] }), again, 'cached');
  });
});

describe('registry + skopeo + containerd', () => {
  let reg: Registry;
  let two: BuiltImage;
  let multi: BuiltImage;
  let ctd: Containerd | undefined;
  let mirror: Registry | undefined;

  before(async () => {
    [reg, two, multi] = await Promise.all([startRegistry(), getImageLayout(TWO_LAYERS), getImageLayout(MULTI)]);
  });

  after(async () => {
    await ctd?.stop();
    await mirror?.stop();
    await reg?.stop();
  });

  test('access log: parsed from the combined log on stdout', async () => {
    const line =
      '127.0.0.1 - - [23/Nov/2026:05:33:39 +0000] "GET /v2/foo/blobs/sha256:abc?ns=a%3Ab HTTP/1.1" 206 999900 "" "curl/7.88.1"';
    const e = parseAccessLine(line, 0);
    assert.ok(e);
    assert.deepEqual(
      [e.method, e.path, e.query, e.status, e.bytes, e.kind, e.repo, e.reference, e.userAgent],
      ['GET', '/v2/foo/blobs/sha256:abc', 'ns=a%3Ab', 206, 999900, 'blob', 'foo', 'sha256:abc', 'curl/7.88.1'],
    );
    assert.equal(e.time, Date.UTC(2026, 10, 23, 5, 33, 39));

    reg.clearLog();
    const res = await fetch(`${reg.url}/v2/library/nope/manifests/v1?ns=x`);
    assert.equal(res.status, 404);
    await res.arrayBuffer();
    await reg.flushLog();
    assert.equal(reg.accessLog().length, 1, 'readiness/flush probes are not logged');
    assert.equal(reg.countRequests({ method: 'GET', kind: 'manifest', status: 404, queryIncludes: 'ns=x' }), 1);
    assert.equal(reg.accessLog()[0]?.path, '/v2/library/nope/manifests/v1');
  });

  test('push OCI, inspect, copy back to dir, count blob GETs and bytes', async () => {
    const ref = `${reg.host}/library/two:v1`;
    await pushImage(two, ref);
    const remote = await inspectRemote(ref);
    assert.equal(remote.digest, two.manifestDigest);
    assert.equal(remote.mediaType, MEDIA_TYPES.ociManifest);

    reg.clearLog();
    const out = makeTempDir('pp-dir-');
    await copyToDir(ref, out);
    await reg.flushLog();

    const m = two.manifests[0]!;
    assert.equal(fileDigest(path.join(out, 'manifest.json')), two.manifestDigest);
    for (const blob of [...m.layers, { digest: m.configDigest, size: m.configSize }]) {
      const f = path.join(out, blob.digest.slice('sha256:'.length));
      assert.equal(fileDigest(f), blob.digest);
      assert.equal(fs.statSync(f).size, blob.size);
    }
    const blobBytes = m.layers.reduce((n, l) => n + l.size, 0) + m.configSize;
    assert.equal(reg.countRequests({ method: 'GET', kind: 'blob' }), 3);
    assert.equal(reg.countRequests({ method: 'GET', kind: 'blob', pathIncludes: m.layers[1]!.digest }), 1);
    assert.equal(reg.bytesSent({ method: 'GET', kind: 'blob', repo: 'library/two' }), blobBytes);
    assert.equal(blobBytes + m.size, two.totalBytes);
  });

  test('push as v2s2: new manifest digest, same layers', async () => {
    const ref = `${reg.host}/library/two-docker:v1`;
    await pushImage(two.layoutDir, ref, { format: 'v2s2' });
    const remote = await inspectRemote(ref);
    assert.equal(remote.mediaType, MEDIA_TYPES.dockerManifest);
    assert.notEqual(remote.digest, two.manifestDigest);
    assert.equal(remote.manifest.config?.mediaType, MEDIA_TYPES.dockerConfig);
    assert.deepEqual(
      remote.manifest.layers?.map((l) => [l.digest, l.size, l.mediaType]),
      two.manifests[0]!.layers.map((l) => [l.digest, l.size, MEDIA_TYPES.dockerLayerGzip]),
    );
    const byDigest = await inspectRemote(`${reg.host}/library/two-docker@${remote.digest}`);
    assert.equal(byDigest.digest, remote.digest);
  });

  test('2-platform index: OCI index and Docker manifest list', async () => {
    assert.equal(multi.mediaType, MEDIA_TYPES.ociIndex);
    assert.equal(multi.manifests.length, 2);
    await pushImage(multi, `${reg.host}/library/multi:v1`);
    const oci = await inspectRemote(`${reg.host}/library/multi:v1`);
    assert.equal(oci.digest, multi.manifestDigest);
    assert.equal(oci.mediaType, MEDIA_TYPES.ociIndex);
    assert.deepEqual(
      oci.manifest.manifests?.map((d) => d.digest),
      multi.manifests.map((m) => m.digest),
    );

    await pushImage(multi, `${reg.host}/library/multi-docker:v1`, { format: 'v2s2' });
    const list = await inspectRemote(`${reg.host}/library/multi-docker:v1`);
    assert.equal(list.mediaType, MEDIA_TYPES.dockerManifestList);
    assert.notEqual(list.digest, multi.manifestDigest);
    assert.deepEqual(
      list.manifest.manifests?.map((d) => d.platform?.architecture),
      ['amd64', 'arm64'],
    );

    // copying an index without --all picks the host platform
    const out = makeTempDir('pp-dir-');
    await copyToDir(`${reg.host}/library/multi:v1`, out);
    const host = multi.manifests.find((m) => m.platform.architecture === hostPlatform().architecture);
    assert.ok(host);
    assert.equal(fileDigest(path.join(out, 'manifest.json')), host.digest);

    // and registry-to-registry copies with --all keep the index digest
    await skopeoCopy(`${reg.host}/library/multi:v1`, `${reg.host}/library/multi-copy:v1`, { all: true });
    assert.equal((await inspectRemote(`${reg.host}/library/multi-copy:v1`)).digest, multi.manifestDigest);
  });

  test('containerd pulls directly from the registry and unpacks', async () => {
    ctd = await startContainerd({ mirrors: {} });
    assert.ok(Buffer.byteLength(ctd.address) < 100);
    const ref = `${reg.host}/library/two:v1`;
    reg.clearLog();
    await ctd.pull(ref);
    await reg.flushLog();

    const ls = await ctd.ctr(['image', 'ls']);
    assert.match(ls.stdout, new RegExp(`${ref.replace(/[.]/g, '\\.')}\\s+\\S+\\s+${two.manifestDigest}`));
    assert.deepEqual(await ctd.images(), [ref]);
    const snaps = await ctd.ctr(['snapshots', 'ls']);
    assert.equal(snaps.stdout.trim().split('\n').length - 1, 2, 'two committed layer snapshots');

    assert.equal(reg.countRequests({ method: 'GET', kind: 'blob' }), 3);
    assert.equal(reg.countRequests({ queryIncludes: 'ns=' }), 0, 'no ns= on direct requests');
    const m = two.manifests[0]!;
    assert.equal(reg.bytesSent({ kind: 'blob' }), m.layers.reduce((n, l) => n + l.size, 0) + m.configSize);

    await ctd.removeImage(ref);
    assert.deepEqual(await ctd.images(), []);
  });

  test('containerd pulls through a mirror from hosts.toml (?ns=)', async () => {
    assert.ok(ctd);
    mirror = await startRegistry({ proxyRemoteUrl: reg.url });
    ctd.setMirrors(reg.host, [mirror.url]);
    const ref = `${reg.host}/library/two-docker:v1`;
    reg.clearLog();
    await ctd.pull(ref);
    await Promise.all([mirror.flushLog(), reg.flushLog()]);

    assert.ok(ctd.process.running);
    const ns = `ns=${encodeURIComponent(reg.host)}`;
    assert.equal(mirror.countRequests({ method: 'HEAD', kind: 'manifest', queryIncludes: ns }), 1);
    assert.equal(mirror.countRequests({ method: 'GET', kind: 'blob', status: 200, queryIncludes: ns }), 3);
    assert.equal(mirror.countRequests({ status: 404 }), 0);
    // distribution's proxy fetched the blobs from the upstream (no ns= there)
    assert.ok(reg.countRequests({ method: 'GET', kind: 'blob', repo: 'library/two-docker' }) >= 3);
    assert.equal(reg.countRequests({ queryIncludes: 'ns=' }), 0);
  });

  test('registry restart keeps data; kill9 then restart', async () => {
    const port = reg.port;
    await reg.restart();
    assert.equal(reg.port, port);
    assert.equal((await inspectRemote(`${reg.host}/library/two:v1`)).digest, two.manifestDigest);
    const info = await reg.kill9();
    assert.equal(info.signal, 'SIGKILL');
    await assert.rejects(fetch(`${reg.url}/v2/`));
    await reg.restart();
    assert.equal((await inspectRemote(`${reg.host}/library/two:v1`)).digest, two.manifestDigest);
  });
});
