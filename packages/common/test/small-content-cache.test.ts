import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { SmallContentCache } from '../src/small-content-cache.ts';
import type { Digest } from '../src/digest.ts';

const d = (n: number): Digest => `sha256:${String(n).padStart(64, '0')}` as Digest;

describe('SmallContentCache', () => {
  test('keeps small content up to its byte budget, dropping the least recently used first', () => {
    const cache = new SmallContentCache({ maxBytes: 300, maxEntryBytes: 100 });
    cache.set(d(1), Buffer.alloc(100, 1));
    cache.set(d(2), Buffer.alloc(100, 2));
    cache.set(d(3), Buffer.alloc(100, 3));
    assert.ok(cache.get(d(1)), 'd1 used again: now the most recent');
    cache.set(d(4), Buffer.alloc(100, 4));
    assert.equal(cache.get(d(2)), undefined, 'd2 was the least recently used');
    assert.deepEqual(cache.get(d(1)), Buffer.alloc(100, 1));
    assert.equal(cache.bytes, 300);
  });

  test('content over the entry limit is not kept; delete frees its bytes', () => {
    const cache = new SmallContentCache({ maxBytes: 1000, maxEntryBytes: 100 });
    cache.set(d(1), Buffer.alloc(101));
    assert.equal(cache.get(d(1)), undefined);
    cache.set(d(2), Buffer.alloc(50));
    cache.delete(d(2));
    assert.equal(cache.get(d(2)), undefined);
    assert.equal(cache.bytes, 0);
  });
});
