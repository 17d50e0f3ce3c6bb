// Helpers for the observability tests (issue 8): images that share layers, a local cluster on an
// embedded upstream, Prometheus text parsing, the peerpull CLI as a child process.
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { LayoutRegistry, LocalCluster, type ClusterNode } from '@peerpull/demo';
import { waitUntil, type Check } from '../fixtures/wait-until.ts';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const CLI = path.join(REPO_ROOT, 'packages/cli/src/main.ts');

/** waitUntil with this suite's pace: a cluster of real processes settles within seconds, checked every 100 ms. */
export function waitObserved<T>(what: string | (() => string), check: () => Check<T> | Promise<Check<T>>): Promise<T> {
  return waitUntil(what, check, 15_000, 100);
}

export interface Blob {
  digest: string;
  size: number;
  data: Buffer;
}

export function blob(data: Buffer): Blob {
  return { digest: `sha256:${createHash('sha256').update(data).digest('hex')}`, size: data.length, data };
}

/** Random (incompressible) bytes as a layer: the mirror only cares about digests. */
export function randomLayer(size: number): Blob {
  return blob(randomBytes(size));
}

export interface TestImage {
  repository: string;
  tag: string;
  manifest: Blob;
  config: Blob;
  layers: Blob[];
  /** Manifest, config and layers. */
  totalBytes: number;
}

/**
 * Writes an OCI layout for `repository:tag` made of the given layers (which other images may
 * share) and registers it with the upstream.
 */
export function addImage(upstream: LayoutRegistry, dir: string, repository: string, tag: string, layers: Blob[]): TestImage {
  const root = path.join(dir, repository.replace(/\//g, '_'), tag);
  mkdirSync(path.join(root, 'blobs', 'sha256'), { recursive: true });
  const config = blob(Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: layers.map((l) => l.digest) }, config: { Labels: { image: `${repository}:${tag}` } } })));
  const manifest = blob(
    Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: config.digest, size: config.size },
        layers: layers.map((l) => ({ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: l.digest, size: l.size })),
      }),
    ),
  );
  for (const b of [config, manifest, ...layers]) writeFileSync(path.join(root, 'blobs', 'sha256', b.digest.slice(7)), b.data);
  writeFileSync(path.join(root, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  writeFileSync(
    path.join(root, 'index.json'),
    JSON.stringify({
      schemaVersion: 2,
      manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: manifest.digest, size: manifest.size, annotations: { 'org.opencontainers.image.ref.name': tag } }],
    }),
  );
  upstream.addRepository(repository, root);
  return { repository, tag, manifest, config, layers, totalBytes: manifest.size + config.size + layers.reduce((n, l) => n + l.size, 0) };
}

export interface TestCluster {
  upstream: LayoutRegistry;
  /** host:port of the upstream, as `?ns=` and in image references. */
  host: string;
  cluster: LocalCluster;
  seed: ClusterNode;
  daemons: ClusterNode[];
  workDir: string;
  stop(): Promise<void>;
}

export async function startTestCluster(workDir: string, opts: { daemons: number; upstream: LayoutRegistry; host: string; extraDaemonArgs?: string[]; extraSeedArgs?: string[] }): Promise<TestCluster> {
  const cluster = await LocalCluster.start({
    workDir,
    cliPath: CLI,
    upstream: { host: opts.host, url: `http://${opts.host}` },
    daemons: opts.daemons,
    extraDaemonArgs: ['--report-interval', '200ms', ...(opts.extraDaemonArgs ?? [])],
    ...(opts.extraSeedArgs ? { extraSeedArgs: opts.extraSeedArgs } : {}),
  });
  return {
    upstream: opts.upstream,
    host: opts.host,
    cluster,
    seed: cluster.seed as ClusterNode,
    daemons: cluster.daemons,
    workDir,
    async stop() {
      await cluster.stop();
      await opts.upstream.close();
    },
  };
}

// ---- Prometheus text --------------------------------------------------------------------------

export async function scrape(node: Pick<ClusterNode, 'metricsUrl'>): Promise<string> {
  const res = await fetch(node.metricsUrl, { signal: AbortSignal.timeout(5_000) });
  return res.text();
}

/** The sum of a metric's samples whose labels include `labels` (0 when none). */
export function metric(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name) || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((x) => [x[1], x[2]]));
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) sum += Number(m[3]);
  }
  return sum;
}

/** Metric names declared in a scrape (`# TYPE` lines). */
export function declaredMetrics(text: string): Set<string> {
  return new Set([...text.matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1] as string));
}

// ---- CLI, logs, waiting -----------------------------------------------------------------------

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `peerpull <args>` (not on a TTY) and returns its exit code and output. */
export function peerpull(args: string[], env: NodeJS.ProcessEnv = {}): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { env: { ...process.env, NO_COLOR: '1', ...env }, timeout: 60_000, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

export interface PullLogLine {
  msg: string;
  method?: string;
  kind?: string;
  digest?: string;
  source?: string;
  bytes?: number;
  status?: number;
  repository?: string;
}

/** The `pull` lines (one per request) a cluster node wrote to its log. */
export function nodePullLines(node: Pick<ClusterNode, 'logFile'>): PullLogLine[] {
  return readFileSync(node.logFile, 'utf8')
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => {
      try {
        return JSON.parse(l) as PullLogLine;
      } catch {
        return undefined;
      }
    })
    .filter((l): l is PullLogLine => l?.msg === 'pull');
}

export async function getJson<T>(url: string, init: RequestInit = {}): Promise<T> {
  const res = await fetch(url, { ...init, signal: AbortSignal.timeout(20_000) });
  if (!res.ok) throw new Error(`${url}: HTTP ${res.status} ${await res.text()}`);
  return (await res.json()) as T;
}
