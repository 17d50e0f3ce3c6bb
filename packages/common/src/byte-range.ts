/** A resolved, inclusive byte range within a blob of known size. */
export interface ByteRange {
  start: number;
  end: number;
}

export type RangeResult =
  | { kind: 'none' }
  | { kind: 'range'; range: ByteRange }
  | { kind: 'unsatisfiable' }
  | { kind: 'invalid' };

const SINGLE_RANGE = /^bytes=(\d*)-(\d*)$/;

/**
 * Parses a single-range `Range` header against a blob size (RFC 9110 §14).
 * Multi-range, reversed and malformed headers are `invalid`: callers answer 416 rather than
 * silently sending a full body the client did not ask for.
 */
export function parseRange(header: string | undefined, size: number): RangeResult {
  if (header === undefined || header === '') return { kind: 'none' };
  const match = SINGLE_RANGE.exec(header.trim());
  if (!match) return { kind: 'invalid' };
  const [, first = '', last = ''] = match;
  if (first === '' && last === '') return { kind: 'invalid' };
  if (first === '') {
    const suffix = toInteger(last);
    if (suffix === 0) return { kind: 'unsatisfiable' };
    // An empty blob has no last N bytes to name: ignore the range and send the (empty) whole.
    if (size === 0) return { kind: 'none' };
    return { kind: 'range', range: { start: Math.max(0, size - suffix), end: size - 1 } };
  }
  const start = toInteger(first);
  if (last !== '' && toInteger(last) < start) return { kind: 'invalid' };
  if (start >= size) return { kind: 'unsatisfiable' };
  // A last-pos at or beyond the size means "to the end" (RFC 9110 §14.1.1), however large.
  const end = last === '' ? size - 1 : Math.min(toInteger(last), size - 1);
  return { kind: 'range', range: { start, end } };
}

/** Digit strings beyond Number's exact range exceed any blob size: saturate instead of losing precision. */
function toInteger(digits: string): number {
  const n = Number(digits);
  return Number.isSafeInteger(n) ? n : Number.MAX_SAFE_INTEGER;
}

export function contentRange(range: ByteRange, size: number): string {
  return `bytes ${range.start}-${range.end}/${size}`;
}
