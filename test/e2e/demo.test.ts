// `peerpull demo` runs to completion and one WAN pull feeds the whole cluster.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { test } from 'node:test';
import { listLinkNamespaces } from '../cluster/wan-link.ts';
import { CLI } from '../fixtures/daemon.ts';
import { run } from '../fixtures/processes.ts';

interface DemoReport {
  code: number | null;
  stdout: string;
  ratio: number | undefined;
  nodesOk: number;
}

async function runDemo(args: string[]): Promise<DemoReport> {
  const r = await run(process.execPath, [CLI, 'demo', ...args], { timeoutMs: 240_000, allowFailure: true });
  const ratio = /upstream bytes ÷ image bytes = (\d+\.\d+)/.exec(r.stdout)?.[1];
  return {
    code: r.code,
    stdout: `${r.stdout}\n${r.stderr}`,
    ratio: ratio === undefined ? undefined : Number(ratio),
    nodesOk: r.stdout.split('\n').filter((l) => /^node-\d+ .*ok, verified$/.test(l)).length,
  };
}

test('peerpull demo: 3 nodes pull a 20 MB image; the upstream sent it once', { timeout: 300_000 }, async () => {
  const report = await runDemo(['--image-size', '20MB', '--nodes', '3', '--wan-rate', '200mbit']);
  assert.equal(report.code, 0, report.stdout);
  assert.equal(report.nodesOk, 3, report.stdout);
  assert.equal(report.ratio, 1, report.stdout);
  assert.match(report.stdout, /WAN bytes saved/);
});

const realAvailable = process.getuid?.() === 0 && ['/usr/bin/docker-registry', '/usr/bin/skopeo', '/usr/bin/containerd'].every((f) => existsSync(f));

test('peerpull demo --real: the distribution registry behind a shaped netns link, containerd on every node', { timeout: 300_000, skip: !realAvailable && 'needs root, docker-registry, skopeo and containerd' }, async () => {
  const report = await runDemo(['--real', '--image-size', '20MB', '--nodes', '2', '--wan-rate', '200mbit']);
  assert.equal(report.code, 0, report.stdout);
  assert.equal(report.nodesOk, 2, report.stdout);
  assert.equal(report.ratio, 1, report.stdout);
  assert.match(report.stdout, /distribution registry/);
  const netns = /WAN {8}netns (ppwan-\S+)/.exec(report.stdout)?.[1];
  assert.ok(netns, report.stdout);
  assert.match(report.stdout, /client: a private containerd/);
  // The demo removed its namespace (and with it the veth pair and its qdiscs).
  assert.ok(!listLinkNamespaces().includes(netns), `${netns} is left behind`);
});
