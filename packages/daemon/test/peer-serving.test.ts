// What a node answers a peer asking for a blob it is still downloading and has no bytes of yet:
// when its bytes come from the seed (it is one of the seed's named recipients), it waits briefly for
// them and serves; when they would come from another peer, it says "not found" at once (two nodes
// streaming a blob from each other would both wait forever).
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { describe, test } from 'node:test';
import { createLogger, type BlobHandle, type BlobResolver, type Digest, type SourceName } from '@peerpull/common';
import { PeerBlobServing } from '../src/peer-transfer.ts';

const logger = createLogger({ level: 'silent', service: 'test' });
const DIGEST = `sha256:${'ab'.repeat(32)}` as Digest;
const BYTES = Buffer.alloc(1000, 7);

/** A blob being fetched from `from`, whose first bytes arrive after `firstBytesAfterMs`. */
function downloading(from: SourceName, firstBytesAfterMs: number): BlobResolver {
  const started = performance.now();
  const available = (): number => (performance.now() - started >= firstBytesAfterMs ? BYTES.length / 2 : 0);
  const handle = (): BlobHandle => ({
    digest: DIGEST,
    size: BYTES.length,
    source: from,
    read: (start = 0) => Readable.from([BYTES.subarray(start, available())]),
    available,
    streamingFrom: () => from,
  });
  return { localOrInflight: async (d: Digest) => (d === DIGEST ? handle() : undefined) } as unknown as BlobResolver;
}

describe('serving a blob this node has no bytes of yet', () => {
  test('fed by the seed: waits for the first bytes, then serves', async () => {
    const serving = new PeerBlobServing({ blobs: downloading('seed', 150), uploadLimit: 4, logger });
    const started = performance.now();
    const answer = await serving.answer({ digest: DIGEST, offset: 0 }, 'peer-a', 'libp2p');
    assert.ok('body' in answer, `answered ${JSON.stringify(answer)}`);
    assert.deepEqual(answer.header, { status: 'ok', size: BYTES.length, complete: false });
    assert.ok(performance.now() - started >= 140);
    answer.body.destroy();
    answer.finish(0, 'aborted');
  });

  test('fed by the seed, but nothing comes within the wait: not found, after about a second (below the requester\'s 2 s deadline)', async () => {
    const serving = new PeerBlobServing({ blobs: downloading('seed', 60_000), uploadLimit: 4, logger });
    const started = performance.now();
    const answer = await serving.answer({ digest: DIGEST, offset: 0 }, 'peer-a', 'libp2p');
    const ms = performance.now() - started;
    assert.deepEqual(answer, { status: 'not-found', message: 'no bytes yet' });
    assert.ok(ms >= 900 && ms < 1_900, `${Math.round(ms)} ms`);
  });

  test('fed by another peer: not found at once', async () => {
    const serving = new PeerBlobServing({ blobs: downloading('peer', 150), uploadLimit: 4, logger });
    const started = performance.now();
    const answer = await serving.answer({ digest: DIGEST, offset: 0 }, 'peer-a', 'libp2p');
    assert.deepEqual(answer, { status: 'not-found', message: 'no bytes yet' });
    assert.ok(performance.now() - started < 100);
  });
});
