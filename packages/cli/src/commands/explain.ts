import type { FetchAttempt } from '@peerpull/common';
import { OptionsError, formatHelp, loadOptions, type OptionSpecs } from '@peerpull/common/options';
import type { ExplainLayer, ExplainReport } from '@peerpull/daemon';
import { ApiError, apiJson } from '../api-client.ts';
import { DAEMON_URL_OPTION, JSON_OPTION } from '../client-options.ts';
import { EXIT, EXIT_CODES_HELP } from '../exit-codes.ts';
import { Terminal, ago, bytes, duration, shortDigest, shortPeer } from '../terminal.ts';

export const EXPLAIN_OPTIONS = {
  ...DAEMON_URL_OPTION,
  platform: { type: 'string', description: 'Platform to explain for a multi-platform image (default: this node\'s)', placeholder: 'OS/ARCH' },
  ...JSON_OPTION,
} as const satisfies OptionSpecs;

const USAGE = 'peerpull explain <image> [--platform os/arch] [--daemon URL] [--json]';
const SUMMARY = `For each layer of an image on this node: where it is now (this node, which peers, the
seed, or only the upstream) and where the last pull got it from and why ("peer: no
provider in 300 ms → seed: ok"). Pulls nothing: at most the manifest, when this node has
never seen the image. The history is kept in memory since the daemon started.

${EXIT_CODES_HELP}`;

export async function explainCommand(argv: string[]): Promise<number> {
  const opts = loadOptions(EXPLAIN_OPTIONS, { argv, env: process.env });
  if (opts.help) {
    process.stdout.write(formatHelp(USAGE, SUMMARY, EXPLAIN_OPTIONS));
    return EXIT.ok;
  }
  const [image, ...extra] = opts.positionals;
  if (!image || extra.length) throw new OptionsError(`expected one image, e.g. peerpull explain docker.io/library/nginx:1.27`);
  if (!opts.daemon) throw new OptionsError('--daemon: a URL is required');
  const query = new URLSearchParams({ image, ...(opts.platform ? { platform: opts.platform } : {}) });
  let report: ExplainReport;
  try {
    report = await apiJson<ExplainReport>(opts.daemon, `/api/v1/explain?${query}`, { timeoutMs: 60_000 });
  } catch (err) {
    if (!(err instanceof ApiError)) throw err;
    process.stderr.write(`peerpull explain: ${err.message}\n`);
    return err.exitCode;
  }
  const term = new Terminal();
  if (opts.json) {
    term.line(JSON.stringify(report, null, 2));
    return EXIT.ok;
  }
  printReport(term, report);
  return EXIT.ok;
}

function printReport(term: Terminal, r: ExplainReport): void {
  const layers = r.layers.filter((l) => l.kind === 'layer').length;
  term.line(
    `${term.bold(r.image)} → ${shortDigest(r.digest)}${r.platform ? ` (${r.platform})` : ''}: config + ${layers} layer${layers === 1 ? '' : 's'}, ${bytes(r.totalBytes)}; ${bytes(r.localBytes)} on this node` +
      (r.resolvedBy === 'sources' ? term.dim(' (this node had not seen it: the manifest was fetched)') : ''),
  );
  if (!r.p2p) term.line(term.dim('P2P is off on this node: peers are not asked'));
  let index = 0;
  for (const layer of r.layers) {
    term.line();
    const title = layer.kind === 'config' ? 'config' : `layer ${++index}/${layers}`;
    term.line(`${term.bold(title)}  ${layer.digest}  ${bytes(layer.size)}`);
    const rows: [string, string][] = [['now', now(term, layer)]];
    if (layer.lastPull) {
      const p = layer.lastPull;
      rows.push(['last pull', `${ago(p.time)}, served from ${term.source(p.source)} in ${duration(p.ms)}`]);
    } else {
      rows.push(['last pull', term.dim('none since the daemon started')]);
    }
    if (layer.lastFetch) rows.push(['fetched', fetched(term, layer.lastFetch)]);
    else if (layer.lastPull) rows.push(['fetched', term.dim('before the daemon started, or was already here')]);
    for (const [k, v] of rows) term.line(`  ${k.padEnd(10)} ${v}`);
  }
}

function now(term: Terminal, l: ExplainLayer): string {
  const parts: string[] = [];
  if (l.local) parts.push(term.green('on this node'));
  else if (l.fetching) parts.push(term.yellow(`being fetched from ${l.fetching.source} (${bytes(l.fetching.written)} so far)`));
  else parts.push(term.yellow('not on this node'));
  if (l.peers !== null) {
    const ok = l.peers.filter((p) => !p.quarantined);
    const bad = l.peers.filter((p) => p.quarantined);
    parts.push(ok.length ? `${ok.length} peer${ok.length === 1 ? '' : 's'} (${ok.slice(0, 3).map((p) => shortPeer(p.id)).join(', ')}${ok.length > 3 ? ', …' : ''})` : 'no peer');
    if (bad.length) parts.push(term.red(`${bad.length} quarantined`));
  }
  if (l.seed === null) parts.push(term.dim('no seed'));
  else if (l.seed) {
    const s = l.seed;
    parts.push(
      s.state === 'stored' ? 'the seed has it' : s.state === 'upstream' ? 'the seed would fetch it from upstream' : s.state === 'not-found' ? term.red('the seed cannot find it') : term.red(`the seed is unreachable${s.detail ? ` (${s.detail})` : ''}`),
    );
  }
  if (!l.local) parts.push(`a pull now would get it from ${term.source(l.where === 'peers' ? 'peer' : l.where)}`);
  return parts.join('; ');
}

function fetched(term: Terminal, f: NonNullable<ExplainLayer['lastFetch']>): string {
  const steps = f.attempts.map((a) => attempt(term, a)).join(' → ');
  const result = f.ok ? '' : term.red(' (failed)');
  return `${ago(f.time)} in ${duration(f.seconds * 1000)}: ${steps || term.source(f.source)}${result}`;
}

function attempt(term: Terminal, a: FetchAttempt): string {
  const what = a.outcome === 'ok' ? 'ok' : a.outcome === 'miss' ? "doesn't have it" : a.outcome === 'busy' ? 'busy' : a.outcome === 'broke' ? 'broke off' : 'failed';
  const coloured = a.outcome === 'ok' ? term.green(what) : term.yellow(what);
  return `${term.source(a.source)} ${coloured}${a.detail ? term.dim(` (${a.detail}, ${a.ms} ms)`) : term.dim(` (${a.ms} ms)`)}`;
}
