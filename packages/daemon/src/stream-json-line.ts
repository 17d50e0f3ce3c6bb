import type { Stream } from '@libp2p/interface';

const MAX_LINE_BYTES = 4096;

/** The framing of the daemon's small libp2p protocols: one JSON line, then (for blobs) raw bytes. */
export function encodeLine(value: unknown): Uint8Array {
  return Buffer.from(`${JSON.stringify(value)}\n`);
}

/** Reads one JSON line from a stream; returns it and an iterator over the bytes after it. */
export async function readLine(stream: Stream, signal: AbortSignal): Promise<{ line: unknown; rest: AsyncIterator<Uint8Array>; first: Buffer }> {
  const iterator = (stream as AsyncIterable<Uint8Array | { subarray(): Uint8Array }>)[Symbol.asyncIterator]();
  let buffered = Buffer.alloc(0);
  const onAbort = (): void => stream.abort(new Error('header timeout'));
  signal.addEventListener('abort', onAbort, { once: true });
  try {
    for (;;) {
      const next = await iterator.next();
      if (next.done) throw new Error('stream ended before the header');
      const chunk = next.value instanceof Uint8Array ? next.value : next.value.subarray();
      buffered = Buffer.concat([buffered, chunk]);
      const newline = buffered.indexOf(10);
      if (newline >= 0) {
        const line = JSON.parse(buffered.subarray(0, newline).toString('utf8')) as unknown;
        const rest: AsyncIterator<Uint8Array> = {
          next: async () => {
            const n = await iterator.next();
            if (n.done) return n;
            return { done: false, value: n.value instanceof Uint8Array ? n.value : n.value.subarray() };
          },
        };
        return { line, rest, first: buffered.subarray(newline + 1) };
      }
      if (buffered.length > MAX_LINE_BYTES) throw new Error('header too long');
    }
  } finally {
    signal.removeEventListener('abort', onAbort);
  }
}
