import { after, afterEach, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { setImmediate as tick } from 'node:timers/promises';
import { pino } from 'pino';
import { DigestMismatchError } from '../src/blob-ingest.ts';
import { ContentStore } from '../src/content-store.ts';
import { sha256Digest } from '../src/digest.ts';

const logger = pino({ level: 'silent' });
const DATA = randomBytes(300_000);
const DIGEST = sha256Digest(DATA);

let root: string;
let store: ContentStore;
let n = 0;

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'peerpull-ingest-'));
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});

async function freshStore(): Promise<ContentStore> {
  store = await ContentStore.open({ dir: join(root, `store-${n++}`), maxBytes: 1e9, logger });
  return store;
}

afterEach(async () => {
  await store?.close();
});

/** Collects a stream; resolves with the bytes or the error it ended with (and what arrived before). */
function collect(stream: Readable): Promise<{ data: Buffer; error?: Error }> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    stream.on('data', (chunk: Buffer) => chunks.push(chunk));
    stream.on('end', () => resolve({ data: Buffer.concat(chunks) }));
    stream.on('error', (error) => resolve({ data: Buffer.concat(chunks), error }));
  });
}

/** Lets readers catch up with what has been written so far. */
async function settle(): Promise<void> {
  for (let i = 0; i < 20; i++) await tick();
}

async function writeInChunks(ingest: { write(chunk: Uint8Array, source: string): Promise<void> }, data: Buffer, from: number, to: number, size = 50_000): Promise<void> {
  for (let i = from; i < to; i += size) await ingest.write(data.subarray(i, Math.min(i + size, to)), 'test');
}

describe('BlobIngest', () => {
  for (const announced of [true, false]) {
    test(`readers created before any byte and midway get the full blob (size ${announced ? 'known' : 'unknown'})`, async () => {
      const s = await freshStore();
      const ingest = await s.createIngest(DIGEST, { kind: 'blob' });
      if (announced) ingest.setSize(DATA.length);
      const early = collect(ingest.createReader());
      await writeInChunks(ingest, DATA, 0, 150_000);
      await settle();
      const midway = collect(ingest.createReader());
      const midwayTail = collect(ingest.createReader(200_000));
      await writeInChunks(ingest, DATA, 150_000, DATA.length);
      assert.equal(ingest.written, DATA.length);
      assert.equal(s.has(DIGEST), false, 'not visible before verification');
      await ingest.complete();
      await ingest.done();
      assert.equal(ingest.state, 'complete');
      const [a, b, c] = await Promise.all([early, midway, midwayTail]);
      assert.equal(a.error, undefined);
      assert.ok(a.data.equals(DATA), 'early reader');
      assert.ok(b.data.equals(DATA), 'midway reader');
      assert.ok(c.data.equals(DATA.subarray(200_000)), 'midway reader from an offset');
      assert.equal(s.has(DIGEST), true);
      assert.equal(s.stat(DIGEST)?.size, DATA.length);
      assert.deepEqual(ingest.bytesBySource, new Map([['test', DATA.length]]));
    });
  }

  test('a range reader of an in-progress blob gets exactly its range, before the blob completes', async () => {
    const s = await freshStore();
    const ingest = await s.createIngest(DIGEST, { kind: 'blob' });
    ingest.setSize(DATA.length);
    const range = collect(ingest.createReader(100_000, 120_000 - 1));
    await writeInChunks(ingest, DATA, 0, 130_000, 7_000);
    const got = await range; // resolves although the ingest is still writing
    assert.equal(ingest.state, 'writing');
    assert.ok(got.data.equals(DATA.subarray(100_000, 120_000)));
    const tail = collect(ingest.createReader(DATA.length - 10, DATA.length - 1));
    await writeInChunks(ingest, DATA, 130_000, DATA.length);
    await ingest.complete();
    assert.ok((await tail).data.equals(DATA.subarray(DATA.length - 10)));
  });

  test('digest mismatch: the ingest fails, readers error, the temp file is gone, has() stays false', async () => {
    const s = await freshStore();
    const wrong = Buffer.from(DATA);
    wrong[1234] = (wrong[1234] ?? 0) ^ 0xff;
    const ingest = await s.createIngest(DIGEST, { kind: 'blob' });
    ingest.setSize(wrong.length);
    const early = collect(ingest.createReader());
    await writeInChunks(ingest, wrong, 0, 100_000);
    await settle();
    const midway = collect(ingest.createReader());
    await writeInChunks(ingest, wrong, 100_000, wrong.length);
    await settle(); // readers have consumed every byte they are allowed to see
    assert.ok(existsSync(ingest.tempPath));
    await ingest.complete();

    assert.equal(ingest.state, 'failed');
    assert.ok(ingest.error instanceof DigestMismatchError, String(ingest.error));
    await assert.rejects(ingest.done(), DigestMismatchError);
    for (const result of await Promise.all([early, midway])) {
      assert.ok(result.error instanceof DigestMismatchError, 'a reader must error, not end cleanly with bad bytes');
      assert.ok(result.data.length < wrong.length, 'the final byte is never handed out unverified');
    }
    assert.equal(existsSync(ingest.tempPath), false);
    assert.deepEqual(await readdir(join(s.dir, 'tmp')), []);
    assert.equal(s.has(DIGEST), false);
    // A reader created after the failure errors too (it never ends cleanly).
    assert.ok((await collect(ingest.createReader())).error instanceof Error);
  });

  test('a truncated blob fails', async () => {
    const s = await freshStore();
    const ingest = await s.createIngest(DIGEST, { kind: 'blob' });
    ingest.setSize(DATA.length);
    const reader = collect(ingest.createReader());
    await ingest.write(DATA.subarray(0, 1000), 'test');
    await ingest.complete();
    assert.equal(ingest.state, 'failed');
    assert.match(ingest.error?.message ?? '', /truncated .* 1000 of 300000 bytes/);
    assert.match((await reader).error?.message ?? '', /truncated/);
    assert.equal(s.has(DIGEST), false);
  });

  test('sizes are enforced: a second, different size and bytes beyond the size throw', async () => {
    const s = await freshStore();
    const ingest = await s.createIngest(DIGEST, { kind: 'blob' });
    ingest.setSize(10);
    ingest.setSize(10);
    assert.throws(() => ingest.setSize(11), /size mismatch .*11 announced, 10 expected/);
    await assert.rejects(ingest.write(Buffer.alloc(11), 'test'), /too many bytes/);
    assert.equal(ingest.written, 0);
    await ingest.fail(new Error('test over'));
    await assert.rejects(ingest.write(Buffer.alloc(1), 'test'), /is failed/);
  });

  test('ready() waits for a size or a byte, and rejects when the ingest fails before any byte', async () => {
    const s = await freshStore();
    const a = await s.createIngest(DIGEST, { kind: 'blob' });
    let readyA = false;
    const pA = a.ready().then(() => (readyA = true));
    await settle();
    assert.equal(readyA, false);
    a.setSize(DATA.length);
    await pA;

    const b = await s.createIngest(DIGEST, { kind: 'blob' });
    const pB = assert.rejects(b.ready(), /no source has it/);
    await b.fail(new Error('no source has it'));
    await pB;
    await a.fail(new Error('cleanup'));
  });
});
