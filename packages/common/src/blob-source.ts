import type { Readable } from 'node:stream';
import type { Digest } from './digest.ts';
import type { UpstreamRegistry } from './registry-allowlist.ts';

/** Where a blob comes from, as counted in logs, headers and metrics. */
export type SourceName = 'local' | 'peer' | 'seed' | 'upstream';

/** A blob as a client asked for it: the digest, and the upstream repository it belongs to. */
export interface BlobLocator {
  digest: Digest;
  registry: UpstreamRegistry;
  repository: string;
}

export interface SourceBody {
  /** Total blob size, when the source knows it. */
  size: number | undefined;
  /** Offset of the first byte of `body`; 0 if the source ignored the requested offset. */
  offset: number;
  body: Readable;
}

export interface OpenOptions {
  /** Set after sources said "busy" for a while: a source that sheds load must serve now. */
  insist?: boolean;
  /** A source may say what it did, for the fetch's trace (`peerpull explain`): "no provider in 300 ms", "from peer 12D3…". */
  note?: (detail: string) => void;
  /** Peers another source named as having the blob or receiving it (the seed's busy answer): ask them first. */
  hints?: readonly string[];
  /** The last try before the client's 404: every other source failed (none said "not found"), so look harder. */
  lastResort?: boolean;
}

/** A source that has the blob but sheds load: ask elsewhere first, then come back. */
export class SourceBusyError extends Error {
  override name = 'SourceBusyError';
  /** Peer ids of the nodes it is busy sending the blob to, when it says. */
  readonly providers: readonly string[];

  constructor(message: string, providers: readonly string[] = []) {
    super(message);
    this.providers = providers;
  }
}

/**
 * A source that cannot be asked now (known down, cooling down after failures): a failure, not a miss,
 * so it gets no second attempt and no warning per blob while it is down.
 */
export class SourceUnavailableError extends Error {
  override name = 'SourceUnavailableError';
}

/**
 * On a 404 for a blob: `unavailable` when every source failed (unreachable, erroring) and none said it
 * does not have the blob. A node asking a seed then knows the seed's uplink is down, not that the blob is
 * nowhere, and may look harder among its peers.
 */
export const MISS_HEADER = 'x-peerpull-miss';

/**
 * One place blobs can be fetched from. The resolver tries sources in order and resumes
 * a broken transfer at the right offset from the same or the next source.
 */
export interface BlobSource {
  readonly name: SourceName;
  /** Opens the blob from `offset`; undefined when this source does not have it. Throws when it failed. */
  open(locator: BlobLocator, offset: number, signal: AbortSignal, opts?: OpenOptions): Promise<SourceBody | undefined>;
  /** The blob's size without downloading it; undefined when this source does not have it. */
  size(locator: BlobLocator, signal: AbortSignal): Promise<number | undefined>;
  /** The bytes this source sent for the blob did not verify (e.g. quarantine the peer that sent them). */
  reportCorrupt?(locator: BlobLocator): void;
  /** The fetch of this blob is over (stored, discarded or failed): drop what was kept for reportCorrupt. */
  fetchEnded?(locator: BlobLocator): void;
  /**
   * Asked once more, with `lastResort`, when its quick answer was a miss and every other source failed
   * without saying the blob does not exist: the seed and the upstream unreachable, as at an offline site.
   */
  readonly searchesHarder?: boolean;
}
