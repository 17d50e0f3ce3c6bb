// The daemon's background reports to the seed: batches with a heartbeat, signed with the cluster
// key; a bounded queue; records dropped (and counted) when no seed takes them, never an error.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage } from 'node:http';
import { test } from 'node:test';
import { ClusterKey, MirrorMetrics, REPORT_SIGNATURE_HEADER, ReportSigner, createLogger, type NodeHeartbeat, type NodeReport, type PullEvent } from '@peerpull/common';
import { SeedReporter } from '../src/seed-reporter.ts';

const logger = createLogger({ level: 'silent', service: 'test' });

function event(i: number): PullEvent {
  return { time: Date.now(), registry: 'docker.io', repository: 'library/nginx', kind: 'blob', digest: `sha256:${String(i).padStart(64, '0')}`, status: 200, bytes: 100, source: 'peer', ms: 3 };
}

const heartbeat = async (): Promise<NodeHeartbeat> => ({
  version: 'test', startedAt: 1, ready: true, peers: [], cache: { bytes: 0, maxBytes: 1, entries: 0, evictions: 0 },
  served: {}, fetched: {}, transfers: [], images: [], rateLimits: [], errors: [],
});

async function counter(metrics: MirrorMetrics, outcome: string): Promise<number> {
  return (await metrics.pullReports.get()).values.find((v) => v.labels.outcome === outcome)?.value ?? 0;
}

test('sends batches with a heartbeat to every seed, signed with the cluster key', async () => {
  const received: { body: NodeReport; signature: string | undefined; raw: string }[] = [];
  const server = createServer((req: IncomingMessage, res) => {
    let raw = '';
    req.on('data', (c) => (raw += c));
    req.on('end', () => {
      received.push({ body: JSON.parse(raw) as NodeReport, signature: req.headers[REPORT_SIGNATURE_HEADER] as string | undefined, raw });
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const key = ClusterKey.fromBytes(randomBytes(32));
  const metrics = new MirrorMetrics();
  const reporter = new SeedReporter({
    seeds: [`http://127.0.0.1:${(server.address() as { port: number }).port}`],
    id: 'peer-id', name: 'node-7', intervalMs: 50, heartbeatMs: 60_000, heartbeat, signer: new ReportSigner(key), logger, metrics,
  });
  try {
    for (let i = 0; i < 3; i++) reporter.record(event(i));
    reporter.start();
    while (received.length < 1) await new Promise((r) => setTimeout(r, 20));
    for (let i = 3; i < 5; i++) reporter.record(event(i));
    while (received.reduce((n, r) => n + r.body.pulls.length, 0) < 5) await new Promise((r) => setTimeout(r, 20));
    const [first] = received;
    assert.equal(first?.body.id, 'peer-id');
    assert.equal(first?.body.name, 'node-7');
    assert.ok(first?.body.heartbeat, 'the first report carries a heartbeat');
    assert.equal(received[1]?.body.heartbeat, undefined, 'not every report does');
    for (const r of received) assert.ok(new ReportSigner(key).verify(r.raw, r.signature), 'signed with the cluster key');
    assert.equal(new ReportSigner(ClusterKey.fromBytes(randomBytes(32))).verify(first?.raw ?? '', first?.signature), false, 'another cluster cannot verify it');
    // The seed has the records before the reporter has its answer and counts them as sent.
    for (let i = 0; i < 100 && (await counter(metrics, 'sent')) < 5; i++) await new Promise((r) => setTimeout(r, 20));
    assert.equal(await counter(metrics, 'sent'), 5);
  } finally {
    await reporter.stop();
    await new Promise((resolve) => server.close(resolve));
  }
});

test('an unreachable seed costs records, not errors; the queue is bounded', async () => {
  const metrics = new MirrorMetrics();
  const reporter = new SeedReporter({
    seeds: ['http://127.0.0.1:9'], id: 'x', name: 'x', intervalMs: 20, heartbeatMs: 60_000, heartbeat, signer: undefined, logger, metrics, maxQueue: 3, timeoutMs: 500,
  });
  const started = performance.now();
  for (let i = 0; i < 5; i++) reporter.record(event(i));
  assert.ok(performance.now() - started < 50, 'recording never waits');
  assert.equal(reporter.queued, 3);
  assert.equal(await counter(metrics, 'dropped'), 2, 'beyond the queue bound, records are dropped at once');
  reporter.start();
  while ((await counter(metrics, 'dropped')) < 5) await new Promise((r) => setTimeout(r, 20));
  assert.equal(reporter.queued, 0);
  await reporter.stop();
});
