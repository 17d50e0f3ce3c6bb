import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { Level } from 'level';
import { pino } from 'pino';
import { DigestMismatchError } from '../src/blob-ingest.ts';
import { ContentStore, type ContentInfo } from '../src/content-store.ts';
import { sha256Digest, type Digest } from '../src/digest.ts';

const logger = pino({ level: 'silent' });

let root: string;
let n = 0;

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'peerpull-store-'));
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});

function newDir(): string {
  return join(root, `store-${n++}`);
}

function blob(size: number): { data: Buffer; digest: Digest } {
  const data = randomBytes(size);
  return { data, digest: sha256Digest(data) };
}

async function readStream(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

async function waitFor(condition: () => boolean, timeoutMs = 1000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) assert.fail('condition not reached in time');
    await sleep(2);
  }
}

/** Opens the store's LevelDB directly, as a crash (or an operator) would leave it. */
async function withMeta<T>(dir: string, fn: (db: Level<string, string>) => Promise<T>): Promise<T> {
  const db = new Level<string, string>(join(dir, 'meta'));
  await db.open();
  try {
    return await fn(db);
  } finally {
    await db.close();
  }
}

describe('ContentStore', () => {
  test('putBuffer stores verified content; stat, readAll and ranged openRead return it', async () => {
    const store = await ContentStore.open({ dir: newDir(), maxBytes: 1e9, logger });
    try {
      const { data, digest } = blob(5000);
      const added: ContentInfo[] = [];
      store.on('added', (info: ContentInfo) => added.push(info));
      await store.putBuffer(digest, data, { kind: 'manifest', mediaType: 'application/vnd.oci.image.manifest.v1+json' });
      assert.equal(store.has(digest), true);
      assert.equal(store.stat(digest)?.size, 5000);
      assert.equal(store.stat(digest)?.kind, 'manifest');
      assert.equal(store.stat(digest)?.mediaType, 'application/vnd.oci.image.manifest.v1+json');
      assert.equal(store.totalBytes, 5000);
      assert.equal(store.entries, 1);
      assert.equal(added.length, 1);
      assert.ok((await store.readAll(digest)).equals(data));
      assert.ok((await readStream(store.openRead(digest))).equals(data));
      assert.ok((await readStream(store.openRead(digest, 100, 199))).equals(data.subarray(100, 200)));
      assert.ok(existsSync(store.blobPath(digest)));
      assert.deepEqual(await readdir(join(store.dir, 'tmp')), []);
      // Storing the same content again is a no-op.
      await store.putBuffer(digest, data, { kind: 'manifest' });
      assert.equal(store.totalBytes, 5000);
      assert.equal(added.length, 1);
    } finally {
      await store.close();
    }
  });

  test('putBuffer rejects bytes that do not match the digest, storing nothing', async () => {
    const store = await ContentStore.open({ dir: newDir(), maxBytes: 1e9, logger });
    try {
      const { digest } = blob(100);
      await assert.rejects(store.putBuffer(digest, Buffer.from('something else'), { kind: 'blob' }), DigestMismatchError);
      assert.equal(store.has(digest), false);
      assert.equal(store.totalBytes, 0);
      assert.equal(existsSync(store.blobPath(digest)), false);
      assert.deepEqual(await readdir(join(store.dir, 'tmp')), []);
    } finally {
      await store.close();
    }
  });

  test('openRead and readAll of unknown content throw', async () => {
    const store = await ContentStore.open({ dir: newDir(), maxBytes: 1e9, logger });
    try {
      const { digest } = blob(10);
      assert.throws(() => store.openRead(digest), /not in the store/);
      await assert.rejects(store.readAll(digest), /not in the store/);
    } finally {
      await store.close();
    }
  });

  test('a blob whose file vanished is dropped from the index on read', async () => {
    const store = await ContentStore.open({ dir: newDir(), maxBytes: 1e9, logger });
    try {
      const { data, digest } = blob(100);
      await store.putBuffer(digest, data, { kind: 'blob' });
      await unlink(store.blobPath(digest));
      await assert.rejects(store.readAll(digest), { code: 'ENOENT' });
      assert.equal(store.has(digest), false);
      assert.equal(store.totalBytes, 0);
    } finally {
      await store.close();
    }
  });

  test('small content read once is served from memory after, and never after it was removed', async () => {
    const store = await ContentStore.open({ dir: newDir(), maxBytes: 1e9, logger });
    try {
      const { data, digest } = blob(1000);
      await store.putBuffer(digest, data, { kind: 'blob' });
      const read = async (start?: number, end?: number): Promise<Buffer> => Buffer.concat(await store.openRead(digest, start, end).toArray());
      assert.deepEqual(await read(), data, 'first read: from the file');
      await new Promise((r) => setTimeout(r, 200)); // the copy into memory happens in the background
      await unlink(store.blobPath(digest)); // a read from the file would fail now
      assert.deepEqual(await read(), data, 'served from memory: the file is gone');
      assert.deepEqual(await read(10, 19), data.subarray(10, 20), 'ranges too');
      await store.remove(digest, 'test');
      assert.throws(() => store.openRead(digest), /not in the store/);
    } finally {
      await store.close();
    }
  });

  test('remove deletes file and record and emits removed', async () => {
    const dir = newDir();
    const store = await ContentStore.open({ dir, maxBytes: 1e9, logger });
    const { data, digest } = blob(100);
    try {
      await store.putBuffer(digest, data, { kind: 'blob' });
      const removed: string[] = [];
      store.on('removed', (_info: ContentInfo, reason: string) => removed.push(reason));
      assert.equal(await store.remove(digest, 'test'), true);
      assert.equal(await store.remove(digest, 'test'), false);
      assert.deepEqual(removed, ['test']);
      assert.equal(store.has(digest), false);
      assert.equal(existsSync(store.blobPath(digest)), false);
    } finally {
      await store.close();
    }
    await withMeta(dir, async (db) => assert.equal(await db.get(`c!${digest}`), undefined));
  });

  test('reopening after a crash: tmp/ emptied, files without records adopted, records without files dropped', async () => {
    const dir = newDir();
    const kept = blob(1000);
    const unrecorded = blob(2000);
    const fileless = blob(3000);
    const resized = blob(500);
    let store = await ContentStore.open({ dir, maxBytes: 1e9, logger });
    await store.putBuffer(kept.digest, kept.data, { kind: 'manifest', mediaType: 'application/vnd.oci.image.index.v1+json' });
    await store.putBuffer(unrecorded.digest, unrecorded.data, { kind: 'blob' });
    await store.putBuffer(fileless.digest, fileless.data, { kind: 'blob' });
    await store.putBuffer(resized.digest, resized.data, { kind: 'blob' });
    const filelessPath = store.blobPath(fileless.digest);
    await store.close();

    // Simulate a crash: a half-written temp file, a blob renamed into place whose record was
    // never written, a record whose file is gone, and a record with the wrong size.
    await writeFile(join(dir, 'tmp', 'deadbeef.partial'), 'half a blob');
    await mkdir(join(dir, 'tmp', 'nested'), { recursive: true });
    await unlink(filelessPath);
    await withMeta(dir, async (db) => {
      await db.del(`c!${unrecorded.digest}`);
      const info = JSON.parse((await db.get(`c!${resized.digest}`)) ?? '{}') as ContentInfo;
      await db.put(`c!${resized.digest}`, JSON.stringify({ ...info, size: 999_999 }));
      const ghost = blob(10).digest;
      await db.put(`c!${ghost}`, JSON.stringify({ digest: ghost, size: 10, kind: 'blob', createdAt: 0, lastAccess: 0 }));
    });

    store = await ContentStore.open({ dir, maxBytes: 1e9, logger });
    try {
      assert.deepEqual(await readdir(join(dir, 'tmp')), [], 'tmp/ is emptied');
      assert.equal(store.has(kept.digest), true);
      assert.equal(store.stat(kept.digest)?.mediaType, 'application/vnd.oci.image.index.v1+json', 'intact records are kept as they were');
      assert.equal(store.has(unrecorded.digest), true, 'a verified file is adopted');
      assert.equal(store.stat(unrecorded.digest)?.size, 2000);
      assert.equal(store.has(fileless.digest), false, 'a record without a file is dropped');
      assert.equal(store.stat(resized.digest)?.size, 500, 'the file size wins over a wrong record');
      assert.equal(store.entries, 3);
      assert.equal(store.totalBytes, 1000 + 2000 + 500);
      assert.ok((await store.readAll(unrecorded.digest)).equals(unrecorded.data));
    } finally {
      await store.close();
    }
    await withMeta(dir, async (db) => {
      const keys: string[] = [];
      for await (const key of db.keys({ gt: 'c!', lt: 'c~' })) keys.push(key.slice(2));
      assert.deepEqual(keys.sort(), [kept.digest, unrecorded.digest, resized.digest].sort(), 'the index on disk matches the files');
      assert.equal((JSON.parse((await db.get(`c!${resized.digest}`)) ?? '{}') as ContentInfo).size, 500);
    });
  });

  test('LRU eviction removes the least recently read first', async () => {
    const store = await ContentStore.open({ dir: newDir(), maxBytes: 3000, logger });
    try {
      const [a, b, c, d] = [blob(1000), blob(1000), blob(1000), blob(1000)];
      for (const x of [a, b, c]) {
        await store.putBuffer(x.digest, x.data, { kind: 'blob' });
        await sleep(5);
      }
      await store.readAll(a.digest); // a is now the most recently used; b the least
      await sleep(5);
      assert.equal(await store.evict(), 0, 'nothing to do within the limit');
      await store.putBuffer(d.digest, d.data, { kind: 'blob' });
      await store.evict();
      assert.equal(store.has(b.digest), false, 'least recently used goes first');
      assert.equal(store.has(a.digest), true, 'a read refreshes a blob');
      assert.equal(store.has(c.digest), true);
      assert.equal(store.has(d.digest), true);
      assert.equal(store.totalBytes, 3000);
      await waitFor(() => store.evictions === 1); // the eviction started by the write finishes in the background
      assert.equal(existsSync(store.blobPath(b.digest)), false);
    } finally {
      await store.close();
    }
  });

  test('eviction never removes a blob with an open read stream', async () => {
    const store = await ContentStore.open({ dir: newDir(), maxBytes: 2000, logger });
    try {
      const [a, b, c] = [blob(1000), blob(1000), blob(1000)];
      await store.putBuffer(a.digest, a.data, { kind: 'blob' });
      await sleep(5);
      await store.putBuffer(b.digest, b.data, { kind: 'blob' });
      await sleep(5);
      const reading = store.openRead(a.digest, 0, 9); // leased until closed; its read makes a the newest...
      await sleep(5);
      await store.readAll(b.digest); // ...so make b newer again: a is the LRU candidate but leased
      await sleep(5);
      await store.putBuffer(c.digest, c.data, { kind: 'blob' });
      await store.evict();
      assert.equal(store.has(a.digest), true, 'the leased blob survives although least recently used');
      assert.equal(store.has(b.digest), false);
      assert.equal(store.has(c.digest), true);

      // With a and c both being read, a new blob over the limit is the only thing eviction may
      // take (right after it is written it is protected, so the store goes over its limit).
      const readingC = store.openRead(c.digest);
      const e = blob(1000);
      await store.putBuffer(e.digest, e.data, { kind: 'blob' });
      assert.equal(store.has(e.digest), true);
      assert.equal(store.totalBytes, 3000);
      await store.evict();
      assert.equal(store.has(a.digest), true);
      assert.equal(store.has(c.digest), true);
      assert.equal(store.has(e.digest), false);

      // Once the streams close, the leases are gone and the least recently used goes.
      assert.ok((await readStream(reading)).equals(a.data.subarray(0, 10)));
      await waitFor(() => reading.closed);
      readingC.destroy();
      await new Promise((resolve) => readingC.once('close', resolve));
      const f = blob(1000);
      await store.putBuffer(f.digest, f.data, { kind: 'blob' });
      await store.evict();
      assert.equal(store.totalBytes, 2000);
      assert.equal(store.has(a.digest), false, 'a is the least recently used once released');
      assert.equal(store.has(c.digest), true);
      assert.equal(store.has(f.digest), true);
    } finally {
      await store.close();
    }
  });

  test('access times survive a restart', async () => {
    const dir = newDir();
    const [a, b] = [blob(100), blob(100)];
    let store = await ContentStore.open({ dir, maxBytes: 1e9, logger });
    await store.putBuffer(a.digest, a.data, { kind: 'blob' });
    await store.putBuffer(b.digest, b.data, { kind: 'blob' });
    await sleep(5);
    await store.readAll(a.digest);
    const touched = store.stat(a.digest)?.lastAccess;
    await store.close();
    store = await ContentStore.open({ dir, maxBytes: 1e9, logger });
    try {
      assert.equal(store.stat(a.digest)?.lastAccess, touched);
      assert.ok((store.stat(b.digest)?.lastAccess ?? 0) < (touched ?? 0));
    } finally {
      await store.close();
    }
  });

  test('tags: put, get, list, delete, and they survive a restart', async () => {
    const dir = newDir();
    const digest = blob(10).digest;
    let store = await ContentStore.open({ dir, maxBytes: 1e9, logger });
    const record = { digest, mediaType: 'application/vnd.oci.image.index.v1+json', size: 10, validatedAt: 1234 };
    assert.equal(await store.getTag('docker.io/library/nginx:latest'), undefined);
    await store.putTag('docker.io/library/nginx:latest', record);
    await store.putTag('127.0.0.1:5001/a/b:v1', { ...record, validatedAt: 5 });
    const { data, digest: contentDigest } = blob(10); // content records must not show up as tags
    await store.putBuffer(contentDigest, data, { kind: 'blob' });
    assert.deepEqual(await store.getTag('docker.io/library/nginx:latest'), record);
    await store.close();

    store = await ContentStore.open({ dir, maxBytes: 1e9, logger });
    try {
      const tags = await store.listTags();
      assert.deepEqual(tags.map((t) => t.key).sort(), ['127.0.0.1:5001/a/b:v1', 'docker.io/library/nginx:latest']);
      assert.deepEqual(tags.find((t) => t.key === 'docker.io/library/nginx:latest')?.record, record);
      await store.putTag('docker.io/library/nginx:latest', { ...record, validatedAt: 9999 });
      assert.equal((await store.getTag('docker.io/library/nginx:latest'))?.validatedAt, 9999);
      await store.deleteTag('127.0.0.1:5001/a/b:v1');
      assert.equal(await store.getTag('127.0.0.1:5001/a/b:v1'), undefined);
      assert.equal((await store.listTags()).length, 1);
    } finally {
      await store.close();
    }
  });
});
