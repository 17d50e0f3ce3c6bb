// Helpers for the seed end-to-end tests (seed.test.ts, seed-ops.test.ts): resolving tags on
// daemons, the admin API, and checks on a seed's data dir.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { DaemonProcess, PeerpullLogLine } from '../fixtures/daemon.ts';
import type { BuiltImage } from '../fixtures/images.ts';
import { MANIFEST_ACCEPT, pullImage, type PullResult } from '../fixtures/pull-client.ts';
import { FIXTURE_USER_AGENT, type Registry } from '../fixtures/registry.ts';
import { waitUntil } from '../fixtures/wait-until.ts';

export { sleep };

export const MB = 1_000_000;

// ---- registry API -----------------------------------------------------------------------------------

export interface TagHead {
  status: number;
  digest: string | undefined;
  ms: number;
}

/** HEAD /v2/<repo>/manifests/<tag>?ns=<ns> as containerd resolves a tag: status and Docker-Content-Digest. */
export async function headTag(baseUrl: string, repository: string, tag: string, ns: string, timeoutMs = 10_000): Promise<TagHead> {
  const started = performance.now();
  const res = await fetch(`${baseUrl}/v2/${repository}/manifests/${tag}?ns=${encodeURIComponent(ns)}`, {
    method: 'HEAD',
    headers: { accept: MANIFEST_ACCEPT, 'user-agent': 'peerpull-e2e-seed' },
    signal: AbortSignal.timeout(timeoutMs),
  });
  await res.arrayBuffer();
  return { status: res.status, digest: res.headers.get('docker-content-digest') ?? undefined, ms: performance.now() - started };
}

/** Resolves the tag on every daemon at once; returns the digest each one answered (all must answer 200). */
export async function resolveOnAll(daemons: DaemonProcess[], repository: string, tag: string, ns: string): Promise<string[]> {
  const heads = await Promise.all(daemons.map((d) => headTag(d.url, repository, tag, ns)));
  return heads.map((h, i) => {
    if (h.status !== 200 || !h.digest) throw new Error(`daemon ${i} (${daemons[i]!.host}) answered ${h.status} for ${repository}:${tag}`);
    return h.digest;
  });
}

/** The manifest bytes a registry stores for ref (as the fixture: not in the access log). */
export async function getManifestRaw(reg: Registry, repository: string, reference: string): Promise<{ body: Buffer; mediaType: string; digest: string }> {
  const res = await fetch(`${reg.url}/v2/${repository}/manifests/${reference}`, {
    headers: { accept: MANIFEST_ACCEPT, 'user-agent': `${FIXTURE_USER_AGENT}/get` },
  });
  const body = Buffer.from(await res.arrayBuffer());
  if (res.status !== 200) throw new Error(`GET manifest ${repository}:${reference}: ${res.status}`);
  return { body, mediaType: res.headers.get('content-type') ?? '', digest: `sha256:${crypto.createHash('sha256').update(body).digest('hex')}` };
}

/**
 * Moves a tag in the registry by pushing a manifest to it (the last step of a push; the blobs are
 * already in the repository). Sent with the fixture's user agent, so it stays out of accessLog().
 */
export async function putManifest(reg: Registry, repository: string, tag: string, manifest: { body: Buffer; mediaType: string }): Promise<void> {
  const res = await fetch(`${reg.url}/v2/${repository}/manifests/${tag}`, {
    method: 'PUT',
    headers: { 'content-type': manifest.mediaType, 'user-agent': `${FIXTURE_USER_AGENT}/put` },
    body: new Uint8Array(manifest.body),
  });
  await res.arrayBuffer();
  if (res.status !== 201) throw new Error(`PUT manifest ${repository}:${tag}: ${res.status}`);
}

/** Upstream access-log entries that resolve a tag (HEAD or GET manifests/<tag>). */
export function tagResolves(reg: Registry, repository: string, tag: string): number {
  return reg.accessLog().filter((e) => e.kind === 'manifest' && e.repo === repository && e.reference === tag).length;
}

/** GET blob requests in the upstream access log for one digest. */
export function blobGets(reg: Registry, digest: string): number {
  return reg.countRequests({ method: 'GET', kind: 'blob', pathIncludes: digest });
}

// ---- pulls through a daemon ----------------------------------------------------------------------

/** Pulls repository:tag through a daemon (or seed) the way containerd does (`?ns=` the registry). */
export function pullVia(d: { url: string }, reg: { host: string }, repository: string, tag: string): Promise<PullResult> {
  return pullImage({ registryUrl: d.url, repository, tag, ns: reg.host, idleTimeoutMs: 15_000 });
}

/** A request's log line is written once the response ended: give the process's stdout a moment. */
export async function waitForPullLogs(d: DaemonProcess, digests: string[], count = 1): Promise<void> {
  await waitUntil(`${d.host} to log GETs of ${digests.join(', ')}`, () =>
    digests.every((digest) => pullsOf(d, digest).filter((p) => p.method === 'GET').length >= count), 3_000);
}

