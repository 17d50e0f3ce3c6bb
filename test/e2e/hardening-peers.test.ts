// Hardening, hostile peers: a cluster member of our own (in this process, holding the cluster key) that
// provides blobs it does not have or serves them wrong (too many bytes, a size it then does not keep, a
// stall after the header, "not found" after providing), floods the DHT with provider records and opens
// many blob streams that never send a request. The real daemon next to it must pull every blob with the
// right bytes, promptly, quarantine or skip the liar, limit the streams, and keep serving.
// (p2p-faults.test.ts covers a peer whose stored copy is corrupt on disk, and a peer killed mid-transfer.)
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { ClusterKey, createLogger, type Digest } from '@peerpull/common';
import { PeerNode } from '@peerpull/common/peer';
import { digestToCid } from '../../packages/daemon/src/peer-routing.ts';
import { BLOB_PROTOCOL } from '../../packages/daemon/src/blob-protocol.ts';
import { registryEntry, startPeerpull, type DaemonProcess } from '../fixtures/daemon.ts';
import { getImageLayout, pushImage, type BuiltImage } from '../fixtures/images.ts';
import { startRegistry, type Registry } from '../fixtures/registry.ts';
import { makeTempDir } from '../fixtures/processes.ts';
import { waitUntil } from '../fixtures/wait-until.ts';
import { makeClusterKey, p2pArgs, p2pMetrics, peerAddr, pullVia, MB } from './p2p-helpers.ts';
import { fetchLikeContainerd, rssMiB } from './hardening-helpers.ts';

/** Provider records the flooding member announces (each costs a DHT query among the test's nodes). */
const FLOOD = Number(process.env.PEERPULL_FLOOD ?? 300);

type Lie = 'too-many-bytes' | 'size-lie' | 'stall' | 'not-found' | 'garbage-header';

