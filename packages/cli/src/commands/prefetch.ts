import { setTimeout as sleep } from 'node:timers/promises';
import { OptionsError, formatHelp, loadOptions, type OptionSpecs } from '@peerpull/common/options';
import type { PrefetchJobView } from '@peerpull/seed';
import { ApiError, apiJson } from '../api-client.ts';
import { JSON_OPTION, SEED_URL_OPTIONS } from '../client-options.ts';
import { EXIT, EXIT_CODES_HELP } from '../exit-codes.ts';
import { LiveBlock, RateMeter, Terminal, bar, bytes, duration, percent } from '../terminal.ts';

export const PREFETCH_OPTIONS = {
  ...SEED_URL_OPTIONS,
  platform: { type: 'list', description: 'Only these platforms of a multi-platform image (default: all)', default: [], placeholder: 'OS/ARCH' },
  'poll-interval': { type: 'duration', description: 'How often to ask the seed for progress', default: '500ms' },
  ...JSON_OPTION,
} as const satisfies OptionSpecs;

const USAGE = 'peerpull prefetch <image>... --seed URL [--platform os/arch]... [--json]';
const SUMMARY = `Asks the seed to fetch images into its cache now (before an upgrade), and follows the job:
a live progress bar with bytes, rate and ETA on a terminal, a line per change otherwise.

${EXIT_CODES_HELP}`;

export async function prefetchCommand(argv: string[]): Promise<number> {
  const opts = loadOptions(PREFETCH_OPTIONS, { argv, env: process.env });
  if (opts.help) {
    process.stdout.write(formatHelp(USAGE, SUMMARY, PREFETCH_OPTIONS));
    return EXIT.ok;
  }
  const seed = opts.seed[0];
  if (!seed) throw new OptionsError('--seed: the seed\'s URL is required (or PEERPULL_SEED)');
  if (opts.positionals.length === 0) throw new OptionsError('expected at least one image, e.g. peerpull prefetch docker.io/library/nginx:1.27');
  const term = new Terminal();
  const token = opts['admin-token'];
  try {
    let job = await apiJson<PrefetchJobView>(seed, '/api/v1/prefetch', {
      method: 'POST',
      body: { images: opts.positionals, ...(opts.platform.length ? { platforms: opts.platform } : {}) },
      token,
      timeoutMs: 30_000,
    });
    const view = opts.json ? undefined : term.tty ? new LiveProgress(term) : new PlainProgress(term);
    view?.update(job);
    while (job.state === 'running') {
      await sleep(opts['poll-interval']);
      job = await apiJson<PrefetchJobView>(seed, `/api/v1/prefetch/${job.id}`, { token, timeoutMs: 30_000 });
      view?.update(job);
    }
    view?.finish(job);
    if (opts.json) term.line(JSON.stringify(job, null, 2));
    return job.state === 'done' ? EXIT.ok : EXIT.problem;
  } catch (err) {
    if (!(err instanceof ApiError)) throw err;
    process.stderr.write(`peerpull prefetch: ${err.message}\n`);
    return err.exitCode;
  }
}

interface ProgressView {
  update(job: PrefetchJobView): void;
  finish(job: PrefetchJobView): void;
}

/** A terminal: one bar per image and a total, redrawn in place. */
class LiveProgress implements ProgressView {
  readonly #term: Terminal;
  readonly #block: LiveBlock;
  readonly #meters = new Map<string, RateMeter>();
  readonly #started = performance.now();

  constructor(term: Terminal) {
    this.#term = term;
    this.#block = new LiveBlock(term);
  }

  update(job: PrefetchJobView): void {
    const t = this.#term;
    const width = Math.max(10, Math.min(30, t.width - 80));
    const nameWidth = Math.min(40, Math.max(...job.images.map((i) => i.image.length)));
    const line = (key: string, name: string, done: number, total: number, state: string): string => {
      let meter = this.#meters.get(key);
      if (!meter) this.#meters.set(key, (meter = new RateMeter()));
      meter.sample(done);
      const rate = meter.rate();
      const eta = total > done ? meter.eta(total) : undefined;
      const fraction = total ? done / total : state === 'done' ? 1 : 0;
      const label = name.length > nameWidth ? `…${name.slice(-(nameWidth - 1))}` : name.padEnd(nameWidth);
      const detail = `${bytes(done).padStart(10)} / ${bytes(total).padEnd(10)} ${(rate !== undefined ? `${bytes(rate)}/s` : '').padStart(12)} ${eta !== undefined && state === 'running' ? `ETA ${duration(eta)}` : ''}`;
      const coloured = state === 'done' ? t.green(state) : state === 'failed' ? t.red(state) : state === 'running' ? t.yellow(state) : t.dim(state);
      return `${label} ${bar(fraction, width)} ${percent(fraction).padStart(5)} ${detail.padEnd(48)} ${coloured}`;
    };
    const lines = job.images.map((i) => line(i.image, i.image, i.bytesDone, i.bytesTotal, i.state));
    if (job.images.length > 1) lines.push(line('\0total', 'total', job.bytesDone, job.bytesTotal, job.state));
    this.#block.draw(lines);
  }

  finish(job: PrefetchJobView): void {
    this.update(job);
    for (const i of job.images.filter((img) => img.error)) this.#term.line(this.#term.red(`${i.image}: ${i.error}`));
    this.#term.line(`${job.state === 'done' ? this.#term.green('done') : this.#term.red(job.state)}: ${bytes(job.bytesTotal)} in ${duration(performance.now() - this.#started)} (job ${job.id})`);
  }
}

/** Not a terminal (logs, CI): a line when an image changes state, and progress every 10 s. */
class PlainProgress implements ProgressView {
  readonly #term: Terminal;
  readonly #states = new Map<string, string>();
  readonly #meter = new RateMeter(10_000);
  readonly #started = performance.now();
  #lastProgress = performance.now();

  constructor(term: Terminal) {
    this.#term = term;
  }

  update(job: PrefetchJobView): void {
    if (this.#states.size === 0) this.#term.line(`prefetch job ${job.id}: ${job.images.length} image${job.images.length === 1 ? '' : 's'}${job.platforms.length ? ` (${job.platforms.join(', ')})` : ''}`);
    this.#meter.sample(job.bytesDone);
    for (const i of job.images) {
      if (this.#states.get(i.image) === i.state) continue;
      this.#states.set(i.image, i.state);
      if (i.state === 'pending') continue;
      const detail = i.state === 'failed' ? `: ${i.error ?? ''}` : i.state === 'done' ? `: ${bytes(i.bytesTotal)} in ${i.blobsTotal} blobs` : '';
      this.#term.line(`${i.image}: ${i.state}${detail}`);
    }
    if (job.state === 'running' && performance.now() - this.#lastProgress >= 10_000) {
      this.#lastProgress = performance.now();
      const rate = this.#meter.rate();
      const eta = this.#meter.eta(job.bytesTotal);
      this.#term.line(`progress: ${bytes(job.bytesDone)} of ${bytes(job.bytesTotal)} (${percent(job.bytesTotal ? job.bytesDone / job.bytesTotal : 0)})${rate ? `, ${bytes(rate)}/s` : ''}${eta !== undefined ? `, ETA ${duration(eta)}` : ''}`);
    }
  }

  finish(job: PrefetchJobView): void {
    this.update(job);
    this.#term.line(`${job.state}: ${bytes(job.bytesDone)} of ${bytes(job.bytesTotal)} in ${duration(performance.now() - this.#started)}`);
  }
}
