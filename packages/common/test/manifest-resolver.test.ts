import { after, afterEach, before, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { pino } from 'pino';
import type { SourceName } from '../src/blob-source.ts';
import { ContentStore } from '../src/content-store.ts';
import { sha256Digest, type Digest } from '../src/digest.ts';
import { ManifestResolver, type TagPolicy } from '../src/manifest-resolver.ts';
import type { ManifestContent, ManifestLocator, ManifestSource, TagResolution } from '../src/manifest-source.ts';
import { OciError } from '../src/oci-error.ts';
import { parseRegistryEntry } from '../src/registry-allowlist.ts';
import { UpstreamError } from '../src/upstream-client.ts';

const logger = pino({ level: 'silent' });
const MEDIA_TYPE = 'application/vnd.oci.image.manifest.v1+json';
const locator: ManifestLocator = { registry: parseRegistryEntry('127.0.0.1:5001=http://127.0.0.1:5001'), repository: 'library/x' };
const TTL = 60_000;
const MAX_STALE = 3_600_000;

function manifest(version: string): Buffer {
  return Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MEDIA_TYPE, config: { digest: sha256Digest(version), size: 1 }, layers: [], annotations: { version } }));
}

/** An in-memory ManifestSource with call counters and switchable failure. */
class FakeSource implements ManifestSource {
  readonly name: SourceName;
  readonly tags = new Map<string, Buffer>();
  readonly manifests = new Map<Digest, Buffer>();
  resolveCalls = 0;
  fetchCalls = 0;
  failWith: Error | undefined;
  delayMs = 0;
  /** Hand over the body with the tag resolution (as a source that must GET to resolve). */
  withBody = false;
  /** Serve these bytes instead of the real ones (a corrupt source). */
  corrupt: Buffer | undefined;
  hang = false;

  constructor(name: SourceName) {
    this.name = name;
  }

  publish(tag: string, body: Buffer): Digest {
    const digest = sha256Digest(body);
    this.tags.set(tag, body);
    this.manifests.set(digest, body);
    return digest;
  }

  async #wait(signal: AbortSignal): Promise<void> {
    if (this.hang) {
      await new Promise((_resolve, reject) => signal.addEventListener('abort', () => reject(signal.reason as Error), { once: true }));
    }
    if (this.delayMs) await sleep(this.delayMs);
    if (this.failWith) throw this.failWith;
  }

  async resolveTag(_locator: ManifestLocator, tag: string, signal: AbortSignal): Promise<TagResolution | undefined> {
    this.resolveCalls++;
    await this.#wait(signal);
    const body = this.tags.get(tag);
    if (!body) return undefined;
    const resolution: TagResolution = { digest: sha256Digest(body), mediaType: MEDIA_TYPE, size: body.length };
    if (this.withBody) resolution.body = this.corrupt ?? body;
    return resolution;
  }

  async fetch(_locator: ManifestLocator, digest: Digest, signal: AbortSignal): Promise<ManifestContent | undefined> {
    this.fetchCalls++;
    await this.#wait(signal);
    const body = this.manifests.get(digest);
    if (!body) return undefined;
    return { digest, mediaType: MEDIA_TYPE, body: this.corrupt ?? body };
  }
}

let root: string;
let store: ContentStore;
let now: number;
let n = 0;

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'peerpull-manifests-'));
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});
beforeEach(async () => {
  store = await ContentStore.open({ dir: join(root, `store-${n++}`), maxBytes: 1e9, logger });
  now = 1_000_000_000;
});
afterEach(async () => {
  await store.close();
});

function resolver(sources: ManifestSource[], policy: Partial<TagPolicy> = {}, sourceTimeoutMs = 2000): ManifestResolver {
  return new ManifestResolver({
    store,
    sources,
    logger,
    tagPolicy: () => ({ ttlMs: TTL, maxStaleMs: MAX_STALE, ...policy }),
    sourceTimeoutMs,
    now: () => now,
  });
}

function assertOciError(status: number, code: string, message?: RegExp) {
  return (err: unknown): boolean => {
    assert.ok(err instanceof OciError, `expected OciError, got ${String(err)}`);
    assert.equal(err.status, status);
    assert.equal(err.code, code);
    if (message) assert.match(err.message, message);
    return true;
  };
}

