// The seed against real peers (issue 4), operations side: restarts and crashes, prefetch and the
// admin API, two seed replicas, and an upstream that rate-limits. See seed.test.ts for the rest.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { registryEntry, startPeerpull, type DaemonProcess } from '../fixtures/daemon.ts';
import { getImageLayout, pushImage, type BuiltImage } from '../fixtures/images.ts';
import { startRegistry, type Registry } from '../fixtures/registry.ts';
import { FaultProxy } from '../fixtures/fault-proxy.ts';
import { waitUntil } from '../fixtures/wait-until.ts';
import {
  MB,
  admin,
  assertThroughSeed,
  blobGets,
  blobsOf,
  distinct,
  hasLog,
  headTag,
  pullVia,
  pullsOf,
  sleep,
  stopAll,
  storedBlobs,
  tmpFiles,
  waitForPullLogs,
} from './seed-helpers.ts';

interface ImageEntry {
  image: string;
  tag: string;
  digest: string;
  size: number | null;
  fetchedAt: string;
  lastPulledAt: string | null;
}

describe('seed restarted', () => {
  let reg: Registry;
  let proxy: FaultProxy;
  let seed: DaemonProcess;
  let daemons: DaemonProcess[] = [];
  let keep: BuiltImage;
  let large: BuiltImage;

  before(async () => {
    [reg, keep, large] = await Promise.all([
      startRegistry(),
      getImageLayout({ name: 'seed-e2e-keep', layers: [1 * MB, 4 * MB] }),
      getImageLayout({ name: 'seed-e2e-large', layers: [40 * MB] }),
    ]);
    await pushImage(keep, `${reg.host}/library/keep:v1`);
    await pushImage(large, `${reg.host}/library/large:v1`);
    proxy = await FaultProxy.start(reg.url); // to hold a blob download mid-transfer
    seed = await startPeerpull({ command: 'seed', registries: [`${reg.host}=${proxy.url}`] });
    daemons = await Promise.all(Array.from({ length: 2 }, () => startPeerpull({ registries: [registryEntry(reg)], extraArgs: ['--seed', seed.url] })));
  });

  after(async () => {
    await stopAll([...daemons, seed]);
    await proxy?.close();
    await reg?.stop();
  });

  const listImages = async (): Promise<ImageEntry[]> => {
    const res = await admin<{ images: ImageEntry[] }>(seed.url, 'GET', '/images');
    assert.equal(res.status, 200);
    return res.json.images.sort((a, b) => a.image.localeCompare(b.image));
  };

  test('its cache and tags survive a restart: a new daemon\'s pull causes no upstream request', async () => {
    const [d1, d2] = daemons as [DaemonProcess, DaemonProcess];
    await assertThroughSeed(d1, await pullVia(d1, reg, 'library/keep', 'v1'), keep);
    const before = await listImages();
    const imageBytes = blobsOf(keep).reduce((n, b) => n + b.size, 0);
    assert.deepEqual(
      before.map((i) => [i.image, i.tag, i.digest, i.size]),
      [[`${reg.host}/library/keep`, 'v1', keep.manifestDigest, imageBytes]],
    );
    assert.ok(Date.parse(before[0]!.fetchedAt) > Date.now() - 60_000);

    await seed.stop();
    await seed.restart();
    assert.deepEqual(await listImages(), before, 'GET /api/v1/images lists the same images after the restart');

    reg.clearLog();
    await assertThroughSeed(d2, await pullVia(d2, reg, 'library/keep', 'v1'), keep);
    await reg.flushLog();
    assert.equal(reg.countRequests({ method: 'GET', kind: 'blob' }), 0, 'no upstream blob GET');
    assert.deepEqual(reg.accessLog().map((e) => `${e.method} ${e.uri}`), [], 'no upstream request at all (the tag survived too)');
  });

  test('a download interrupted by a crash leaves no corrupt blob; the restarted seed fetches it again', async () => {
    const [d1, d2] = daemons as [DaemonProcess, DaemonProcess];
    const layer = large.manifests[0]!.layers[0]!;
    const hex = layer.digest.slice('sha256:'.length);
    const hold = proxy.addRule({ pathIncludes: layer.digest, fault: { kind: 'pause', at: 12 * MB }, times: 1 });

    // A daemon pulls; the seed's upstream download stops after 12 MB, and the seed is killed.
    const pulling = pullVia(d1, reg, 'library/large', 'v1').then(
      (r) => r,
      (err: unknown) => err as Error,
    );
    await hold.reached;
    await waitUntil('the seed to write the layer\'s first MBs to tmp/', () => tmpFiles(seed.dataDir).some((f) => f.name.startsWith(hex) && f.size >= 8 * MB));
    await seed.kill9();
    const partial = tmpFiles(seed.dataDir).find((f) => f.name.startsWith(hex));
    assert.ok(partial && partial.size < layer.size, 'the crash left a partial download in tmp/');
    assert.deepEqual(storedBlobs(seed.dataDir).filter((b) => !b.ok), [], 'after the crash: every stored blob hashes to its name');
    assert.ok(!storedBlobs(seed.dataDir).some((b) => b.name === hex), 'the partial layer is not in blobs/');
    await pulling; // the daemon resumes from its upstream or fails: either way it is over
    proxy.reset();

    await seed.restart();
    assert.deepEqual(tmpFiles(seed.dataDir), [], 'after the restart, tmp/ is empty');
    const stored = storedBlobs(seed.dataDir);
    assert.deepEqual(stored.filter((b) => !b.ok), [], 'every stored blob hashes to its name');
    assert.ok(!stored.some((b) => b.name === hex));
    assert.ok(stored.some((b) => b.name === large.manifestDigest.slice(7)), 'content stored before the crash (the manifest) is still there');

    // Pulling again through the seed works and stores a correct copy.
    await assertThroughSeed(d2, await pullVia(d2, reg, 'library/large', 'v1'), large);
    await waitUntil('the seed to store the layer', () => storedBlobs(seed.dataDir).some((b) => b.name === hex));
    const now = storedBlobs(seed.dataDir);
    assert.deepEqual(now.filter((b) => !b.ok), []);
    assert.equal(now.find((b) => b.name === hex)?.size, layer.size);
    assert.deepEqual(tmpFiles(seed.dataDir), []);
  });
});

