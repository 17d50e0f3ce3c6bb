import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { OpenFileCache } from '../src/open-file-cache.ts';

let dir: string;
const file = (name: string, text: string): string => {
  const path = join(dir, name);
  fs.writeFileSync(path, text);
  return path;
};
const readVia = (fd: number, length: number): string => {
  const buffer = Buffer.alloc(length);
  return buffer.subarray(0, fs.readSync(fd, buffer, 0, length, 0)).toString();
};
const isOpen = (fd: number): boolean => {
  try {
    fs.fstatSync(fd);
    return true;
  } catch {
    return false;
  }
};

describe('OpenFileCache', () => {
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'peerpull-ofc-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test('concurrent readers share one fd, and it stays open for the next reader', async () => {
    const cache = new OpenFileCache();
    const path = file('a', 'hello');
    const [a, b] = await Promise.all([cache.acquire('a', path), cache.acquire('a', path)]);
    assert.equal(a.fd, b.fd);
    assert.equal(readVia(a.fd, 5), 'hello');
    a.release();
    b.release();
    a.release(); // twice is harmless
    assert.equal(cache.size, 1, 'kept open while idle');
    const c = await cache.acquire('a', path);
    assert.equal(c.fd, a.fd, 'the idle fd is reused: no open');
    c.release();
    cache.closeAll();
    assert.equal(cache.size, 0);
    await sleep(50);
    assert.equal(isOpen(a.fd), false);
  });

  test('a retired file keeps serving its readers, closes after the last, and is opened afresh next time', async () => {
    const cache = new OpenFileCache();
    const path = file('b', 'old bytes');
    const reader = await cache.acquire('b', path);
    cache.retire('b');
    fs.unlinkSync(path);
    file('b', 'new bytes');
    assert.equal(readVia(reader.fd, 9), 'old bytes', 'the borrowed fd still reads the file it opened');
    const next = await cache.acquire('b', path);
    assert.notEqual(next.fd, reader.fd);
    assert.equal(readVia(next.fd, 9), 'new bytes');
    const old = reader.fd;
    reader.release();
    await sleep(50); // close() is asynchronous
    assert.equal(isOpen(old), false, 'closed once its last reader released it');
    next.release();
    cache.closeAll();
  });

  test('idle fds are bounded in number and in age', async () => {
    const cache = new OpenFileCache({ maxIdle: 2, idleMs: 200 });
    for (const name of ['c1', 'c2', 'c3', 'c4']) (await cache.acquire(name, file(name, name))).release();
    assert.equal(cache.size, 2, 'only the 2 most recently used stay open');
    await sleep(1_300); // the sweeper runs at least every second
    assert.equal(cache.size, 0, 'idle fds are closed after idleMs');
    cache.closeAll();
  });

  test('the fd released longest ago is closed first; a reused one counts as recent again', async () => {
    const cache = new OpenFileCache({ maxIdle: 2 });
    const borrow = async (name: string): Promise<number> => {
      const r = await cache.acquire(name, join(dir, name));
      r.release();
      return r.fd;
    };
    for (const name of ['d1', 'd2', 'd3']) file(name, name);
    const d1 = await borrow('d1');
    const d2 = await borrow('d2');
    assert.equal(await borrow('d1'), d1, 'still open: no new fd');
    await borrow('d3');
    await sleep(50);
    assert.equal(cache.size, 2);
    assert.equal(isOpen(d2), false, 'd2 was released longest ago');
    assert.equal(await borrow('d1'), d1, 'd1 stayed open');
    cache.closeAll();
  });

  test('a file that cannot be opened rejects and leaves nothing behind', async () => {
    const cache = new OpenFileCache();
    await assert.rejects(cache.acquire('missing', join(dir, 'missing')), { code: 'ENOENT' });
    assert.equal(cache.size, 0);
    const path = file('missing', 'now here');
    const r = await cache.acquire('missing', path);
    assert.equal(readVia(r.fd, 8), 'now here');
    r.release();
    cache.closeAll();
  });
});
