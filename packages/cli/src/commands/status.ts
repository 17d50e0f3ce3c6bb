import { formatHelp, loadOptions, type OptionSpecs } from '@peerpull/common/options';
import type { DaemonStatus } from '@peerpull/daemon';
import type { ClusterView } from '@peerpull/seed';
import { ApiError, apiJson } from '../api-client.ts';
import { DAEMON_URL_OPTION, JSON_OPTION, SEED_URL_OPTIONS } from '../client-options.ts';
import { EXIT, EXIT_CODES_HELP } from '../exit-codes.ts';
import { Terminal, ago, bytes, duration, percent, shortPeer, table } from '../terminal.ts';

export const STATUS_OPTIONS = {
  ...DAEMON_URL_OPTION,
  ...SEED_URL_OPTIONS,
  ...JSON_OPTION,
} as const satisfies OptionSpecs;

const USAGE = 'peerpull status [--daemon URL] [--seed URL] [--json]';
const SUMMARY = `Shows whether peerpull works on this node and in the cluster: version, uptime, which
sources are reachable, peers, cache use, hit ratio, WAN bytes saved, rate limits, last errors.
The daemon part asks the local daemon; with --seed (or PEERPULL_SEED) also the seed's
view of every node.

${EXIT_CODES_HELP}`;

const TIMEOUT_MS = 10_000;

export async function statusCommand(argv: string[]): Promise<number> {
  const opts = loadOptions(STATUS_OPTIONS, { argv, env: process.env });
  if (opts.help) {
    process.stdout.write(formatHelp(USAGE, SUMMARY, STATUS_OPTIONS));
    return EXIT.ok;
  }
  const term = new Terminal();
  const seedUrl = opts.seed[0];
  const [daemon, seed] = await Promise.all([
    opts.daemon ? settle(apiJson<DaemonStatus>(opts.daemon, '/api/v1/status', { timeoutMs: TIMEOUT_MS })) : undefined,
    seedUrl ? settle(apiJson<ClusterView>(seedUrl, '/api/v1/cluster', { token: opts['admin-token'], timeoutMs: TIMEOUT_MS })) : undefined,
  ]);
  if (!daemon && !seed) {
    process.stderr.write('peerpull status: nothing to ask: give --daemon URL and/or --seed URL\n');
    return EXIT.usage;
  }
  if (opts.json) {
    const doc: Record<string, unknown> = {};
    if (daemon) doc.daemon = 'value' in daemon ? daemon.value : { error: daemon.error.message };
    if (seed) doc.seed = 'value' in seed ? seed.value : { error: seed.error.message };
    term.line(JSON.stringify(doc, null, 2));
  } else {
    if (daemon) {
      if ('value' in daemon) printDaemon(term, daemon.value, opts.daemon);
      else term.line(`${term.bold('daemon')} ${opts.daemon}: ${term.red(daemon.error.message)}`);
    }
    if (daemon && seed) term.line();
    if (seed && seedUrl) {
      if ('value' in seed) printSeed(term, seed.value, seedUrl);
      else term.line(`${term.bold('seed')} ${seedUrl}: ${term.red(seed.error.message)}`);
    }
  }
  const results = [daemon, seed].filter((r) => r !== undefined);
  const failed = results.find((r) => 'error' in r);
  if (failed && 'error' in failed) return failed.error.exitCode;
  const unready = (daemon && 'value' in daemon && !daemon.value.ready) || (seed && 'value' in seed && !seed.value.seed.ready);
  return unready ? EXIT.problem : EXIT.ok;
}

async function settle<T>(p: Promise<T>): Promise<{ value: T } | { error: ApiError }> {
  try {
    return { value: await p };
  } catch (err) {
    return { error: err instanceof ApiError ? err : new ApiError((err as Error).message, EXIT.problem) };
  }
}

function printDaemon(term: Terminal, s: DaemonStatus, url: string): void {
  const state = s.ready ? term.green('ready') : term.red(`NOT READY: ${s.readyReason ?? ''}`);
  term.line(`${term.bold(`daemon ${s.name}`)} ${s.version} at ${url}: ${state}, up ${duration(s.uptimeMs)}`);
  const rows: string[][] = [];
  const src = s.sources;
  const reach = (ok: boolean, detail: string): string => (ok ? term.green(detail) : term.red(detail));
  const sources: string[] = [];
  sources.push(src.peers === null ? term.dim('P2P off') : reach(src.peers > 0, `${src.peers} peer${src.peers === 1 ? '' : 's'}`));
  for (const seed of src.seeds) sources.push(reach(seed.reachable, `seed ${seed.url} ${seed.reachable ? `up (${seed.ms} ms)` : `down: ${seed.error}`}`));
  const upstreamUp = src.upstreams.filter((u) => u.reachable);
  const upstreamDown = src.upstreams.filter((u) => !u.reachable);
  if (upstreamUp.length) sources.push(term.green(`upstream ${upstreamUp.map((u) => u.registry).join(', ')} reachable`));
  if (upstreamDown.length) sources.push(term.red(`upstream ${upstreamDown.map((u) => `${u.registry} (${u.error})`).join(', ')} unreachable`));
  rows.push(['sources', sources.join(' · ')]);
  if (s.peer) {
    rows.push(['peers', `${shortPeer(s.peer.peerId)}: ${s.peer.connected} connected, routing table ${s.peer.routingTable}, advertising ${s.peer.advertisedKeys} keys${s.peer.quarantined.length ? term.yellow(`, ${s.peer.quarantined.length} quarantined`) : ''}`]);
  }
  const c = s.cache;
  rows.push(['cache', `${bytes(c.bytes)} of ${bytes(c.maxBytes)} (${percent(c.maxBytes ? c.bytes / c.maxBytes : 0)}), ${c.entries} entries, ${c.evictions} evicted, ${s.images.length} image${s.images.length === 1 ? '' : 's'}`]);
  const served = Object.values(s.served).reduce((a, b) => a + b, 0);
  rows.push(['served', served ? `${bytes(served)}: ${bySource(term, s.served, served)}` : 'nothing yet']);
  const requests = Object.values(s.requests).reduce((a, b) => a + b, 0);
  rows.push(['hit ratio', served ? `${percent(s.hitRatio)} of bytes from this node's cache; ${percent((served - (s.served.upstream ?? 0)) / served)} without the WAN (${requests} requests)` : '-']);
  rows.push(['WAN saved', `${bytes(s.wanSavedBytes)} (served ${bytes(served)}, fetched ${bytes(s.fetched.upstream ?? 0)} from upstream)`]);
  rows.push(['rate limits', rateLimits(term, s.rateLimits)]);
  rows.push(['transfers', s.transfers.length ? s.transfers.map((t) => `${t.repository} ${t.digest.slice(7, 19)} ← ${term.source(t.source)} ${bytes(t.written)}${t.size ? `/${bytes(t.size)}` : ''}`).join('; ') : 'none']);
  rows.push(['last errors', s.errors.length ? '' : 'none']);
  for (const line of table(rows.map(([k, v]) => [`  ${k}`, v ?? '']))) term.line(line);
  for (const e of s.errors.slice(-5)) term.line(`    ${term.dim(ago(Date.parse(e.time)))} ${e.level === 'warn' ? term.yellow(e.msg) : term.red(e.msg)}${e.err ? term.dim(`: ${e.err}`) : ''}`);
}

