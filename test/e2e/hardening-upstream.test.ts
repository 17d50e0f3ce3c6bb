// Hardening, a hostile or broken upstream: a scripted upstream of our own in front of the real registry
// answers malformed manifests, bytes that do not match the digest, lying Content-Lengths, HTML error pages
// with 200, redirect loops and redirects the policy refuses, a token endpoint that hangs, 5xx, 429 and
// stalls. Each must be a clean failure for the client (a prompt 404/429, or a visibly aborted body, never a
// hang or a complete wrong body), with a log line that says what went wrong, and nothing corrupt cached.
// (mirror-faults.test.ts already covers truncated and flipped blob bodies and pauses.)
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { startRegistry, type Registry } from '../fixtures/registry.ts';
import { startPeerpull, type DaemonProcess, type PeerpullLogLine } from '../fixtures/daemon.ts';
import { getImageLayout, pushImage, type BuiltImage, type BuiltLayer } from '../fixtures/images.ts';
import { FaultProxy } from '../fixtures/fault-proxy.ts';
import { waitUntil } from '../fixtures/wait-until.ts';
import { rawRequest } from '../fixtures/raw-http.ts';
import { ociErrorCodes } from '../fixtures/oci-error.ts';
import { ConnectionRecorder, corruptStoredBlobs, download, storedBlobPath, tmpFiles, type Download } from './mirror-helpers.ts';
import { waitStored } from '../fixtures/store-files.ts';

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const TIMEOUT_MS = 2_000;
const MANIFEST_IMAGES = ['m-json', 'm-dig', 'm-len', 'm-len2', 'm-html', 'm-5xx', 'm-stall', 'm-tok', 'm-429'];

