import { after, afterEach, before, beforeEach, describe, mock, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { setImmediate as tick, setTimeout as sleep } from 'node:timers/promises';
import { pino } from 'pino';
import { BlobResolver } from '../src/blob-resolver.ts';
import { SourceBusyError, type BlobLocator, type BlobSource, type OpenOptions, type SourceBody, type SourceName } from '../src/blob-source.ts';
import { ContentStore } from '../src/content-store.ts';
import { sha256Digest } from '../src/digest.ts';
import { OciError } from '../src/oci-error.ts';
import { parseRegistryEntry } from '../src/registry-allowlist.ts';

const logger = pino({ level: 'silent' });
const CHUNK = 16 * 1024;
const DATA = randomBytes(40 * CHUNK + 123);
const DIGEST = sha256Digest(DATA);
const locator: BlobLocator = { digest: DIGEST, registry: parseRegistryEntry('127.0.0.1:5001=http://127.0.0.1:5001'), repository: 'library/x' };

/** An in-memory BlobSource: records the offsets it was asked for, and can break, lie or ignore offsets. */
class FakeBlobSource implements BlobSource {
  readonly name: SourceName;
  data: Buffer | undefined;
  readonly opens: number[] = [];
  /** Break the stream (as a reset connection would) after sending this many bytes. */
  breakAfter: number | undefined;
  /** Answer every request from byte 0, as a server that ignores Range. */
  ignoreOffset = false;
  /** Announce this size instead of the real one. */
  announcedSize: number | undefined;
  /** Throw from open() instead of answering. */
  failWith: Error | undefined;
  /** Make the body error when destroyed before its end, as undici's response bodies do. */
  strictBody = false;

  constructor(name: SourceName, data?: Buffer) {
    this.name = name;
    this.data = data;
  }

  #has(locator: BlobLocator): boolean {
    return this.data !== undefined && locator.digest === DIGEST;
  }

  async open(locator: BlobLocator, offset: number, signal: AbortSignal): Promise<SourceBody | undefined> {
    this.opens.push(offset);
    await tick();
    if (this.failWith) throw this.failWith;
    const data = this.data;
    if (!data || !this.#has(locator)) return undefined;
    const start = this.ignoreOffset ? 0 : offset;
    const breakAfter = this.breakAfter;
    async function* chunks(): AsyncGenerator<Buffer> {
      let sent = 0;
      for (let i = start; i < data!.length; i += CHUNK) {
        if (signal.aborted) throw new Error('aborted');
        const chunk = data!.subarray(i, Math.min(i + CHUNK, data!.length));
        if (breakAfter !== undefined && sent + chunk.length > breakAfter) throw new Error('connection reset by peer');
        sent += chunk.length;
        await tick(); // let readers interleave with the transfer
        yield chunk;
      }
    }
    const body = this.strictBody
      ? new Readable({
          read() {},
          destroy(err, callback) {
            callback(err ?? (this.readableEnded ? null : new Error('Request aborted')));
          },
        })
      : Readable.from(chunks(), { objectMode: false });
    return { size: this.announcedSize ?? data.length, offset: start, body };
  }

  async size(locator: BlobLocator): Promise<number | undefined> {
    return this.#has(locator) ? this.data?.length : undefined;
  }
}

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

async function waitFor(condition: () => boolean, timeoutMs = 2000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) assert.fail('condition not reached in time');
    await sleep(2);
  }
}

let root: string;
let store: ContentStore;
let n = 0;

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'peerpull-blobs-'));
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});
beforeEach(async () => {
  store = await ContentStore.open({ dir: join(root, `store-${n++}`), maxBytes: 1e9, logger });
});
afterEach(async () => {
  await store.close();
});

function resolver(sources: BlobSource[], attemptsPerSource = 1): BlobResolver {
  return new BlobResolver({ store, sources, logger, attemptsPerSource });
}

