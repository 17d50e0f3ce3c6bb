// The mirror's Prometheus metrics against a stub upstream that speaks Docker Hub's rate-limit
// headers: upstream requests and 429s by registry, ratelimit-remaining as a gauge, back-off,
// tag resolutions by outcome, cache evictions; and /healthz, /readyz on the metrics listener.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { createLogger, startMirrorService, type Digest, type RunningMirrorService } from '../src/index.ts';

const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: `sha256:${'0'.repeat(64)}`, size: 2 }, layers: [] }));
const manifestDigest = `sha256:${createHash('sha256').update(manifest).digest('hex')}`;
const blobs = [Buffer.alloc(3000, 1), Buffer.alloc(3000, 2)].map((data) => ({ data, digest: `sha256:${createHash('sha256').update(data).digest('hex')}` }));

let upstream: Server;
let host: string;
let mode: 'ok' | '429' = 'ok';
let service: RunningMirrorService;
let dataDir: string;

before(async () => {
  upstream = createServer((req, res) => {
    const url = req.url ?? '';
    if (url === '/v2/') return void res.writeHead(200).end('{}');
    if (mode === '429') {
      return void res.writeHead(429, { 'retry-after': '30', 'ratelimit-limit': '100;w=21600', 'ratelimit-remaining': '0;w=21600', 'content-type': 'application/json' }).end('{"errors":[{"code":"TOOMANYREQUESTS"}]}');
    }
    if (url.includes('/manifests/')) {
      res.writeHead(200, {
        'content-type': 'application/vnd.oci.image.manifest.v1+json',
        'docker-content-digest': manifestDigest,
        'content-length': manifest.length,
        'ratelimit-limit': '100;w=21600',
        'ratelimit-remaining': '76;w=21600',
      });
      return void res.end(req.method === 'HEAD' ? undefined : manifest);
    }
    const blob = blobs.find((b) => url.includes(b.digest));
    if (blob) return void res.writeHead(200, { 'content-length': blob.data.length }).end(req.method === 'HEAD' ? undefined : blob.data);
    res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
  host = `127.0.0.1:${(upstream.address() as { port: number }).port}`;
  dataDir = mkdtempSync(path.join(tmpdir(), 'pp-mirror-metrics-'));
  service = await startMirrorService(
    {
      listen: '127.0.0.1:0',
      metricsListen: '127.0.0.1:0',
      data: dataDir,
      registry: [`${host}=http://${host}`],
      defaultRegistry: host,
      cacheSize: 4000, // room for one of the two blobs: the second evicts the first
      upstreamConnectTimeoutMs: 2_000,
      upstreamTimeoutMs: 5_000,
      upstreamIdleTimeoutMs: 5_000,
    },
    {
      service: 'seed',
      blobSources: (u) => [u],
      manifestSources: (u) => [u],
      tagPolicy: () => ({ ttlMs: 0, maxStaleMs: Number.POSITIVE_INFINITY }),
    },
    createLogger({ level: 'silent', service: 'test' }),
  );
});

after(async () => {
  await service?.close();
  await new Promise((resolve) => upstream?.close(resolve));
  rmSync(dataDir, { recursive: true, force: true });
});

async function scrape(): Promise<string> {
  return (await fetch(`http://${service.metricsAddress}/metrics`)).text();
}

function value(text: string, name: string, labels = ''): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${name}${labels ? `{${labels}}` : ''} `));
  return line === undefined ? undefined : Number(line.split(' ').at(-1));
}

test('upstream requests, rate-limit headers and 429s become metrics; a stale tag is counted as stale', async () => {
  const get = (p: string) => fetch(`http://${service.address}${p}?ns=${host}`);
  assert.equal((await get('/v2/library/app/manifests/v1')).status, 200);
  let text = await scrape();
  assert.ok((value(text, 'peerpull_upstream_requests_total', `registry="${host}",code="200"`) ?? 0) >= 1);
  assert.equal(value(text, 'peerpull_upstream_ratelimit_remaining', `registry="${host}"`), 76);
  assert.equal(value(text, 'peerpull_upstream_ratelimit_limit', `registry="${host}"`), 100);
  assert.equal(value(text, 'peerpull_upstream_backoff_seconds', `registry="${host}"`), 0);
  assert.equal(value(text, 'peerpull_tag_resolutions_total', 'outcome="revalidated"'), 1);

  mode = '429';
  const stale = await get('/v2/library/app/manifests/v1');
  assert.equal(stale.status, 200, 'served from cache while rate-limited');
  assert.ok(stale.headers.get('warning')?.includes('Stale'));
  text = await scrape();
  assert.equal(value(text, 'peerpull_upstream_requests_total', `registry="${host}",code="429"`), 1);
  assert.equal(value(text, 'peerpull_upstream_rate_limited_total', `registry="${host}"`), 1);
  assert.equal(value(text, 'peerpull_upstream_ratelimit_remaining', `registry="${host}"`), 0);
  const backoff = value(text, 'peerpull_upstream_backoff_seconds', `registry="${host}"`) ?? 0;
  assert.ok(backoff > 25 && backoff <= 30, `holding off for Retry-After: ${backoff}`);
  assert.equal(value(text, 'peerpull_tag_resolutions_total', 'outcome="stale"'), 1);

  // While backing off, no request goes out: still stale, no new 429 counted.
  assert.equal((await get('/v2/library/app/manifests/v1')).status, 200);
  text = await scrape();
  assert.equal(value(text, 'peerpull_upstream_requests_total', `registry="${host}",code="429"`), 1);
  assert.equal(value(text, 'peerpull_tag_resolutions_total', 'outcome="stale"'), 2);
  mode = 'ok';
});

test('evictions and cache size are metrics', async () => {
  const get = (p: string) => fetch(`http://${service.address}${p}?ns=${host}`);
  // The 429 back-off from the previous test still holds: let the client forget it.
  for (const state of service.upstream.rateLimits.values()) state.backoffUntil = undefined;
  for (const b of blobs) {
    const res = await get(`/v2/library/app/blobs/${b.digest}`);
    assert.equal(res.status, 200);
    assert.equal(Buffer.from(await res.arrayBuffer()).length, b.data.length);
  }
  await new Promise((r) => setTimeout(r, 200)); // eviction runs after the second blob is stored
  const text = await scrape();
  // The cached manifest and the first blob (least recently used) made room for the second blob.
  assert.equal(value(text, 'peerpull_cache_evictions_total'), 2);
  assert.equal(service.store.has(blobs[0]!.digest as Digest), false);
  assert.equal(value(text, 'peerpull_cache_max_bytes'), 4000);
  assert.ok((value(text, 'peerpull_cache_bytes') ?? 0) <= 4000);
  assert.equal(value(text, 'peerpull_build_info', 'version="0.1.0",service="seed"'), 1);
});

test('/healthz and /readyz on the metrics listener', async () => {
  const base = `http://${service.metricsAddress}`;
  assert.deepEqual(await (await fetch(`${base}/healthz`)).json(), { status: 'ok' });
  const ready = await fetch(`${base}/readyz`);
  assert.equal(ready.status, 200);
  assert.deepEqual(await ready.json(), { status: 'ready' });
  assert.equal(value(await scrape(), 'peerpull_ready'), 1);
});