describe('hardening: upstream faults', () => {
  let reg: Registry;
  let blobsImage: BuiltImage;
  const images = new Map<string, BuiltImage>();
  /** The daemon's main upstream; `tokenUp` and `limitedUp` are separate registries (their state is per registry). */
  let up: FaultProxy;
  let tokenUp: FaultProxy;
  let limitedUp: FaultProxy;
  let hangingRealm: FaultProxy;
  let recorder: ConnectionRecorder;
  let daemon: DaemonProcess;
  /** A routing table for the main upstream's script: first matching rule wins. */
  let rules: { match: (method: string, url: string) => boolean; respond: (method: string, url: string) => ReturnType<FaultProxy['script']> }[] = [];

  const layer = (i: number): BuiltLayer => blobsImage.manifests[0]!.layers[i]!;
  const manifestBytes = (img: BuiltImage): Buffer => fs.readFileSync(path.join(img.layoutDir, 'blobs', 'sha256', img.manifestDigest.slice(7)));
  const getManifest = (repo: string, ref: string, ns?: string) =>
    rawRequest(daemon.host, 'GET', `/v2/library/${repo}/manifests/${ref}${ns ? `?ns=${encodeURIComponent(ns)}` : ''}`, { headers: { accept: OCI_MANIFEST }, timeoutMs: 30_000 });
  const getBlob = (digest: string): Promise<Download> => download(`${daemon.url}/v2/library/ub/blobs/${digest}`, { timeoutMs: 30_000 });
  const warnings = (since: number): PeerpullLogLine[] => daemon.logs().slice(since).filter((l) => l.level >= 40);
  const warningText = (since: number): string => warnings(since).map((l) => `${l.msg} ${String(l.err ?? '')}`).join('\n');
  const assertNothingStored = async (digests: string[]): Promise<void> => {
    await waitUntil(() => `tmp/ is empty: ${tmpFiles(daemon.dataDir).join(', ')}`, () => tmpFiles(daemon.dataDir).length === 0, 5_000);
    for (const d of digests) assert.equal(fs.existsSync(storedBlobPath(daemon.dataDir, d)), false, `nothing stored for ${d}`);
    assert.deepEqual(corruptStoredBlobs(daemon.dataDir), [], 'every stored file hashes to its name');
  };
  /** Never a complete-looking wrong body: the right bytes, a visible abort, or an error status. */
  const assertNotSilentlyCorrupt = (res: Download, l: BuiltLayer): void => {
    if (res.status === 200 && !res.aborted && res.bytes === l.size) assert.equal(res.digest, l.digest, 'a complete 200 body must be the right bytes');
    else assert.ok(res.aborted || res.status >= 400, `an incomplete body must end in an abort (status ${res.status}, ${res.bytes} of ${l.size} bytes)`);
  };

  before(async () => {
    reg = await startRegistry();
    const built = await Promise.all([
      getImageLayout({ name: 'hardening-upstream-blobs', layers: [150_000, 151_000, 152_000, 153_000, 154_000, 155_000, 156_000, 157_000, 158_000, 159_000] }),
      ...MANIFEST_IMAGES.map((name) => getImageLayout({ name: `hardening-upstream-${name}`, layers: [500] })),
    ]);
    blobsImage = built[0]!;
    MANIFEST_IMAGES.forEach((name, i) => images.set(name, built[i + 1]!));
    await Promise.all([pushImage(blobsImage, `${reg.host}/library/ub:v1`), ...MANIFEST_IMAGES.map((name) => pushImage(images.get(name)!, `${reg.host}/library/${name}:v1`))]);
    [up, tokenUp, limitedUp, hangingRealm, recorder] = await Promise.all([
      FaultProxy.start(reg.url),
      FaultProxy.start(reg.url),
      FaultProxy.start(reg.url),
      FaultProxy.start(),
      ConnectionRecorder.start(),
    ]);
    up.script = (r) => rules.find((rule) => rule.match(r.method, r.url))?.respond(r.method, r.url);
    hangingRealm.script = () => ({ kind: 'stall' });
    daemon = await startPeerpull({
      registries: [`${up.host}=${up.url}`, `${tokenUp.host}=${tokenUp.url}`, `${limitedUp.host}=${limitedUp.url}`],
      defaultRegistry: up.host,
      extraArgs: ['--upstream-timeout', `${TIMEOUT_MS}ms`, '--upstream-idle-timeout', `${TIMEOUT_MS}ms`, '--upstream-connect-timeout', '1s'],
    });
  });

  after(async () => {
    await daemon?.stop();
    await Promise.all([up?.close(), tokenUp?.close(), limitedUp?.close(), hangingRealm?.close(), recorder?.close()]);
    await reg?.stop();
  });

  test('malformed manifest JSON (200, manifest content type): prompt 404 MANIFEST_UNKNOWN, logged, not cached', async () => {
    const garbage = '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","layers":[{"digest":';
    rules = [{ match: (_m, url) => url.startsWith('/v2/library/m-json/manifests/'), respond: () => ({ kind: 'respond', status: 200, headers: { 'content-type': OCI_MANIFEST }, body: garbage }) }];
    const since = daemon.logs().length;
    const res = await getManifest('m-json', 'v1');
    assert.equal(res.status, 404);
    assert.deepEqual(ociErrorCodes(res.body), ['MANIFEST_UNKNOWN']);
    assert.ok(res.ms < 3_000, `prompt: ${res.ms.toFixed(0)} ms`);
    assert.match(warningText(since), /not a manifest|invalid|JSON/i, 'a log line says the upstream sent something that is not a manifest');
    const { createHash } = await import('node:crypto');
    await assertNothingStored([`sha256:${createHash('sha256').update(garbage).digest('hex')}`]);
  });

  test('a manifest whose bytes do not match the digest (by tag and by digest): prompt 404, logged, neither digest cached', async () => {
    const img = images.get('m-dig')!;
    const impostor = manifestBytes(images.get('m-len')!);
    rules = [{ match: (m, url) => m === 'GET' && url === `/v2/library/m-dig/manifests/${img.manifestDigest}`, respond: () => ({ kind: 'respond', status: 200, headers: { 'content-type': OCI_MANIFEST }, body: impostor }) }];
    const since = daemon.logs().length;
    for (const ref of ['v1', img.manifestDigest]) {
      const res = await getManifest('m-dig', ref);
      assert.equal(res.status, 404, ref);
      assert.ok(res.ms < 3_000, `${ref}: prompt (${res.ms.toFixed(0)} ms)`);
    }
    assert.match(warningText(since), /does not match its digest/);
    await assertNothingStored([img.manifestDigest, images.get('m-len')!.manifestDigest]);
  });

  test('a Content-Length that lies (manifests: longer and shorter than the body): prompt 404, not cached', async () => {
    const img = images.get('m-len')!;
    const img2 = images.get('m-len2')!;
    const body = manifestBytes(img);
    const body2 = manifestBytes(img2);
    const head = (cl: number) => `HTTP/1.1 200 OK\r\nContent-Type: ${OCI_MANIFEST}\r\nDocker-Content-Digest: ${img.manifestDigest}\r\nContent-Length: ${cl}\r\n\r\n`;
    rules = [
      { match: (m, url) => m === 'GET' && url.startsWith('/v2/library/m-len/manifests/sha256:'), respond: () => ({ kind: 'raw', data: head(body.length + 500) + body.toString('latin1'), then: 'end' }) },
      { match: (m, url) => m === 'GET' && url.startsWith('/v2/library/m-len2/manifests/sha256:'), respond: () => ({ kind: 'raw', data: head(body2.length - 40) + body2.toString('latin1'), then: 'end' }) },
    ];
    const since = daemon.logs().length;
    for (const [repo, digest] of [['m-len', img.manifestDigest], ['m-len2', img2.manifestDigest]] as const) {
      const res = await getManifest(repo, digest);
      assert.equal(res.status, 404, repo);
      assert.ok(res.ms < 3_000, `${repo}: prompt (${res.ms.toFixed(0)} ms)`);
    }
    // The 404 can reach the client a moment before the second warning is written.
    await waitUntil(() => `logged: ${warningText(since)}`, () => warnings(since).length >= 2, 3_000);
    await assertNothingStored([img.manifestDigest, img2.manifestDigest]);
  });

  test('a Content-Length that lies (blobs: longer, then shorter than the blob): the client sees an abort, never a complete wrong body; not cached', async () => {
    const [longer, shorter] = [layer(0), layer(1)];
    const bytes = (l: BuiltLayer) => fs.readFileSync(path.join(blobsImage.layoutDir, 'blobs', 'sha256', l.digest.slice(7)));
    const head = (cl: number) => `HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: ${cl}\r\n\r\n`;
    rules = [
      { match: (m, url) => m === 'GET' && url.includes(longer.digest), respond: () => ({ kind: 'raw', data: Buffer.concat([Buffer.from(head(longer.size + 1000)), bytes(longer)]), then: 'end' }) },
      { match: (m, url) => m === 'GET' && url.includes(shorter.digest), respond: () => ({ kind: 'raw', data: Buffer.concat([Buffer.from(head(shorter.size - 1000)), bytes(shorter)]), then: 'end' }) },
    ];
    const since = daemon.logs().length;
    for (const l of [longer, shorter]) {
      const t0 = performance.now();
      const res = await getBlob(l.digest);
      assertNotSilentlyCorrupt(res, l);
      assert.ok(res.aborted || res.status === 404, `${l.digest}: aborted or 404 (status ${res.status})`);
      assert.ok(performance.now() - t0 < 3 * TIMEOUT_MS + 3_000, `no hang (${(performance.now() - t0).toFixed(0)} ms)`);
    }
    assert.ok(warnings(since).length >= 2, `logged: ${warningText(since)}`);
    await assertNothingStored([longer.digest, shorter.digest]);
  });

  test('a 200 with an HTML error page (manifest by tag, blob): 404 or an aborted body; logged; not cached', async () => {
    const html = '<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body><h1>Oops</h1><p>The CDN could not reach the origin.</p></body></html>';
    const l = layer(2);
    rules = [
      { match: (_m, url) => url.startsWith('/v2/library/m-html/manifests/'), respond: () => ({ kind: 'respond', status: 200, headers: { 'content-type': 'text/html; charset=utf-8' }, body: html }) },
      { match: (m, url) => m === 'GET' && url.includes(l.digest), respond: () => ({ kind: 'respond', status: 200, headers: { 'content-type': 'text/html' }, body: html }) },
    ];
    const since = daemon.logs().length;
    const res = await getManifest('m-html', 'v1');
    assert.equal(res.status, 404);
    assert.ok(res.ms < 3_000);
    const blob = await getBlob(l.digest);
    assertNotSilentlyCorrupt(blob, l);
    assert.notEqual(blob.digest, (await import('node:crypto')).createHash('sha256').update(html).digest('hex'), 'the HTML page is never handed out as the blob');
    assert.match(warningText(since), /content type|not a manifest|digest mismatch|did not match|verification/i);
    await assertNothingStored([images.get('m-html')!.manifestDigest, l.digest]);
  });

  test('a redirect loop: prompt 404, logged "too many redirects"; a same-origin redirect (the control) is followed', async () => {
    const [looping, moved] = [layer(3), layer(4)];
    rules = [
      { match: (_m, url) => url.includes(looping.digest), respond: (_m, url) => ({ kind: 'respond', status: 307, headers: { location: url } }) },
      { match: (_m, url) => url.startsWith('/v2/library/ub/blobs/') && url.includes(moved.digest), respond: () => ({ kind: 'respond', status: 307, headers: { location: `/storage/${moved.digest}?sig=1` } }) },
      { match: (_m, url) => url.startsWith('/storage/'), respond: () => ({ kind: 'pass', path: `/v2/library/ub/blobs/${moved.digest}` }) },
    ];
    const since = daemon.logs().length;
    const t0 = performance.now();
    const res = await getBlob(looping.digest);
    assert.equal(res.status, 404);
    assert.ok(performance.now() - t0 < 3_000, `prompt (${(performance.now() - t0).toFixed(0)} ms)`);
    assert.match(warningText(since), /too many redirects/);
    assert.ok(up.requestsFor(looping.digest).length <= 3 * 6, `bounded hops: ${up.requestsFor(looping.digest).length}`);
    const ok = await getBlob(moved.digest);
    assert.equal(ok.status, 200);
    assert.equal(ok.digest, moved.digest, 'same-origin redirect followed');
    await assertNothingStored([looping.digest]);
  });

  test('redirects the policy refuses (credentials in the URL, file:, gopher:, a non-http port scheme): prompt 404, no connection, logged', async () => {
    const targets = [`http://user:secret@${recorder.host}/x`, 'file:///etc/passwd', `gopher://${recorder.host}/x`, `ftp://${recorder.host}/x`, 'http://[::1', `https://user@${recorder.host}/`];
    const ls = [layer(5), layer(6), layer(7), layer(8), layer(9), layer(5)];
    const since = daemon.logs().length;
    for (const [i, location] of targets.entries()) {
      const l = ls[i]!;
      rules = [{ match: (_m, url) => url.includes(l.digest), respond: () => ({ kind: 'respond', status: 302, headers: { location } }) }];
      const t0 = performance.now();
      const res = await getBlob(l.digest);
      assert.equal(res.status, 404, location);
      assert.ok(performance.now() - t0 < 3_000, `${location}: prompt`);
    }
    assert.equal(recorder.connections, 0, 'the redirect target was never contacted');
    assert.match(warningText(since), /refusing redirect|unparseable redirect/);
    await assertNothingStored(ls.map((l) => l.digest));
  });

  test('a token endpoint that hangs: 404 within the upstream deadline, logged; other registries unaffected', async () => {
    tokenUp.script = (r) =>
      r.url.startsWith('/v2/library/m-tok/') ? { kind: 'respond', status: 401, headers: { 'www-authenticate': `Bearer realm="${hangingRealm.url}/token",service="hang",scope="repository:library/m-tok:pull"` } } : undefined;
    const since = daemon.logs().length;
    const t0 = performance.now();
    const res = await getManifest('m-tok', 'v1', tokenUp.host);
    const ms = performance.now() - t0;
    assert.equal(res.status, 404);
    assert.ok(ms < 2 * TIMEOUT_MS + 2_000, `answered in ${ms.toFixed(0)} ms (deadline ${TIMEOUT_MS} ms)`);
    assert.ok(hangingRealm.requests.length >= 1, 'the realm was asked');
    assert.match(warningText(since), /token request failed.*(deadline|aborted)/);
    // The main upstream is not held up by it.
    rules = [];
    const other = await getManifest('m-5xx', 'v1');
    assert.equal(other.status, 200);
    hangingRealm.releaseHeld();
  });

  test('5xx answers: a prompt 404 after bounded retries; no hammering', async () => {
    const l = layer(9);
    rules = [
      { match: (_m, url) => url.startsWith('/v2/library/m-stall/manifests/'), respond: () => ({ kind: 'respond', status: 503, body: 'unavailable' }) },
      { match: (_m, url) => url.includes(l.digest), respond: () => ({ kind: 'respond', status: 500, body: 'boom' }) },
    ];
    const t0 = performance.now();
    const [m, b] = await Promise.all([getManifest('m-stall', 'v1'), getBlob(l.digest)]);
    assert.equal(m.status, 404);
    assert.equal(b.status, 404);
    assert.ok(performance.now() - t0 < 5_000, `prompt (${(performance.now() - t0).toFixed(0)} ms)`);
    const attempts = up.requestsFor(l.digest).length;
    assert.ok(attempts >= 2 && attempts <= 8, `retried, boundedly: ${attempts} upstream requests`);
    await assertNothingStored([l.digest]);
  });

  test('429 with Retry-After: the client gets 429 TOOMANYREQUESTS with Retry-After at once; the upstream is not hammered meanwhile', async () => {
    limitedUp.script = (r) => (r.url.startsWith('/v2/library/') ? { kind: 'respond', status: 429, headers: { 'retry-after': '30', 'content-type': 'application/json' }, body: '{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}' } : undefined);
    const first = await getManifest('m-429', 'v1', limitedUp.host);
    assert.equal(first.status, 429);
    assert.deepEqual(ociErrorCodes(first.body), ['TOOMANYREQUESTS']);
    assert.ok(Number(first.headers['retry-after']) > 0, `Retry-After: ${first.headers['retry-after']}`);
    const asked = limitedUp.requests.length;
    const t0 = performance.now();
    for (let i = 0; i < 10; i++) {
      const again = await getManifest('m-429', 'v1', limitedUp.host);
      assert.equal(again.status, 429);
    }
    assert.ok(performance.now() - t0 < 2_000, 'answered from the back-off state, at once');
    assert.equal(limitedUp.requests.filter((r) => r.url !== '/v2/').length, asked - limitedUp.requests.slice(0, asked).filter((r) => r.url === '/v2/').length, 'no request reached the rate-limited upstream during its Retry-After');
  });

  test('stalls: before the headers -> 404 after one deadline; mid-blob once -> resumed, right bytes; mid-blob always -> aborted, not cached', async () => {
    const [beforeHeaders, onceMid, alwaysMid] = [layer(6), layer(7), layer(8)];
    let stalledOnce = false;
    rules = [
      { match: (m, url) => m === 'GET' && url.includes(beforeHeaders.digest), respond: () => ({ kind: 'stall' }) },
      {
        match: (m, url) => m === 'GET' && url.includes(onceMid.digest) && !stalledOnce,
        respond: () => {
          stalledOnce = true;
          return { kind: 'pass-stall', at: 60_000 };
        },
      },
      { match: (m, url) => m === 'GET' && url.includes(alwaysMid.digest), respond: () => ({ kind: 'pass-stall', at: 60_000 }) },
    ];
    const timed = async (l: BuiltLayer): Promise<[Download, number]> => {
      const t0 = performance.now();
      const r = await getBlob(l.digest);
      return [r, performance.now() - t0];
    };
    const [[a, aMs], [b, bMs], [c, cMs]] = await Promise.all([timed(beforeHeaders), timed(onceMid), timed(alwaysMid)]);
    // Each attempt waits at most the deadline; the client is answered or cut off after a bounded number.
    const bound = 3 * TIMEOUT_MS + 3_000;
    assert.equal(a.status, 404, 'stalled before the headers: 404');
    // One deadline, not one per retry (a stalled upstream is not asked again for the same client).
    assert.ok(aMs < TIMEOUT_MS + 2_000, `404 after one deadline: ${aMs.toFixed(0)} ms`);
    assert.equal(b.status, 200);
    assert.equal(b.aborted, false);
    assert.equal(b.digest, onceMid.digest, 'resumed after the stall: the right bytes');
    assert.ok(bMs < bound, `${bMs.toFixed(0)} ms`);
    assertNotSilentlyCorrupt(c, alwaysMid);
    assert.ok(c.aborted, 'stalled every time: the body is cut off, visibly');
    assert.ok(cMs < bound, `no hang: ${cMs.toFixed(0)} ms`);
    up.releaseHeld();
    await assertNothingStored([beforeHeaders.digest, alwaysMid.digest]);
    await waitStored(daemon.dataDir, [onceMid.digest]); // the resumed blob is stored, verified
  });
});
