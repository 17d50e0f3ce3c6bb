import { OptionsError, formatHelp, loadOptions, type OptionSpecs } from '@peerpull/common/options';
import type { CacheListing, RemovedContent, VerifyEvent } from '@peerpull/daemon';
import { ApiError, apiFetch, apiJson, statusError } from '../api-client.ts';
import { DAEMON_URL_OPTION, JSON_OPTION } from '../client-options.ts';
import { EXIT, EXIT_CODES_HELP } from '../exit-codes.ts';
import { LiveBlock, RateMeter, Terminal, ago, bar, bytes, duration, percent, plural, shortDigest, table } from '../terminal.ts';

export const CACHE_OPTIONS = {
  ...DAEMON_URL_OPTION,
  to: { type: 'size', description: 'gc: evict down to this size instead of the daemon\'s cache-size', placeholder: 'SIZE' },
  ...JSON_OPTION,
} as const satisfies OptionSpecs;

const USAGE = 'peerpull cache ls | rm <image|digest>... | gc [--to SIZE] | verify   [--daemon URL] [--json]';
const SUMMARY = `The content this node holds, through the running daemon (which owns the store: its
LevelDB admits one process at a time).

  ls       the cached images, which of their layers are here, and the totals
  rm       remove an image (its tag, manifests and the layers no other cached image uses)
           or one digest
  gc       evict least-recently-used content now, down to the cache size (or --to)
  verify   re-hash every blob; report and remove each one that does not match its digest
           (exit code 1 when any did)

${EXIT_CODES_HELP}`;

export async function cacheCommand(argv: string[]): Promise<number> {
  const opts = loadOptions(CACHE_OPTIONS, { argv, env: process.env });
  const [sub, ...args] = opts.positionals;
  if (opts.help || !sub) {
    process.stdout.write(formatHelp(USAGE, SUMMARY, CACHE_OPTIONS));
    return opts.help ? EXIT.ok : EXIT.usage;
  }
  if (!opts.daemon) throw new OptionsError('--daemon: a URL is required');
  const term = new Terminal();
  try {
    switch (sub) {
      case 'ls':
      case 'list':
        return await list(term, opts.daemon, opts.json);
      case 'rm':
      case 'remove':
        if (args.length === 0) throw new OptionsError('cache rm: expected an image or a digest');
        return await remove(term, opts.daemon, args, opts.json);
      case 'gc':
        return await gc(term, opts.daemon, opts.to, opts.json);
      case 'verify':
        return await verify(term, opts.daemon, opts.json);
      default:
        throw new OptionsError(`unknown cache command "${sub}" (expected ls, rm, gc or verify)`);
    }
  } catch (err) {
    if (!(err instanceof ApiError)) throw err;
    process.stderr.write(`peerpull cache ${sub}: ${err.message}\n`);
    return err.exitCode;
  }
}

async function list(term: Terminal, daemon: string, json: boolean): Promise<number> {
  const listing = await apiJson<CacheListing>(daemon, '/api/v1/cache', { timeoutMs: 60_000 });
  if (json) {
    term.line(JSON.stringify(listing, null, 2));
    return EXIT.ok;
  }
  if (listing.images.length === 0) term.line(term.dim('no tagged image cached'));
  else {
    const rows = listing.images.map((i) => {
      const blobs = i.platforms.flatMap((p) => p.blobs);
      const held = blobs.filter((b) => b.present).length;
      return [
        i.image,
        shortDigest(i.digest),
        i.platforms.length > 1 || i.platforms[0]?.platform ? `${i.platforms.filter((p) => p.present).length}/${i.platforms.length} platforms` : '',
        `${held}/${blobs.length} blobs`,
        bytes(i.bytes),
        i.complete ? term.green('complete') : term.yellow('partial'),
        i.lastPulledAt ? `pulled ${ago(i.lastPulledAt)}` : '',
      ];
    });
    for (const line of table([['IMAGE', 'DIGEST', '', 'BLOBS', 'SIZE', 'STATE', 'LAST PULL'].map((h) => term.dim(h)), ...rows], ['l', 'l', 'l', 'r', 'r', 'l', 'l'])) term.line(line);
  }
  term.line();
  term.line(`${plural(listing.entries, 'entry', 'entries')}, ${bytes(listing.bytes)} of ${bytes(listing.maxBytes)} (${percent(listing.maxBytes ? listing.bytes / listing.maxBytes : 0)}), ${listing.evictions} evicted since start` +
    (listing.other.entries ? `; ${listing.other.entries} not in a tagged image (${bytes(listing.other.bytes)})` : ''));
  return EXIT.ok;
}

