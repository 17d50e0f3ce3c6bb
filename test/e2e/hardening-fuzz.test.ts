// Hardening, property-based: fast-check generates registry requests (names with `..`, `.`, `//`, percent
// escapes, NUL and other control bytes, over-long names and tags, good, bad and unsupported digests, Range
// garbage, odd methods, hostile `ns` values) and sends them over raw TCP to a running `peerpull daemon`.
// For every request: a prompt, well-formed answer; never a 5xx; every error is the spec's error JSON; and,
// over the whole run, no connection to anything but the allowlisted upstream, nothing written to the store,
// the daemon still up. The seed is fixed (PEERPULL_FUZZ_SEED) and the run count bounded (PEERPULL_FUZZ_RUNS).
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { startPeerpull, type DaemonProcess } from '../fixtures/daemon.ts';
import { FaultProxy } from '../fixtures/fault-proxy.ts';
import { rawExchange } from '../fixtures/raw-http.ts';
import { ociErrorCodes } from '../fixtures/oci-error.ts';
import { ConnectionRecorder } from './mirror-helpers.ts';
import { diffSnapshots, rssMiB, snapshotDir, storedBlobs } from './hardening-helpers.ts';

const SEED = Number(process.env.PEERPULL_FUZZ_SEED ?? 20261123);
const RUNS = Number(process.env.PEERPULL_FUZZ_RUNS ?? 1000);

const HEX = '0123456789abcdef';
const hexString = (min: number, max: number) => fc.string({ unit: fc.constantFrom(...HEX.split('')), minLength: min, maxLength: max });
const component = fc.stringMatching(/^[a-z0-9]{1,8}(?:[._-][a-z0-9]{1,5})?$/);
/** Characters that matter to parsers and validators, printable or not. */
const nasty = fc.constantFrom('..', '.', '', '%2e%2e', '%2E%2E', '%2f', '%2F', '%00', '%', '%zz', '\\', '\0', '\t', '\x7f', '\u00e9', '\ud83d\ude00', ';', ':', '@', '~', '*', '?', '#', 'A', '-', '_', '__', '\r\n', ' ');
const segment = fc.oneof({ weight: 30, arbitrary: component }, { weight: 4, arbitrary: nasty }, { weight: 1, arbitrary: fc.string({ maxLength: 12 }) }, { weight: 1, arbitrary: fc.constant('a'.repeat(300)) });
const name = fc.array(segment, { minLength: 1, maxLength: 5 }).map((s) => s.join('/'));
const digest = fc.oneof(
  { weight: 6, arbitrary: hexString(64, 64).map((h) => `sha256:${h}`) },
  hexString(0, 70).map((h) => `sha256:${h}`),
  hexString(64, 64).map((h) => `sha256:${h.toUpperCase()}`),
  hexString(128, 128).map((h) => `sha512:${h}`),
  fc.tuple(fc.constantFrom('md5', 'sha1', 'SHA256', 'blake3', 'sha256+b64u', ''), hexString(1, 64)).map(([a, h]) => `${a}:${h}`),
  fc.string({ maxLength: 80 }),
);
const tag = fc.oneof({ weight: 4, arbitrary: fc.stringMatching(/^[A-Za-z0-9_][A-Za-z0-9._-]{0,20}$/) }, fc.string({ maxLength: 20 }), fc.constant('t'.repeat(129)), nasty);
const hostLike = fc.oneof(
  fc.constantFrom('localhost', 'LOCALHOST', 'localhost.', '127.0.0.1', '0.0.0.0', '[::1]', '::1', '[::ffff:127.0.0.1]', '169.254.169.254', '10.0.0.1', '192.168.1.1', 'metadata.google.internal', 'a@b', 'user:pass@host', 'docker.io', 'DOCKER.IO', 'docker.io.', 'ghcr.io'),
  fc.tuple(fc.stringMatching(/^[a-z0-9.-]{1,20}$/), fc.option(fc.integer({ min: 0, max: 70000 }))).map(([h, p]) => (p === null ? h : `${h}:${p}`)),
  fc.string({ maxLength: 30 }),
);
const rangeHeader = fc.oneof(
  fc.tuple(fc.option(fc.bigInt({ min: -5n, max: 10n ** 25n })), fc.option(fc.bigInt({ min: -5n, max: 10n ** 25n }))).map(([a, b]) => `bytes=${a ?? ''}-${b ?? ''}`),
  fc.array(fc.tuple(fc.nat(100), fc.nat(100)), { minLength: 2, maxLength: 5 }).map((rs) => `bytes=${rs.map(([a, b]) => `${a}-${b}`).join(',')}`),
  fc.string({ maxLength: 40 }),
);