describe('prefetch and the admin API', () => {
  const TOKEN = 'secret';
  let reg: Registry;
  let proxy: FaultProxy;
  let seed: DaemonProcess;
  let daemon: DaemonProcess;
  let multi: BuiltImage;
  let plain: BuiltImage;

  before(async () => {
    [reg, multi, plain] = await Promise.all([
      startRegistry(),
      getImageLayout({
        name: 'seed-e2e-multi',
        layers: [2 * MB, 6 * MB],
        platforms: [{ os: 'linux', architecture: 'amd64' }, { os: 'linux', architecture: 'arm64' }],
      }),
      getImageLayout({ name: 'seed-e2e-plain', layers: [1 * MB, 8 * MB] }),
    ]);
    await pushImage(multi, `${reg.host}/library/multi:v1`);
    await pushImage(plain, `${reg.host}/library/plain:v1`);
    // Throttled, so the progress endpoint can be seen moving.
    proxy = await FaultProxy.start(reg.url);
    proxy.throttleBytesPerSecond = 20 * MB;
    seed = await startPeerpull({ command: 'seed', registries: [`${reg.host}=${proxy.url}`], extraArgs: ['--admin-token', TOKEN] });
    daemon = await startPeerpull({ registries: [registryEntry(reg)], extraArgs: ['--seed', seed.url] });
  });

  after(async () => {
    await stopAll([daemon, seed]);
    await proxy?.close();
    await reg?.stop();
  });

  interface JobView {
    id: string;
    state: string;
    bytesDone: number;
    bytesTotal: number;
    platforms: string[];
    images: { image: string; state: string; digest?: string; bytesDone: number; bytesTotal: number; blobsDone: number; blobsTotal: number }[];
  }

  test('a prefetch job (2-platform index for linux/amd64 + a plain image) reports monotonic progress to 100 %; then a pull costs no upstream traffic', async () => {
    const amd64 = multi.manifests.findIndex((m) => m.platform.architecture === 'amd64');
    const arm64 = multi.manifests.findIndex((m) => m.platform.architecture === 'arm64');
    const amd64Blobs = blobsOf(multi, amd64);
    const arm64Blobs = blobsOf(multi, arm64);
    const plainBlobs = blobsOf(plain);
    const sum = (bs: { size: number }[]): number => bs.reduce((n, b) => n + b.size, 0);

    reg.clearLog();
    const images = [`${reg.host}/library/multi:v1`, `${reg.host}/library/plain:v1`];
    const started = await admin<JobView>(seed.url, 'POST', '/prefetch', { token: TOKEN, body: { images, platforms: ['linux/amd64'] } });
    assert.equal(started.status, 202, JSON.stringify(started.json));
    const id = started.json.id;
    assert.match(id, /\S/);
    assert.equal(started.headers.get('location'), `/api/v1/prefetch/${id}`);

    const samples: JobView[] = [];
    const deadline = Date.now() + 30_000;
    for (;;) {
      const res = await admin<JobView>(seed.url, 'GET', `/prefetch/${id}`, { token: TOKEN });
      assert.equal(res.status, 200);
      samples.push(res.json);
      if (res.json.state !== 'running') break;
      assert.ok(Date.now() < deadline, 'prefetch did not finish within 30 s');
      await sleep(15);
    }
    for (const [i, s] of samples.entries()) {
      assert.ok(s.bytesDone <= s.bytesTotal, `sample ${i}: ${s.bytesDone} > ${s.bytesTotal}`);
      if (i === 0) continue;
      const prev = samples[i - 1]!;
      assert.ok(s.bytesDone >= prev.bytesDone, `bytesDone went from ${prev.bytesDone} down to ${s.bytesDone}`);
      for (const [j, img] of s.images.entries()) {
        assert.ok(img.bytesDone >= prev.images[j]!.bytesDone, `image ${j}: bytesDone went down`);
      }
    }
    assert.ok(
      samples.some((s) => s.bytesDone > 0 && s.bytesDone < s.bytesTotal),
      `progress was seen between 0 and 100 % (samples: ${samples.map((s) => `${s.bytesDone}/${s.bytesTotal}`).join(' ')})`,
    );
    const last = samples.at(-1)!;
    assert.equal(last.state, 'done', JSON.stringify(last));
    assert.deepEqual(last.platforms, ['linux/amd64']);
    assert.equal(last.bytesTotal, sum(amd64Blobs) + sum(plainBlobs), 'bytesTotal: the amd64 platform and the plain image');
    assert.equal(last.bytesDone, last.bytesTotal);
    assert.deepEqual(
      last.images.map((i) => [i.state, i.digest, i.bytesDone, i.bytesTotal, i.blobsDone, i.blobsTotal]),
      [
        ['done', multi.manifestDigest, sum(amd64Blobs), sum(amd64Blobs), amd64Blobs.length, amd64Blobs.length],
        ['done', plain.manifestDigest, sum(plainBlobs), sum(plainBlobs), plainBlobs.length, plainBlobs.length],
      ],
    );

    await reg.flushLog();
    for (const b of [...amd64Blobs, ...plainBlobs]) assert.equal(blobGets(reg, b.digest), 1, `prefetch fetched ${b.digest} once`);
    for (const b of arm64Blobs) assert.equal(blobGets(reg, b.digest), 0, `arm64 blob ${b.digest} was not fetched`);
    assert.equal(reg.countRequests({ kind: 'manifest', pathIncludes: multi.manifests[arm64]!.digest }), 0, 'nor the arm64 manifest');

    // A daemon pull afterwards: the upstream sees nothing at all.
    reg.clearLog();
    const r1 = await pullVia(daemon, reg, 'library/multi', 'v1');
    assert.equal(r1.imageManifestDigest, multi.manifests[amd64]!.digest);
    await assertThroughSeed(daemon, r1, multi, { manifestIndex: amd64 });
    await assertThroughSeed(daemon, await pullVia(daemon, reg, 'library/plain', 'v1'), plain);
    await reg.flushLog();
    assert.deepEqual(reg.accessLog().map((e) => `${e.method} ${e.uri}`), [], 'zero upstream requests');

    const listed = await admin<{ images: ImageEntry[] }>(seed.url, 'GET', '/images', { token: TOKEN });
    assert.deepEqual(
      listed.json.images.map((i) => [i.image, i.tag, i.digest]).sort(),
      [
        [`${reg.host}/library/multi`, 'v1', multi.manifestDigest],
        [`${reg.host}/library/plain`, 'v1', plain.manifestDigest],
      ],
    );
  });

  test('bad requests get 400 with a JSON error', async () => {
    const ok = `${reg.host}/library/plain:v1`;
    const cases: { what: string; path: string; body?: unknown; rawBody?: string }[] = [
      { what: 'no body fields', path: '/prefetch', body: {} },
      { what: 'no images', path: '/prefetch', body: { images: [] } },
      { what: 'images not a list', path: '/prefetch', body: { images: ok } },
      { what: 'image not a string', path: '/prefetch', body: { images: [42] } },
      { what: 'platform without architecture', path: '/prefetch', body: { images: [ok], platforms: ['linux'] } },
      { what: 'empty platform', path: '/prefetch', body: { images: [ok], platforms: [''] } },
      { what: 'platform with too many parts', path: '/prefetch', body: { images: [ok], platforms: ['linux/amd64/v8/extra'] } },
      { what: 'platforms not a list', path: '/prefetch', body: { images: [ok], platforms: 'linux/amd64' } },
      { what: 'registry not allowlisted', path: '/prefetch', body: { images: ['registry.example.com/library/nginx:1.27'] } },
      { what: 'not an image reference', path: '/prefetch', body: { images: ['UPPER CASE!'] } },
      { what: 'invalid JSON', path: '/prefetch', rawBody: '{"images": [' },
      { what: 'refresh without image', path: '/refresh', body: {} },
      { what: 'refresh of a digest', path: '/refresh', body: { image: `${reg.host}/library/plain@${plain.manifestDigest}` } },
      { what: 'refresh of a registry not allowlisted', path: '/refresh', body: { image: 'registry.example.com/library/nginx:latest' } },
    ];
    for (const c of cases) {
      const res = await admin(seed.url, 'POST', c.path, { token: TOKEN, ...(c.body !== undefined ? { body: c.body } : {}), ...(c.rawBody !== undefined ? { rawBody: c.rawBody } : {}) });
      assert.equal(res.status, 400, `${c.what}: ${res.status} ${JSON.stringify(res.json)}`);
      assert.match(res.contentType, /^application\/json/, c.what);
      assert.equal(typeof res.json.error, 'string', `${c.what}: ${JSON.stringify(res.json)}`);
    }
    const missing = await admin(seed.url, 'GET', '/prefetch/no-such-job', { token: TOKEN });
    assert.equal(missing.status, 404);
    assert.equal(typeof missing.json.error, 'string');
  });

  test('with --admin-token, admin requests without the bearer token get 401; the registry API stays open', async () => {
    const body = { images: [`${reg.host}/library/plain:v1`] };
    const calls: [method: 'GET' | 'POST', path: string, body?: unknown][] = [
      ['POST', '/prefetch', body],
      ['GET', '/prefetch/anything'],
      ['POST', '/refresh', { image: `${reg.host}/library/plain:v1` }],
      ['GET', '/images'],
    ];
    for (const [method, path, b] of calls) {
      for (const token of [undefined, 'wrong', `${TOKEN}x`, TOKEN.slice(0, -1)]) {
        const res = await admin(seed.url, method, path, { ...(b !== undefined ? { body: b } : {}), ...(token !== undefined ? { token } : {}) });
        assert.equal(res.status, 401, `${method} ${path} with token ${String(token)}`);
        assert.match(res.headers.get('www-authenticate') ?? '', /^Bearer/);
        assert.equal(typeof res.json.error, 'string');
      }
    }
    const res = await fetch(`${seed.url}/api/v1/images`, { headers: { authorization: `Basic ${Buffer.from(`x:${TOKEN}`).toString('base64')}` } });
    assert.equal(res.status, 401, 'Basic auth with the token as password is not accepted');
    await res.arrayBuffer();
    assert.equal((await admin(seed.url, 'GET', '/images', { token: TOKEN })).status, 200);
    const head = await headTag(seed.url, 'library/plain', 'v1', reg.host);
    assert.deepEqual([head.status, head.digest], [200, plain.manifestDigest], 'the pull API needs no token');
  });
});

