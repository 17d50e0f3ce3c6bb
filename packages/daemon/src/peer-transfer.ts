import type { Readable } from 'node:stream';
import type { PeerId } from '@libp2p/interface';
import { isDigest, type BlobHandle, type BlobResolver, type Digest, type Logger } from '@peerpull/common';
import { UploadSlots } from './upload-slots.ts';

/**
 * How blob bytes move between nodes, whatever carries them: the requesting side opens a ranged
 * read of a blob from one peer; the serving side decides what to answer. The libp2p stream
 * protocol (`blob-protocol.ts`, the default) and the HTTP data plane (`peer-http-transfer.ts`)
 * both implement it, so quarantine, resume, busy preference and metrics work the same for both.
 */

export type PeerTransportName = 'libp2p' | 'http';

export interface PeerBlobRequest {
  digest: Digest;
  offset: number;
  /** Size only, no bytes. */
  head?: boolean;
  /** Serve even above the upload limit: the requester has been told "busy" everywhere for a while. */
  insist?: boolean;
}

export type PeerBlobHeader =
  | { status: 'ok'; size: number | null; complete: boolean }
  | { status: 'busy' | 'not-found' | 'bad-request'; message?: string };

export type PeerBlobRefusal = Exclude<PeerBlobHeader, { status: 'ok' }>;

/** An opened read: `body` starts at the requested offset and breaks off if the peer stalls. */
export interface PeerBlobOpened {
  header: Extract<PeerBlobHeader, { status: 'ok' }>;
  body: Readable;
}

export interface PeerOpenOptions {
  signal: AbortSignal;
  /** Deadline to reach the peer and get its answer (the header). */
  connectTimeoutMs: number;
  /** The body breaks off after this long without a byte. */
  idleTimeoutMs: number;
}

/** The requesting side of one transport. Throws when the peer cannot be reached or misbehaves. */
export interface PeerTransfer {
  open(peer: PeerId, request: PeerBlobRequest, opts: PeerOpenOptions): Promise<(PeerBlobOpened | PeerBlobRefusal) & { transport: PeerTransportName }>;
}

/** A peer sent nothing for the idle deadline (counted as "stalled", not "failed"). */
export class PeerStalledError extends Error {
  override name = 'PeerStalledError';
}

export function isPeerStall(err: Error): boolean {
  // undici's body timeout is the HTTP transport's idle deadline.
  return err instanceof PeerStalledError || (err as { code?: string }).code === 'UND_ERR_BODY_TIMEOUT';
}

/** Checks a request that came off the network; throws a message for a bad-request answer. */
export function parsePeerBlobRequest(raw: unknown): PeerBlobRequest {
  const r = (raw ?? {}) as Partial<Record<keyof PeerBlobRequest, unknown>>;
  if (typeof r.digest !== 'string' || !isDigest(r.digest)) throw new Error('invalid digest');
  if (typeof r.offset !== 'number' || !Number.isSafeInteger(r.offset) || r.offset < 0) throw new Error('invalid offset');
  return { digest: r.digest, offset: r.offset, head: r.head === true, insist: r.insist === true };
}

/** How long a node fed by the seed waits for its first bytes before telling a peer it has none (below the requester's 2 s header deadline). */
const FIRST_BYTES_WAIT_MS = 1_000;
const FIRST_BYTES_POLL_MS = 20;

/** Waits until the handle has bytes past `offset`; false after `timeoutMs`. */
async function bytesBeyond(handle: BlobHandle, offset: number, timeoutMs: number): Promise<boolean> {
  const deadline = performance.now() + timeoutMs;
  while (handle.available() <= offset) {
    if (performance.now() >= deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, FIRST_BYTES_POLL_MS));
  }
  return true;
}

/** Bytes for one requester; `finish` must be called once when the transport is done with them. */
export interface PeerUpload {
  header: Extract<PeerBlobHeader, { status: 'ok' }>;
  /** From the requested offset to the end (following an in-progress blob as it grows). */
  body: Readable;
  finish(bytes: number, outcome: 'ok' | 'aborted', err?: Error): void;
}

