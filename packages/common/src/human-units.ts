// Sizes and durations as operators write them: `20GiB`, `500MB`, `1s`, `5m`, `250ms`.

const SIZE_UNITS: Record<string, number> = {
  '': 1, b: 1,
  k: 1e3, kb: 1e3, m: 1e6, mb: 1e6, g: 1e9, gb: 1e9, t: 1e12, tb: 1e12,
  ki: 2 ** 10, kib: 2 ** 10, mi: 2 ** 20, mib: 2 ** 20, gi: 2 ** 30, gib: 2 ** 30, ti: 2 ** 40, tib: 2 ** 40,
};

const DURATION_UNITS: Record<string, number> = {
  ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000,
};

/** Parses a size into bytes; throws a message naming the accepted forms. */
export function parseSize(input: string | number): number {
  if (typeof input === 'number') return checkNonNegative(input, String(input));
  const match = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(input);
  const unit = match?.[2]?.toLowerCase() ?? '';
  const factor = SIZE_UNITS[unit];
  if (!match || factor === undefined) throw new Error(`invalid size "${input}" (examples: 512MiB, 20GiB, 1GB, 1048576)`);
  return Math.round(Number(match[1]) * factor);
}

/** Parses a duration into milliseconds: a sequence like `1h30m`, `5m`, `1.5s`, `200ms`; a bare number is seconds. */
export function parseDuration(input: string | number): number {
  if (typeof input === 'number') return checkNonNegative(input * 1000, String(input));
  const text = input.trim();
  if (text === 'forever' || text === 'infinite') return Number.POSITIVE_INFINITY;
  if (/^\d+(?:\.\d+)?$/.test(text)) return Number(text) * 1000;
  const part = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/y;
  let total = 0;
  let pos = 0;
  while (pos < text.length) {
    part.lastIndex = pos;
    const match = part.exec(text);
    if (!match) throw new Error(`invalid duration "${input}" (examples: 250ms, 1s, 5m, 1h30m, forever)`);
    total += Number(match[1]) * (DURATION_UNITS[match[2] as string] as number);
    pos = part.lastIndex;
  }
  if (text.length === 0) throw new Error('invalid duration "" (examples: 250ms, 1s, 5m)');
  return total;
}

export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let i = 0;
  while (Math.abs(value) >= 1024 && i < units.length - 1) {
    value /= 1024;
    i++;
  }
  return `${i === 0 ? value : value.toFixed(1)} ${units[i]}`;
}

export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms)) return 'forever';
  if (ms < 1000) return `${Math.round(ms)}ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)}s`;
  const minutes = Math.floor(ms / 60_000);
  const seconds = Math.round((ms % 60_000) / 1000);
  return `${minutes}m${seconds ? `${seconds}s` : ''}`;
}

function checkNonNegative(value: number, text: string): number {
  if (!Number.isFinite(value) || value < 0) throw new Error(`invalid value "${text}": must be a non-negative number`);
  return value;
}
