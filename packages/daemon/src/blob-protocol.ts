import { Readable } from 'node:stream';
import type { Connection, PeerId, Stream } from '@libp2p/interface';
import { isDigest, type BlobResolver, type Digest, type Logger, type PeerNode, type TagRecord } from '@peerpull/common';
import { UploadSlots } from './upload-slots.ts';

/** Blob transfer between cluster nodes: request = digest + offset; response = status + size + bytes. */
export const BLOB_PROTOCOL = '/peerpull/blob/1.0.0';

const MAX_HEADER_BYTES = 4096;
const HEADER_TIMEOUT_MS = 3_000;

export interface BlobRequest {
  digest: Digest;
  offset: number;
  /** Size only, no bytes. */
  head?: boolean;
  /** Serve even above the upload limit: the requester has been told "busy" everywhere for a while. */
  insist?: boolean;
}

/** What a peer last saw a tag resolve to (offline sites resolve tags from peers). */
export interface TagAnswer {
  status: 'ok';
  digest: Digest;
  mediaType: string;
  validatedAt: number;
}

export type BlobResponseHeader =
  | { status: 'ok'; size: number | null; complete: boolean }
  | { status: 'busy' | 'not-found' | 'bad-request'; message?: string };

function encodeLine(value: unknown): Uint8Array {
  return Buffer.from(`${JSON.stringify(value)}\n`);
}

/** Reads one JSON line from a stream; returns it and an iterator over the bytes after it. */
async function readLine(stream: Stream, signal: AbortSignal): Promise<{ line: unknown; rest: AsyncIterator<Uint8Array>; first: Buffer }> {
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
      if (buffered.length > MAX_HEADER_BYTES) throw new Error('header too long');
    }
  } finally {
    signal.removeEventListener('abort', onAbort);
  }
}

export interface BlobServerOptions {
  node: PeerNode;
  blobs: BlobResolver;
  /** `registry/repository:tag` → this node's cached mapping. */
  tagLookup: (key: string) => Promise<TagRecord | undefined>;
  /** Concurrent uploads before answering "busy", so a burst fans out as a tree. */
  uploadLimit: number;
  /** Concurrent uploads to one peer, insisting or not (default: no cap beyond `uploadLimit`). */
  uploadLimitPerPeer?: number;
  logger: Logger;
  onUpload?: (bytes: number, outcome: 'ok' | 'aborted') => void;
}

/** Serves blobs this node holds or is still downloading (following the file as it grows). */
export class BlobServer {
  readonly #opts: BlobServerOptions;
  readonly #slots: UploadSlots;

  constructor(opts: BlobServerOptions) {
    this.#opts = opts;
    this.#slots = new UploadSlots({ total: opts.uploadLimit, perPeer: opts.uploadLimitPerPeer ?? opts.uploadLimit });
  }

  get activeUploads(): number {
    return this.#slots.active;
  }

  async start(): Promise<void> {
    await this.#opts.node.libp2p.handle(BLOB_PROTOCOL, (stream, connection) => this.#serve(stream, connection), { maxInboundStreams: 64 });
  }

  async #serve(stream: Stream, connection: Connection): Promise<void> {
    const peer = connection.remotePeer.toString();
    let request: BlobRequest;
    try {
      const { line, first } = await readLine(stream, AbortSignal.timeout(HEADER_TIMEOUT_MS));
      // A request is one line. libp2p buffers whatever arrives on a stream nobody reads (no backpressure):
      // a peer streaming bytes after its request would grow this node's memory for as long as the upload lasts.
      if (first.length > 0) throw new Error('bytes after the request');
      stream.addEventListener('message', () => stream.abort(new Error('bytes after the request')), { once: true });
      const r = line as Partial<BlobRequest> & { tag?: unknown };
      if (typeof r.tag === 'string' && r.tag.length < 600) {
        const record = await this.#opts.tagLookup(r.tag);
        if (!record) await this.#reply(stream, { status: 'not-found' });
        else await this.#reply(stream, { status: 'ok', digest: record.digest, mediaType: record.mediaType, validatedAt: record.validatedAt });
        return;
      }
      if (typeof r.digest !== 'string' || !isDigest(r.digest) || typeof r.offset !== 'number' || !Number.isInteger(r.offset) || r.offset < 0) {
        throw new Error('invalid request');
      }
      request = { digest: r.digest, offset: r.offset, head: r.head === true, insist: r.insist === true };
    } catch (err) {
      await this.#reply(stream, { status: 'bad-request', message: (err as Error).message });
      return;
    }
    const handle = await this.#opts.blobs.localOrInflight(request.digest);
    if (!handle) {
      await this.#reply(stream, { status: 'not-found' });
      return;
    }
    const complete = handle.source === 'local';
    if (request.head) {
      await this.#reply(stream, { status: 'ok', size: handle.size ?? null, complete });
      return;
    }
    const refusal = this.#slots.refusal(peer, request.insist === true);
    if (refusal === 'peer-limit') {
      this.#opts.node.refusals.note('uploads', peer, { limit: this.#slots.perPeerLimit });
      // Insisting means it was told "busy" everywhere: "not found" sends it on to the seed instead.
      await this.#reply(stream, request.insist ? { status: 'not-found', message: 'per-peer upload limit' } : { status: 'busy' });
      return;
    }
    if (refusal === 'busy') {
      await this.#reply(stream, { status: 'busy' });
      return;
    }
    // Still downloading and nothing past the requester's offset yet: in a burst every node announces
    // a blob as it starts, so two nodes would otherwise stream it from each other and both wait.
    // Not "busy" (which keeps the requester off the seed): the seed is where these bytes come from.
    if (!complete && handle.available() <= request.offset) {
      await this.#reply(stream, { status: 'not-found', message: 'no bytes yet' });
      return;
    }
    if (handle.size !== undefined && request.offset > handle.size) {
      await this.#reply(stream, { status: 'bad-request', message: 'offset beyond the end' });
      return;
    }
    const release = this.#slots.take(peer);
    let sent = 0;
    try {
      stream.send(encodeLine({ status: 'ok', size: handle.size ?? null, complete }));
      for await (const chunk of handle.read(request.offset) as AsyncIterable<Buffer>) {
        sent += chunk.length;
        if (!stream.send(chunk)) await stream.onDrain({ signal: AbortSignal.timeout(30_000) });
      }
      await stream.close();
      this.#opts.onUpload?.(sent, 'ok');
      this.#opts.logger.debug({ digest: request.digest, peer, offset: request.offset, bytes: sent }, 'blob uploaded to peer');
    } catch (err) {
      stream.abort(err as Error);
      this.#opts.onUpload?.(sent, 'aborted');
      this.#opts.logger.debug({ digest: request.digest, peer, bytes: sent, err: (err as Error).message }, 'blob upload to peer aborted');
    } finally {
      release();
    }
  }

  async #reply(stream: Stream, header: BlobResponseHeader | TagAnswer): Promise<void> {
    try {
      stream.send(encodeLine(header));
      await stream.close();
    } catch {
      stream.abort(new Error('reply failed'));
    }
  }
}

