import { formatBytes, formatDuration } from '@peerpull/common/human-units';

/** Output for people: colour and in-place redraws only on a terminal (and never with NO_COLOR). */
export class Terminal {
  readonly out: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
  readonly tty: boolean;
  readonly colour: boolean;

  constructor(out: NodeJS.WritableStream & { isTTY?: boolean; columns?: number } = process.stdout, env: NodeJS.ProcessEnv = process.env) {
    this.out = out;
    this.tty = out.isTTY === true;
    this.colour = this.tty && !env.NO_COLOR && env.TERM !== 'dumb';
  }

  line(text = ''): void {
    this.out.write(`${text}\n`);
  }

  #sgr(code: string, text: string): string {
    return this.colour ? `\x1b[${code}m${text}\x1b[0m` : text;
  }

  bold(text: string): string {
    return this.#sgr('1', text);
  }

  dim(text: string): string {
    return this.#sgr('2', text);
  }

  green(text: string): string {
    return this.#sgr('32', text);
  }

  yellow(text: string): string {
    return this.#sgr('33', text);
  }

  red(text: string): string {
    return this.#sgr('31', text);
  }

  /** A source name in its colour (local green, peer blue, seed magenta, upstream yellow). */
  source(name: string): string {
    const codes: Record<string, string> = { local: '32', peer: '34', seed: '35', upstream: '33' };
    return codes[name] ? this.#sgr(codes[name], name) : name;
  }

  get width(): number {
    return this.out.columns ?? 100;
  }
}

/** Rows as aligned columns; `align` 'r' right-aligns a column. Widths ignore colour codes. */
export function table(rows: string[][], align: ('l' | 'r')[] = []): string[] {
  const widths: number[] = [];
  for (const row of rows) row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, visibleLength(cell))));
  return rows.map((row) =>
    row
      .map((cell, i) => {
        const pad = ' '.repeat((widths[i] ?? 0) - visibleLength(cell));
        if (i === row.length - 1 && align[i] !== 'r') return cell;
        return align[i] === 'r' ? pad + cell : cell + pad;
      })
      .join('  ')
      .trimEnd(),
  );
}

export function visibleLength(text: string): number {
  // eslint-disable-next-line no-control-regex
  return text.replace(/\x1b\[[0-9;]*m/g, '').length;
}

export const bytes = formatBytes;

/** `3.2s`, `4m12s`, `2h05m`, `3d4h`. */
export function duration(ms: number): string {
  if (!Number.isFinite(ms)) return 'forever';
  if (ms < 3_600_000) return formatDuration(ms);
  const h = Math.floor(ms / 3_600_000);
  if (h < 48) return `${h}h${String(Math.floor((ms % 3_600_000) / 60_000)).padStart(2, '0')}m`;
  return `${Math.floor(h / 24)}d${h % 24}h`;
}

export function ago(time: number, now = Date.now()): string {
  const ms = now - time;
  return ms < 1_000 ? 'just now' : `${duration(ms)} ago`;
}

/** `2026-11-23 05:33:39` in local time. */
export function timestamp(time: number): string {
  const d = new Date(time);
  const p = (n: number): string => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

export function percent(x: number | null | undefined): string {
  if (x === null || x === undefined || !Number.isFinite(x)) return '-';
  return `${(x * 100).toFixed(x > 0 && x < 0.1 ? 1 : 0)} %`;
}

export function shortDigest(digest: string | undefined): string {
  return digest ? digest.replace(/^sha256:/, '').slice(0, 12) : '';
}

export function shortPeer(id: string): string {
  return id.length > 16 ? `${id.slice(0, 8)}…${id.slice(-6)}` : id;
}

/** `[#######.......]` of `width` cells. */
export function bar(fraction: number, width: number): string {
  const filled = Math.max(0, Math.min(width, Math.round(fraction * width)));
  return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}]`;
}

/** Redraws a block of lines in place on a terminal. */
export class LiveBlock {
  readonly #term: Terminal;
  #drawn = 0;

  constructor(term: Terminal) {
    this.#term = term;
  }

  draw(lines: string[]): void {
    let text = this.#drawn ? `\x1b[${this.#drawn}A` : '';
    text += lines.map((l) => `${l}\x1b[K\n`).join('');
    this.#term.out.write(text);
    this.#drawn = lines.length;
  }
}

/** Bytes per second over the last few seconds of samples, and the ETA it implies. */
export class RateMeter {
  readonly #samples: { at: number; done: number }[] = [];
  readonly #windowMs: number;

  constructor(windowMs = 3_000) {
    this.#windowMs = windowMs;
  }

  sample(done: number, at = performance.now()): void {
    this.#samples.push({ at, done });
    while (this.#samples.length > 2 && at - (this.#samples[0] as { at: number }).at > this.#windowMs) this.#samples.shift();
  }

  /** Bytes per second, or undefined before two samples. */
  rate(): number | undefined {
    const first = this.#samples[0];
    const last = this.#samples.at(-1);
    if (!first || !last || last.at - first.at < 200) return undefined;
    return ((last.done - first.done) * 1000) / (last.at - first.at);
  }

  eta(total: number): number | undefined {
    const rate = this.rate();
    const last = this.#samples.at(-1);
    if (!rate || rate <= 0 || !last) return undefined;
    return ((total - last.done) / rate) * 1000;
  }
}

/** `1 entry`, `3 entries`, `1 blob`, `2 blobs`. */
export function plural(n: number, one: string, many = `${one}s`): string {
  return `${n} ${n === 1 ? one : many}`;
}