describe('two seeds', () => {
  let reg: Registry;
  let seeds: DaemonProcess[] = [];
  let daemons: DaemonProcess[] = [];
  let many: BuiltImage;
  let other: BuiltImage;

  before(async () => {
    [reg, many, other] = await Promise.all([
      startRegistry(),
      getImageLayout({ name: 'seed-e2e-many', layers: [1 * MB, 2 * MB, 1.5 * MB, 3 * MB, 0.5 * MB, 2.5 * MB, 1 * MB, 2 * MB] }),
      getImageLayout({ name: 'seed-e2e-other', layers: [2 * MB, 1 * MB, 3 * MB, 0.5 * MB, 1.5 * MB] }),
    ]);
    await pushImage(many, `${reg.host}/library/many:v1`);
    await pushImage(other, `${reg.host}/library/other:v1`);
    seeds = await Promise.all([0, 1].map(() => startPeerpull({ command: 'seed', registries: [registryEntry(reg)] })));
    daemons = await Promise.all(
      Array.from({ length: 3 }, () => startPeerpull({ registries: [registryEntry(reg)], extraArgs: ['--seed', seeds[0]!.url, '--seed', seeds[1]!.url] })),
    );
  });

  after(async () => {
    await stopAll([...daemons, ...seeds]);
    await reg?.stop();
  });

  test('3 daemons pull a many-layer image at once: each blob goes upstream once, through one seed', async (t) => {
    reg.clearLog();
    const results = await Promise.all(daemons.map((d) => pullVia(d, reg, 'library/many', 'v1')));
    for (const r of results) assert.equal(r.bySource.upstream ?? 0, 0, JSON.stringify(r.bySource));
    for (const d of daemons) await assertThroughSeed(d, results[daemons.indexOf(d)]!, many);
    await reg.flushLog();

    const blobs = blobsOf(many);
    const perSeed = seeds.map(() => 0);
    for (const b of blobs) {
      assert.equal(blobGets(reg, b.digest), 1, `upstream GETs of ${b.digest}`);
      await waitUntil(`a seed to log 3 GETs of ${b.digest}`, () => seeds.some((s) => pullsOf(s, b.digest).filter((p) => p.method === 'GET').length >= 3), 3_000);
      const through = seeds.map((s) => pullsOf(s, b.digest).filter((p) => p.method === 'GET'));
      const used = through.flatMap((records, i) => (records.length ? [i] : []));
      assert.equal(used.length, 1, `blob ${b.digest} went through seeds ${used.join(', ')}`);
      const records = through[used[0]!]!;
      assert.equal(records.length, 3, 'all three daemons asked that seed');
      assert.ok(records.some((p) => p.source === 'upstream'), 'that seed fetched it from upstream');
      perSeed[used[0]!]!++;
    }
    assert.equal(reg.countRequests({ method: 'GET', kind: 'blob' }), blobs.length);
    // Diagnostic only: rendezvous hashing spreads blobs over both seeds (not asserted: it depends on ports).
    t.diagnostic(`blobs per seed: ${perSeed.join(' / ')}`);
  });

  test('with one seed killed, pulls of another image continue through the other', async () => {
    // Kill the seed the new image's tag maps to, so that every daemon meets the dead seed.
    const probe = await headTag(daemons[0]!.url, 'library/other', 'v1', reg.host);
    assert.deepEqual([probe.status, probe.digest], [200, other.manifestDigest]);
    await waitUntil('a seed to log the tag resolve', () => seeds.some((s) => s.pulls().some((p) => p.repository === 'library/other' && p.reference === 'v1')), 3_000);
    const tagSeed = seeds.findIndex((s) => s.pulls().some((p) => p.repository === 'library/other' && p.reference === 'v1'));
    const dead = seeds[tagSeed]!;
    const alive = seeds[1 - tagSeed]!;
    await dead.kill9();
    reg.clearLog();
    const results = await Promise.all(daemons.map((d) => pullVia(d, reg, 'library/other', 'v1')));
    for (const [i, r] of results.entries()) await assertThroughSeed(daemons[i]!, r, other, { manifestCached: i === 0 });
    const blobs = blobsOf(other);
    await waitForPullLogs(alive, blobs.map((b) => b.digest), 3);
    await reg.flushLog();
    for (const b of blobs) {
      assert.equal(pullsOf(alive, b.digest).filter((p) => p.method === 'GET').length, 3, `every daemon got ${b.digest} from the surviving seed`);
      assert.equal(blobGets(reg, b.digest), 1, `upstream GETs of ${b.digest}`);
    }
    assert.deepEqual(distinct(daemons.map((d) => hasLog(d, 'seed failed; using the next seed'))), [true], 'every daemon met the dead seed and logged the failover');
  });
});