describe('hardening: hostile peers', () => {
  const keyFile = makeClusterKey();
  let reg: Registry;
  let image: BuiltImage;
  let victim: DaemonProcess;
  /** One hostile member per lie (a member that lied once is skipped for a while, so each lie needs its own). */
  const attackers = new Map<Lie, PeerNode>();
  let attacker: PeerNode;
  const served: { digest: string; lie: Lie }[] = [];
  let streamsOpened = 0;

  async function startAttacker(lie: Lie): Promise<PeerNode> {
    const node = await PeerNode.start({
      listen: ['/ip4/127.0.0.1/tcp/0'],
      dataDir: makeTempDir('pp-attacker-'),
      clusterKey: ClusterKey.load(keyFile),
      bootstrap: [peerAddr(victim)],
      bootstrapDns: [],
      allow: [],
      allowLoopback: true,
      logger: createLogger({ level: 'silent', service: 'attacker' }),
    });
    await node.libp2p.handle(
      BLOB_PROTOCOL,
      async (stream) => {
        streamsOpened++;
        let buffered = Buffer.alloc(0);
        for await (const chunk of stream as AsyncIterable<Uint8Array | { subarray(): Uint8Array }>) {
          buffered = Buffer.concat([buffered, chunk instanceof Uint8Array ? chunk : chunk.subarray()]);
          if (buffered.includes(10)) break;
        }
        const request = JSON.parse(buffered.subarray(0, buffered.indexOf(10)).toString('utf8')) as { digest?: string; head?: boolean };
        served.push({ digest: String(request.digest), lie });
        const m = image.manifests[0]!;
        const size = m.layers.find((l) => l.digest === request.digest)?.size ?? (request.digest === m.configDigest ? m.configSize : 1000);
        const line = (v: unknown) => Buffer.from(`${JSON.stringify(v)}\n`);
        try {
          switch (lie) {
            case 'not-found':
              stream.send(line({ status: 'not-found' }));
              await stream.close();
              return;
            case 'garbage-header':
              stream.send(Buffer.from('this is not json\n'));
              await stream.close();
              return;
            case 'stall':
              stream.send(line({ status: 'ok', size, complete: true }));
              await new Promise((r) => setTimeout(r, 20_000)); // the requester must give up long before
              stream.abort(new Error('done stalling'));
              return;
            case 'too-many-bytes':
            case 'size-lie': {
              const claimed = lie === 'size-lie' ? size + 4096 : size;
              stream.send(line({ status: 'ok', size: claimed, complete: true }));
              if (request.head) return void (await stream.close());
              const total = lie === 'too-many-bytes' ? size + 256 * 1024 : claimed;
              for (let sent = 0; sent < total; sent += 64 * 1024) {
                if (!stream.send(crypto.randomBytes(Math.min(64 * 1024, total - sent)))) await stream.onDrain();
              }
              await stream.close();
            }
          }
        } catch {
          stream.abort(new Error('requester went away'));
        }
      },
      { maxInboundStreams: 1024 },
    );
    return node;
  }

  before(async () => {
    [reg, image] = await Promise.all([startRegistry(), getImageLayout({ name: 'hardening-peers', layers: [1 * MB, 2 * MB, 3 * MB, 4 * MB] })]);
    await pushImage(image, `${reg.host}/library/peers:v1`);
    victim = await startPeerpull({
      registries: [registryEntry(reg)],
      extraArgs: [...p2pArgs(keyFile), '--peer-idle-timeout', '1s', '--peer-lookup-timeout', '300ms', '--log-level', 'debug'],
    });
    for (const lie of ['too-many-bytes', 'size-lie', 'stall', 'garbage-header', 'not-found'] as const) attackers.set(lie, await startAttacker(lie));
    attacker = attackers.get('not-found')!;
    await waitUntil('the attackers to join the victim', async () => (await p2pMetrics(victim)).connected >= attackers.size, 15_000, 100);
  });

  after(async () => {
    await Promise.all([...attackers.values()].map((a) => a.libp2p.stop()));
    await victim?.stop();
    await reg?.stop();
  });

  test('a member that provides blobs it serves wrong (too many bytes, a false size, a stall, "not found", garbage): the pull gets the right bytes, promptly; the liar is skipped or quarantined', async (t) => {
    const m = image.manifests[0]!;
    const plan: [string, Lie][] = [
      [m.layers[0]!.digest, 'too-many-bytes'],
      [m.layers[1]!.digest, 'size-lie'],
      [m.layers[2]!.digest, 'stall'],
      [m.layers[3]!.digest, 'garbage-header'],
      [m.configDigest, 'not-found'],
    ];
    // Each attacker claims its blob in the DHT before the victim asks.
    for (const [digest, lie] of plan) await attackers.get(lie)!.libp2p.contentRouting.provide(digestToCid(digest as Digest), { signal: AbortSignal.timeout(10_000) });
    const started = performance.now();
    const manifest = await fetch(`${victim.url}/v2/library/peers/manifests/v1?ns=${encodeURIComponent(reg.host)}`, { headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } });
    assert.equal(manifest.status, 200);
    // Each blob as containerd fetches it (a broken body is retried on the same mirror with Range).
    const blobs = [{ digest: m.configDigest, size: m.configSize }, ...m.layers.map((l) => ({ digest: l.digest, size: l.size }))];
    const fetched = await Promise.all(blobs.map((b) => fetchLikeContainerd(`${victim.url}/v2/library/peers/blobs/${b.digest}?ns=${encodeURIComponent(reg.host)}`, b.size)));
    const seconds = (performance.now() - started) / 1000;
    t.diagnostic(`pulled in ${seconds.toFixed(1)} s; attempts per blob ${fetched.map((f) => f.attempts).join(',')}; the attacker was asked ${served.length} times: ${[...new Set(served.map((s) => s.lie))].join(', ')}`);
    fetched.forEach((f, i) => assert.equal(f.digest, blobs[i]!.digest, `blob ${i}: the right bytes`));
    assert.ok(fetched.every((f) => f.attempts <= 2), 'at most one broken attempt per blob (the one the liar spoiled)');
    assert.ok(seconds < 15, `promptly (${seconds.toFixed(1)} s)`);
    assert.deepEqual([...new Set(served.map((x) => x.lie))].sort(), plan.map(([, lie]) => lie).sort(), 'the victim did ask every liar (the test exercised each lie)');
    const warnings = victim.logs().filter((l) => l.level >= 40).map((l) => `${l.msg} ${String(l.err ?? '')}`).join('\n');
    assert.match(warnings, /quarantined|did not verify|too many bytes|size mismatch|stalled/, 'the victim says what the peer did');
  });

  test('a flood of provider records for blobs nobody has: lookups stay bounded, pulls still work', async (t) => {
    const rssBefore = rssMiB(victim.process.pid!);
    const started = performance.now();
    const fakes = Array.from({ length: FLOOD }, (_, i) => `sha256:${crypto.createHash('sha256').update(`flood-${i}`).digest('hex')}` as Digest);
    let provided = 0;
    await Promise.all(
      Array.from({ length: 20 }, async (_, w) => {
        for (let i = w; i < fakes.length; i += 20) {
          await attacker.libp2p.contentRouting.provide(digestToCid(fakes[i]!), { signal: AbortSignal.timeout(5_000) }).then(() => provided++, () => undefined);
        }
      }),
    );
    t.diagnostic(`${provided} provider records in ${((performance.now() - started) / 1000).toFixed(1)} s; victim RSS ${rssBefore.toFixed(0)} -> ${rssMiB(victim.process.pid!).toFixed(0)} MiB`);
    // A miss for one of the flooded digests: the victim asks the "provider", gets not-found, and answers 404 promptly.
    const t0 = performance.now();
    const res = await fetch(`${victim.url}/v2/library/peers/blobs/${fakes[0]}?ns=${encodeURIComponent(reg.host)}`);
    assert.equal(res.status, 404);
    assert.ok(performance.now() - t0 < 3_000, `a flooded digest is still a prompt 404 (${(performance.now() - t0).toFixed(0)} ms)`);
    // A cached image still pulls.
    const again = await pullVia(victim, reg, 'library/peers', 'v1');
    assert.equal(again.blobs, 5);
    assert.ok(rssMiB(victim.process.pid!) - rssBefore < 150, 'memory bounded');
  });

  test('hundreds of blob streams that never send a request: limited and timed out; the node keeps serving', async (t) => {
    const victimId = attacker.libp2p.getPeers().find((p) => p.toString() === peerAddr(victim).split('/p2p/')[1]);
    assert.ok(victimId, 'connected to the victim');
    const opened: { abort(err: Error): void; status: string }[] = [];
    let refused = 0;
    await Promise.all(
      Array.from({ length: 300 }, async () => {
        try {
          opened.push(await attacker.libp2p.dialProtocol(victimId, BLOB_PROTOCOL, { signal: AbortSignal.timeout(5_000) }));
        } catch {
          refused++;
        }
      }),
    );
    await new Promise((r) => setTimeout(r, 1_000));
    const openAfter1s = opened.filter((x) => x.status === 'open').length;
    // Meanwhile the node serves HTTP pulls at once.
    const t0 = performance.now();
    const res = await pullVia(victim, reg, 'library/peers', 'v1');
    assert.equal(res.blobs, 5);
    assert.ok(performance.now() - t0 < 5_000, 'pulls are not held up');
    // The victim closes idle streams after its header timeout (3 s).
    await new Promise((r) => setTimeout(r, 3_500));
    const openAfterTimeout = opened.filter((x) => x.status === 'open').length;
    const still = await attacker.libp2p.dialProtocol(victimId, BLOB_PROTOCOL, { signal: AbortSignal.timeout(5_000) }).then(
      (s) => {
        s.abort(new Error('probe'));
        return true;
      },
      () => false,
    );
    assert.ok(still, 'after the idle streams timed out, a new stream is accepted again');
    t.diagnostic(`300 idle streams: ${refused} refused at once, ${openAfter1s} still open after 1 s, ${openAfterTimeout} after the victim's 3 s header timeout`);
    for (const x of opened) x.abort(new Error('cleanup'));
    // (A stream counts as opened on the dialer before the victim confirms it; the excess is reset right after.)
    assert.ok(openAfter1s <= 64, `the victim's inbound stream limit (64 per connection for the blob protocol) holds: ${openAfter1s} open`);
    assert.equal(openAfterTimeout, 0, 'idle streams are closed by the victim after its header timeout');
  });
});
