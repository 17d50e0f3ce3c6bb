// Helpers for the hardening suites (hardening-*.test.ts, private-images.test.ts) and the load/soak benchmarks:
// keep-alive request pools, process memory/fd probes and data-dir snapshots (to prove that nothing
// was written). The scripted upstream (FaultProxy) and raw HTTP are in test/fixtures/.
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { ociErrorCodes } from '../fixtures/oci-error.ts';
import { download } from './mirror-helpers.ts';

// ---- process probes ---------------------------------------------------------------------------------

/** Resident set size of a process, in MiB (from /proc). */
export function rssMiB(pid: number): number {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const kib = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 'NaN');
  return kib / 1024;
}

/** Open file descriptors of a process. */
export function fdCount(pid: number): number {
  return fs.readdirSync(`/proc/${pid}/fd`).length;
}

/** Samples a value every `intervalMs` until stopped; returns the maximum seen. */
export function sampleMax(read: () => number, intervalMs = 50): { stop(): number } {
  let max = read();
  const timer = setInterval(() => {
    try {
      max = Math.max(max, read());
    } catch {
      // the process may be gone
    }
  }, intervalMs);
  return {
    stop() {
      clearInterval(timer);
      return max;
    },
  };
}

// ---- data dir snapshots -----------------------------------------------------------------------------

export type DirSnapshot = Map<string, { size: number; sha256: string }>;

/**
 * Every file under `dir` with its size and content hash. The metadata database (`meta/`) is left out: the
 * store flushes access times of the blobs the test's own good requests read on a timer, which is not a
 * write of content; what bad input must never create is a file under `blobs/` or `tmp/`.
 */
export function snapshotDir(dir: string): DirSnapshot {
  const out: DirSnapshot = new Map();
  const walk = (rel: string): void => {
    for (const entry of fs.readdirSync(path.join(dir, rel), { withFileTypes: true })) {
      const relPath = path.join(rel, entry.name);
      if (entry.isDirectory()) walk(relPath);
      else if (!relPath.startsWith('meta/')) {
        const data = fs.readFileSync(path.join(dir, relPath));
        out.set(relPath, { size: data.length, sha256: crypto.createHash('sha256').update(data).digest('hex') });
      }
    }
  };
  walk('');
  return out;
}

/** Files added, removed or changed between two snapshots (empty when nothing was written). */
export function diffSnapshots(before: DirSnapshot, after: DirSnapshot): string[] {
  const changes: string[] = [];
  for (const [file, info] of after) {
    const was = before.get(file);
    if (!was) changes.push(`+ ${file} (${info.size} bytes)`);
    else if (was.sha256 !== info.sha256) changes.push(`~ ${file}`);
  }
  for (const file of before.keys()) if (!after.has(file)) changes.push(`- ${file}`);
  return changes;
}

/** Files under blobs/ (the verified store). */
export function storedBlobs(dataDir: string): string[] {
  const root = path.join(dataDir, 'blobs', 'sha256');
  if (!fs.existsSync(root)) return [];
  return fs.readdirSync(root).flatMap((prefix) => fs.readdirSync(path.join(root, prefix)).map((name) => `sha256:${name}`));
}

// ---- keep-alive request pools --------------------------------------------------------------------------

export interface PoolResult {
  statuses: Map<number, number>;
  /** Request errors (connection reset, timeout), by message. */
  errors: Map<string, number>;
  /** Bodies that were not OCI error JSON although the status was >= 400 (first few). */
  nonOciErrors: string[];
  ms: number;
}

/**
 * Sends `count` requests over a keep-alive pool of `concurrency` connections, the paths sent as given
 * (node:http does not normalize them). Every response body is read in full.
 */
export async function requestPool(
  baseUrl: string,
  count: number,
  concurrency: number,
  request: (i: number) => { method?: string; path: string; headers?: Record<string, string> },
  timeoutMs = 30_000,
): Promise<PoolResult> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
  const url = new URL(baseUrl);
  const result: PoolResult = { statuses: new Map(), errors: new Map(), nonOciErrors: [], ms: 0 };
  const started = performance.now();
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < count) {
      const i = next++;
      const r = request(i);
      try {
        const { status, body } = await new Promise<{ status: number; body: Buffer }>((resolve, reject) => {
          const req = http.request({ host: url.hostname, port: url.port, method: r.method ?? 'GET', path: r.path, headers: r.headers ?? {}, agent, timeout: timeoutMs });
          req.once('timeout', () => req.destroy(new Error('timeout')));
          req.once('error', reject);
          req.once('response', (res) => {
            const chunks: Buffer[] = [];
            res.on('data', (c: Buffer) => chunks.push(c));
            res.once('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }));
            res.once('error', reject);
          });
          req.end();
        });
        result.statuses.set(status, (result.statuses.get(status) ?? 0) + 1);
        if (status >= 400 && (r.method ?? 'GET') !== 'HEAD' && !ociErrorCodes(body) && result.nonOciErrors.length < 5) {
          result.nonOciErrors.push(`${status} ${r.path.slice(0, 80)}: ${body.toString('utf8').slice(0, 120)}`);
        }
      } catch (err) {
        const message = (err as Error).message;
        result.errors.set(message, (result.errors.get(message) ?? 0) + 1);
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  agent.destroy();
  result.ms = performance.now() - started;
  return result;
}

// ---- small utilities --------------------------------------------------------------------------------------

/** mulberry32: a small seeded PRNG, so "random" kill moments are the same on every run of a seed. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Percentile (0..100) of a list of numbers. */
export function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] as number;
}

// ---- a containerd-like blob fetch ------------------------------------------------------------------------

export interface ContainerdFetch {
  /** sha256 of the bytes the client assembled. */
  digest: string;
  attempts: number;
  /** Status and `x-peerpull-source` / `x-peerpull-uncached` of each attempt. */
  responses: { status: number; source: string | undefined; uncached: string | undefined; aborted: boolean }[];
}

/**
 * Fetches a blob as containerd does (notes: containerd-mirror.md): when a body breaks off, it asks the same
 * mirror again with `Range: bytes=<received>-`, takes a 206 as the continuation and a 200 as a restart
 * (prefix discarded). Throws on an error status or after `maxAttempts`.
 */
export async function fetchLikeContainerd(url: string, size: number, maxAttempts = 4): Promise<ContainerdFetch> {
  let parts: Buffer[] = [];
  let received = 0;
  const responses: ContainerdFetch['responses'] = [];
  for (let attempt = 1; attempt <= maxAttempts; attempt++) {
    const res = await download(url, { headers: received > 0 ? { range: `bytes=${received}-` } : {}, keepBody: true, timeoutMs: 30_000 });
    const header = (name: string) => (typeof res.headers[name] === 'string' ? (res.headers[name] as string) : undefined);
    responses.push({ status: res.status, source: header('x-peerpull-source'), uncached: header('x-peerpull-uncached'), aborted: res.aborted });
    if (res.status === 200) {
      parts = [res.body!];
      received = res.bytes;
    } else if (res.status === 206 && (header('content-range') ?? '').startsWith(`bytes ${received}-`)) {
      parts.push(res.body!);
      received += res.bytes;
    } else {
      throw new Error(`${url}: status ${res.status} ${header('content-range') ?? ''}`);
    }
    if (!res.aborted && received === size) {
      return { digest: `sha256:${crypto.createHash('sha256').update(Buffer.concat(parts)).digest('hex')}`, attempts: attempt, responses };
    }
  }
  throw new Error(`${url}: incomplete after ${maxAttempts} attempts (${received} of ${size} bytes): ${JSON.stringify(responses)}`);
}