export interface OpenedPeerBlob {
  header: Extract<BlobResponseHeader, { status: 'ok' }>;
  body: Readable;
}

/** Asks one peer for a blob. Returns the header and, for `ok`, the body as a Node stream with an idle deadline. */
export async function requestBlob(
  node: PeerNode,
  peer: PeerId,
  request: BlobRequest,
  opts: { signal: AbortSignal; connectTimeoutMs: number; idleTimeoutMs: number },
): Promise<OpenedPeerBlob | Exclude<BlobResponseHeader, { status: 'ok' }>> {
  const dialSignal = AbortSignal.any([opts.signal, AbortSignal.timeout(opts.connectTimeoutMs)]);
  const stream = await node.libp2p.dialProtocol(peer, BLOB_PROTOCOL, { signal: dialSignal });
  try {
    stream.send(encodeLine(request));
    const { line, rest, first } = await readLine(stream, AbortSignal.any([opts.signal, AbortSignal.timeout(opts.connectTimeoutMs)]));
    const header = line as BlobResponseHeader;
    if (header.status !== 'ok') {
      await stream.close().catch(() => stream.abort(new Error('closing')));
      return header;
    }
    if (request.head) {
      await stream.close().catch(() => stream.abort(new Error('closing')));
      return { header, body: Readable.from([]) };
    }
    return { header, body: bodyStream(stream, first, rest, opts) };
  } catch (err) {
    stream.abort(err as Error);
    throw err;
  }
}

function bodyStream(stream: Stream, first: Buffer, rest: AsyncIterator<Uint8Array>, opts: { signal: AbortSignal; idleTimeoutMs: number }): Readable {
  let idle: NodeJS.Timeout | undefined;
  const readable = new Readable({
    highWaterMark: 1024 * 1024,
    read() {
      clearTimeout(idle);
      idle = setTimeout(() => readable.destroy(new Error(`peer stalled: no bytes for ${opts.idleTimeoutMs} ms`)), opts.idleTimeoutMs);
      rest.next().then(
        (next) => {
          clearTimeout(idle);
          if (next.done) readable.push(null);
          else readable.push(next.value);
        },
        (err: Error) => {
          clearTimeout(idle);
          readable.destroy(err);
        },
      );
    },
    destroy(err, callback) {
      clearTimeout(idle);
      if (err) stream.abort(err);
      else void stream.close().catch(() => undefined);
      callback(err);
    },
  });
  if (first.length) readable.push(first);
  const onAbort = (): void => {
    readable.destroy(new Error('aborted'));
  };
  opts.signal.addEventListener('abort', onAbort, { once: true });
  readable.once('close', () => opts.signal.removeEventListener('abort', onAbort));
  return readable;
}

/** Asks one peer what it last saw `registry/repository:tag` resolve to. */
export async function requestTag(node: PeerNode, peer: PeerId, key: string, opts: { signal: AbortSignal; timeoutMs: number }): Promise<TagAnswer | undefined> {
  const signal = AbortSignal.any([opts.signal, AbortSignal.timeout(opts.timeoutMs)]);
  const stream = await node.libp2p.dialProtocol(peer, BLOB_PROTOCOL, { signal });
  try {
    stream.send(encodeLine({ tag: key }));
    const { line } = await readLine(stream, signal);
    await stream.close().catch(() => stream.abort(new Error('closing')));
    const answer = line as Partial<TagAnswer>;
    if (answer.status !== 'ok' || typeof answer.digest !== 'string' || !isDigest(answer.digest) || typeof answer.validatedAt !== 'number') return undefined;
    return { status: 'ok', digest: answer.digest, mediaType: String(answer.mediaType ?? ''), validatedAt: answer.validatedAt };
  } catch (err) {
    stream.abort(err as Error);
    throw err;
  }
}
