// What `peerpull explain` remembers about recent pulls stays bounded, and a stream of misses for
// digests that exist nowhere (each one a failed fetch) neither grows it nor erases real pulls.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Digest, FetchTrace, PullEvent } from '@peerpull/common';
import { PullHistory } from '../src/pull-history.ts';

const digest = (i: number): Digest => `sha256:${String(i).padStart(64, '0')}` as Digest;
const pull = (i: number, status = 200): PullEvent => ({ time: Date.now(), registry: 'docker.io', repository: 'library/nginx', kind: 'blob', digest: digest(i), status, bytes: 100, source: 'upstream', ms: 3 });
const fetchTrace = (i: number, ok: boolean): FetchTrace => ({
  digest: digest(i), registry: 'docker.io', repository: 'library/nginx', startedAt: Date.now(), seconds: 0.1, ok, source: 'upstream', bytesBySource: ok ? { upstream: 100 } : {},
  attempts: [{ source: 'upstream', outcome: ok ? 'ok' : 'miss', ...(ok ? {} : { detail: 'upstream answered 404 BLOB_UNKNOWN' }), ms: 5 }],
});

test('misses for digests that exist nowhere stay within their own bound and keep the history of real pulls', () => {
  const history = new PullHistory({ max: 100, maxFailed: 10 });
  for (let i = 0; i < 50; i++) {
    history.recordFetch(fetchTrace(i, true));
    history.recordPull(pull(i));
  }
  for (let i = 1_000; i < 6_000; i++) {
    history.recordFetch(fetchTrace(i, false));
    history.recordPull(pull(i, 404));
  }
  assert.deepEqual(history.size, { served: 50, failed: 10 });
  for (let i = 0; i < 50; i++) assert.equal(history.get(digest(i))?.lastPull?.status, 200, `history of pulled blob ${i}`);
  assert.equal(history.get(digest(5_999))?.lastFetch?.ok, false, 'the latest miss is still explained');
  assert.equal(history.get(digest(1_000)), undefined, 'the oldest misses are forgotten');
});

test('served digests are bounded too, forgetting the least recently touched', () => {
  const history = new PullHistory({ max: 100, maxFailed: 10 });
  for (let i = 0; i < 1_000; i++) history.recordPull(pull(i));
  history.recordPull(pull(0)); // evicted long ago: comes back as the newest
  for (let i = 1_000; i < 1_050; i++) history.recordPull(pull(i));
  assert.deepEqual(history.size, { served: 100, failed: 0 });
  assert.ok(history.get(digest(0)));
  assert.equal(history.get(digest(900)), undefined);
});

test('a blob that failed and then was served keeps both records, counted once', () => {
  const history = new PullHistory({ max: 100, maxFailed: 10 });
  history.recordFetch(fetchTrace(7, false));
  history.recordFetch(fetchTrace(7, true));
  history.recordPull(pull(7));
  assert.deepEqual(history.size, { served: 1, failed: 0 });
  assert.equal(history.get(digest(7))?.lastFetch?.ok, true);
  // A later failed refetch of a served blob (e.g. after eviction) updates it where it is.
  history.recordFetch(fetchTrace(7, false));
  assert.deepEqual(history.size, { served: 1, failed: 0 });
  assert.equal(history.get(digest(7))?.lastPull?.status, 200);
  assert.equal(history.get(digest(7))?.lastFetch?.ok, false);
});
