// End-to-end: a real `peerpull daemon` child process in front of a real distribution registry, with a
// fault-injecting proxy of our own between them (truncated bodies, wrong bytes, stalls), plus the
// API's edges: the ns allowlist, path traversal, bad digests, pushes, Range, concurrency, kill -9.
import { test, describe, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { startRegistry } from '../fixtures/registry.ts';
import type { Registry } from '../fixtures/registry.ts';
import { startPeerpull } from '../fixtures/daemon.ts';
import type { DaemonProcess } from '../fixtures/daemon.ts';
import { getImageLayout, pushImage } from '../fixtures/images.ts';
import type { BuiltImage, BuiltLayer } from '../fixtures/images.ts';
import { skopeoCopy } from '../fixtures/skopeo.ts';
import { FaultProxy } from '../fixtures/fault-proxy.ts';
import { waitUntil } from '../fixtures/wait-until.ts';
import { rawRequest } from '../fixtures/raw-http.ts';
import { ociErrorCodes } from '../fixtures/oci-error.ts';
import {
  ConnectionRecorder,
  corruptStoredBlobs,
  download,
  fileDigest,
  MiB,
  storedBlobPath,
  tmpFiles,
  resetLog,
} from './mirror-helpers.ts';
import type { Download } from './mirror-helpers.ts';

// Five small layers (one per fault test, so each starts uncached) and one ~100 MB layer.
const SMALL = { name: 'faults-small', layers: [2 * MiB, 3 * MiB, 4 * MiB, 5 * MiB, 6 * MiB] };
const BIG = { name: 'faults-big', layers: [100 * MiB] };

/** The exact bytes of a layer, from the OCI layout it was pushed from. */
function layerBytes(image: BuiltImage, layer: BuiltLayer): Buffer {
  return fs.readFileSync(path.join(image.layoutDir, 'blobs', 'sha256', layer.digest.slice('sha256:'.length)));
}

/** Never a complete-looking wrong body: either the right bytes, or a response that visibly broke off. */
function assertNotSilentlyCorrupt(res: Download, layer: BuiltLayer): void {
  const complete = res.status === 200 && !res.aborted && res.bytes === layer.size;
  if (complete) assert.equal(res.digest, layer.digest, 'a complete 200 body must be the right bytes');
  else assert.ok(res.aborted || res.status >= 400, `an incomplete body must end in an abort (status ${res.status}, ${res.bytes} of ${layer.size} bytes)`);
}

describe('mirror: upstream faults and API edges', () => {
  let reg: Registry;
  let small: BuiltImage;
  let bigImage: BuiltImage;
  let bigLayer: BuiltLayer;
  let proxy: FaultProxy;
  let recorder: ConnectionRecorder;
  /** The daemon under test; its only upstream is the fault proxy in front of the registry. */
  let daemon: DaemonProcess;
  const extraDaemons: DaemonProcess[] = [];

  const layer = (i: number): BuiltLayer => small.manifests[0]!.layers[i]!;
  const blobUrl = (d: DaemonProcess, repo: string, digest: string) => `${d.url}/v2/library/${repo}/blobs/${digest}`;
  const freshDaemon = async (): Promise<DaemonProcess> => {
    const d = await startPeerpull({ registries: [`${proxy.host}=${proxy.url}`] });
    extraDaemons.push(d);
    return d;
  };
  /** Lets a failed ingest discard its temp file, then checks the store holds nothing wrong. */
  const assertStoreClean = async (d: DaemonProcess, absent: string[] = []): Promise<void> => {
    await waitUntil(() => `tmp/ is empty once requests settle: ${tmpFiles(d.dataDir).join(', ')}`, () => tmpFiles(d.dataDir).length === 0, 3_000);
    for (const digest of absent) assert.equal(fs.existsSync(storedBlobPath(d.dataDir, digest)), false, `nothing stored for ${digest}`);
    assert.deepEqual(corruptStoredBlobs(d.dataDir), [], 'every stored file hashes to its name');
  };

  before(async () => {
    [reg, small, bigImage, recorder] = await Promise.all([startRegistry(), getImageLayout(SMALL), getImageLayout(BIG), ConnectionRecorder.start()]);
    bigLayer = bigImage.manifests[0]!.layers[0]!;
    proxy = await FaultProxy.start(reg.url);
    const started = startPeerpull({ registries: [`${proxy.host}=${proxy.url}`] });
    await Promise.all([pushImage(small, `${reg.host}/library/small:v1`), pushImage(bigImage, `${reg.host}/library/big:v1`)]);
    daemon = await started;
  });

  // A failed test must not leave a fault (or a held response) behind for the next one.
  afterEach(() => proxy?.reset());

  after(async () => {
    proxy?.reset();
    await Promise.all([daemon?.stop(), ...extraDaemons.map((d) => d.stop())]);
    await proxy?.close();
    await reg?.stop();
    await recorder?.close();
  });

  test('an ns that is not on the allowlist gets a prompt 404 OCI error and opens no connection', async () => {
    const targets = [
      '/v2/library/small/manifests/v1',
      `/v2/library/small/manifests/${small.manifestDigest}`,
      `/v2/library/small/blobs/${layer(0).digest}`,
    ];
    const namespaces = ['169.254.169.254', '169.254.169.254:80', 'localhost:22', encodeURIComponent('localhost:22'), recorder.host, encodeURIComponent(recorder.host), reg.host];
    const proxied = proxy.requests.length;
    await resetLog(reg);
    for (const ns of namespaces) {
      for (const target of targets) {
        for (const method of ['GET', 'HEAD']) {
          const res = await rawRequest(daemon.host, method, `${target}?ns=${ns}`);
          assert.equal(res.status, 404, `${method} ${target}?ns=${ns}`);
          assert.ok(res.ms < 1_000, `answered in ${res.ms.toFixed(0)} ms`);
          if (method === 'GET') {
            assert.match(res.headers['content-type'] ?? '', /^application\/json/);
            assert.deepEqual(ociErrorCodes(res.body), ['NAME_UNKNOWN']);
          }
        }
      }
    }
    assert.equal(recorder.connections, 0, 'the listener named by ns was never contacted');
    assert.equal(proxy.requests.length, proxied, 'nothing went upstream either');
    await reg.flushLog();
    assert.equal(reg.accessLog().length, 0, 'not even to the registry named directly');

    // Control: the allowlisted ns is served.
    const ok = await rawRequest(daemon.host, 'GET', `/v2/library/small/manifests/v1?ns=${encodeURIComponent(proxy.host)}`, { headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } });
    assert.equal(ok.status, 200);
    assert.equal(ok.headers['docker-content-digest'], small.manifestDigest);
  });

  test('path traversal and malformed digests get 400 NAME_INVALID / DIGEST_INVALID and go nowhere', async () => {
    const hex = layer(0).digest.slice('sha256:'.length);
    const cases: [string, string, number, string][] = [
      ['GET', '/v2/../x/manifests/a', 400, 'NAME_INVALID'],
      ['GET', '/v2/library/../../x/blobs/sha256:' + hex, 400, 'NAME_INVALID'],
      ['GET', '/v2/a/%2e%2e/b/manifests/x', 400, 'NAME_INVALID'],
      ['GET', '/v2/a/%2E%2E/%2E%2E/manifests/x', 400, 'NAME_INVALID'],
      ['HEAD', '/v2/a/%2e%2e/b/manifests/x', 400, ''],
      ['GET', '/v2//a/manifests/x', 400, 'NAME_INVALID'],
      ['GET', '/v2/a//b/manifests/x', 400, 'NAME_INVALID'],
      ['GET', '/v2/a/b/../../manifests/x', 400, 'NAME_INVALID'],
      ['GET', '/v2/a\\..\\b/manifests/x', 400, 'NAME_INVALID'],
      ['GET', '//v2/a/manifests/x', 404, 'NAME_UNKNOWN'], // not under /v2/ at all
      ['GET', '/v2/library/small/blobs/sha256:abc', 400, 'DIGEST_INVALID'],
      ['GET', `/v2/library/small/blobs/sha256:${hex.toUpperCase()}`, 400, 'DIGEST_INVALID'],
      ['GET', `/v2/library/small/blobs/sha512:${hex}${hex}`, 400, 'DIGEST_INVALID'],
      ['HEAD', `/v2/library/small/blobs/sha512:${hex}${hex}`, 400, ''],
      ['GET', `/v2/library/small/blobs/${hex}`, 400, 'DIGEST_INVALID'],
      ['GET', '/v2/library/small/manifests/sha256:abc', 400, 'DIGEST_INVALID'],
      ['GET', `/v2/library/small/manifests/sha256:${hex.toUpperCase()}`, 400, 'DIGEST_INVALID'],
      ['GET', `/v2/library/small/manifests/sha512:${hex}${hex}`, 400, 'DIGEST_INVALID'],
    ];
    const proxied = proxy.requests.length;
    for (const [method, target, status, code] of cases) {
      const res = await rawRequest(daemon.host, method, target);
      assert.equal(res.status, status, `${method} ${target}: ${res.body.toString().slice(0, 200)}`);
      if (code) assert.deepEqual(ociErrorCodes(res.body), [code], `${method} ${target}`);
      else assert.equal(res.body.length, 0);
    }
    assert.equal(proxy.requests.length, proxied, 'no invalid request reached the upstream');
    // Control: the same blob with a well-formed path and digest is served.
    const ok = await download(blobUrl(daemon, 'small', layer(0).digest));
    assert.equal(ok.status, 200);
    assert.equal(ok.digest, layer(0).digest);
  });

  test('pushes and deletes get 405 UNSUPPORTED; a real skopeo push fails; nothing reaches the upstream', async () => {
    const digest = layer(0).digest;
    const manifest = fs.readFileSync(path.join(small.layoutDir, 'blobs', 'sha256', small.manifestDigest.slice('sha256:'.length)));
    const cases: [string, string, Record<string, string>, Buffer | undefined][] = [
      ['POST', '/v2/library/small/blobs/uploads/', {}, undefined],
      ['POST', `/v2/library/small/blobs/uploads/?mount=${digest}&from=library/other`, {}, undefined],
      ['POST', `/v2/library/small/blobs/uploads/?digest=${digest}`, { 'content-type': 'application/octet-stream' }, Buffer.alloc(300 * 1024, 1)],
      ['PATCH', '/v2/library/small/blobs/uploads/3f1c2a', { 'content-type': 'application/octet-stream', 'content-range': '0-99999' }, Buffer.alloc(100_000, 2)],
      ['PUT', `/v2/library/small/blobs/uploads/3f1c2a?digest=${digest}`, { 'content-type': 'application/octet-stream' }, Buffer.alloc(10, 3)],
      ['PUT', '/v2/library/small/manifests/v2', { 'content-type': 'application/vnd.oci.image.manifest.v1+json' }, manifest],
      ['DELETE', `/v2/library/small/manifests/${small.manifestDigest}`, {}, undefined],
      ['DELETE', '/v2/library/small/manifests/v1', {}, undefined],
      ['DELETE', `/v2/library/small/blobs/${digest}`, {}, undefined],
      ['DELETE', '/v2/library/small/blobs/uploads/3f1c2a', {}, undefined],
      ['GET', '/v2/library/small/blobs/uploads/3f1c2a', {}, undefined],
    ];
    const proxied = proxy.requests.length;
    for (const [method, target, headers, body] of cases) {
      const res = await rawRequest(daemon.host, method, target, { headers, ...(body ? { body } : {}) });
      assert.equal(res.status, 405, `${method} ${target}: ${res.status} ${res.body.toString().slice(0, 200)}`);
      assert.deepEqual(ociErrorCodes(res.body), ['UNSUPPORTED'], `${method} ${target}`);
    }
    assert.equal(proxy.requests.length, proxied, 'none of them went upstream');

    // A real client: skopeo pushing an image to the daemon is refused.
    await assert.rejects(
      skopeoCopy(`oci:${small.layoutDir}:v1`, `${daemon.host}/library/pushed:v1`),
      /405|UNSUPPORTED|unsupported|read-only/i,
    );
    // (skopeo's existence checks, HEADs of blobs, are pull requests and may go upstream; writes never.)
    assert.deepEqual(proxy.requests.slice(proxied).filter((r) => r.method !== 'GET' && r.method !== 'HEAD'), [], 'no write reached the upstream');
    const pushed = await fetch(`${reg.url}/v2/library/pushed/manifests/v1`, { method: 'HEAD' });
    assert.equal(pushed.status, 404, 'the upstream has no pushed image');
  });

  test('Range on a complete blob: 206 with the right Content-Range and bytes; unsatisfiable: 416', async () => {
    const l = layer(0);
    const bytes = layerBytes(small, l);
    const url = blobUrl(daemon, 'small', l.digest);
    const target = `/v2/library/small/blobs/${l.digest}`;
    assert.equal((await download(url)).digest, l.digest); // cached by the previous tests, or now
    const size = l.size;
    // Raw bytes on the wire: exactly Content-Length of them, nothing after (a keep-alive client would
    // read extra bytes as the start of its next response).
    const full = await rawRequest(daemon.host, 'GET', target);
    assert.equal(full.status, 200);
    assert.equal(full.headers['x-peerpull-source'], 'local');
    assert.equal(full.headers['content-length'], String(size));
    assert.equal(full.body.length, size, 'exactly Content-Length bytes on the wire');
    assert.ok(full.body.equals(bytes));
    const cases: [string, number, number][] = [
      ['bytes=0-0', 0, 0],
      ['bytes=100-1099', 100, 1099],
      ['bytes=1000000-', 1000000, size - 1],
      ['bytes=-4096', size - 4096, size - 1],
      [`bytes=${size - 10}-${size + 1000}`, size - 10, size - 1],
      [`bytes=0-${size - 1}`, 0, size - 1],
      [`bytes=-${size * 2}`, 0, size - 1],
    ];
    for (const [range, start, end] of cases) {
      const res = await rawRequest(daemon.host, 'GET', target, { headers: { range } });
      assert.equal(res.status, 206, range);
      assert.equal(res.headers['content-range'], `bytes ${start}-${end}/${size}`, range);
      assert.equal(res.headers['content-length'], String(end - start + 1), range);
      assert.equal(res.headers['x-peerpull-source'], 'local');
      assert.equal(res.headers['content-encoding'], undefined);
      assert.equal(res.body.length, end - start + 1, `${range}: exactly the range on the wire`);
      assert.ok(res.body.equals(bytes.subarray(start, end + 1)), `${range}: exact bytes`);
    }
    for (const range of [`bytes=${size}-`, `bytes=${size + 5}-${size + 10}`]) {
      const res = await rawRequest(daemon.host, 'GET', target, { headers: { range } });
      assert.equal(res.status, 416, range);
      assert.equal(res.headers['content-range'], `bytes */${size}`, range);
      assert.deepEqual(ociErrorCodes(res.body), ['RANGE_INVALID']);
    }
  });

  test('a truncated upstream body (first response only) is resumed with Range; the client gets the right bytes', async () => {
    const l = layer(1);
    const rule = proxy.addRule({ pathIncludes: l.digest, fault: { kind: 'truncate', at: 1_000_000 }, times: 1 });
    const res = await download(blobUrl(daemon, 'small', l.digest));
    assertNotSilentlyCorrupt(res, l);
    assert.equal(rule.applied, 1, 'the first response was cut');
    assert.equal(res.status, 200);
    assert.equal(res.aborted, false);
    assert.equal(res.digest, l.digest, 'the client got the right bytes');
    const upstream = proxy.requestsFor(l.digest, 'GET');
    assert.equal(upstream.length, 2);
    assert.equal(upstream[0]!.range, undefined);
    assert.match(upstream[1]!.range ?? '', /^bytes=\d+-$/, 'the daemon resumed with a Range request');
    assert.ok(Number(/\d+/.exec(upstream[1]!.range!)![0]) > 0);
    assert.equal(upstream[1]!.status, 206);
    await assertStoreClean(daemon);
    assert.equal(fileDigest(storedBlobPath(daemon.dataDir, l.digest)), l.digest, 'stored, verified');
  });

  test('a truncated upstream body (every response) aborts the client response and stores nothing', async () => {
    const l = layer(2);
    proxy.addRule({ pathIncludes: l.digest, fault: { kind: 'truncate', at: 1_000_000 } });
    const res = await download(blobUrl(daemon, 'small', l.digest));
    assertNotSilentlyCorrupt(res, l);
    assert.ok(res.aborted, `aborted (status ${res.status}, ${res.bytes} of ${l.size} bytes)`);
    assert.ok(res.bytes < l.size);
    assert.ok(proxy.requestsFor(l.digest, 'GET').length >= 2, 'it tried to resume');
    await assertStoreClean(daemon, [l.digest]);

    // A later request, with the upstream healthy again, is not poisoned by the failure.
    proxy.reset();
    const again = await download(blobUrl(daemon, 'small', l.digest));
    assert.equal(again.status, 200);
    assert.equal(again.digest, l.digest);
    await assertStoreClean(daemon);
    assert.equal(fileDigest(storedBlobPath(daemon.dataDir, l.digest)), l.digest);
  });

  test('wrong bytes from the upstream (one flipped byte): the client response is aborted, not a clean 200; nothing stored', async () => {
    const l = layer(3);
    const rule = proxy.addRule({ pathIncludes: l.digest, fault: { kind: 'flip', at: Math.floor(l.size / 2) } });
    for (let i = 0; i < 2; i++) {
      const res = await download(blobUrl(daemon, 'small', l.digest));
      assertNotSilentlyCorrupt(res, l);
      assert.ok(res.aborted, `attempt ${i + 1}: aborted (status ${res.status}, ${res.bytes} of ${l.size} bytes, ${res.digest === l.digest ? 'right' : 'wrong'} digest)`);
      await assertStoreClean(daemon, [l.digest]);
    }
    assert.equal(rule.applied, 2, 'each client request caused one upstream fetch, both corrupted');

    // A ranged request for the tail (containerd's resume) must not get the unverified last byte either.
    const tail = await download(blobUrl(daemon, 'small', l.digest), { headers: { range: `bytes=${l.size - 1000}-` } });
    assert.ok(tail.aborted || tail.status >= 400, `tail range: status ${tail.status}, aborted ${tail.aborted}`);
    await assertStoreClean(daemon, [l.digest]);

    // A corrupted manifest is refused too (never served, never stored).
    const other = await getImageLayout({ name: 'faults-flipped-manifest', layers: [1000] });
    await pushImage(other, `${reg.host}/library/flipped:v1`);
    proxy.addRule({ pathIncludes: other.manifestDigest, fault: { kind: 'flip', at: 40 } });
    const m = await rawRequest(daemon.host, 'GET', `/v2/library/flipped/manifests/${other.manifestDigest}`, { headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } });
    assert.equal(m.status, 404);
    assert.equal(fs.existsSync(storedBlobPath(daemon.dataDir, other.manifestDigest)), false);

    proxy.reset();
    const good = await download(blobUrl(daemon, 'small', l.digest));
    assert.equal(good.digest, l.digest);
    await assertStoreClean(daemon);
  });

  test('Range on an in-progress blob: requests made mid-download get 206 and the right bytes, from the same upstream fetch', async () => {
    const bytes = layerBytes(bigImage, bigLayer);
    const size = bigLayer.size;
    const rule = proxy.addRule({ pathIncludes: bigLayer.digest, fault: { kind: 'pause', at: 30 * MiB } });
    const url = blobUrl(daemon, 'big', bigLayer.digest);
    const first = download(url);
    await rule.reached; // the upstream body is held at 30 MiB: the blob is in progress
    assert.equal(fs.existsSync(storedBlobPath(daemon.dataDir, bigLayer.digest)), false, 'still downloading');

    // A range inside what has arrived starts at once; a tail range waits for the bytes it needs.
    let midHeadersAt = 0;
    const mid = download(url, { headers: { range: `bytes=${10 * MiB}-${20 * MiB - 1}` }, keepBody: true, onHeaders: () => (midHeadersAt = performance.now()) });
    const tail = download(url, { headers: { range: 'bytes=-1048576' }, keepBody: true });
    const open = download(url, { headers: { range: `bytes=${25 * MiB}-` }, keepBody: true });
    await waitUntil('the range of bytes already fetched is answered while the blob is still downloading', () => midHeadersAt > 0, 5_000);
    const m = await mid;
    assert.equal(m.status, 206);
    assert.equal(m.headers['content-range'], `bytes ${10 * MiB}-${20 * MiB - 1}/${size}`);
    assert.equal(m.headers['x-peerpull-source'], 'upstream', 'served from the in-flight fetch');
    assert.ok(m.body!.equals(bytes.subarray(10 * MiB, 20 * MiB)), 'middle bytes');
    assert.equal(fs.existsSync(storedBlobPath(daemon.dataDir, bigLayer.digest)), false, 'answered before the blob was complete');

    const releasedAt = performance.now();
    rule.release();
    const [t, o, f] = await Promise.all([tail, open, first]);
    assert.equal(t.status, 206);
    assert.equal(t.headers['content-range'], `bytes ${size - MiB}-${size - 1}/${size}`);
    assert.equal(t.headers['content-length'], String(MiB));
    assert.equal(t.headers['x-peerpull-source'], 'upstream', 'served from the in-flight fetch');
    assert.ok(t.body!.equals(bytes.subarray(size - MiB)), 'tail bytes');
    assert.ok(t.endedAt > releasedAt, 'the tail could only complete after the download went on');
    assert.equal(o.status, 206);
    assert.equal(o.headers['content-range'], `bytes ${25 * MiB}-${size - 1}/${size}`);
    assert.equal(o.headers['x-peerpull-source'], 'upstream');
    assert.ok(o.body!.equals(bytes.subarray(25 * MiB)), 'bytes=N- across the point the download had reached');
    assert.equal(f.status, 200);
    assert.equal(f.digest, bigLayer.digest);

    const upstream = proxy.requestsFor(bigLayer.digest, 'GET');
    assert.equal(upstream.length, 1, 'one upstream fetch served all four');
    assert.equal(upstream[0]!.range, undefined);
    await assertStoreClean(daemon);
    assert.equal(fileDigest(storedBlobPath(daemon.dataDir, bigLayer.digest)), bigLayer.digest);
  });

  test('50 concurrent GETs of one uncached ~100 MB blob: exactly one upstream GET, all 50 bodies verify', async (t) => {
    const d = await freshDaemon();
    // Hold the upstream body at 8 MiB until every client has its response headers, so all 50 join the
    // one in-flight fetch (none of them can be a later cache hit).
    const rule = proxy.addRule({ pathIncludes: bigLayer.digest, fault: { kind: 'pause', at: 8 * MiB } });
    await resetLog(reg);
    const proxiedBefore = proxy.requestsFor(bigLayer.digest, 'GET').length;
    let withHeaders = 0;
    const t0 = performance.now();
    const all = Array.from({ length: 50 }, () => download(blobUrl(d, 'big', bigLayer.digest), { onHeaders: () => withHeaders++ }));
    // Not asserted here: the held response must be released first, whatever happened.
    const allStarted = await waitUntil('all 50 clients to have headers', () => withHeaders === 50, 15_000).then(() => true, () => false);
    rule.release();
    const results = await Promise.all(all);
    t.diagnostic(`50 x ${(bigLayer.size / MiB).toFixed(0)} MiB in ${(performance.now() - t0).toFixed(0)} ms`);
    assert.ok(allStarted, `${withHeaders} of 50 clients had headers before the upstream body went on`);
    for (const [i, r] of results.entries()) {
      assert.equal(r.status, 200, `client ${i}`);
      assert.equal(r.aborted, false, `client ${i}`);
      assert.equal(r.bytes, bigLayer.size, `client ${i}`);
      assert.equal(r.digest, bigLayer.digest, `client ${i}`);
    }
    assert.deepEqual([...new Set(results.map((r) => r.headers['x-peerpull-source']))], ['upstream']);
    await reg.flushLog();
    assert.equal(reg.countRequests({ method: 'GET', kind: 'blob', pathIncludes: bigLayer.digest }), 1, 'exactly one upstream blob GET');
    assert.equal(proxy.requestsFor(bigLayer.digest, 'GET').length - proxiedBefore, 1);
    await assertStoreClean(d);
    assert.equal(fileDigest(storedBlobPath(d.dataDir, bigLayer.digest)), bigLayer.digest);
  });

  test('kill -9 mid-download, restart on the same data dir: tmp/ is emptied, no partial blob is served, the pull then succeeds', async () => {
    const d = await freshDaemon();
    const rule = proxy.addRule({ pathIncludes: bigLayer.digest, fault: { kind: 'pause', at: 40 * MiB } });
    const url = blobUrl(d, 'big', bigLayer.digest);
    const client = download(url);
    await rule.reached;
    // Wait until the daemon has written what it received to its temp file.
    const partial = () => tmpFiles(d.dataDir).map((f) => fs.statSync(path.join(d.dataDir, 'tmp', f)).size);
    await waitUntil(() => `partial temp file: ${partial().join(', ')}`, () => partial().some((s) => s >= 38 * MiB), 5_000);
    await d.kill9();
    const cut = await client;
    assert.ok(cut.aborted, 'the client saw the connection die');
    assert.ok(cut.bytes < bigLayer.size);
    assert.equal(tmpFiles(d.dataDir).length, 1, 'the crash left the partial download in tmp/');
    assert.equal(fs.existsSync(storedBlobPath(d.dataDir, bigLayer.digest)), false, 'and nothing under blobs/');
    proxy.reset();

    await d.restart();
    assert.deepEqual(tmpFiles(d.dataDir), [], 'start-up removed the leftover temp file');
    assert.equal(fs.existsSync(storedBlobPath(d.dataDir, bigLayer.digest)), false);
    const head = await rawRequest(d.host, 'HEAD', `/v2/library/big/blobs/${bigLayer.digest}`);
    assert.equal(head.status, 200);
    assert.equal(head.headers['content-length'], String(bigLayer.size));
    assert.equal(head.headers['x-peerpull-source'], 'upstream', 'the partial blob is not in the cache');

    const before = proxy.requestsFor(bigLayer.digest, 'GET').length;
    const res = await download(url);
    assert.equal(res.status, 200);
    assert.equal(res.aborted, false);
    assert.equal(res.bytes, bigLayer.size);
    assert.equal(res.digest, bigLayer.digest);
    assert.equal(res.headers['x-peerpull-source'], 'upstream');
    const after = proxy.requestsFor(bigLayer.digest, 'GET').slice(before);
    assert.deepEqual(after.map((r) => [r.range, r.status]), [[undefined, 200]], 'fetched again from byte 0');
    await assertStoreClean(d);
    assert.equal(fileDigest(storedBlobPath(d.dataDir, bigLayer.digest)), bigLayer.digest);

    // And now it is a cache hit.
    const hit = await rawRequest(d.host, 'HEAD', `/v2/library/big/blobs/${bigLayer.digest}`);
    assert.equal(hit.headers['x-peerpull-source'], 'local');
  });
});
