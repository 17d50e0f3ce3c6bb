// Hardening, bad input: a real `peerpull daemon` child process, attacked over raw HTTP with literal
// request targets. Every bad request gets the right 4xx with the spec's error JSON, the daemon stays up,
// its memory stays flat, nothing reaches the upstream that should not, and nothing is written to the
// store. (mirror-faults.test.ts already covers `..`, `%2e%2e`, `//`, backslashes, short/uppercase/sha512
// digests, pushes and plain Range; this suite covers the rest.)
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import net from 'node:net';
import { startRegistry, type Registry } from '../fixtures/registry.ts';
import { startPeerpull, type DaemonProcess } from '../fixtures/daemon.ts';
import { getImageLayout, pushImage, type BuiltImage } from '../fixtures/images.ts';
import { FaultProxy } from '../fixtures/fault-proxy.ts';
import { rawExchange, rawRequest } from '../fixtures/raw-http.ts';
import { ociErrorCodes } from '../fixtures/oci-error.ts';
import { download } from './mirror-helpers.ts';
import {
  diffSnapshots,
  requestPool,
  rssMiB,
  snapshotDir,
  type DirSnapshot,
} from './hardening-helpers.ts';

const CLIENT_TIMEOUT_MS = 2_000;
/** Requests for blobs that exist nowhere (the issue says 10k; PEERPULL_HARDEN_MISSES overrides). */
const MISSES = Number(process.env.PEERPULL_HARDEN_MISSES ?? 10_000);