describe('ManifestResolver by tag', () => {
  test('first pull asks the source and stores; within the TTL no source is asked; after it, one revalidation', async () => {
    const source = new FakeSource('upstream');
    const digest = source.publish('latest', manifest('v1'));
    const r = resolver([source]);

    const first = await r.byTag(locator, 'latest');
    assert.equal(first.digest, digest);
    assert.equal(first.source, 'upstream');
    assert.equal(first.mediaType, MEDIA_TYPE);
    assert.ok(first.body.equals(manifest('v1')));
    assert.equal(source.resolveCalls, 1);
    assert.equal(source.fetchCalls, 1);
    assert.equal(store.has(digest), true);

    now += TTL - 1;
    const cached = await r.byTag(locator, 'latest');
    assert.equal(cached.digest, digest);
    assert.equal(cached.source, 'local');
    assert.equal(cached.staleAgeMs, undefined);
    assert.equal(source.resolveCalls, 1, 'no source call within the TTL');

    now += 1;
    const revalidated = await r.byTag(locator, 'latest');
    assert.equal(revalidated.digest, digest);
    assert.equal(source.resolveCalls, 2, 'asked again once the TTL is over');
    assert.equal(source.fetchCalls, 1, 'the manifest itself is known by digest: not fetched again');
    assert.equal((await store.getTag(ManifestResolver.tagKey(locator, 'latest')))?.validatedAt, now);

    now += TTL - 1;
    await r.byTag(locator, 'latest');
    assert.equal(source.resolveCalls, 2, 'the revalidation restarted the TTL');
  });

  test('a tag that moved upstream resolves to the new digest after the TTL', async () => {
    const source = new FakeSource('upstream');
    const v1 = source.publish('latest', manifest('v1'));
    const r = resolver([source]);
    assert.equal((await r.byTag(locator, 'latest')).digest, v1);
    const v2 = source.publish('latest', manifest('v2'));
    assert.equal((await r.byTag(locator, 'latest')).digest, v1, 'still within the TTL');
    now += TTL;
    const moved = await r.byTag(locator, 'latest');
    assert.equal(moved.digest, v2);
    assert.ok(moved.body.equals(manifest('v2')));
  });

  test('stale-if-error: every source failing within maxStale serves the cached tag with its age', async () => {
    const source = new FakeSource('upstream');
    const digest = source.publish('latest', manifest('v1'));
    const r = resolver([source]);
    await r.byTag(locator, 'latest');
    source.failWith = new UpstreamError('unavailable', locator.registry.host, 'connection refused');
    now += MAX_STALE;
    const stale = await r.byTag(locator, 'latest');
    assert.equal(stale.digest, digest);
    assert.equal(stale.source, 'local');
    assert.equal(stale.staleAgeMs, MAX_STALE);
    assert.ok(stale.body.equals(manifest('v1')));
    assert.equal(source.resolveCalls, 2, 'the source was asked');
  });

  test('beyond maxStale a failing source is OciError 404 MANIFEST_UNKNOWN', async () => {
    const source = new FakeSource('upstream');
    source.publish('latest', manifest('v1'));
    const r = resolver([source]);
    await r.byTag(locator, 'latest');
    source.failWith = new UpstreamError('unavailable', locator.registry.host, 'connection refused');
    now += MAX_STALE + 1;
    await assert.rejects(r.byTag(locator, 'latest'), assertOciError(404, 'MANIFEST_UNKNOWN', /unavailable: connection refused/));
  });

  test('with nothing cached a failing source is 404; a rate-limited one is 429 with Retry-After', async () => {
    const source = new FakeSource('upstream');
    source.publish('latest', manifest('v1'));
    source.failWith = new Error('boom');
    const r = resolver([source]);
    await assert.rejects(r.byTag(locator, 'latest'), assertOciError(404, 'MANIFEST_UNKNOWN'));
    source.failWith = new UpstreamError('rate-limited', locator.registry.host, 'slow down', { status: 429, retryAfterMs: 29_500 });
    await assert.rejects(r.byTag(locator, 'latest'), (err: unknown) => {
      assertOciError(429, 'TOOMANYREQUESTS')(err);
      assert.deepEqual((err as OciError).headers, { 'retry-after': '30' });
      return true;
    });
  });

  test('a tag the source does not have is 404 MANIFEST_UNKNOWN, even when an old mapping is cached', async () => {
    const source = new FakeSource('upstream');
    source.publish('latest', manifest('v1'));
    const r = resolver([source]);
    await assert.rejects(r.byTag(locator, 'nope'), assertOciError(404, 'MANIFEST_UNKNOWN', /manifest unknown/));
    await r.byTag(locator, 'latest');
    source.tags.delete('latest');
    now += TTL;
    await assert.rejects(r.byTag(locator, 'latest'), assertOciError(404, 'MANIFEST_UNKNOWN', /manifest unknown/));
  });

  test('10 concurrent byTag calls share one resolveTag call', async () => {
    const source = new FakeSource('upstream');
    const digest = source.publish('latest', manifest('v1'));
    source.delayMs = 30;
    const r = resolver([source]);
    const results = await Promise.all(Array.from({ length: 10 }, () => r.byTag(locator, 'latest')));
    assert.equal(source.resolveCalls, 1);
    assert.equal(source.fetchCalls, 1);
    for (const result of results) assert.equal(result.digest, digest);

    now += TTL;
    await Promise.all(Array.from({ length: 10 }, () => r.byTag(locator, 'latest')));
    assert.equal(source.resolveCalls, 2, 'one coalesced revalidation');
  });

  test('a source answering too slowly is cut off by the source deadline, and the next source answers', async () => {
    const slow = new FakeSource('seed');
    slow.hang = true;
    const upstream = new FakeSource('upstream');
    const digest = upstream.publish('latest', manifest('v1'));
    const r = resolver([slow, upstream], {}, 50);
    const started = performance.now();
    const result = await r.byTag(locator, 'latest');
    assert.equal(result.digest, digest);
    assert.equal(result.source, 'upstream');
    assert.ok(performance.now() - started < 1000);
  });

  test('a manifest whose bytes do not match the digest is rejected and not stored', async () => {
    const bad = new FakeSource('seed');
    const digest = bad.publish('latest', manifest('v1'));
    bad.corrupt = manifest('evil');
    const r = resolver([bad]);
    await assert.rejects(r.byTag(locator, 'latest'), assertOciError(404, 'MANIFEST_UNKNOWN', /does not match its digest/));
    assert.equal(store.has(digest), false);
    assert.equal(store.has(sha256Digest(manifest('evil'))), false);
    assert.equal(await store.getTag(ManifestResolver.tagKey(locator, 'latest')), undefined);

    // The same when the body comes with the tag resolution.
    bad.withBody = true;
    await assert.rejects(r.byTag(locator, 'latest'), assertOciError(404, 'MANIFEST_UNKNOWN', /does not match its digest/));
    assert.equal(store.has(digest), false);
  });

  test('a corrupt first source falls through to the next one', async () => {
    const bad = new FakeSource('peer');
    bad.publish('latest', manifest('v1'));
    bad.corrupt = manifest('evil');
    bad.withBody = true;
    const good = new FakeSource('upstream');
    const digest = good.publish('latest', manifest('v1'));
    const result = await resolver([bad, good]).byTag(locator, 'latest');
    assert.equal(result.digest, digest);
    assert.ok(result.body.equals(manifest('v1')));
    assert.equal(result.source, 'upstream');
    assert.equal(bad.resolveCalls, 1);
  });

  test('a source answering with an age makes the mapping older', async () => {
    const source = new FakeSource('seed');
    source.publish('latest', manifest('v1'));
    const resolveTag = source.resolveTag.bind(source);
    source.resolveTag = async (...args) => {
      const resolution = await resolveTag(...args);
      return resolution && { ...resolution, ageMs: TTL - 10 };
    };
    const r = resolver([source]);
    await r.byTag(locator, 'latest');
    now += 10;
    await r.byTag(locator, 'latest');
    assert.equal(source.resolveCalls, 2, 'the TTL counts from when the seed validated it');
  });

  test('refreshTag asks the source whatever the TTL', async () => {
    const source = new FakeSource('upstream');
    source.publish('latest', manifest('v1'));
    const r = resolver([source]);
    await r.byTag(locator, 'latest');
    await r.refreshTag(locator, 'latest');
    assert.equal(source.resolveCalls, 2);
  });

  test('a pinned tag resolves to its digest without asking for the tag', async () => {
    const source = new FakeSource('upstream');
    const pinned = source.publish('old', manifest('pinned'));
    source.publish('latest', manifest('v9'));
    const result = await resolver([source], { pinned }).byTag(locator, 'latest');
    assert.equal(result.digest, pinned);
    assert.equal(source.resolveCalls, 0);
  });
});