/**
 * The pull got the image, its tag was resolved at the seed, and every blob came from the seed
 * (the manifest by digest is 'local': the daemon stored it while resolving the tag).
 * For a daemon that had not pulled the image before (else set manifestCached).
 */
export async function assertThroughSeed(
  d: DaemonProcess,
  r: PullResult,
  img: BuiltImage,
  opts: { manifestIndex?: number; manifestCached?: boolean } = {},
): Promise<void> {
  const manifestIndex = opts.manifestIndex ?? 0;
  assert.equal(r.manifestDigest, img.manifestDigest);
  const blobs = blobsOf(img, manifestIndex);
  await waitForPullLogs(d, blobs.map((b) => b.digest));
  assert.equal(r.bySource.upstream ?? 0, 0, `no byte from the daemon's own upstream: ${JSON.stringify(r.bySource)}`);
  const tagRecords = d.pulls().filter((p) => p.kind === 'manifest' && p.digest === img.manifestDigest && p.reference === img.tag);
  assert.ok(tagRecords.length > 0, 'the daemon logged the tag resolve');
  // (A daemon that already holds the manifest logs a tag it resolved at the seed as 'local'.)
  if (!opts.manifestCached) assert.equal(tagRecords.at(-1)!.source, 'seed', 'the tag was resolved at the seed');
  for (const b of blobs) {
    const records = pullsOf(d, b.digest).filter((p) => p.method === 'GET' && p.status === 200);
    assert.ok(records.length > 0, `the daemon served blob ${b.digest}`);
    assert.equal(records[0]!.source, 'seed', `blob ${b.digest} came from the seed`);
  }
}

export function distinct<T>(values: T[]): T[] {
  return [...new Set(values)];
}

// ---- admin API --------------------------------------------------------------------------------------

export interface AdminResponse<T = Record<string, unknown>> {
  status: number;
  contentType: string;
  headers: Headers;
  json: T;
}

export async function admin<T = Record<string, unknown>>(
  baseUrl: string,
  method: 'GET' | 'POST',
  apiPath: string,
  opts: { body?: unknown; rawBody?: string; token?: string } = {},
): Promise<AdminResponse<T>> {
  const headers: Record<string, string> = { 'user-agent': 'peerpull-e2e-seed' };
  if (opts.token !== undefined) headers.authorization = `Bearer ${opts.token}`;
  let body: string | undefined;
  if (opts.rawBody !== undefined || opts.body !== undefined) {
    headers['content-type'] = 'application/json';
    body = opts.rawBody ?? JSON.stringify(opts.body);
  }
  const res = await fetch(`${baseUrl}/api/v1${apiPath}`, { method, headers, body, signal: AbortSignal.timeout(10_000) });
  const text = await res.text();
  let json: T;
  try {
    json = JSON.parse(text) as T;
  } catch {
    throw new Error(`${method} /api/v1${apiPath}: ${res.status} with a body that is not JSON: ${text.slice(0, 200)}`);
  }
  return { status: res.status, contentType: res.headers.get('content-type') ?? '', headers: res.headers, json };
}

// ---- logs -------------------------------------------------------------------------------------------

/** The `pull` request-log lines about one blob or manifest digest. */
export function pullsOf(d: DaemonProcess, digest: string): PeerpullLogLine[] {
  return d.pulls().filter((p) => p.digest === digest);
}

export function hasLog(d: DaemonProcess, msg: string): boolean {
  return d.logs().some((l) => l.msg === msg);
}

// ---- a data dir ------------------------------------------------------------------------------------

/** Every file under <data>/blobs/sha256/xx/, and whether each hashes to its name. */
export { blobsOf, fileDigest } from '../fixtures/store-files.ts';
import { blobsOf, fileDigest } from '../fixtures/store-files.ts';

export function storedBlobs(dataDir: string): { name: string; ok: boolean; size: number }[] {
  const root = path.join(dataDir, 'blobs', 'sha256');
  const out: { name: string; ok: boolean; size: number }[] = [];
  for (const prefix of fs.existsSync(root) ? fs.readdirSync(root) : []) {
    for (const name of fs.readdirSync(path.join(root, prefix))) {
      const file = path.join(root, prefix, name);
      out.push({ name, ok: prefix === name.slice(0, 2) && fileDigest(file) === `sha256:${name}`, size: fs.statSync(file).size });
    }
  }
  return out;
}

/** Files in <data>/tmp with their sizes. */
export function tmpFiles(dataDir: string): { name: string; size: number }[] {
  const dir = path.join(dataDir, 'tmp');
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir).map((name) => ({ name, size: fs.statSync(path.join(dir, name)).size }));
}

/** Kills (SIGKILL) the daemons/seeds still running; for after() hooks. */
export async function stopAll(procs: (DaemonProcess | undefined)[]): Promise<void> {
  await Promise.all(procs.map((p) => (p && p.process.running ? p.stop().catch(() => p.kill9()) : undefined)));
}