describe('hardening: bad input against a running daemon', () => {
  let reg: Registry;
  let image: BuiltImage;
  let upstream: FaultProxy;
  let daemon: DaemonProcess;
  let snapshot: DirSnapshot;
  let rssAtStart: number;
  const known = new Set<string>();

  const layer = () => image.manifests[0]!.layers[0]!;
  const pid = () => daemon.process.pid!;
  /** The daemon answers, and nothing under its data dir changed since the snapshot. */
  const assertHealthyAndUntouched = async (what: string): Promise<void> => {
    const ok = await rawRequest(daemon.host, 'GET', '/v2/');
    assert.equal(ok.status, 200, `${what}: the daemon still answers`);
    assert.deepEqual(diffSnapshots(snapshot, snapshotDir(daemon.dataDir)), [], `${what}: nothing written to the data dir`);
  };

  before(async () => {
    [reg, image] = await Promise.all([startRegistry(), getImageLayout({ name: 'hardening-input', layers: [300_000, 5_000] })]);
    await pushImage(image, `${reg.host}/library/input:v1`);
    for (const m of image.manifests) {
      known.add(m.digest).add(m.configDigest);
      for (const l of m.layers) known.add(l.digest);
    }
    known.add(image.manifestDigest);
    upstream = await FaultProxy.start(reg.url);
    // Blobs the registry does not have are answered here, so the 10k misses do not load the real registry.
    upstream.script = (r) => {
      const digest = /\/blobs\/(sha256:[a-f0-9]{64})/.exec(r.url)?.[1];
      if (digest && !known.has(digest)) return { kind: 'respond', status: 404, headers: { 'content-type': 'application/json' }, body: '{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown"}]}' };
      return undefined;
    };
    // Run as installs run it (the launcher's allocator and V8 settings), with the heap capped as a container
    // memory limit would (Node sizes its heap from the cgroup limit): with plain node on this 24 GiB machine V8
    // reserves heap as it pleases and RSS measures that reservation, not leaks (see BENCHMARKS.md, "Soak").
    daemon = await startPeerpull({
      registries: [`${upstream.host}=${upstream.url}`],
      extraArgs: ['--client-timeout', `${CLIENT_TIMEOUT_MS}ms`],
      env: { NODE_OPTIONS: '--max-old-space-size=160' },
      launcher: true,
    });
    // One layer cached (for the Range cases), then the reference state.
    const warm = await download(`${daemon.url}/v2/library/input/blobs/${layer().digest}`);
    assert.equal(warm.digest, layer().digest);
    await new Promise((r) => setTimeout(r, 300));
    snapshot = snapshotDir(daemon.dataDir);
    rssAtStart = rssMiB(pid());
  });

  after(async () => {
    await daemon?.stop();
    await upstream?.close();
    await reg?.stop();
  });

  test('malformed names, tags, digests and ns: 400/404 with the right OCI code; nothing upstream, nothing stored', async () => {
    const hex = layer().digest.slice('sha256:'.length);
    const long = (n: number) => 'a'.repeat(n);
    const cases: [string, number, string][] = [
      // names
      ['/v2/./a/manifests/v1', 400, 'NAME_INVALID'],
      ['/v2/a/./b/manifests/v1', 400, 'NAME_INVALID'],
      ['/v2/a/b/../../../../etc/passwd/manifests/v1', 400, 'NAME_INVALID'],
      ['/v2/.../manifests/v1', 400, 'NAME_INVALID'],
      ['/v2/Library/input/manifests/v1', 400, 'NAME_INVALID'],
      ['/v2/a_/manifests/v1', 400, 'NAME_INVALID'],
      ['/v2/-a/manifests/v1', 400, 'NAME_INVALID'],
      ['/v2/a/manifests/v1/', 404, 'NAME_UNKNOWN'],
      ['/v2/a/b//manifests/v1', 400, 'NAME_INVALID'],
      [`/v2/${long(256)}/manifests/v1`, 400, 'NAME_INVALID'],
      [`/v2/${'ab/'.repeat(120)}c/manifests/v1`, 400, 'NAME_INVALID'],
      [`/v2/${long(4000)}/blobs/${layer().digest}`, 400, 'NAME_INVALID'],
      ['/v2/a%00b/manifests/v1', 400, 'NAME_INVALID'],
      ['/v2/library%2finput/manifests/v1', 400, 'NAME_INVALID'],
      ['/v2/library/input/manifests/v1%00', 400, 'NAME_INVALID'],
      ['/v2/library/input/manifests/%2e%2e', 400, 'NAME_INVALID'],
      ['/v2/%C3%A9/manifests/v1', 400, 'NAME_INVALID'],
      ['/v2/\u00e9t\u00e9/manifests/v1', 400, 'NAME_INVALID|UNSUPPORTED'], // raw UTF-8: the parser or the name check refuses it
      // tags
      [`/v2/library/input/manifests/${long(129)}`, 400, 'TAG_INVALID'],
      ['/v2/library/input/manifests/-v1', 400, 'TAG_INVALID'],
      ['/v2/library/input/manifests/.v1', 400, 'TAG_INVALID'],
      ['/v2/library/input/manifests/v1+1', 400, 'TAG_INVALID'],
      ['/v2/library/input/manifests/..', 400, 'TAG_INVALID'],
      // digests
      [`/v2/library/input/blobs/sha256:${hex.slice(1)}`, 400, 'DIGEST_INVALID'],
      [`/v2/library/input/blobs/sha256:${hex}0`, 400, 'DIGEST_INVALID'],
      [`/v2/library/input/blobs/sha256:${hex.slice(1)}g`, 400, 'DIGEST_INVALID'],
      ['/v2/library/input/blobs/sha256:', 400, 'DIGEST_INVALID'],
      ['/v2/library/input/blobs/sha256', 400, 'DIGEST_INVALID'],
      [`/v2/library/input/blobs/SHA256:${hex}`, 400, 'DIGEST_INVALID'],
      [`/v2/library/input/blobs/sha384:${hex.slice(0, 48)}${hex.slice(0, 48)}`, 400, 'DIGEST_INVALID'],
      [`/v2/library/input/blobs/md5:${hex.slice(0, 32)}`, 400, 'DIGEST_INVALID'],
      [`/v2/library/input/blobs/blake3:${hex}`, 400, 'DIGEST_INVALID'],
      [`/v2/library/input/blobs/sha256:${hex}:${hex}`, 400, 'DIGEST_INVALID'],
      [`/v2/library/input/blobs/sha256:${'0'.repeat(5000)}`, 400, 'DIGEST_INVALID'],
      [`/v2/library/input/manifests/sha256:${hex.slice(2)}`, 400, 'DIGEST_INVALID'],
      [`/v2/library/input/manifests/sha256:${hex.toUpperCase()}`, 400, 'DIGEST_INVALID'],
      // ns garbage (the ns suite covers hosts; these are malformed values)
      ['/v2/library/input/manifests/v1?ns=', 404, 'NAME_UNKNOWN'],
      ['/v2/library/input/manifests/v1?ns=%00', 404, 'NAME_UNKNOWN'],
      [`/v2/library/input/manifests/v1?ns=${long(5000)}`, 404, 'NAME_UNKNOWN'],
      ['/v2/library/input/manifests/v1?ns=%E0%A4%A', 404, 'NAME_UNKNOWN'],
      // other endpoints
      ['/v2/_catalog', 404, 'NAME_UNKNOWN'],
      ['/v2/library/input/tags/list', 404, 'UNSUPPORTED'],
      [`/v2/library/input/referrers/${layer().digest}`, 404, 'UNSUPPORTED'],
      ['/v2/library/input/blobs/', 404, 'NAME_UNKNOWN'],
      ['/v2/library/input', 404, 'NAME_UNKNOWN'],
      ['/v3/library/input/manifests/v1', 404, 'NAME_UNKNOWN'],
    ];
    const upstreamBefore = upstream.requests.length;
    for (const [target, status, code] of cases) {
      for (const method of ['GET', 'HEAD']) {
        const res = await rawRequest(daemon.host, method, target);
        assert.equal(res.status, status, `${method} ${target.slice(0, 120)}: ${res.body.toString().slice(0, 200)}`);
        if (method === 'HEAD') {
          // (The HTTP parser's own refusals are written before any method is known, with a body, then closed.)
          if (!code.includes('UNSUPPORTED')) assert.equal(res.body.length, 0, `HEAD ${target.slice(0, 120)}: no body`);
          continue;
        }
        assert.match(res.headers['content-type'] ?? '', /^application\/json/, target.slice(0, 120));
        const codes = ociErrorCodes(res.body);
        assert.ok(codes?.length === 1 && code.split('|').includes(codes[0]!), `${method} ${target.slice(0, 120)}: ${JSON.stringify(codes)}, expected ${code}`);
        assert.ok(res.body.length < 2_000, `the error echoes at most a bounded part of the input (${res.body.length} bytes)`);
      }
    }
    assert.equal(upstream.requests.length, upstreamBefore, `none reached the upstream: ${upstream.requests.slice(upstreamBefore).map((r) => r.url).join(', ')}`);
    await assertHealthyAndUntouched('malformed names');
  });

  test('requests the HTTP parser refuses (NUL, control bytes, bad request lines, smuggling, h2 preface): 400 OCI JSON, connection closed', async () => {
    const digest = layer().digest;
    const raw: [string, string][] = [
      ['NUL in the target', `GET /v2/library/in\0put/blobs/${digest} HTTP/1.1\r\nHost: x\r\n\r\n`],
      ['NUL in a header', `GET /v2/ HTTP/1.1\r\nHost: x\r\nX-A: a\0b\r\n\r\n`],
      ['CR in the target', `GET /v2/a\rb/manifests/v1 HTTP/1.1\r\nHost: x\r\n\r\n`],
      ['DEL in the target', `GET /v2/a\x7fb/manifests/v1 HTTP/1.1\r\nHost: x\r\n\r\n`],
      ['tab in the target', `GET /v2/a\tb/manifests/v1 HTTP/1.1\r\nHost: x\r\n\r\n`],
      ['bad version', `GET /v2/ HTTP/7.1\r\nHost: x\r\n\r\n`],
      ['garbage', `\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 (a TLS ClientHello on the plain port)\r\n\r\n`],
      ['HTTP/2 preface', 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'],
      ['Content-Length and chunked (smuggling)', `GET /v2/ HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`],
      ['two Content-Lengths', `GET /v2/ HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello`],
      ['negative Content-Length', `GET /v2/ HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n`],
      ['bad chunk size', `POST /v2/a/blobs/uploads/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n`],
      ['header without colon', `GET /v2/ HTTP/1.1\r\nHost: x\r\nthis is not a header\r\n\r\n`],
      ['space before colon', `GET /v2/ HTTP/1.1\r\nHost : x\r\n\r\n`],
      ['bare LF line endings with obs-fold', `GET /v2/ HTTP/1.1\nHost: x\nX-A: a\n b\n\n`],
    ];
    for (const [what, request] of raw) {
      const res = await rawExchange(daemon.host, request, 5_000);
      assert.equal(res.closedBy, 'server', `${what}: the server closes the connection`);
      assert.equal(res.status, 400, `${what}: ${res.status} ${res.body.toString('latin1').slice(0, 200)}`);
      assert.deepEqual(ociErrorCodes(res.body), ['UNSUPPORTED'], what);
    }
    await assertHealthyAndUntouched('parser errors');
  });

  test('unknown and unsupported methods get a 4xx OCI error; nothing is routed upstream', async () => {
    const upstreamBefore = upstream.requests.length;
    const cases: [string, string, number][] = [
      ['OPTIONS', '/v2/library/input/manifests/v1', 405],
      ['TRACE', '/v2/library/input/manifests/v1', 405],
      ['PROPFIND', '/v2/library/input/manifests/v1', 405],
      ['PURGE', `/v2/library/input/blobs/${layer().digest}`, 405],
      ['LOCK', '/v2/', 405],
      ['FOO', '/v2/', 400],
      ['get', '/v2/', 400],
      ['G\u00c9T', '/v2/', 400],
    ];
    for (const [method, target, status] of cases) {
      const res = await rawExchange(daemon.host, `${method} ${target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`, 5_000);
      assert.equal(res.status, status, `${method} ${target}: ${res.body.toString('latin1').slice(0, 200)}`);
      assert.ok(ociErrorCodes(res.body)?.length, `${method} ${target}: OCI error JSON, got ${res.body.toString('latin1').slice(0, 200)}`);
    }
    // CONNECT (a proxy tunnel) is not answered at all: the connection is closed, nothing is dialled.
    const connect = await rawExchange(daemon.host, `CONNECT ${upstream.host} HTTP/1.1\r\nHost: ${upstream.host}\r\n\r\n`, 5_000);
    assert.equal(connect.closedBy, 'server');
    assert.equal(connect.status, undefined, 'no tunnel established');
    assert.equal(upstream.requests.length, upstreamBefore);
    await assertHealthyAndUntouched('methods');
  });

  test('Range garbage: 416 RANGE_INVALID with Content-Range */size; absurd but valid ranges are clamped; HEAD ignores Range', async () => {
    const l = layer();
    const target = `/v2/library/input/blobs/${l.digest}`;
    const invalid = [
      'bytes=0-1,5-6', 'bytes=0-0,-1', 'bytes=5-1', 'bytes=-0', 'bytes=--1', 'bytes=-1-2', 'bytes=1-2-3', 'bytes=abc', 'bytes=0x10-',
      'bytes=1e3-', 'bytes=1.5-2', 'bytes=+1-2', 'bytes=-', 'bytes=', 'items=0-1', 'bytes 0-1', 'bytes=\u00bd-', `bytes=${'9'.repeat(40)}-`,
      `bytes=${'9'.repeat(7000)}-`, `bytes=${l.size}-${l.size + 1}`, `bytes=${Number.MAX_SAFE_INTEGER}-`, `bytes=${'0-1,'.repeat(1000)}2-3`,
    ];
    for (const range of invalid) {
      const res = await rawRequest(daemon.host, 'GET', target, { headers: { range } });
      assert.equal(res.status, 416, `Range: ${range.slice(0, 60)}`);
      assert.equal(res.headers['content-range'], `bytes */${l.size}`, range.slice(0, 60));
      assert.deepEqual(ociErrorCodes(res.body), ['RANGE_INVALID'], range.slice(0, 60));
    }
    const clamped: [string, number, number][] = [
      [`bytes=0-${'9'.repeat(40)}`, 0, l.size - 1],
      [`bytes=10-${Number.MAX_SAFE_INTEGER}`, 10, l.size - 1],
      [`bytes=-${'9'.repeat(30)}`, 0, l.size - 1],
      ['bytes=0000000000000000000000000000005-6', 5, 6],
    ];
    for (const [range, start, end] of clamped) {
      const res = await download(`${daemon.url}${target}`, { headers: { range }, keepBody: true });
      assert.equal(res.status, 206, range);
      assert.equal(res.headers['content-range'], `bytes ${start}-${end}/${l.size}`, range);
      assert.equal(res.bytes, end - start + 1, range);
    }
    const head = await rawRequest(daemon.host, 'HEAD', target, { headers: { range: 'bytes=5-1' } });
    assert.equal(head.status, 200);
    assert.equal(head.headers['content-length'], String(l.size));
    // Garbage Range on a blob that exists nowhere: still the prompt 404 (the miss is decided first).
    const missing = `sha256:${crypto.createHash('sha256').update('range-missing').digest('hex')}`;
    const miss = await rawRequest(daemon.host, 'GET', `/v2/library/input/blobs/${missing}`, { headers: { range: 'bytes=5-1' } });
    assert.equal(miss.status, 404);
    assert.deepEqual(ociErrorCodes(miss.body), ['BLOB_UNKNOWN']);
    assert.equal(miss.headers['x-peerpull-miss'], undefined, 'the upstream answered "not found": not an outage');
    await assertHealthyAndUntouched('ranges');
  });

  test('huge headers and huge URLs: 431 OCI JSON and a closed connection; the next request is served', async () => {
    const cases: [string, string][] = [
      ['one 20 KiB header', `GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20 * 1024)}\r\n\r\n`],
      ['400 headers of 60 bytes', `GET /v2/ HTTP/1.1\r\nHost: x\r\n${Array.from({ length: 400 }, (_, i) => `X-H${i}: ${'b'.repeat(50)}\r\n`).join('')}\r\n`],
      ['a 64 KiB URL', `GET /v2/${'a'.repeat(64 * 1024)}/manifests/v1 HTTP/1.1\r\nHost: x\r\n\r\n`],
      ['a 1 MiB header', `GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Big: ${'c'.repeat(1024 * 1024)}\r\n\r\n`],
    ];
    for (const [what, request] of cases) {
      const res = await rawExchange(daemon.host, request, 5_000);
      // A client still writing when the server answers and closes may see a reset instead of the answer.
      assert.notEqual(res.closedBy, 'timeout', what);
      if (res.closedBy === 'error' && res.status === undefined) continue;
      assert.equal(res.status, 431, `${what}: ${res.status} ${res.body.toString('latin1').slice(0, 200)}`);
      assert.deepEqual(ociErrorCodes(res.body), ['UNSUPPORTED'], what);
    }
    // Just under the limit (Node's 16 KiB) is a normal request.
    const fine = await rawExchange(daemon.host, `GET /v2/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Big: ${'d'.repeat(12 * 1024)}\r\n\r\n`, 5_000);
    assert.equal(fine.status, 200);
    await assertHealthyAndUntouched('huge headers');
  });

  test('slow-loris: header drippers, body drippers and idle connections are cut off within the client timeout; others are served meanwhile', async () => {
    const started = performance.now();
    const closedAt: Record<string, number> = {};
    const answers: Record<string, string> = {};
    const sockets: net.Socket[] = [];
    const open = (name: string, onConnect: (s: net.Socket) => void): Promise<void> =>
      new Promise((resolve) => {
        const s = net.connect(daemon.port, '127.0.0.1', () => onConnect(s));
        sockets.push(s);
        let got = '';
        s.on('data', (c: Buffer) => (got += c.toString('latin1')));
        s.on('error', () => undefined);
        s.once('close', () => {
          closedAt[name] = performance.now() - started;
          answers[name] = got;
          resolve();
        });
      });
    const drip = (s: net.Socket, text: string, everyMs: number): void => {
      let i = 0;
      const timer = setInterval(() => {
        if (s.destroyed || i >= text.length) return clearInterval(timer);
        s.write(text[i++] as string);
      }, everyMs);
    };
    const request = `GET /v2/library/input/blobs/${layer().digest} HTTP/1.1\r\nHost: x\r\nUser-Agent: ${'x'.repeat(200)}\r\n\r\n`;
    const all = [
      open('header, 1 byte/s', (s) => drip(s, request, 1_000)),
      open('header, 1 byte/100ms', (s) => drip(s, request, 100)),
      open('idle, not a byte', () => undefined),
      open('request line only', (s) => s.write('GET /v2/ HTTP/1.1\r\n')),
      open('POST body, 1 byte/s', (s) => {
        s.write('POST /v2/library/input/blobs/uploads/ HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n');
        drip(s, 'z'.repeat(1000), 1_000);
      }),
      open('GET with a body that never comes', (s) => s.write('GET /v2/ HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\nabc')),
      // 100 idle connections at once do not take the server down either.
      ...Array.from({ length: 100 }, (_, i) => open(`idle #${i}`, () => undefined)),
    ];
    // While they hang on, a normal client is served at once.
    await new Promise((r) => setTimeout(r, 500));
    const t0 = performance.now();
    const normal = await download(`${daemon.url}/v2/library/input/blobs/${layer().digest}`);
    assert.equal(normal.digest, layer().digest);
    assert.ok(performance.now() - t0 < 1_000, `a normal request is served promptly meanwhile (${(performance.now() - t0).toFixed(0)} ms)`);
    const guard = setTimeout(() => sockets.forEach((s) => s.destroy()), CLIENT_TIMEOUT_MS + 10_000);
    await Promise.all(all);
    clearTimeout(guard);
    // The deadline is checked every client-timeout/10 (at least 100 ms, at most 1 s): allow that plus load.
    const limit = CLIENT_TIMEOUT_MS + 2_500;
    for (const [name, at] of Object.entries(closedAt)) {
      assert.ok(at < limit, `${name}: disconnected after ${at.toFixed(0)} ms (limit ${limit} ms)`);
      if (!name.startsWith('idle #')) assert.ok(at >= CLIENT_TIMEOUT_MS - 200, `${name}: not cut before the timeout (${at.toFixed(0)} ms)`);
    }
    for (const name of ['header, 1 byte/s', 'header, 1 byte/100ms', 'idle, not a byte', 'request line only']) {
      assert.match(answers[name] ?? '', /^HTTP\/1\.1 408 /, `${name}: answered 408 (${JSON.stringify((answers[name] ?? '').slice(0, 80))})`);
      assert.deepEqual(ociErrorCodes(Buffer.from((answers[name] ?? '').split('\r\n\r\n')[1] ?? '', 'latin1')), ['UNSUPPORTED'], name);
    }
    // The body drippers got their answer at once (405 / 200), then were cut off at the deadline.
    assert.match(answers['POST body, 1 byte/s'] ?? '', /^HTTP\/1\.1 405 /);
    await assertHealthyAndUntouched('slow-loris');
  });

  test(`${MISSES} requests for blobs that exist nowhere (keep-alive, 50 at a time): all 404 BLOB_UNKNOWN, RSS flat, nothing stored`, async (t) => {
    const digestOf = (i: number) => `sha256:${crypto.createHash('sha256').update(`missing-${i}`).digest('hex')}`;
    const warmup = Math.min(2_000, Math.floor(MISSES / 5));
    const first = await requestPool(daemon.url, warmup, 50, (i) => ({ method: i % 10 === 0 ? 'HEAD' : 'GET', path: `/v2/library/input/blobs/${digestOf(i)}` }));
    assert.deepEqual([...first.statuses], [[404, warmup]]);
    const rssAfterWarmup = rssMiB(pid());
    const rest = await requestPool(daemon.url, MISSES - warmup, 50, (i) => ({ method: i % 10 === 0 ? 'HEAD' : 'GET', path: `/v2/library/input/blobs/${digestOf(warmup + i)}` }));
    const rssAfter = rssMiB(pid());
    t.diagnostic(`${MISSES} misses in ${((first.ms + rest.ms) / 1000).toFixed(1)} s (${(MISSES / ((first.ms + rest.ms) / 1000)).toFixed(0)}/s); RSS ${rssAtStart.toFixed(0)} MiB at start, ${rssAfterWarmup.toFixed(0)} after ${warmup}, ${rssAfter.toFixed(0)} after ${MISSES}`);
    assert.deepEqual([...rest.statuses], [[404, MISSES - warmup]], `statuses; errors: ${JSON.stringify([...rest.errors])}`);
    assert.equal(rest.errors.size + first.errors.size, 0);
    assert.deepEqual([...first.nonOciErrors, ...rest.nonOciErrors], [], 'every 404 body is OCI error JSON');
    assert.ok(rssAfter - rssAfterWarmup < 40, `RSS stays flat: ${rssAfterWarmup.toFixed(0)} -> ${rssAfter.toFixed(0)} MiB over ${MISSES - warmup} more misses`);
    assert.ok(rssAfter - rssAtStart < 120, `RSS bounded overall: ${rssAtStart.toFixed(0)} -> ${rssAfter.toFixed(0)} MiB`);
    await new Promise((r) => setTimeout(r, 200));
    await assertHealthyAndUntouched('misses');
  });
});
