// The HTTP data plane between nodes: requests are authenticated with the cluster key (HMAC of method,
// path, Range, time and peer id); a request without the key, with another key, too old or altered on
// the way gets 401/403 and no byte; members get the same blob semantics as over libp2p (ranges, HEAD,
// busy beyond the upload limit, not found).
import assert from 'node:assert/strict';
import { randomBytes, createHash } from 'node:crypto';
import { PassThrough, Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import type { PeerId } from '@libp2p/interface';
import { ClusterKey, createLogger, type BlobHandle, type BlobResolver, type Digest } from '@peerpull/common';
import { PeerHttpAuth } from '../src/peer-http-auth.ts';
import { HttpTransfer, PEER_HTTP_PATH_PREFIX, PeerHttpServer } from '../src/peer-http-transfer.ts';
import { PeerBlobServing, isPeerStall, type PeerTransfer } from '../src/peer-transfer.ts';

const logger = createLogger({ level: 'silent', service: 'test' });
const PEER = '12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo';
const key = ClusterKey.fromBytes(randomBytes(32));
const otherKey = ClusterKey.fromBytes(randomBytes(32));

describe('cluster-key authentication of peer HTTP requests', () => {
  const request = { method: 'GET', path: `${PEER_HTTP_PATH_PREFIX}sha256:${'a'.repeat(64)}`, range: 'bytes=100-' };

  test('a request signed with the cluster key is accepted and names the sender', () => {
    const auth = new PeerHttpAuth(key);
    assert.deepEqual(auth.verify(request, auth.sign(request, PEER)), { ok: true, peer: PEER });
  });

  test('no credentials or malformed ones: 401', () => {
    const auth = new PeerHttpAuth(key);
    assert.equal(auth.verify(request, undefined).ok, false);
    for (const header of [undefined, '', 'Bearer x', `PeerPull-HMAC peer=${PEER}, ts=1, sig=zz`, `PeerPull-HMAC peer=../x, ts=1, sig=${'0'.repeat(64)}`]) {
      const r = auth.verify(request, header);
      assert.ok(!r.ok && r.status === 401, `${header}: ${JSON.stringify(r)}`);
    }
  });

  test('signed with another cluster key: 403', () => {
    const r = new PeerHttpAuth(key).verify(request, new PeerHttpAuth(otherKey).sign(request, PEER));
    assert.ok(!r.ok && r.status === 403, JSON.stringify(r));
  });

  test('older (or newer) than the window: 403, even with the right key', () => {
    const signedAt = 1_700_000_000_000;
    const header = new PeerHttpAuth(key, { now: () => signedAt }).sign(request, PEER);
    assert.equal(new PeerHttpAuth(key, { now: () => signedAt + 29_000 }).verify(request, header).ok, true, 'inside the window');
    for (const skew of [31_000, -31_000, 3_600_000]) {
      const r = new PeerHttpAuth(key, { now: () => signedAt + skew }).verify(request, header);
      assert.ok(!r.ok && r.status === 403, `${skew} ms: ${JSON.stringify(r)}`);
    }
  });

  test('a signature replayed on another path, method, range or as another peer: 403', () => {
    const auth = new PeerHttpAuth(key);
    const header = auth.sign(request, PEER);
    for (const altered of [
      { ...request, path: `${PEER_HTTP_PATH_PREFIX}sha256:${'b'.repeat(64)}` },
      { ...request, method: 'HEAD' },
      { ...request, range: 'bytes=0-' },
      { ...request, range: undefined },
    ]) {
      const r = auth.verify(altered, header);
      assert.ok(!r.ok && r.status === 403, `${JSON.stringify(altered)}: ${JSON.stringify(r)}`);
    }
    const asOther = header.replace(`peer=${PEER}`, 'peer=12D3KooWAnotherPeer');
    const r = auth.verify(request, asOther);
    assert.ok(!r.ok && r.status === 403, JSON.stringify(r));
  });
});

/**
 * A resolver as the serving side sees it: one complete blob, and one still downloading whose
 * readers get its first half at once and the rest when `finishDownload` is called.
 */
function resolverWith(bytes: Buffer): { blobs: BlobResolver; digest: Digest; growing: Digest; finishDownload: () => void } {
  const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}` as Digest;
  const growing = `sha256:${createHash('sha256').update(bytes).update('x').digest('hex')}` as Digest;
  const handle: BlobHandle = { digest, size: bytes.length, source: 'local', read: (start = 0) => Readable.from([bytes.subarray(start)]), available: () => bytes.length };
  const readers: PassThrough[] = [];
  const half = bytes.length / 2;
  const inflight: BlobHandle = {
    digest: growing,
    size: bytes.length,
    source: 'upstream',
    read: (start = 0) => {
      const out = new PassThrough();
      out.write(bytes.subarray(start, half));
      readers.push(out);
      return out;
    },
    available: () => half,
  };
  const blobs = { localOrInflight: async (d: Digest) => (d === digest ? handle : d === growing ? inflight : undefined) } as unknown as BlobResolver;
  return { blobs, digest, growing, finishDownload: () => readers.forEach((r) => r.end(bytes.subarray(half))) };
}

async function readAll(body: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of body as AsyncIterable<Buffer>) chunks.push(c);
  return Buffer.concat(chunks);
}

describe('the HTTP data plane: server and requester', () => {
  const bytes = randomBytes(300_000);
  const { blobs, digest, growing, finishDownload } = resolverWith(bytes);
  const peer = { toString: () => PEER } as unknown as PeerId;
  const noFallback: PeerTransfer = { open: () => Promise.reject(new Error('fallback used')) };
  let server: PeerHttpServer;
  let origin: string;
  const transferWith = (clusterKey: ClusterKey): HttpTransfer =>
    new HttpTransfer({ self: PEER, auth: new PeerHttpAuth(clusterKey), addresses: { lookup: async () => origin, forget: () => undefined }, fallback: noFallback, connectTimeoutMs: 2_000, idleTimeoutMs: 2_000, logger });
  const opts = (): { signal: AbortSignal; connectTimeoutMs: number; idleTimeoutMs: number } => ({ signal: AbortSignal.timeout(10_000), connectTimeoutMs: 2_000, idleTimeoutMs: 2_000 });

  before(async () => {
    server = await PeerHttpServer.start({ listen: '127.0.0.1:0', serving: new PeerBlobServing({ blobs, uploadLimit: 1, uploadLimitPerPeer: 2, logger }), auth: new PeerHttpAuth(key), logger });
    origin = `http://127.0.0.1:${server.address.port}`;
  });
  after(() => server.close());

  test('a member gets the whole blob, a range of it, and its size', async () => {
    const transfer = transferWith(key);
    try {
      const whole = await transfer.open(peer, { digest, offset: 0 }, opts());
      assert.ok('header' in whole && whole.transport === 'http');
      assert.deepEqual(whole.header, { status: 'ok', size: bytes.length, complete: true });
      assert.ok((await readAll(whole.body)).equals(bytes));
      const ranged = await transfer.open(peer, { digest, offset: 123_456 }, opts());
      assert.ok('header' in ranged);
      assert.ok((await readAll(ranged.body)).equals(bytes.subarray(123_456)));
      const head = await transfer.open(peer, { digest, offset: 0, head: true }, opts());
      assert.ok('header' in head && head.header.size === bytes.length);
      const missing = await transfer.open(peer, { digest: `sha256:${'0'.repeat(64)}` as Digest, offset: 0 }, opts());
      assert.ok(!('header' in missing) && missing.status === 'not-found');
    } finally {
      await transfer.close();
    }
  });

  test('beyond the upload limit: busy, unless the requester insists', async () => {
    const transfer = transferWith(key);
    try {
      // Still downloading: the upload follows the blob as it grows and holds the only upload slot meanwhile.
      const first = await transfer.open(peer, { digest: growing, offset: 1000 }, opts());
      assert.ok('header' in first);
      assert.deepEqual(first.header, { status: 'ok', size: bytes.length, complete: false });
      const busy = await transfer.open(peer, { digest, offset: 0 }, opts());
      assert.ok(!('header' in busy) && busy.status === 'busy', JSON.stringify(busy));
      const insisting = await transfer.open(peer, { digest, offset: 0, insist: true }, opts());
      assert.ok('header' in insisting);
      assert.ok((await readAll(insisting.body)).equals(bytes));
      const rest = readAll(first.body);
      finishDownload();
      assert.ok((await rest).equals(bytes.subarray(1000)), 'the in-progress blob was followed to its end');
      // No bytes past the requested offset yet: "not found", not a wait (two downloading nodes must not wait on each other).
      const ahead = await transfer.open(peer, { digest: growing, offset: bytes.length / 2 }, opts());
      assert.ok(!('header' in ahead) && ahead.status === 'not-found', JSON.stringify(ahead));
    } finally {
      await transfer.close();
    }
  });

  test('a peer that stops sending mid-body is dropped after the idle deadline, counted as a stall', async () => {
    const transfer = new HttpTransfer({ self: PEER, auth: new PeerHttpAuth(key), addresses: { lookup: async () => origin, forget: () => undefined }, fallback: noFallback, connectTimeoutMs: 2_000, idleTimeoutMs: 300, logger });
    try {
      const stalled = await transfer.open(peer, { digest: growing, offset: 0, insist: true }, { ...opts(), idleTimeoutMs: 300 });
      assert.ok('header' in stalled);
      const started = performance.now();
      await assert.rejects(readAll(stalled.body), (err: Error) => isPeerStall(err));
      const ms = performance.now() - started;
      assert.ok(ms < 2_000, `broken off after ${ms.toFixed(0)} ms`);
    } finally {
      await transfer.close();
    }
  });

  test('a peer that does not serve HTTP is fetched from over the fallback (libp2p), and says so', async () => {
    const viaFallback: PeerTransfer = { open: async () => ({ status: 'not-found', transport: 'libp2p' }) };
    let forgotten = 0;
    const transfer = new HttpTransfer({
      self: PEER,
      auth: new PeerHttpAuth(key),
      addresses: { lookup: async () => undefined, forget: () => void forgotten++ },
      fallback: viaFallback,
      connectTimeoutMs: 2_000,
      idleTimeoutMs: 2_000,
      logger,
    });
    try {
      assert.deepEqual(await transfer.open(peer, { digest, offset: 0 }, opts()), { status: 'not-found', transport: 'libp2p' });
    } finally {
      await transfer.close();
    }
    // An advertised address that refuses connections is forgotten (asked again next time).
    const gone = new HttpTransfer({
      self: PEER,
      auth: new PeerHttpAuth(key),
      addresses: { lookup: async () => 'http://127.0.0.1:1', forget: () => void forgotten++ },
      fallback: noFallback,
      connectTimeoutMs: 2_000,
      idleTimeoutMs: 2_000,
      logger,
    });
    try {
      await assert.rejects(gone.open(peer, { digest, offset: 0 }, opts()));
      assert.equal(forgotten, 1);
    } finally {
      await gone.close();
    }
  });

  test('another cluster key: refused, and the requester says so by failing', async () => {
    const transfer = transferWith(otherKey);
    try {
      await assert.rejects(transfer.open(peer, { digest, offset: 0 }, opts()), /HTTP 403/);
    } finally {
      await transfer.close();
    }
  });

  test('without the key: 401 with OCI error JSON and not one byte of the blob, whatever the path', async () => {
    for (const [method, path, headers] of [
      ['GET', `${PEER_HTTP_PATH_PREFIX}${digest}`, {}],
      ['GET', `${PEER_HTTP_PATH_PREFIX}${digest}`, { authorization: 'Basic Zm9vOmJhcg==' }],
      ['HEAD', `${PEER_HTTP_PATH_PREFIX}${digest}`, {}],
      ['GET', `/v2/library/x/blobs/${digest}`, {}],
      ['POST', `${PEER_HTTP_PATH_PREFIX}${digest}`, {}],
    ] as const) {
      const res = await fetch(`${origin}${path}`, { method, headers, signal: AbortSignal.timeout(5_000) });
      const body = Buffer.from(await res.arrayBuffer());
      assert.equal(res.status, 401, `${method} ${path}`);
      if (method !== 'HEAD') assert.equal((JSON.parse(body.toString()) as { errors: { code: string }[] }).errors[0]?.code, 'UNAUTHORIZED');
      assert.ok(body.length < 200 && !body.includes(bytes.subarray(0, 32)), 'no blob bytes');
    }
    // A signature taken from one request does not open another path.
    const auth = new PeerHttpAuth(key);
    const signed = auth.sign({ method: 'GET', path: `${PEER_HTTP_PATH_PREFIX}sha256:${'0'.repeat(64)}` }, PEER);
    const res = await fetch(`${origin}${PEER_HTTP_PATH_PREFIX}${digest}`, { headers: { authorization: signed }, signal: AbortSignal.timeout(5_000) });
    assert.equal(res.status, 403);
    assert.ok(!Buffer.from(await res.arrayBuffer()).includes(bytes.subarray(0, 32)));
  });

  test('a member with a bad request gets the OCI error JSON with the right 4xx', async () => {
    const auth = new PeerHttpAuth(key);
    const get = async (path: string, headers: Record<string, string> = {}): Promise<{ status: number; code: string | undefined }> => {
      const res = await fetch(`${origin}${path}`, { headers: { authorization: auth.sign({ method: 'GET', path, range: headers.range }, PEER), ...headers }, signal: AbortSignal.timeout(5_000) });
      const doc = (await res.json()) as { errors: { code: string }[] };
      return { status: res.status, code: doc.errors[0]?.code };
    };
    assert.deepEqual(await get(`${PEER_HTTP_PATH_PREFIX}sha256:nothex`), { status: 400, code: 'DIGEST_INVALID' });
    assert.deepEqual(await get(`${PEER_HTTP_PATH_PREFIX}${digest}`, { range: 'bytes=0-10' }), { status: 416, code: 'RANGE_INVALID' });
    assert.deepEqual(await get(`${PEER_HTTP_PATH_PREFIX}${digest}`, { range: `bytes=${bytes.length + 1}-` }), { status: 416, code: 'RANGE_INVALID' });
    assert.deepEqual(await get('/elsewhere'), { status: 404, code: 'NAME_UNKNOWN' });
  });
});
