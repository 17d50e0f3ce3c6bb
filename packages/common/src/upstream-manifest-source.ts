import type { Digest } from './digest.ts';
import { MANIFEST_ACCEPT } from './media-types.ts';
import type { ManifestContent, ManifestLocator, ManifestSource, TagResolution } from './manifest-source.ts';
import { UpstreamError, type UpstreamClient } from './upstream-client.ts';

// Listing every manifest type we understand makes a tag resolve to the same digest for
// every client; `*/*` keeps artifacts with other manifest types working by digest.
const ACCEPT = `${MANIFEST_ACCEPT}, */*`;

export class UpstreamManifestSource implements ManifestSource {
  readonly name = 'upstream' as const;
  readonly #client: UpstreamClient;

  constructor(client: UpstreamClient) {
    this.#client = client;
  }

  async resolveTag(locator: ManifestLocator, tag: string, signal: AbortSignal): Promise<TagResolution | undefined> {
    try {
      const head = await this.#client.headManifest(locator.registry, locator.repository, tag, { accept: ACCEPT, signal });
      if (head.digest) return { digest: head.digest, mediaType: head.mediaType, size: head.size };
      // Some registries omit Docker-Content-Digest on HEAD: fetch the manifest and hash it.
      const manifest = await this.#client.getManifest(locator.registry, locator.repository, tag, { accept: ACCEPT, signal });
      return { digest: manifest.digest, mediaType: manifest.mediaType, size: manifest.body.length, body: manifest.body };
    } catch (err) {
      if (err instanceof UpstreamError && err.kind === 'not-found') return undefined;
      throw err;
    }
  }

  async fetch(locator: ManifestLocator, digest: Digest, signal: AbortSignal): Promise<ManifestContent | undefined> {
    try {
      return await this.#client.getManifest(locator.registry, locator.repository, digest, { accept: ACCEPT, signal });
    } catch (err) {
      if (err instanceof UpstreamError && err.kind === 'not-found') return undefined;
      throw err;
    }
  }
}