export interface PeerBlobServingOptions {
  blobs: BlobResolver;
  /** Concurrent uploads before answering "busy", so a burst fans out as a tree. */
  uploadLimit: number;
  /** Concurrent uploads to one peer, insisting or not (default: no cap beyond `uploadLimit`). */
  uploadLimitPerPeer?: number;
  logger: Logger;
  onUpload?: (bytes: number, outcome: 'ok' | 'aborted', transport: PeerTransportName) => void;
  /** A peer hit its per-peer upload cap. */
  onPeerLimit?: (peer: string, limit: number) => void;
}

/**
 * The serving side, one instance for every transport: what this node answers a peer's request
 * (only blobs it holds or is downloading; busy beyond the upload limit, counted across transports).
 */
export class PeerBlobServing {
  readonly #opts: PeerBlobServingOptions;
  readonly #slots: UploadSlots;

  constructor(opts: PeerBlobServingOptions) {
    this.#opts = opts;
    this.#slots = new UploadSlots({ total: opts.uploadLimit, perPeer: opts.uploadLimitPerPeer ?? opts.uploadLimit });
  }

  get activeUploads(): number {
    return this.#slots.active;
  }

  /** The answer when no upload slot is free for this peer now, else undefined. */
  #refusal(request: PeerBlobRequest, peer: string): PeerBlobRefusal | undefined {
    const refusal = this.#slots.refusal(peer, request.insist === true);
    if (refusal === 'peer-limit') {
      this.#opts.onPeerLimit?.(peer, this.#slots.perPeerLimit);
      // Insisting means it was told "busy" everywhere: "not found" sends it on to the seed instead.
      return request.insist ? { status: 'not-found', message: 'per-peer upload limit' } : { status: 'busy' };
    }
    return refusal === 'busy' ? { status: 'busy' } : undefined;
  }

  async answer(request: PeerBlobRequest, peer: string, transport: PeerTransportName): Promise<PeerBlobRefusal | Extract<PeerBlobHeader, { status: 'ok' }> | PeerUpload> {
    let handle = await this.#opts.blobs.localOrInflight(request.digest);
    if (!handle) return { status: 'not-found' };
    let complete = handle.source === 'local';
    if (request.head) return { status: 'ok', size: handle.size ?? null, complete };
    const refused = this.#refusal(request, peer);
    if (refused) return refused;
    // Still downloading and nothing past the requester's offset yet: in a burst every node announces
    // a blob as it starts, so two nodes would otherwise stream it from each other and both wait.
    // Not "busy" (which keeps the requester off the seed): the seed is where these bytes come from.
    // Except when this node's bytes come from outside the peers (the seed named it as a recipient):
    // no such cycle can form, and its first bytes are a round trip away, so wait for them briefly.
    if (!complete && handle.available() <= request.offset) {
      const feeding = handle.streamingFrom?.();
      const fedFromOutside = feeding === 'seed' || feeding === 'upstream';
      if (!fedFromOutside || !(await bytesBeyond(handle, request.offset, FIRST_BYTES_WAIT_MS))) return { status: 'not-found', message: 'no bytes yet' };
      // The size is known now (the source answered): take a fresh handle. Others may have taken the upload slots meanwhile.
      handle = await this.#opts.blobs.localOrInflight(request.digest);
      if (!handle) return { status: 'not-found' };
      complete = handle.source === 'local';
      const refusedNow = this.#refusal(request, peer);
      if (refusedNow) return refusedNow;
    }
    if (handle.size !== undefined && request.offset > handle.size) return { status: 'bad-request', message: 'offset beyond the end' };
    const release = this.#slots.take(peer);
    let finished = false;
    return {
      header: { status: 'ok', size: handle.size ?? null, complete },
      body: handle.read(request.offset),
      finish: (bytes, outcome, err) => {
        if (finished) return;
        finished = true;
        release();
        this.#opts.onUpload?.(bytes, outcome, transport);
        const fields = { digest: request.digest, peer, transport, offset: request.offset, bytes };
        if (outcome === 'ok') this.#opts.logger.debug(fields, 'blob uploaded to peer');
        else this.#opts.logger.debug({ ...fields, err: err?.message }, 'blob upload to peer aborted');
      },
    };
  }
}
