import { Readable } from 'node:stream';
import type { Connection, PeerId, Stream } from '@libp2p/interface';
import { isDigest, type Digest, type TagRecord } from '@peerpull/common';
import type { PeerNode } from '@peerpull/common/peer';
import {
  PeerStalledError,
  parsePeerBlobRequest,
  type PeerBlobHeader,
  type PeerBlobOpened,
  type PeerBlobRefusal,
  type PeerBlobRequest,
  type PeerBlobServing,
  type PeerOpenOptions,
  type PeerTransfer,
} from './peer-transfer.ts';
import { encodeLine, readLine } from './stream-json-line.ts';

/** Blob transfer between cluster nodes over libp2p streams: request = digest + offset; response = status + size + bytes. */
export const BLOB_PROTOCOL = '/peerpull/blob/1.0.0';

const HEADER_TIMEOUT_MS = 3_000;

/** What a peer last saw a tag resolve to (offline sites resolve tags from peers). */
export interface TagAnswer {
  status: 'ok';
  digest: Digest;
  mediaType: string;
  validatedAt: number;
}

export interface BlobServerOptions {
  node: PeerNode;
  serving: PeerBlobServing;
  /** `registry/repository:tag` → this node's cached mapping. */
  tagLookup: (key: string) => Promise<TagRecord | undefined>;
}

/** Serves blobs (and cached tags) to other nodes over libp2p streams. */
export class BlobServer {
  readonly #opts: BlobServerOptions;

  constructor(opts: BlobServerOptions) {
    this.#opts = opts;
  }

  async start(): Promise<void> {
    await this.#opts.node.libp2p.handle(BLOB_PROTOCOL, (stream, connection) => this.#serve(stream, connection), { maxInboundStreams: 64 });
  }

  async #serve(stream: Stream, connection: Connection): Promise<void> {
    const peer = connection.remotePeer.toString();
    let request: PeerBlobRequest;
    try {
      const { line, first } = await readLine(stream, AbortSignal.timeout(HEADER_TIMEOUT_MS));
      // A request is one line. libp2p buffers whatever arrives on a stream nobody reads (no backpressure):
      // a peer streaming bytes after its request would grow this node's memory for as long as the upload lasts.
      if (first.length > 0) throw new Error('bytes after the request');
      stream.addEventListener('message', () => stream.abort(new Error('bytes after the request')), { once: true });
      const r = line as { tag?: unknown };
      if (typeof r.tag === 'string' && r.tag.length < 600) {
        const record = await this.#opts.tagLookup(r.tag);
        if (!record) await this.#reply(stream, { status: 'not-found' });
        else await this.#reply(stream, { status: 'ok', digest: record.digest, mediaType: record.mediaType, validatedAt: record.validatedAt });
        return;
      }
      request = parsePeerBlobRequest(line);
    } catch (err) {
      await this.#reply(stream, { status: 'bad-request', message: (err as Error).message });
      return;
    }
    const answer = await this.#opts.serving.answer(request, peer, 'libp2p');
    if (!('body' in answer)) {
      await this.#reply(stream, answer);
      return;
    }
    let sent = 0;
    try {
      stream.send(encodeLine(answer.header));
      for await (const chunk of answer.body as AsyncIterable<Buffer>) {
        sent += chunk.length;
        if (!stream.send(chunk)) await stream.onDrain({ signal: AbortSignal.timeout(30_000) });
      }
      await stream.close();
      answer.finish(sent, 'ok');
    } catch (err) {
      answer.body.destroy();
      stream.abort(err as Error);
      answer.finish(sent, 'aborted', err as Error);
    }
  }

  async #reply(stream: Stream, header: PeerBlobHeader | TagAnswer): Promise<void> {
    try {
      stream.send(encodeLine(header));
      await stream.close();
    } catch {
      stream.abort(new Error('reply failed'));
    }
  }
}

/** The requesting side of the libp2p transport. */
export class Libp2pTransfer implements PeerTransfer {
  readonly #node: PeerNode;

  constructor(node: PeerNode) {
    this.#node = node;
  }

  async open(peer: PeerId, request: PeerBlobRequest, opts: PeerOpenOptions): Promise<(PeerBlobOpened | PeerBlobRefusal) & { transport: 'libp2p' }> {
    return { ...(await requestBlob(this.#node, peer, request, opts)), transport: 'libp2p' };
  }
}

/** Asks one peer for a blob. Returns the header and, for `ok`, the body as a Node stream with an idle deadline. */
export async function requestBlob(
  node: PeerNode,
  peer: PeerId,
  request: PeerBlobRequest,
  opts: PeerOpenOptions,
): Promise<PeerBlobOpened | PeerBlobRefusal> {
  const dialSignal = AbortSignal.any([opts.signal, AbortSignal.timeout(opts.connectTimeoutMs)]);
  const stream = await node.libp2p.dialProtocol(peer, BLOB_PROTOCOL, { signal: dialSignal });
  try {
    stream.send(encodeLine(request));
    const { line, rest, first } = await readLine(stream, AbortSignal.any([opts.signal, AbortSignal.timeout(opts.connectTimeoutMs)]));
    const header = line as PeerBlobHeader;
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
      idle = setTimeout(() => readable.destroy(new PeerStalledError(`peer stalled: no bytes for ${opts.idleTimeoutMs} ms`)), opts.idleTimeoutMs);
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