describe('upstream answers 429', () => {
  let reg: Registry;
  let proxy: FaultProxy;
  let seed: DaemonProcess;
  let daemons: DaemonProcess[] = [];
  let img: BuiltImage;

  before(async () => {
    [reg, img] = await Promise.all([startRegistry(), getImageLayout({ name: 'seed-e2e-limited', layers: [1 * MB, 2 * MB] })]);
    await pushImage(img, `${reg.host}/library/limited:v1`);
    proxy = await FaultProxy.start(reg.url);
    // Seed and daemons all reach the registry through the proxy: any request anyone sends shows up there.
    const entry = `${reg.host}=${proxy.url}`;
    seed = await startPeerpull({ command: 'seed', registries: [entry], extraArgs: ['--tag-ttl', '1s'] });
    daemons = await Promise.all(Array.from({ length: 2 }, () => startPeerpull({ registries: [entry], extraArgs: ['--seed', seed.url] })));
  });

  after(async () => {
    await stopAll([...daemons, seed]);
    await proxy?.close();
    await reg?.stop();
  });

  test('after the TTL, pulls by tag are served stale from the seed, and the upstream sees one 429\'d request, no hammering', async () => {
    const [d1, d2] = daemons as [DaemonProcess, DaemonProcess];
    await assertThroughSeed(d1, await pullVia(d1, reg, 'library/limited', 'v1'), img);

    proxy.script = (req) =>
      req.method === 'HEAD' && req.url.includes('/manifests/')
        ? { kind: 'respond', status: 429, headers: { 'content-type': 'application/json', 'retry-after': '30' }, body: JSON.stringify({ errors: [{ code: 'TOOMANYREQUESTS', message: 'rate limited by the test proxy' }] }) }
        : undefined;
    const armed = proxy.requests.length;
    for (const d of [d2, d1, d2]) {
      await sleep(1_100); // past the seed's 1 s TTL each time
      const r = await pullVia(d, reg, 'library/limited', 'v1');
      assert.equal(r.manifestDigest, img.manifestDigest);
      assert.equal(r.bySource.upstream ?? 0, 0, JSON.stringify(r.bySource));
    }
    const stale = await headTag(d2.url, 'library/limited', 'v1', reg.host);
    assert.deepEqual([stale.status, stale.digest], [200, img.manifestDigest]);
    const atSeed = await fetch(`${seed.url}/v2/library/limited/manifests/v1?ns=${encodeURIComponent(reg.host)}`, { method: 'HEAD' });
    assert.equal(atSeed.status, 200);
    assert.ok(Number(atSeed.headers.get('age')) >= 1, `the seed marks its answer stale (Age: ${atSeed.headers.get('age')})`);
    const seen = proxy.requests.slice(armed);
    assert.equal(seen.filter((r) => r.status === 429).length, 1, `429'd requests: ${JSON.stringify(seen)}`);
    assert.deepEqual(seen.map((r) => `${r.method} ${r.url} ${r.status}`), [`HEAD /v2/library/limited/manifests/v1 429`], 'nothing else reached the upstream during the backoff');
    assert.ok(hasLog(seed, 'serving stale tag: every source failed'));
    await waitForPullLogs(d2, blobsOf(img).map((b) => b.digest));
    for (const b of blobsOf(img)) assert.equal(pullsOf(d2, b.digest).find((p) => p.method === 'GET')?.source, 'seed', 'the new daemon got the blobs from the seed');
  });
});
