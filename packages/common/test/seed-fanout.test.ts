// The seed's burst control (registry-api `peerFanout`): at most N P2P-capable daemons download one
// blob from it at once; the others are told "busy" and, so that they need not wait for the DHT to
// find those N, the answer names them (their peer ids, as they sent them).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { pino } from 'pino';
import { request } from 'undici';
import { BlobResolver } from '../src/blob-resolver.ts';
import type { BlobSource } from '../src/blob-source.ts';
import { ContentStore } from '../src/content-store.ts';
import { sha256Digest } from '../src/digest.ts';
import type { ManifestResolver } from '../src/manifest-resolver.ts';
import { MirrorMetrics } from '../src/metrics.ts';
import { createMirrorServer, type MirrorServer } from '../src/mirror-server.ts';
import { PEER_HEADER, PROVIDERS_HEADER } from '../src/registry-api.ts';
import { RegistryAllowlist } from '../src/registry-allowlist.ts';

const logger = pino({ level: 'silent' });
const DATA = randomBytes(256 * 1024);
const DIGEST = sha256Digest(DATA);
const PEER_A = '12D3KooWAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA';
const PEER_B = '12D3KooWBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB';

describe('seed fan-out: a busy answer names the daemons receiving the blob', () => {
  let root: string;
  let store: ContentStore;
  let app: MirrorServer;
  let origin: string;
  /** The upstream's body: half the blob now, the rest when the test says (so uploads stay in progress). */
  const upstreamBody = new PassThrough();

  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'peerpull-fanout-'));
    store = await ContentStore.open({ dir: root, maxBytes: 1e9, logger });
    const upstream: BlobSource = {
      name: 'upstream',
      open: async () => ({ size: DATA.length, offset: 0, body: upstreamBody }),
      size: async () => DATA.length,
    };
    upstreamBody.write(DATA.subarray(0, DATA.length / 2));
    app = await createMirrorServer({
      logger,
      store,
      allowlist: new RegistryAllowlist(['example.test=http://127.0.0.1:9']),
      defaultRegistry: 'example.test',
      manifests: {} as ManifestResolver,
      blobs: new BlobResolver({ store, sources: [upstream], logger }),
      metrics: new MirrorMetrics(),
      peerFanout: 2,
    });
    await app.listen({ host: '127.0.0.1', port: 0 });
    const address = app.server.address() as { port: number };
    origin = `http://127.0.0.1:${address.port}`;
  });

  after(async () => {
    await app?.close();
    await store?.close();
    await rm(root, { recursive: true, force: true });
  });

  const get = (headers: Record<string, string>) =>
    request(`${origin}/v2/library/x/blobs/${DIGEST}`, { headers: { 'x-peerpull-p2p': '1', ...headers }, headersTimeout: 5_000, bodyTimeout: 5_000 });

  test('two daemons get the blob; the third is told busy with their peer ids (a garbled id is not echoed)', async () => {
    const a = await get({ [PEER_HEADER]: PEER_A });
    const b = await get({ [PEER_HEADER]: 'not a peer id, <script>' });
    assert.equal(a.statusCode, 200);
    assert.equal(b.statusCode, 200);

    const busy = await get({ [PEER_HEADER]: '12D3KooWCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCC' });
    assert.equal(busy.statusCode, 503);
    assert.equal(busy.headers['x-peerpull-busy'], '1');
    assert.equal(busy.headers[PROVIDERS_HEADER], PEER_A);
    const error = (await busy.body.json()) as { errors: { code: string }[] };
    assert.equal(error.errors[0]?.code, 'UNAVAILABLE');

    // A daemon that insists (busy everywhere for a while) is served beyond the fan-out.
    const insisting = await get({ [PEER_HEADER]: PEER_B, 'x-peerpull-insist': '1' });
    assert.equal(insisting.statusCode, 200);

    upstreamBody.end(DATA.subarray(DATA.length / 2));
    for (const res of [a, b, insisting]) assert.ok(Buffer.from(await res.body.arrayBuffer()).equals(DATA));
  });

  test('recipients that finished keep their slot a while and are still named (they hold the whole blob now)', async () => {
    // Their slots are held a while: the DHT has yet to spread their announcement.
    const held = await get({});
    assert.equal(held.statusCode, 503);
    assert.equal(held.headers[PROVIDERS_HEADER], PEER_A);
    await held.body.dump();
  });
});
