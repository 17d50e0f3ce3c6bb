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
import { BlobResolver, ContentStore, createLogger, parseRegistryEntry, sha256Digest, type BlobLocator, type Digest } from '@peerpull/common';
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
  return new PeerBlobSource({ transfer, routing, logger, lookupBudgetMs: 100, connectTimeoutMs: 1_000, idleTimeoutMs: 1_000, quarantineMs: 60_000 });
}

async function inflightAtMost(resolver: BlobResolver, n: number): Promise<void> {
  const deadline = Date.now() + 5_000;
  while (resolver.inflight > n && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
}

test('the senders of a blob are forgotten once its fetch ended, and kept while it runs', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'peerpull-peer-source-'));
  const store = await ContentStore.open({ dir, maxBytes: 1e9, logger });
  try {
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
  } finally {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  }
});
