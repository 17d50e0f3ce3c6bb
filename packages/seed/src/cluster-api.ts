import type { FastifyInstance } from 'fastify';
import {
  REPORT_SIGNATURE_HEADER,
  parseDuration,
  type NodeReport,
  type NodeTransfer,
  type PullEvent,
  type PullRecord,
  type RateLimitView,
  type ReportSigner,
} from '@peerpull/common';
import { requireAdminToken } from './admin-auth.ts';
import type { NodeRegistry, NodeView, SeriesPoint } from './node-registry.ts';
import type { PullLog, PullQuery } from './pull-log.ts';
import type { SeedStatus, SeedStatusCollector } from './seed-status.ts';

export interface ClusterApiOptions {
  adminToken: string | undefined;
  /** Reports must be signed with the cluster key when the seed has one. */
  signer: ReportSigner | undefined;
  pullLog: PullLog;
  nodes: NodeRegistry;
  status: SeedStatusCollector;
}

/** What the dashboard shows, in one request. */
export interface ClusterView {
  generatedAt: number;
  seed: SeedStatus;
  nodes: NodeView[];
  images: { image: string; digest: string; bytes: number; holders: { node: string; complete: boolean }[] }[];
  totals: { pulledBytes: number; wanBytes: number; savedBytes: number; servedBySource: Record<string, number>; pullsLogged: number };
  series: (SeriesPoint & { saved: number })[];
  transfers: (NodeTransfer & { node: string })[];
  rateLimits: (RateLimitView & { node: string })[];
  pulls: PullRecord[];
}

const MAX_PULLS_PER_REPORT = 5_000;
const MAX_CLOCK_SKEW_MS = 5 * 60_000;

/**
 * `POST /api/v1/report`: daemons' pulls and heartbeats. Open to the network like the seed's
 * registry API, but signed with the cluster key when the seed has one, so only members of
 * the cluster can write into the audit log.
 */
export async function reportApi(app: FastifyInstance, opts: ClusterApiOptions): Promise<void> {
  // The signature covers the exact bytes: keep the body as text and parse it here.
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (_req, body, done) => done(null, body));
  app.post('/report', { bodyLimit: 8 * 1024 * 1024 }, async (req, reply) => {
    const text = typeof req.body === 'string' ? req.body : '';
    if (opts.signer && !opts.signer.verify(text, req.headers[REPORT_SIGNATURE_HEADER] as string | undefined)) {
      return reply.code(401).send({ error: 'report not signed with this cluster\'s key' });
    }
    let report: NodeReport;
    try {
      report = parseReport(JSON.parse(text));
    } catch (err) {
      return reply.code(400).send({ error: `invalid report: ${(err as Error).message}` });
    }
    if (opts.signer && Math.abs(Date.now() - report.sentAt) > MAX_CLOCK_SKEW_MS) {
      return reply.code(400).send({ error: 'report too far from the seed\'s clock (replayed, or clocks out of sync)' });
    }
    opts.nodes.report(report, req.ip);
    await opts.pullLog.append(report.pulls.map((p) => ({ ...p, node: report.name })));
    return { accepted: report.pulls.length };
  });
}

/** The read side, behind the admin token when one is set: the audit log, the nodes, the dashboard's data. */
export async function clusterApi(app: FastifyInstance, opts: ClusterApiOptions): Promise<void> {
  requireAdminToken(app, opts.adminToken);

  app.get<{ Querystring: Record<string, string | undefined> }>('/pulls', async (req, reply) => {
    let query: PullQuery;
    try {
      query = parsePullQuery(req.query);
    } catch (err) {
      return reply.code(400).send({ error: (err as Error).message });
    }
    return opts.pullLog.query(query);
  });

  app.get('/nodes', async () => ({ nodes: opts.nodes.nodes() }));

  app.get('/status', async () => opts.status.status());

  app.get('/cluster', async () => clusterView(opts));
}

