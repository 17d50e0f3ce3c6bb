import type { Digest } from './digest.ts';
import type { SourceName } from './blob-source.ts';
import type { UpstreamRegistry } from './registry-allowlist.ts';

export interface ManifestLocator {
  registry: UpstreamRegistry;
  repository: string;
}

export interface TagResolution {
  digest: Digest;
  mediaType: string;
  size: number | undefined;
  /** Some sources can only resolve a tag by downloading the manifest; they hand it over. */
  body?: Buffer;
  /** How old the source's own answer is (a seed serving stale), in ms. */
  ageMs?: number;
}

export interface ManifestContent {
  digest: Digest;
  mediaType: string;
  body: Buffer;
}

/** Somewhere manifests come from; the resolver tries them in order. */
export interface ManifestSource {
  readonly name: SourceName;
  /**
   * tag → digest; undefined when the source says the tag does not exist. Throws when it
   * could not answer. Sources that only serve content by digest (peers) leave it out.
   */
  resolveTag?(locator: ManifestLocator, tag: string, signal: AbortSignal): Promise<TagResolution | undefined>;
  /** The manifest bytes for a digest; undefined when the source does not have it. */
  fetch(locator: ManifestLocator, digest: Digest, signal: AbortSignal): Promise<ManifestContent | undefined>;
}
