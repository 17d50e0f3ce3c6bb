// The seed's pull audit log: ordered, filtered queries, retention by count and by age, and
// records that survive a restart.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { createLogger, type PullRecord } from '@peerpull/common';
import { PullLog } from '../src/pull-log.ts';
import { parsePullQuery } from '../src/cluster-api.ts';

const logger = createLogger({ level: 'silent', service: 'test' });

function record(time: number, over: Partial<PullRecord> = {}): PullRecord {
  return { time, node: 'node-1', registry: 'docker.io', repository: 'library/nginx', kind: 'blob', digest: `sha256:${String(time).padStart(64, '0')}`, status: 200, bytes: 10, source: 'peer', ms: 5, ...over };
}

test('queries return records in time order, filtered, newest `limit` when truncated; records survive a restart', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'pp-pull-log-'));
  try {
    let log = await PullLog.open({ dir, maxAgeMs: Number.POSITIVE_INFINITY, maxEntries: 1000, logger });
    const now = Date.now();
    await log.append([record(now - 3000, { node: 'node-2', source: 'seed' }), record(now - 1000, { repository: 'team/app', kind: 'manifest' })]);
    await log.append([record(now - 2000), record(now - 500, { node: 'node-2' })]);
    assert.equal(log.size, 4);
    const all = await log.query({});
    assert.deepEqual(all.pulls.map((p) => p.time), [now - 3000, now - 2000, now - 1000, now - 500]);
    assert.equal(all.truncated, false);
    assert.deepEqual((await log.query({ node: 'node-2' })).pulls.map((p) => p.time), [now - 3000, now - 500]);
    assert.deepEqual((await log.query({ image: 'docker.io/team/app:1.0' })).pulls.map((p) => p.repository), ['team/app']);
    assert.deepEqual((await log.query({ image: 'nginx' })).pulls.length, 3);
    assert.deepEqual((await log.query({ source: 'seed' })).pulls.map((p) => p.node), ['node-2']);
    assert.deepEqual((await log.query({ kind: 'manifest' })).pulls.length, 1);
    assert.deepEqual((await log.query({ since: now - 1500 })).pulls.map((p) => p.time), [now - 1000, now - 500]);
    assert.deepEqual((await log.query({ until: now - 1500 })).pulls.map((p) => p.time), [now - 3000, now - 2000]);
    const limited = await log.query({ limit: 2 });
    assert.deepEqual(limited.pulls.map((p) => p.time), [now - 1000, now - 500]);
    assert.equal(limited.truncated, true);
    assert.deepEqual((await log.recent(2)).map((p) => p.time), [now - 500, now - 1000]);
    await log.close();
    log = await PullLog.open({ dir, maxAgeMs: Number.POSITIVE_INFINITY, maxEntries: 1000, logger });
    assert.equal(log.size, 4);
    assert.equal((await log.query({})).pulls.length, 4);
    await log.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('retention: the oldest go first beyond the count, and records past the age are deleted', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'pp-pull-log-'));
  try {
    const now = Date.now();
    let log = await PullLog.open({ dir, maxAgeMs: 60_000, maxEntries: 10, logger });
    await log.append(Array.from({ length: 25 }, (_, i) => record(now - 25_000 + i * 1000)));
    await log.prune();
    assert.equal(log.size, 10);
    assert.deepEqual((await log.query({})).pulls.map((p) => p.time), Array.from({ length: 10 }, (_, i) => now - 10_000 + i * 1000));
    await log.append([record(now - 120_000)]); // older than the retention
    await log.prune();
    assert.ok(!(await log.query({})).pulls.some((p) => p.time === now - 120_000));
    assert.equal(log.size, 10);
    await log.close();
    // A shorter retention at the next start applies at once.
    log = await PullLog.open({ dir, maxAgeMs: 5_500, maxEntries: 10, logger });
    assert.ok(log.size <= 6 && log.size >= 5, `kept ${log.size}`);
    await log.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('since and until: durations back from now, ISO times, epoch ms; bad input is an error', () => {
  const now = Date.now();
  const q = parsePullQuery({ since: '15m', image: 'nginx', node: 'n1', limit: '20', kind: 'blob' });
  assert.ok(Math.abs((q.since ?? 0) - (now - 900_000)) < 1000);
  assert.deepEqual({ ...q, since: 0 }, { since: 0, image: 'nginx', node: 'n1', limit: 20, kind: 'blob' });
  assert.equal(parsePullQuery({ since: '2026-01-02T03:04:05Z' }).since, Date.parse('2026-01-02T03:04:05Z'));
  assert.equal(parsePullQuery({ since: '1767225600000' }).since, 1767225600000);
  assert.throws(() => parsePullQuery({ since: 'yesterday' }), /since: expected/);
  assert.throws(() => parsePullQuery({ limit: '0' }), /limit/);
  assert.throws(() => parsePullQuery({ kind: 'tag' }), /kind/);
});