async function remove(term: Terminal, daemon: string, targets: string[], json: boolean): Promise<number> {
  let code: number = EXIT.ok;
  const results: (RemovedContent & { target: string })[] = [];
  for (const target of targets) {
    try {
      const removed = await apiJson<RemovedContent>(daemon, '/api/v1/cache/rm', { method: 'POST', body: { target }, timeoutMs: 60_000 });
      results.push({ target, ...removed });
      if (!json) {
        const freed = removed.removed.reduce((n, r) => n + r.size, 0);
        const what = removed.images.length ? removed.images.join(', ') : target;
        term.line(`removed ${what}: ${plural(removed.removed.length, 'entry', 'entries')}, ${bytes(freed)} freed${removed.kept ? term.dim(` (${removed.kept} kept: other cached images use them)`) : ''}`);
      }
    } catch (err) {
      if (!(err instanceof ApiError) || err.exitCode !== EXIT.notFound) throw err;
      process.stderr.write(`peerpull cache rm: ${err.message}\n`);
      code = EXIT.notFound;
    }
  }
  if (json) term.line(JSON.stringify(results, null, 2));
  return code;
}

async function gc(term: Terminal, daemon: string, to: number | undefined, json: boolean): Promise<number> {
  const result = await apiJson<{ evicted: number; freedBytes: number; bytes: number; targetBytes: number }>(daemon, '/api/v1/cache/gc', {
    method: 'POST',
    body: to !== undefined ? { target: to } : {},
    timeoutMs: 300_000,
  });
  if (json) term.line(JSON.stringify(result, null, 2));
  else if (result.evicted === 0) term.line(`nothing to evict: ${bytes(result.bytes)} held, limit ${bytes(result.targetBytes)}`);
  else term.line(`evicted ${plural(result.evicted, 'least-recently-used entry', 'least-recently-used entries')}, freed ${bytes(result.freedBytes)}; ${bytes(result.bytes)} held (limit ${bytes(result.targetBytes)})`);
  return EXIT.ok;
}

async function verify(term: Terminal, daemon: string, json: boolean): Promise<number> {
  const res = await apiFetch(daemon, '/api/v1/cache/verify', { method: 'POST', body: {} });
  if (!res.ok || !res.body) {
    const text = await res.text().catch(() => '');
    let message = text;
    try {
      message = (JSON.parse(text) as { error?: string }).error ?? text;
    } catch {
      // not JSON
    }
    throw statusError(daemon, '/api/v1/cache/verify', res.status, message);
  }
  const live = term.tty && !json ? new LiveBlock(term) : undefined;
  const meter = new RateMeter();
  const bad: Extract<VerifyEvent, { type: 'bad' }>[] = [];
  let done: Extract<VerifyEvent, { type: 'done' }> | undefined;
  let error: string | undefined;
  let total = { entries: 0, bytes: 0 };
  const decoder = new TextDecoder();
  let buffered = '';
  const handle = (event: VerifyEvent | { type: 'error'; error: string }): void => {
    switch (event.type) {
      case 'start':
        total = { entries: event.entries, bytes: event.bytes };
        if (!json && !live) term.line(`verifying ${plural(event.entries, 'entry', 'entries')}, ${bytes(event.bytes)}`);
        break;
      case 'progress': {
        meter.sample(event.bytesChecked);
        const rate = meter.rate();
        live?.draw([`${bar(total.bytes ? event.bytesChecked / total.bytes : 0, 30)} ${event.checked}/${event.entries} entries, ${bytes(event.bytesChecked)} of ${bytes(total.bytes)}${rate ? `, ${bytes(rate)}/s` : ''}${bad.length ? term.red(`, ${bad.length} bad`) : ''}`]);
        break;
      }
      case 'bad':
        bad.push(event);
        if (!json) {
          live?.draw([]);
          term.line(`${term.red('BAD')} ${event.digest} (${bytes(event.size)}): ${event.reason}${event.removed ? '; removed' : ''}`);
        }
        break;
      case 'done':
        done = event;
        break;
      case 'error':
        error = event.error;
        break;
    }
  };
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    buffered += decoder.decode(chunk, { stream: true });
    let nl: number;
    while ((nl = buffered.indexOf('\n')) >= 0) {
      const line = buffered.slice(0, nl).trim();
      buffered = buffered.slice(nl + 1);
      if (line) handle(JSON.parse(line) as VerifyEvent);
    }
  }
  if (!done) {
    process.stderr.write(`peerpull cache verify: the daemon stopped before finishing${error ? `: ${error}` : ''}\n`);
    return EXIT.problem;
  }
  if (json) term.line(JSON.stringify({ ...done, corrupt: bad }, null, 2));
  else {
    live?.draw([`${bar(1, 30)} ${done.checked}/${total.entries} entries, ${bytes(done.bytesChecked)}`]);
    const summary = `checked ${plural(done.checked, 'entry', 'entries')} (${bytes(done.bytesChecked)}) in ${duration(done.seconds * 1000)}: `;
    term.line(summary + (done.bad ? term.red(`${done.bad === 1 ? '1 did not match its digest and was' : `${done.bad} did not match their digests and were`} removed (fetched again on the next pull)`) : term.green('all match their digests')));
  }
  return done.bad ? EXIT.problem : EXIT.ok;
}
