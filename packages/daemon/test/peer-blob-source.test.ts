// Who sent the bytes of a blob is kept while its fetch runs (to quarantine them if the bytes do not
// verify) and forgotten once the fetch is over: a node that pulls from peers for weeks does not keep
// one record per blob it ever fetched.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { test } from 'node:test';
import type { PeerId } from '@libp2p/interface';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { BlobResolver, ContentStore, createLogger, MirrorMetrics, OciError, parseRegistryEntry, sha256Digest, type BlobLocator, type BlobSource, type Digest } from '@peerpull/common';
import { SeedBlobSource } from '../src/seed-blob-source.ts';
import { SeedClient } from '../src/seed-client.ts';
import { PeerBlobSource } from '../src/peer-blob-source.ts';
import type { PeerRouting } from '../src/peer-routing.ts';
import type { PeerTransfer } from '../src/peer-transfer.ts';

const logger = createLogger({ level: 'silent', service: 'test' });
const registry = parseRegistryEntry('127.0.0.1:5001=http://127.0.0.1:5001');
const locator = (digest: Digest): BlobLocator => ({ digest, registry, repository: 'library/x' });

/** One peer that holds `blobs`; a body listed in `held` stays open until the test ends it. */
function peerSource(blobs: Map<Digest, Buffer>, held = new Map<Digest, PassThrough>()): PeerBlobSource {
  const peer = { toString: () => '12D3KooWPeerA' } as unknown as PeerId;
  const routing = { findProviders: async (digest: Digest) => (blobs.has(digest) ? [peer] : []) } as unknown as PeerRouting;
  const transfer: PeerTransfer = {
    open: async (_peer, request) => {
      const data = blobs.get(request.digest);
      if (!data) return { status: 'not-found', transport: 'libp2p' };
      const body = held.get(request.digest) ?? Readable.from([data.subarray(request.offset)]);
      return { header: { status: 'ok', size: data.length, complete: true }, body, transport: 'libp2p' };
    },
  };
  return new PeerBlobSource({ transfer, routing, logger, lookupBudgetMs: 100, lastResortLookupMs: 0, connectTimeoutMs: 1_000, idleTimeoutMs: 1_000, quarantineMs: 60_000 });
}

/** A content store in a temp dir for the length of `run`. */
async function withStore(run: (store: ContentStore) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'peerpull-peer-source-'));
  const store = await ContentStore.open({ dir, maxBytes: 1e9, logger });
  try {
    await run(store);
  } finally {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  }
}

