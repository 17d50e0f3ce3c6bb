import { setTimeout as sleep } from 'node:timers/promises';
import type { PullRecord } from '@peerpull/common';
import { OptionsError, formatHelp, loadOptions, type OptionSpecs } from '@peerpull/common/options';
import { ApiError, apiJson } from '../api-client.ts';
import { JSON_OPTION, SEED_URL_OPTIONS } from '../client-options.ts';
import { EXIT, EXIT_CODES_HELP } from '../exit-codes.ts';
import { Terminal, bytes, duration, shortDigest, table, timestamp } from '../terminal.ts';

export const PULLS_OPTIONS = {
  ...SEED_URL_OPTIONS,
  since: { type: 'string', description: 'From this time: a duration back from now (15m, 2h), an ISO time, or ms since the epoch', default: '1h', placeholder: 'WHEN' },
  image: { type: 'string', description: 'Only pulls of this image (registry/repository; a part of it matches)', placeholder: 'IMAGE' },
  node: { type: 'string', description: 'Only pulls on this node', placeholder: 'NAME' },
  source: { type: 'string', description: 'Only pulls served from this source', choices: ['local', 'peer', 'seed', 'upstream', 'none'], placeholder: 'SOURCE' },
  limit: { type: 'integer', description: 'At most this many (the newest)', default: 200 },
  follow: { type: 'boolean', description: 'Keep printing new pulls as they are reported', default: false },
  ...JSON_OPTION,
} as const satisfies OptionSpecs;

const USAGE = 'peerpull pulls --seed URL [--since 1h] [--image IMAGE] [--node NAME] [--source S] [--follow] [--json]';
const SUMMARY = `The cluster's pull audit log, kept by the seed: every manifest and blob pull the daemons
completed, with the node, image, digest, size, source and duration. Daemons report in the
background (a second or two late); a pull is never slowed by it, and while the seed is
down its records are lost, not the pulls.

${EXIT_CODES_HELP}`;

export async function pullsCommand(argv: string[]): Promise<number> {
  const opts = loadOptions(PULLS_OPTIONS, { argv, env: process.env });
  if (opts.help) {
    process.stdout.write(formatHelp(USAGE, SUMMARY, PULLS_OPTIONS));
    return EXIT.ok;
  }
  const seed = opts.seed[0];
  if (!seed) throw new OptionsError('--seed: the seed\'s URL is required (or PEERPULL_SEED)');
  if (opts.positionals.length) throw new OptionsError(`unexpected argument ${opts.positionals[0]} (use --image to filter)`);
  const term = new Terminal();
  const query = (since: string): string => {
    const q = new URLSearchParams({ since, limit: String(opts.limit) });
    if (opts.image) q.set('image', opts.image);
    if (opts.node) q.set('node', opts.node);
    if (opts.source) q.set('source', opts.source);
    return `/api/v1/pulls?${q}`;
  };
  try {
    const first = await apiJson<{ pulls: PullRecord[]; truncated: boolean }>(seed, query(opts.since), { token: opts['admin-token'], timeoutMs: 30_000 });
    if (opts.json && !opts.follow) {
      term.line(JSON.stringify(first, null, 2));
      return EXIT.ok;
    }
    const print = (pulls: PullRecord[]): void => {
      if (opts.json) {
        for (const p of pulls) term.line(JSON.stringify(p));
        return;
      }
      for (const line of table(pulls.map((p) => row(term, p)), ['l', 'l', 'l', 'l', 'l', 'r', 'r'])) term.line(line);
    };
    if (!opts.json) {
      if (first.truncated) term.line(term.dim(`(the newest ${opts.limit}; use --limit or --since for more)`));
      if (first.pulls.length === 0 && !opts.follow) term.line(term.dim(`no pull recorded since ${opts.since}`));
      else if (first.pulls.length) for (const line of table([header(term), ...first.pulls.map((p) => row(term, p))], ['l', 'l', 'l', 'l', 'l', 'r', 'r'])) term.line(line);
    } else print(first.pulls);
    if (!opts.follow) return EXIT.ok;
    const seen = new Set(first.pulls.map(key));
    let since = first.pulls.at(-1)?.time ?? Date.now() - 1_000;
    for (;;) {
      await sleep(2_000);
      const next = await apiJson<{ pulls: PullRecord[] }>(seed, query(String(since)), { token: opts['admin-token'], timeoutMs: 30_000 });
      const fresh = next.pulls.filter((p) => !seen.has(key(p)));
      for (const p of fresh) seen.add(key(p));
      if (seen.size > 50_000) seen.clear();
      print(fresh);
      since = next.pulls.at(-1)?.time ?? since;
    }
  } catch (err) {
    if (!(err instanceof ApiError)) throw err;
    process.stderr.write(`peerpull pulls: ${err.message}\n`);
    return err.exitCode;
  }
}

function key(p: PullRecord): string {
  return `${p.time}|${p.node}|${p.kind}|${p.digest ?? p.reference}|${p.client ?? ''}`;
}

function header(term: Terminal): string[] {
  return ['TIME', 'NODE', 'IMAGE', 'WHAT', 'SOURCE', 'SIZE', 'TOOK'].map((h) => term.dim(h));
}

function row(term: Terminal, p: PullRecord): string[] {
  const what = p.kind === 'manifest' && p.reference && !p.reference.startsWith('sha256:') ? `manifest ${p.reference}` : `${p.kind} ${shortDigest(p.digest ?? p.reference)}`;
  const source = p.status < 300 ? term.source(p.source) : term.red(`HTTP ${p.status}`);
  return [timestamp(p.time), p.node, `${p.registry}/${p.repository}`, what, source, bytes(p.bytes), duration(p.ms)];
}