interface FuzzRequest {
  method: string;
  target: string;
  headers: [string, string][];
}

function requestArb(allowed: string, recorder: string): fc.Arbitrary<FuzzRequest> {
  const ns = fc.oneof(
    { weight: 2, arbitrary: fc.constant(allowed) },
    { weight: 1, arbitrary: fc.constantFrom(recorder, encodeURIComponent(recorder), `${recorder}.`, recorder.toUpperCase(), `a@${recorder}`, `${allowed}@${recorder}`, `${allowed}.`, `${allowed}/`, `${allowed}:80`, `[::ffff:${allowed.split(':')[0]}]:${allowed.split(':')[1]}`) },
    { weight: 3, arbitrary: hostLike.map((h) => encodeURIComponent(h)) },
    { weight: 1, arbitrary: hostLike },
  );
  const path = fc.oneof(
    { weight: 3, arbitrary: fc.tuple(name, tag).map(([n, t]) => `/v2/${n}/manifests/${t}`) },
    { weight: 3, arbitrary: fc.tuple(name, digest).map(([n, d]) => `/v2/${n}/manifests/${d}`) },
    { weight: 4, arbitrary: fc.tuple(name, digest).map(([n, d]) => `/v2/${n}/blobs/${d}`) },
    { weight: 1, arbitrary: fc.tuple(name, fc.string({ maxLength: 10 })).map(([n, u]) => `/v2/${n}/blobs/uploads/${u}`) },
    { weight: 1, arbitrary: name.map((n) => `/v2/${n}/tags/list`) },
    { weight: 1, arbitrary: fc.tuple(fc.constantFrom('/', '//', '/v2', '/v2/', '/v2//', '/v1/', '/api/v1/status', '/metrics', '/../v2/', '/v2/../'), fc.string({ maxLength: 20 })).map(([a, b]) => a + b) },
  );
  const query = fc.oneof(
    { weight: 2, arbitrary: fc.constant('') },
    { weight: 4, arbitrary: ns.map((n) => `?ns=${n}`) },
    { weight: 1, arbitrary: fc.tuple(ns, ns).map(([a, b]) => `?ns=${a}&ns=${b}`) },
    { weight: 1, arbitrary: fc.string({ maxLength: 30 }).map((q) => `?${q}`) },
  );
  const headers = fc.array(
    fc.oneof(
      rangeHeader.map((r): [string, string] => ['Range', r]),
      fc.constantFrom<[string, string]>(['Accept', '*/*'], ['Accept-Encoding', 'gzip'], ['Authorization', 'Bearer x'], ['X-Peerpull-P2p', '1'], ['Expect', '100-continue'], ['Transfer-Encoding', 'chunked'], ['Content-Length', '5']),
      fc.tuple(fc.stringMatching(/^[A-Za-z][A-Za-z0-9-]{0,15}$/), fc.string({ maxLength: 40 })),
    ),
    { maxLength: 4 },
  );
  return fc.record({
    method: fc.oneof({ weight: 8, arbitrary: fc.constantFrom('GET', 'HEAD') }, { weight: 2, arbitrary: fc.constantFrom('POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'TRACE', 'FOO', 'get') }),
    target: fc.tuple(path, query).map(([p, q]) => p + q),
    headers,
  });
}

function encode(req: FuzzRequest, host: string): Buffer {
  const lines = [`${req.method} ${req.target} HTTP/1.1`, `Host: ${host}`, 'Connection: close', ...req.headers.map(([k, v]) => `${k}: ${v}`)];
  return Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'utf8');
}

describe('hardening: property-based fuzzing of the pull API', () => {
  let upstream: FaultProxy;
  let recorder: ConnectionRecorder;
  let daemon: DaemonProcess;

  before(async () => {
    // The only allowlisted upstream answers 404 to everything: no request can legitimately store anything.
    [upstream, recorder] = await Promise.all([FaultProxy.start(), ConnectionRecorder.start()]);
    daemon = await startPeerpull({ registries: [`${upstream.host}=${upstream.url}`], extraArgs: ['--client-timeout', '3s'], env: { NODE_OPTIONS: '--max-old-space-size=160' } });
  });

  after(async () => {
    await daemon?.stop();
    await upstream?.close();
    await recorder?.close();
  });

  test(`${RUNS} generated requests (seed ${SEED}): prompt, well-formed, never 5xx, errors in OCI JSON; no stray connection, nothing stored`, async (t) => {
    const snapshot = snapshotDir(daemon.dataDir);
    const rssBefore = rssMiB(daemon.process.pid!);
    const statuses = new Map<number, number>();
    let slowest = 0;
    await fc.assert(
      fc.asyncProperty(requestArb(upstream.host, recorder.host), async (req) => {
        const res = await rawExchange(daemon.host, encode(req, daemon.host), 8_000);
        slowest = Math.max(slowest, res.ms);
        const what = `${req.method} ${JSON.stringify(req.target).slice(0, 200)} ${JSON.stringify(req.headers).slice(0, 200)}`;
        assert.notEqual(res.closedBy, 'timeout', `${what}: answered and closed`);
        assert.ok(res.status !== undefined || req.method === 'CONNECT', `${what}: a complete response (got ${res.body.length} bytes)`);
        const status = res.status as number;
        statuses.set(status, (statuses.get(status) ?? 0) + 1);
        assert.ok(status < 500, `${what}: never a server error, got ${status} ${res.body.toString('utf8').slice(0, 200)}`);
        assert.ok([200, 400, 404, 405, 416, 431].includes(status), `${what}: unexpected status ${status}`);
        // The daemon's admin API (loopback clients only, as here) has its own JSON errors.
        const admin = /^\/api\/v1\//.test(req.target);
        if (status === 200) {
          assert.ok(admin || /^\/v2\/?([?#]|$)/.test(req.target), `${what}: only the base endpoint (or the admin API) can succeed: the upstream has nothing`);
        }
        if (status >= 400 && !admin && !(req.method === 'HEAD' && res.body.length === 0)) {
          assert.ok(ociErrorCodes(res.body), `${what}: ${status} with OCI error JSON, got ${res.body.toString('utf8').slice(0, 200)}`);
        }
        assert.ok(!/root:x:0:0|BEGIN [A-Z ]*PRIVATE KEY/.test(res.body.toString('latin1')), `${what}: no file content leaks`);
        assert.ok(res.ms < 5_000, `${what}: answered in ${res.ms.toFixed(0)} ms`);
      }),
      { seed: SEED, numRuns: RUNS, endOnFailure: true },
    );
    t.diagnostic(`statuses: ${JSON.stringify(Object.fromEntries(statuses))}; slowest ${slowest.toFixed(0)} ms; upstream saw ${upstream.requests.length} requests on ${upstream.connections} connections`);
    assert.equal(recorder.connections, 0, 'the non-allowlisted listener named in ns was never contacted');
    for (const r of upstream.requests) {
      // (`/v2/` is the daemon's own health probe of its upstreams.)
      assert.match(r.url, /^\/v2\/$|^\/v2\/[a-z0-9._/-]+\/(manifests|blobs)\/[A-Za-z0-9_.:-]+$/, `only well-formed requests reach the upstream: ${r.url}`);
    }
    const ok = await rawExchange(daemon.host, `GET /v2/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
    assert.equal(ok.status, 200, 'the daemon is still up');
    assert.deepEqual(storedBlobs(daemon.dataDir), [], 'nothing under blobs/');
    assert.deepEqual(diffSnapshots(snapshot, snapshotDir(daemon.dataDir)), [], 'nothing written to the data dir');
    const rssAfter = rssMiB(daemon.process.pid!);
    t.diagnostic(`daemon RSS ${rssBefore.toFixed(0)} -> ${rssAfter.toFixed(0)} MiB`);
    assert.ok(rssAfter - rssBefore < 80, `RSS bounded: ${rssBefore.toFixed(0)} -> ${rssAfter.toFixed(0)} MiB`);
  });
});
