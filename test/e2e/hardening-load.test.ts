// Hardening, load (functional; the figures are in test/bench/load.bench.ts): 1,000 concurrent clients for one
// uncached blob cost one upstream fetch, all succeed with the right bytes, and the daemon's RSS stays bounded;
// 200 concurrent pulls of different blobs, uncached then cached, all succeed.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { MiB } from './mirror-helpers.ts';
import { LoadRig, ttfbSummary } from './load-scenarios.ts';

const CLIENTS = Number(process.env.PEERPULL_LOAD_CLIENTS ?? 1000);
const BLOBS = 200;

describe('hardening: load', () => {
  const rig = new LoadRig();

  before(async () => rig.setup({ manyLayers: BLOBS, bigLayerBytes: 2 * MiB }));
  after(async () => rig.teardown());

  test(`${CLIENTS} concurrent clients for one uncached blob: one upstream fetch, all succeed, RSS bounded`, async (t) => {
    const layer = rig.big.manifests[0]!.layers[0]!;
    const { results, upstreamGets, peakRssMiB, rssBeforeMiB, ms } = await rig.oneBlobManyClients(CLIENTS);
    t.diagnostic(`${CLIENTS} x ${(layer.size / MiB).toFixed(1)} MiB in ${(ms / 1000).toFixed(1)} s; ${ttfbSummary(results)}; daemon RSS ${rssBeforeMiB.toFixed(0)} -> peak ${peakRssMiB.toFixed(0)} MiB`);
    const bad = results.filter((r) => r.status !== 200 || r.error || r.digest !== layer.digest);
    assert.deepEqual(bad.slice(0, 3), [], `${bad.length} of ${CLIENTS} failed`);
    assert.equal(upstreamGets, 1, 'exactly one upstream fetch');
    // Measured here: +330..420 MiB for 1,000 clients of an in-flight blob (~1/3 MiB per client: read buffers and
    // socket queues, not garbage; the same with a capped heap), +70 MiB once cached. Bounded per client, not per blob.
    assert.ok(peakRssMiB - rssBeforeMiB < CLIENTS * 0.75, `RSS bounded: +${(peakRssMiB - rssBeforeMiB).toFixed(0)} MiB for ${CLIENTS} clients (limit ${CLIENTS * 0.75} MiB)`);
  });

  test(`${BLOBS} concurrent pulls of different blobs: uncached, then cached, all succeed (TTFB printed, not asserted)`, async (t) => {
    const digests = rig.manyDigests();
    for (const phase of ['uncached', 'cached']) {
      const { results, ms } = await rig.manyBlobs(BLOBS);
      t.diagnostic(`${phase}: ${BLOBS} blobs in ${ms.toFixed(0)} ms; ${ttfbSummary(results)}`);
      const bad = results.filter((r, i) => r.status !== 200 || r.error || r.digest !== digests[i]);
      assert.deepEqual(bad.slice(0, 3), [], `${phase}: ${bad.length} of ${BLOBS} failed`);
    }
    const upstreamGets = rig.upstream.requests.filter((r) => r.method === 'GET' && digests.some((d) => r.url.includes(d))).length;
    assert.equal(upstreamGets, BLOBS, 'each blob fetched upstream once (the cached phase cost nothing)');
  });
});