describe('ManifestResolver by digest', () => {
  test('fetches once, then serves from the store forever; concurrent calls coalesce', async () => {
    const source = new FakeSource('upstream');
    const digest = source.publish('latest', manifest('v1'));
    source.delayMs = 20;
    const r = resolver([source]);
    const results = await Promise.all(Array.from({ length: 10 }, () => r.byDigest(locator, digest)));
    assert.equal(source.fetchCalls, 1);
    for (const result of results) assert.ok(result.body.equals(manifest('v1')));
    now += 10 * MAX_STALE;
    const later = await r.byDigest(locator, digest);
    assert.equal(later.source, 'local');
    assert.equal(later.mediaType, MEDIA_TYPE);
    assert.equal(source.fetchCalls, 1);
  });

  test('unknown everywhere is 404 MANIFEST_UNKNOWN; mismatched bytes are refused', async () => {
    const source = new FakeSource('upstream');
    const r = resolver([source]);
    const digest = sha256Digest(manifest('nowhere'));
    await assert.rejects(r.byDigest(locator, digest), assertOciError(404, 'MANIFEST_UNKNOWN', /manifest unknown/));
    source.manifests.set(digest, manifest('something else'));
    await assert.rejects(r.byDigest(locator, digest), assertOciError(404, 'MANIFEST_UNKNOWN', /does not match its digest/));
    assert.equal(store.has(digest), false);
  });
});