async function clusterView(opts: ClusterApiOptions): Promise<ClusterView> {
  const [seed, pulls] = await Promise.all([opts.status.status(), opts.pullLog.recent(40)]);
  const nodes = opts.nodes.nodes();
  const images = new Map<string, ClusterView['images'][number]>();
  const hold = (node: string, list: { image: string; digest: string; bytes: number; complete: boolean }[] | undefined): void => {
    for (const i of list ?? []) {
      const key = `${i.image}@${i.digest}`;
      let entry = images.get(key);
      if (!entry) images.set(key, (entry = { image: i.image, digest: i.digest, bytes: 0, holders: [] }));
      entry.bytes = Math.max(entry.bytes, i.bytes);
      entry.holders.push({ node, complete: i.complete });
    }
  };
  hold('seed', seed.images);
  for (const n of nodes) if (!n.stale) hold(n.name, n.images);

  const servedBySource: Record<string, number> = {};
  let pulledBytes = 0;
  let wanBytes = seed.fetched.upstream ?? 0;
  for (const n of nodes) {
    for (const [source, bytes] of Object.entries(n.served ?? {})) {
      servedBySource[source] = (servedBySource[source] ?? 0) + bytes;
      pulledBytes += bytes;
    }
    wanBytes += n.fetched?.upstream ?? 0;
  }
  let pulledSum = 0;
  let wanSum = 0;
  const series = opts.nodes.series().map((p) => {
    pulledSum += p.pulled;
    wanSum += p.wan;
    return { ...p, saved: Math.max(0, pulledSum - wanSum) };
  });
  const transfers = [...seed.transfers.map((t) => ({ ...t, node: 'seed' })), ...nodes.filter((n) => !n.stale).flatMap((n) => (n.transfers ?? []).map((t) => ({ ...t, node: n.name })))];
  const rateLimits = [...seed.rateLimits.map((r) => ({ ...r, node: 'seed' })), ...nodes.filter((n) => !n.stale).flatMap((n) => (n.rateLimits ?? []).map((r) => ({ ...r, node: n.name })))];
  return {
    generatedAt: Date.now(),
    seed,
    nodes,
    images: [...images.values()].sort((a, b) => b.holders.length - a.holders.length || a.image.localeCompare(b.image)),
    totals: { pulledBytes, wanBytes, savedBytes: Math.max(0, pulledBytes - wanBytes), servedBySource, pullsLogged: opts.pullLog.size },
    series,
    transfers,
    rateLimits,
    pulls,
  };
}

/** `since`/`until`: an ISO time, ms since the epoch, or a duration back from now (`15m`). */
export function parsePullQuery(q: Record<string, string | undefined>): PullQuery {
  const out: PullQuery = {};
  if (q.since) out.since = parseTime(q.since, 'since');
  if (q.until) out.until = parseTime(q.until, 'until');
  if (q.image) out.image = q.image;
  if (q.node) out.node = q.node;
  if (q.source) out.source = q.source;
  if (q.kind === 'manifest' || q.kind === 'blob') out.kind = q.kind;
  else if (q.kind) throw new Error('kind must be manifest or blob');
  if (q.limit) {
    const limit = Number(q.limit);
    if (!Number.isInteger(limit) || limit <= 0) throw new Error('limit must be a positive integer');
    out.limit = limit;
  }
  return out;
}

function parseTime(text: string, name: string): number {
  if (/^\d{12,}$/.test(text)) return Number(text);
  const date = Date.parse(text);
  if (!Number.isNaN(date) && /\d{4}-\d{2}-\d{2}/.test(text)) return date;
  try {
    return Date.now() - parseDuration(text);
  } catch {
    throw new Error(`${name}: expected an ISO time, ms since the epoch or a duration like 15m, got ${JSON.stringify(text.slice(0, 50))}`);
  }
}

function parseReport(doc: unknown): NodeReport {
  if (!doc || typeof doc !== 'object') throw new Error('expected an object');
  const d = doc as Record<string, unknown>;
  if (typeof d.id !== 'string' || !d.id || d.id.length > 200) throw new Error('id');
  if (typeof d.name !== 'string' || !d.name || d.name.length > 200) throw new Error('name');
  if (!Array.isArray(d.pulls) || d.pulls.length > MAX_PULLS_PER_REPORT) throw new Error('pulls');
  const report: NodeReport = {
    id: d.id,
    name: d.name,
    sentAt: typeof d.sentAt === 'number' ? d.sentAt : Date.now(),
    pulls: d.pulls.map(parsePull).filter((p): p is PullEvent => p !== undefined),
  };
  if (d.heartbeat && typeof d.heartbeat === 'object') report.heartbeat = d.heartbeat as NodeReport['heartbeat'];
  return report;
}

function parsePull(doc: unknown): PullEvent | undefined {
  if (!doc || typeof doc !== 'object') return undefined;
  const p = doc as Record<string, unknown>;
  const str = (v: unknown, max = 300): string | undefined => (typeof v === 'string' ? v.slice(0, max) : undefined);
  const num = (v: unknown): number => (typeof v === 'number' && Number.isFinite(v) ? v : 0);
  if (p.kind !== 'manifest' && p.kind !== 'blob') return undefined;
  const event: PullEvent = {
    time: num(p.time) || Date.now(),
    registry: str(p.registry) ?? '',
    repository: str(p.repository) ?? '',
    kind: p.kind,
    status: num(p.status),
    bytes: num(p.bytes),
    source: str(p.source, 20) ?? 'none',
    ms: num(p.ms),
  };
  const reference = str(p.reference, 200);
  const digest = str(p.digest, 100);
  const client = str(p.client, 100);
  if (reference) event.reference = reference;
  if (digest) event.digest = digest;
  if (client) event.client = client;
  return event;
}