async function inflightAtMost(resolver: BlobResolver, n: number): Promise<void> {
  const deadline = Date.now() + 5_000;
  while (resolver.inflight > n && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
}

test('the senders of a blob are forgotten once its fetch ended, and kept while it runs', async () => {
  await withStore(async (store) => {
    const blobs = new Map<Digest, Buffer>();
    for (let i = 0; i < 50; i++) {
      const data = randomBytes(1_000 + i);
      blobs.set(sha256Digest(data), data);
    }
    const slow = randomBytes(4_000);
    const slowDigest = sha256Digest(slow);
    blobs.set(slowDigest, slow);
    const held = new Map([[slowDigest, new PassThrough()]]);
    const source = peerSource(blobs, held);
    const resolver = new BlobResolver({ store, sources: [source], logger });

    const inflight = await resolver.open(locator(slowDigest));
    held.get(slowDigest)!.write(slow.subarray(0, 1_000));
    for (const digest of [...blobs.keys()].filter((d) => d !== slowDigest)) {
      const handle = await resolver.open(locator(digest));
      for await (const _ of handle.read()) void _;
    }
    await inflightAtMost(resolver, 1);
    assert.equal(resolver.inflight, 1, 'only the held blob is still being fetched');

    // Bad bytes reported for a finished fetch blame nobody: nothing was kept about it.
    for (const digest of blobs.keys()) if (digest !== slowDigest) source.reportCorrupt(locator(digest));
    assert.deepEqual(source.quarantinedPeers(), []);
    // The fetch still running keeps its sender, to quarantine it if its bytes do not verify.
    source.reportCorrupt(locator(slowDigest));
    assert.deepEqual(source.quarantinedPeers(), ['12D3KooWPeerA']);

    held.get(slowDigest)!.end(slow.subarray(1_000));
    for await (const _ of inflight.read()) void _;
    await inflightAtMost(resolver, 0); // stored (fsync + rename) before the directory goes
  });
});

/** A DHT in which the one provider of `data` turns up only after `foundAfterMs` (busy, or it just announced). */
function slowDhtSource(data: Buffer, foundAfterMs: number, lastResortLookupMs: number): { source: PeerBlobSource; budgets: number[] } {
  const peer = { toString: () => '12D3KooWPeerA' } as unknown as PeerId;
  const budgets: number[] = [];
  const routing = {
    findProviders: async (_digest: Digest, budgetMs: number) => {
      budgets.push(budgetMs);
      await new Promise((r) => setTimeout(r, Math.min(budgetMs, foundAfterMs)));
      return budgetMs >= foundAfterMs ? [peer] : [];
    },
  } as unknown as PeerRouting;
  const transfer: PeerTransfer = {
    open: async (_peer, request) => ({ header: { status: 'ok', size: data.length, complete: true }, body: Readable.from([data.subarray(request.offset)]), transport: 'libp2p' }),
  };
  const source = new PeerBlobSource({ transfer, routing, logger, lookupBudgetMs: 100, lastResortLookupMs, connectTimeoutMs: 1_000, idleTimeoutMs: 1_000, quarantineMs: 60_000 });
  return { source, budgets };
}

/** The upstream as a blob source: unreachable (throws), or a registry that answers 404 (a miss). */
function upstream(answer: 'unreachable' | 'not-found'): BlobSource {
  return {
    name: 'upstream',
    open: async () => {
      if (answer === 'unreachable') throw new Error('connect ECONNREFUSED 127.0.0.1:5001');
      return undefined;
    },
    size: async () => undefined,
  };
}

test('an offline site: when the seed and the upstream fail, peers are looked for once more, longer, before a 404', async () => {
  await withStore(async (store) => {
    const data = randomBytes(10_000);
    const digest = sha256Digest(data);
    const { source, budgets } = slowDhtSource(data, 500, 1_000);
    const resolver = new BlobResolver({ store, sources: [source, upstream('unreachable')], logger });
    const handle = await resolver.open(locator(digest));
    const chunks: Buffer[] = [];
    for await (const c of handle.read()) chunks.push(c as Buffer);
    assert.equal(sha256Digest(Buffer.concat(chunks)), digest, 'the peer the quick lookup missed served the blob');
    assert.deepEqual(budgets, [100, 1_000], 'one quick lookup, then one last-resort lookup');
    await inflightAtMost(resolver, 0);
  });
});

test('a clean 404 upstream is a fast miss: no last-resort lookup; nor with the last resort turned off (0)', async () => {
  await withStore(async (store) => {
    const data = randomBytes(10_000);
    const digest = sha256Digest(data);
    for (const [answer, lastResortMs] of [['not-found', 1_000], ['unreachable', 0]] as const) {
      const { source, budgets } = slowDhtSource(data, 500, lastResortMs);
      const resolver = new BlobResolver({ store, sources: [source, upstream(answer)], logger });
      const started = performance.now();
      await assert.rejects(resolver.open(locator(digest)), (err: unknown) => err instanceof OciError && err.status === 404);
      assert.ok(performance.now() - started < 400, `a prompt 404 (upstream ${answer}, last resort ${lastResortMs} ms)`);
      assert.deepEqual(budgets, [100], 'only the quick lookup');
    }
  });
});

/** A seed's registry API that answers every blob GET with 404, saying (or not) that its own sources failed. */
async function seedAnswering404(uplinkDown: boolean): Promise<{ url: string; close: () => Promise<void> }> {
  const server = http.createServer((_req, res) => {
    res.writeHead(404, { 'content-type': 'application/json', ...(uplinkDown ? { 'x-peerpull-miss': 'unavailable' } : {}) });
    res.end(JSON.stringify({ errors: [{ code: 'BLOB_UNKNOWN', message: 'unavailable' }] }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, close: () => new Promise((resolve) => server.close(() => resolve())) };
}

/** A port nothing listens on: connections are refused. */
async function deadSeed(): Promise<{ url: string; close: () => Promise<void> }> {
  const server = http.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  await new Promise((resolve) => server.close(resolve));
  return { url, close: async () => undefined };
}

test('with a seed: the last resort runs when the seed is down (and cooling down) or its uplink is down; not after its plain 404', async () => {
  const data = randomBytes(10_000);
  const digest = sha256Digest(data);
  for (const [kind, startSeed, expectServed] of [
    ['down', deadSeed, true],
    ['uplink down', () => seedAnswering404(true), true],
    ['plain 404', () => seedAnswering404(false), false],
  ] as const) {
    // Started here, closed in this case's finally: a failing case must not leave a server keeping the test alive.
    const seed = await startSeed();
    const client = new SeedClient({ seeds: [seed.url], logger, metrics: new MirrorMetrics(), timeoutMs: 500, responseTimeoutMs: 1_000, idleTimeoutMs: 1_000 });
    try {
      // Twice: the second fetch finds the dead seed in its cooldown (not asked at all).
      for (const round of [1, 2]) {
        await withStore(async (store) => {
          const { source, budgets } = slowDhtSource(data, 500, 1_000);
          const resolver = new BlobResolver({ store, sources: [source, new SeedBlobSource(client), upstream('unreachable')], logger });
          if (expectServed) {
            const chunks: Buffer[] = [];
            for await (const c of (await resolver.open(locator(digest))).read()) chunks.push(c as Buffer);
            assert.equal(sha256Digest(Buffer.concat(chunks)), digest, `seed ${kind}, fetch ${round}: served by the peer the quick lookup missed`);
            assert.deepEqual(budgets, [100, 1_000], `seed ${kind}, fetch ${round}`);
            await inflightAtMost(resolver, 0);
          } else {
            await assert.rejects(resolver.open(locator(digest)), (err: unknown) => err instanceof OciError && err.status === 404);
            assert.deepEqual(budgets, [100], `seed ${kind}: the seed said the cluster cannot get it; no second lookup`);
          }
        });
      }
    } finally {
      await client.close();
      await seed.close();
    }
  }
});

test("a node whose sources all failed says so on its 404 (a seed's answer to the nodes behind it)", async () => {
  await withStore(async (store) => {
    const digest = sha256Digest(randomBytes(100));
    for (const [answer, header] of [['unreachable', 'unavailable'], ['not-found', undefined]] as const) {
      const resolver = new BlobResolver({ store, sources: [upstream(answer)], logger });
      await assert.rejects(resolver.open(locator(digest)), (err: unknown) => err instanceof OciError && err.status === 404 && err.headers['x-peerpull-miss'] === header);
    }
  });
});
