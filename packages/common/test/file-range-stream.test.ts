import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { openSync, closeSync, writeFileSync, writeSync } from 'node:fs';
import { EventEmitter, once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { FileRangeStream, type GrowingRange } from '../src/file-range-stream.ts';

const DATA = randomBytes(3 * 256 * 1024 + 12_345);
let dir: string;
let file: string;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'peerpull-frs-'));
  file = join(dir, 'blob');
  writeFileSync(file, DATA);
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function collect(stream: AsyncIterable<unknown>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(Buffer.from(chunk as Buffer));
  return Buffer.concat(chunks);
}

/** Serves `make()` with pipe (as Fastify does) and returns what a client received. */
async function serve(make: () => FileRangeStream, length: number, clients = 1): Promise<{ bodies: Buffer[]; closed: boolean[] }> {
  const streams: FileRangeStream[] = [];
  const server = http.createServer((_req, res) => {
    const s = make();
    streams.push(s);
    res.writeHead(200, { 'content-length': length });
    s.pipe(res);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  try {
    const bodies = await Promise.all(
      Array.from({ length: clients }, async () => {
        const res = await fetch(`http://127.0.0.1:${port}/`);
        return Buffer.from(await res.arrayBuffer());
      }),
    );
    await new Promise((r) => setTimeout(r, 20));
    return { bodies, closed: streams.map((s) => s.destroyed) };
  } finally {
    server.close();
  }
}

describe('FileRangeStream', () => {
  test('async iteration reads the whole file and ranges', async () => {
    assert.ok((await collect(new FileRangeStream(file, 0, DATA.length - 1))).equals(DATA));
    assert.ok((await collect(new FileRangeStream(file, 1000, 300_000))).equals(DATA.subarray(1000, 300_001)));
    assert.equal((await collect(new FileRangeStream(file, 5, 4))).length, 0);
  });

  test('piped into HTTP responses (pooled buffers), concurrent clients get exact bytes and the streams close', async () => {
    const whole = await serve(() => new FileRangeStream(file, 0, DATA.length - 1), DATA.length, 20);
    for (const body of whole.bodies) assert.ok(body.equals(DATA));
    assert.ok(whole.closed.every(Boolean), 'every stream closed (fd released)');
    const range = await serve(() => new FileRangeStream(file, 100_000, 700_000), 600_001, 5);
    for (const body of range.bodies) assert.ok(body.equals(DATA.subarray(100_000, 700_001)));
  });

  test('piped into something else (a PassThrough) it allocates per read and stays correct', async () => {
    const through = new PassThrough();
    const slow = new Writable({
      write(chunk: Buffer, _enc, cb) {
        setTimeout(() => cb(), 1); // holds chunks: reused buffers would corrupt them
        got.push(chunk);
      },
    });
    const got: Buffer[] = [];
    await pipeline(new FileRangeStream(file, 0, DATA.length - 1), through, slow);
    assert.ok(Buffer.concat(got).equals(DATA));
  });

  for (const how of ['iterated', 'piped into an HTTP response'] as const) {
    test(`a growing file (${how}): bytes as they are written, the end once final, an error if it fails`, async () => {
      for (const outcome of ['complete', 'failed'] as const) {
        const path = join(dir, `growing-${how.length}-${outcome}`);
        const fd = openSync(path, 'w+');
        const events = new EventEmitter();
        let written = 0;
        let state: 'writing' | 'complete' | 'failed' = 'writing';
        let released = 0;
        // Like BlobIngest: the last byte is held back until the file is complete.
        const growing: GrowingRange = {
          limit: () =>
            state === 'failed'
              ? { end: Math.max(0, written - 1), final: false, error: new Error('source failed') }
              : state === 'complete'
                ? { end: written, final: true }
                : { end: Math.max(0, written - 1), final: false },
          changed: () => once(events, 'progress').then(() => undefined),
        };
        const make = (): FileRangeStream => new FileRangeStream({ fd, release: () => released++, name: path }, 1000, growing);
        const writer = (async () => {
          for (let at = 0; at < DATA.length; at += 100_000) {
            const piece = DATA.subarray(at, Math.min(at + 100_000, DATA.length));
            writeSync(fd, piece, 0, piece.length, at);
            written += piece.length;
            events.emit('progress');
            await new Promise((r) => setTimeout(r, 2));
          }
          state = outcome;
          events.emit('progress');
        })();
        let body: Buffer;
        let error: Error | undefined;
        if (how === 'iterated') {
          try {
            body = await collect(make());
          } catch (err) {
            error = err as Error;
            body = Buffer.alloc(0);
          }
        } else {
          const server = http.createServer((_req, res) => {
            const s = make();
            s.on('error', () => res.destroy());
            res.writeHead(200, { 'content-length': DATA.length - 1000 });
            s.pipe(res);
          });
          await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
          try {
            const res = await fetch(`http://127.0.0.1:${(server.address() as { port: number }).port}/`);
            body = Buffer.from(await res.arrayBuffer());
          } catch (err) {
            error = err as Error;
            body = Buffer.alloc(0);
          } finally {
            server.close();
          }
        }
        await writer;
        if (outcome === 'complete') {
          assert.equal(error, undefined);
          assert.ok(body.equals(DATA.subarray(1000)));
        } else {
          assert.ok(error, 'a failed file never ends cleanly');
        }
        await new Promise((r) => setTimeout(r, 20));
        assert.equal(released, 1, 'the borrowed fd is released exactly once');
        closeSync(fd);
      }
    });
  }

  test('a missing file errors with ENOENT', async () => {
    await assert.rejects(collect(new FileRangeStream(join(dir, 'nope'), 0, 10)), { code: 'ENOENT' });
  });

  test('a client that disconnects mid-body destroys the stream', async () => {
    let stream: FileRangeStream | undefined;
    const server = http.createServer((_req, res) => {
      stream = new FileRangeStream(file, 0, DATA.length - 1);
      res.writeHead(200, { 'content-length': DATA.length });
      stream.pipe(res);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as { port: number };
    try {
      await new Promise<void>((resolve) => {
        const req = http.get(`http://127.0.0.1:${port}/`, (res) => {
          res.once('data', () => {
            req.destroy();
            resolve();
          });
        });
        req.on('error', () => undefined);
      });
      const deadline = Date.now() + 2000;
      while (!stream?.destroyed && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      assert.equal(stream?.destroyed, true);
    } finally {
      server.close();
    }
  });
});
