// The seed's report endpoint: signed reports from cluster members go into the audit log and the
// node list; unsigned or foreign ones are refused when the seed has a cluster key.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import Fastify from 'fastify';
import { ClusterKey, REPORT_SIGNATURE_HEADER, ReportSigner, createLogger, type NodeReport } from '@peerpull/common';
import { clusterApi, reportApi } from '../src/cluster-api.ts';
import { NodeRegistry } from '../src/node-registry.ts';
import { PullLog } from '../src/pull-log.ts';
import type { SeedStatusCollector } from '../src/seed-status.ts';

test('signed reports are logged; unsigned, foreign and stale ones are refused; reads need the admin token', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'pp-report-api-'));
  const key = ClusterKey.fromBytes(randomBytes(32));
  const pullLog = await PullLog.open({ dir, maxAgeMs: Number.POSITIVE_INFINITY, maxEntries: 100, logger: createLogger({ level: 'silent', service: 'test' }) });
  const nodes = new NodeRegistry();
  const opts = { adminToken: 'sesame', signer: new ReportSigner(key), pullLog, nodes, status: {} as SeedStatusCollector };
  const app = Fastify();
  await app.register(reportApi, { prefix: '/api/v1', ...opts });
  await app.register(clusterApi, { prefix: '/api/v1', ...opts });
  try {
    const report: NodeReport = {
      id: 'peer-1', name: 'node-1', sentAt: Date.now(),
      pulls: [{ time: Date.now(), registry: 'docker.io', repository: 'library/nginx', kind: 'blob', digest: `sha256:${'a'.repeat(64)}`, status: 200, bytes: 42, source: 'peer', ms: 7 }],
    };
    const body = JSON.stringify(report);
    const post = (payload: string, signature?: string) =>
      app.inject({ method: 'POST', url: '/api/v1/report', payload, headers: { 'content-type': 'application/json', ...(signature ? { [REPORT_SIGNATURE_HEADER]: signature } : {}) } });
    assert.equal((await post(body)).statusCode, 401, 'unsigned');
    assert.equal((await post(body, new ReportSigner(ClusterKey.fromBytes(randomBytes(32))).sign(body))).statusCode, 401, 'another cluster');
    const old = JSON.stringify({ ...report, sentAt: Date.now() - 3_600_000 });
    assert.equal((await post(old, opts.signer.sign(old))).statusCode, 400, 'replayed');
    const ok = await post(body, opts.signer.sign(body));
    assert.equal(ok.statusCode, 200, ok.body);
    assert.deepEqual(ok.json(), { accepted: 1 });
    assert.equal(pullLog.size, 1);
    assert.equal(nodes.nodes()[0]?.name, 'node-1');

    assert.equal((await app.inject({ method: 'GET', url: '/api/v1/pulls' })).statusCode, 401, 'reads need the admin token');
    const read = await app.inject({ method: 'GET', url: '/api/v1/pulls?node=node-1', headers: { authorization: 'Bearer sesame' } });
    assert.equal(read.statusCode, 200);
    const pulls = (read.json() as { pulls: { node: string; bytes: number; source: string }[] }).pulls;
    assert.deepEqual(pulls.map((p) => [p.node, p.bytes, p.source]), [['node-1', 42, 'peer']]);
  } finally {
    await app.close();
    await pullLog.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