describe('BlobResolver', () => {
  test('20 concurrent opens of one digest: one source.open, every reader gets the right bytes', async () => {
    const source = new FakeBlobSource('upstream', DATA);
    const r = resolver([source]);
    const handles = await Promise.all(Array.from({ length: 20 }, () => r.open(locator)));
    assert.equal(source.opens.length, 1);
    assert.deepEqual(source.opens, [0]);
    for (const handle of handles) {
      assert.equal(handle.digest, DIGEST);
      assert.equal(handle.size, DATA.length);
      assert.equal(handle.source, 'upstream');
    }
    const bodies = await Promise.all(handles.map((h) => readAll(h.read())));
    for (const body of bodies) assert.ok(body.equals(DATA));
    await waitFor(() => r.inflight === 0); // readers get the last byte once verified, before the fsync + rename
    assert.equal(store.has(DIGEST), true);

    // Stored now: served locally without asking anyone.
    const local = await r.open(locator);
    assert.equal(local.source, 'local');
    assert.ok((await readAll(local.read(10, 19))).equals(DATA.subarray(10, 20)));
    assert.equal(source.opens.length, 1);
  });

  test('readers of ranges of an in-flight blob get exactly their bytes', async () => {
    const r = resolver([new FakeBlobSource('upstream', DATA)]);
    const handle = await r.open(locator);
    const [head, middle, tail] = await Promise.all([
      readAll(handle.read(0, 99)),
      readAll(handle.read(5 * CHUNK + 7, 9 * CHUNK)),
      readAll(handle.read(DATA.length - 50)),
    ]);
    assert.ok(head.equals(DATA.subarray(0, 100)));
    assert.ok(middle.equals(DATA.subarray(5 * CHUNK + 7, 9 * CHUNK + 1)));
    assert.ok(tail.equals(DATA.subarray(DATA.length - 50)));
  });

  test('a source breaking mid-stream: the next source resumes at the offset reached, and the blob verifies', async () => {
    const broken = new FakeBlobSource('peer', DATA);
    broken.breakAfter = 10 * CHUNK + 5; // sends 10 whole chunks, then the connection drops
    const next = new FakeBlobSource('upstream', DATA);
    const r = resolver([broken, next]);
    const handle = await r.open(locator);
    const body = await readAll(handle.read());
    assert.ok(body.equals(DATA), 'the reader sees one seamless stream');
    assert.deepEqual(broken.opens, [0]);
    assert.deepEqual(next.opens, [10 * CHUNK], 'the next source is asked for the bytes already written');
    await waitFor(() => r.inflight === 0); // readers get the last byte once verified, before the fsync + rename
    assert.equal(store.has(DIGEST), true);
    assert.ok((await store.readAll(DIGEST)).equals(DATA));
  });

  test('with several attempts per source, the same source resumes first', async () => {
    const flaky = new FakeBlobSource('upstream', DATA);
    flaky.breakAfter = 7 * CHUNK; // each attempt delivers 7 chunks then drops
    const r = resolver([flaky], 10);
    const handle = await r.open(locator);
    assert.ok((await readAll(handle.read())).equals(DATA));
    assert.deepEqual(flaky.opens.slice(0, 3), [0, 7 * CHUNK, 14 * CHUNK]);
    await waitFor(() => r.inflight === 0); // readers get the last byte once verified, before the fsync + rename
    assert.equal(store.has(DIGEST), true);
  });

  test('a source that ignores the offset (answers from 0): the prefix is skipped', async () => {
    const broken = new FakeBlobSource('peer', DATA);
    broken.breakAfter = 3 * CHUNK;
    const rangeless = new FakeBlobSource('upstream', DATA);
    rangeless.ignoreOffset = true;
    const r = resolver([broken, rangeless]);
    const handle = await r.open(locator);
    assert.ok((await readAll(handle.read())).equals(DATA));
    assert.deepEqual(rangeless.opens, [3 * CHUNK]);
    await waitFor(() => r.inflight === 0); // readers get the last byte once verified, before the fsync + rename
    assert.equal(store.has(DIGEST), true);
    assert.ok((await store.readAll(DIGEST)).equals(DATA));
  });

  test('every source missing is OciError 404 BLOB_UNKNOWN, quickly, leaving nothing behind', async () => {
    const sources = [new FakeBlobSource('peer'), new FakeBlobSource('seed'), new FakeBlobSource('upstream')];
    const r = resolver(sources, 2);
    const started = performance.now();
    await assert.rejects(r.open(locator), (err: unknown) => {
      assert.ok(err instanceof OciError, String(err));
      assert.equal(err.status, 404);
      assert.equal(err.code, 'BLOB_UNKNOWN');
      assert.ok(err.message.includes(DIGEST));
      return true;
    });
    assert.ok(performance.now() - started < 500, `took ${Math.round(performance.now() - started)} ms`);
    for (const source of sources) assert.deepEqual(source.opens, [0], 'a miss is not retried');
    await waitFor(() => r.inflight === 0);
    assert.deepEqual(await readdir(join(store.dir, 'tmp')), []);
    assert.equal(store.has(DIGEST), false);
  });

  test('sources that fail are 404 BLOB_UNKNOWN naming the last error', async () => {
    const failing = new FakeBlobSource('upstream', DATA);
    failing.failWith = new Error('ECONNREFUSED');
    await assert.rejects(resolver([failing], 2).open(locator), (err: unknown) => {
      assert.ok(err instanceof OciError);
      assert.equal(err.code, 'BLOB_UNKNOWN');
      assert.match(err.message, /ECONNREFUSED/);
      return true;
    });
    assert.equal(failing.opens.length, 2);
  });

  test('bytes that do not verify: readers error and nothing is stored', async () => {
    const wrong = Buffer.from(DATA);
    wrong[wrong.length - 1] = (wrong[wrong.length - 1] ?? 0) ^ 1;
    const r = resolver([new FakeBlobSource('upstream', wrong)]);
    const handle = await r.open(locator);
    await assert.rejects(readAll(handle.read()), /digest mismatch/);
    await waitFor(() => r.inflight === 0);
    assert.equal(store.has(DIGEST), false);
    assert.deepEqual(await readdir(join(store.dir, 'tmp')), []);
    // Clients may hold a bad prefix: for 10 minutes a Range request gets the whole blob, then Ranges are honoured again.
    assert.equal(r.mustResendWhole(DIGEST), true);
    mock.timers.enable({ apis: ['Date'], now: Date.now() });
    try {
      mock.timers.tick(10 * 60_000);
      assert.equal(r.mustResendWhole(DIGEST), false);
    } finally {
      mock.timers.reset();
    }
  });

  test('a source announcing a different size mid-blob is dropped without an unhandled stream error', async () => {
    const broken = new FakeBlobSource('peer', DATA);
    broken.breakAfter = 2 * CHUNK;
    const liar = new FakeBlobSource('seed', DATA);
    liar.announcedSize = DATA.length + 1;
    liar.strictBody = true; // destroying its unread body emits an error, as undici's does
    const good = new FakeBlobSource('upstream', DATA);
    const r = resolver([broken, liar, good]);
    const handle = await r.open(locator);
    assert.ok((await readAll(handle.read())).equals(DATA));
    assert.deepEqual(liar.opens, [2 * CHUNK]);
    assert.deepEqual(good.opens, [2 * CHUNK]);
    await tick(); // an unhandled 'error' would surface here and fail the test
    await waitFor(() => r.inflight === 0); // readers get the last byte once verified, before the fsync + rename
    assert.equal(store.has(DIGEST), true);
  });

  test('a busy seed that names its recipients: the next round asks those peers at once, and the seed is not asked again', async () => {
    // The peers' side: finds nobody by lookup, but serves when asked with the named provider.
    const peerHints: (readonly string[] | undefined)[] = [];
    const peers = new FakeBlobSource('peer', DATA);
    const peerOpen = peers.open.bind(peers);
    peers.open = async (loc: BlobLocator, offset: number, signal: AbortSignal, opts?: OpenOptions) => {
      peerHints.push(opts?.hints ? [...opts.hints] : undefined);
      return opts?.hints?.includes('12D3KooWRecipient') ? peerOpen(loc, offset, signal) : undefined;
    };
    let seedAsked = 0;
    const seed: BlobSource = {
      name: 'seed',
      open: async () => {
        seedAsked++;
        throw new SourceBusyError('seed is already uploading this blob to other nodes', ['12D3KooWRecipient']);
      },
      size: async () => DATA.length,
    };
    const upstream = new FakeBlobSource('upstream', DATA);
    const r = resolver([peers, seed, upstream]);
    const started = performance.now();
    const handle = await r.open(locator);
    assert.ok((await readAll(handle.read())).equals(DATA));
    assert.deepEqual(peerHints, [undefined, ['12D3KooWRecipient']]);
    assert.equal(seedAsked, 1, 'the seed was asked once');
    assert.deepEqual(upstream.opens, [], 'nothing from the upstream');
    // Far below the 3 s busy window after which a fetch insists on the seed.
    assert.ok(performance.now() - started < 1_500, `took ${Math.round(performance.now() - started)} ms`);
    await waitFor(() => r.inflight === 0);
    assert.equal(store.has(DIGEST), true);
  });

  test('stat: local size, else a source size without downloading; 404 when nobody has it', async () => {
    const source = new FakeBlobSource('upstream', DATA);
    const r = resolver([source]);
    assert.deepEqual(await r.stat(locator), { size: DATA.length, source: 'upstream' });
    assert.deepEqual(source.opens, []);
    await store.putBuffer(DIGEST, DATA, { kind: 'blob' });
    assert.deepEqual(await r.stat(locator), { size: DATA.length, source: 'local' });
    const missing = { ...locator, digest: sha256Digest('nothing') };
    await assert.rejects(r.stat(missing), { name: 'OciError', code: 'BLOB_UNKNOWN', status: 404 });
  });
});
