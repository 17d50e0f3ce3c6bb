// Provider records a peer can make this node keep: capped per peer and in total, through a real
// kad-dht (so a change in how kad-dht keys its records would show here), and the store's own rules.
import { describe, test, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Key } from 'interface-datastore';
import { CID } from 'multiformats/cid';
import { create as createMultihash } from 'multiformats/hashes/digest';
import { ClusterKey, createLogger, type PeerRefusalKind } from '../src/index.ts';
import { BoundedDatastore, PeerNode } from '../src/peer.ts';

const dirs: string[] = [];
after(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

function randomCid(): CID {
  return CID.createV1(0x55, createMultihash(0x12, randomBytes(32)));
}

async function startNode(clusterKey: ClusterKey, opts: { bootstrap?: string[]; perPeer?: number; total?: number; onRefused?: (kind: PeerRefusalKind) => void } = {}): Promise<PeerNode> {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'pp-dht-'));
  dirs.push(dataDir);
  return PeerNode.start({
    listen: ['/ip4/127.0.0.1/tcp/0'],
    dataDir,
    clusterKey,
    bootstrap: opts.bootstrap ?? [],
    bootstrapDns: [],
    allow: [],
    allowLoopback: true,
    limits: { providerRecordsPerPeer: opts.perPeer ?? 1_000, providerRecords: opts.total ?? 10_000 },
    ...(opts.onRefused ? { onRefused: opts.onRefused } : {}),
    logger: createLogger({ level: 'silent', service: 'test' }),
  });
}

describe('provider records from peers', () => {
  test('a peer announcing more keys than its cap: the node keeps its cap, refuses the rest, and still answers lookups for what it kept', async () => {
    const key = ClusterKey.fromBytes(randomBytes(32));
    const refused: PeerRefusalKind[] = [];
    const victim = await startNode(key, { perPeer: 10, onRefused: (kind) => refused.push(kind) });
    const flooder = await startNode(key);
    try {
      await flooder.libp2p.dial(victim.libp2p.getMultiaddrs()[0]!, { signal: AbortSignal.timeout(5_000) });
      // The victim's own provider store, as kad-dht reads it to answer GET_PROVIDERS (not a typed API).
      const held = (victim.libp2p.services.dht as unknown as { providers: { getProviders(cid: CID, o: { signal: AbortSignal }): Promise<unknown[]> } }).providers;
      // Until the victim is in the flooder's routing table, provide() has nobody to send records to.
      for (const deadline = Date.now() + 5_000; flooder.routingTableSize() === 0 && Date.now() < deadline; ) await new Promise((r) => setTimeout(r, 20));
      const cids = Array.from({ length: 30 }, randomCid);
      for (const cid of cids) await flooder.libp2p.contentRouting.provide(cid, { signal: AbortSignal.timeout(5_000) });
      // provide() returns once ADD_PROVIDER is sent; the victim handles it a moment later.
      for (const deadline = Date.now() + 5_000; victim.refusals.counts()['provider-records'] < 20 && Date.now() < deadline; ) await new Promise((r) => setTimeout(r, 20));
      assert.equal(victim.providerRecords, 10, 'the victim (which provides nothing itself) kept exactly its per-peer cap of the flooder\'s records');
      assert.equal(refused.filter((k) => k === 'provider-records').length, 20, 'and counted every other as refused');
      assert.equal(victim.refusals.counts()['provider-records'], 20);
      // The first ten were kept: the victim still names the flooder as their provider.
      const providers = await held.getProviders(cids[0]!, { signal: AbortSignal.timeout(2_000) });
      assert.deepEqual(providers.map(String), [flooder.peerId.toString()]);
      const none = await held.getProviders(cids[29]!, { signal: AbortSignal.timeout(2_000) });
      assert.deepEqual(none, [], 'a refused record is not held');
    } finally {
      await flooder.stop();
      await victim.stop();
    }
  });
});

describe('BoundedDatastore', () => {
  const prefix = '/dht/provider';
  const record = (cid: string, peer: string): Key => new Key(`${prefix}/${cid}/${peer}`);
  const value = Uint8Array.of(1, 2, 3);

  test('caps each other peer and all of them together; refreshes, own records and deletes are handled', async () => {
    const reasons: string[] = [];
    const store = new BoundedDatastore({ perPeer: 2, total: 3, perPeerPerSecond: 1_000, onRefused: (_peer, reason) => reasons.push(reason) });
    store.self = 'SELF';
    await store.put(record('A', 'p1'), value);
    await store.put(record('B', 'p1'), value);
    await store.put(record('C', 'p1'), value); // third from p1: over its cap
    assert.deepEqual(reasons, ['per-peer']);
    await store.put(record('A', 'p1'), Uint8Array.of(9)); // a refresh of a record held
    assert.deepEqual(store.get(record('A', 'p1')), Uint8Array.of(9));
    await store.put(record('A', 'p2'), value);
    await store.put(record('B', 'p2'), value); // fourth in total: over the total
    assert.deepEqual(reasons, ['per-peer', 'total']);
    for (let i = 0; i < 5; i++) await store.put(record(`own${i}`, 'SELF'), value);
    assert.equal(store.providerRecords, 8, 'own records are not capped');
    assert.equal(store.refusedRecords, 2);
    store.delete(record('A', 'p1'));
    await store.put(record('C', 'p1'), value);
    assert.equal(store.has(record('C', 'p1')), true, 'a delete frees a slot');
    assert.equal(store.has(record('B', 'p2')), false);
  });

  test('a provider faster than its rate waits (after a short burst); another provider does not wait for it', async () => {
    const store = new BoundedDatastore({ perPeer: 1_000, total: 1_000, perPeerPerSecond: 100 });
    const started = performance.now();
    const fast = Promise.all(Array.from({ length: 150 }, (_, i) => store.put(record(`k${i}`, 'fast'), value))).then(() => performance.now() - started);
    await store.put(record('x', 'other'), value);
    const otherMs = performance.now() - started;
    const fastMs = await fast;
    assert.ok(fastMs >= 1_300 && fastMs < 3_000, `150 records at 100/s after a burst of 10: about 1.4 s (${fastMs.toFixed(0)} ms)`);
    assert.ok(otherMs < 100, `the other provider was not held up (${otherMs.toFixed(0)} ms)`);
    assert.equal(store.providerRecords, 151);
  });

  test('queries: one key\'s providers from the index, every record for a scan, other keys kept apart', async () => {
    const store = new BoundedDatastore({ perPeer: 10, total: 10, perPeerPerSecond: 1_000 });
    await store.put(record('A', 'p1'), value);
    await store.put(record('A', 'p2'), value);
    await store.put(record('AB', 'p3'), value);
    await store.put(new Key('/peers/xyz'), value);
    const keys = async (q: { prefix?: string }): Promise<string[]> => {
      const out: string[] = [];
      for await (const { key } of store.query(q)) out.push(key.toString());
      return out.sort();
    };
    assert.deepEqual(await keys({ prefix: `${prefix}/A` }), [`${prefix}/A/p1`, `${prefix}/A/p2`]);
    assert.deepEqual(await keys({ prefix }), [`${prefix}/A/p1`, `${prefix}/A/p2`, `${prefix}/AB/p3`]);
    assert.deepEqual(await keys({ prefix: '/peers' }), ['/peers/xyz']);
    assert.equal((await keys({})).length, 4);
    assert.throws(() => store.get(new Key(`${prefix}/Z/p1`)), { name: 'NotFoundError' });
  });
});