function printSeed(term: Terminal, v: ClusterView, url: string): void {
  const s = v.seed;
  const state = s.ready ? term.green('ready') : term.red(`NOT READY: ${s.readyReason ?? ''}`);
  term.line(`${term.bold('seed')} ${s.version} at ${url}: ${state}, up ${duration(s.uptimeMs)}`);
  const rows: string[][] = [];
  rows.push(['nodes', `${s.nodes.total} reporting, ${term.green(`${s.nodes.ready} ready`)}${s.nodes.stale ? term.yellow(`, ${s.nodes.stale} silent`) : ''}${s.peerId ? `; seed has ${s.peers.length} P2P connections` : ''}`]);
  rows.push(['cache', `${bytes(s.cache.bytes)} of ${bytes(s.cache.maxBytes)}, ${s.cache.entries} entries, ${s.images.length} image${s.images.length === 1 ? '' : 's'}`]);
  const t = v.totals;
  const served = Object.values(t.servedBySource).reduce((a, b) => a + b, 0);
  rows.push(['cluster', `clients pulled ${bytes(t.pulledBytes)}; ${bytes(t.wanBytes)} came over the WAN; ${term.bold(`saved ${bytes(t.savedBytes)}`)}${t.pulledBytes ? ` (${percent(t.savedBytes / t.pulledBytes)})` : ''}`]);
  rows.push(['served', served ? bySource(term, t.servedBySource, served) : 'nothing yet']);
  rows.push(['rate limits', rateLimits(term, v.rateLimits)]);
  rows.push(['transfers', `${v.transfers.length} now`]);
  rows.push(['pull log', `${t.pullsLogged} records`]);
  for (const line of table(rows.map(([k, val]) => [`  ${k}`, val ?? '']))) term.line(line);
  if (v.nodes.length) {
    term.line();
    const header = ['  node', 'state', 'peers', 'cache', 'served', 'from cache', 'last report'];
    const nodeRows = v.nodes.map((n) => {
      const servedBytes = Object.values(n.served ?? {}).reduce((a, b) => a + b, 0);
      const state = n.stale ? term.yellow('silent') : n.ready ? term.green('ready') : term.red('unready');
      return [`  ${n.name}`, state, String(n.peers?.length ?? 0), bytes(n.cache?.bytes ?? 0), bytes(servedBytes), servedBytes ? percent((n.served?.local ?? 0) / servedBytes) : '-', ago(n.lastSeen)];
    });
    for (const line of table([header.map((h) => term.dim(h)), ...nodeRows], ['l', 'l', 'r', 'r', 'r', 'r', 'l'])) term.line(line);
  }
  if (s.errors.length) {
    term.line('  last errors');
    for (const e of s.errors.slice(-5)) term.line(`    ${term.dim(ago(Date.parse(e.time)))} ${e.level === 'warn' ? term.yellow(e.msg) : term.red(e.msg)}${e.err ? term.dim(`: ${e.err}`) : ''}`);
  }
}

function bySource(term: Terminal, by: Record<string, number>, total: number): string {
  return ['local', 'peer', 'seed', 'upstream']
    .filter((k) => by[k])
    .map((k) => `${term.source(k)} ${percent((by[k] ?? 0) / total)}`)
    .join(', ');
}

function rateLimits(term: Terminal, limits: { registry: string; remaining: number | null; limit: number | null; backoffUntil: number | null; node?: string }[]): string {
  if (!limits.length) return term.dim('no registry sent rate-limit headers');
  return limits
    .map((r) => {
      const who = r.node ? ` (${r.node})` : '';
      if (r.backoffUntil) return term.red(`${r.registry}${who}: 429, holding off ${duration(r.backoffUntil - Date.now())}`);
      return `${r.registry}${who}: ${r.remaining ?? '?'}${r.limit !== null ? `/${r.limit}` : ''} left`;
    })
    .join('; ');
}
