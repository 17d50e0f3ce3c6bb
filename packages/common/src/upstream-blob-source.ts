import type { BlobLocator, BlobSource, SourceBody } from './blob-source.ts';
import { UpstreamError, type UpstreamClient } from './upstream-client.ts';

/** The registry itself: the last resort, and the only source that costs WAN bytes. */
export class UpstreamBlobSource implements BlobSource {
  readonly name = 'upstream' as const;
  readonly #client: UpstreamClient;

  constructor(client: UpstreamClient) {
    this.#client = client;
  }

  async open(locator: BlobLocator, offset: number, signal: AbortSignal): Promise<SourceBody | undefined> {
    try {
      return await this.#client.getBlob(locator.registry, locator.repository, locator.digest, { offset, signal });
    } catch (err) {
      if (err instanceof UpstreamError && err.kind === 'not-found') return undefined;
      throw err;
    }
  }

  async size(locator: BlobLocator, signal: AbortSignal): Promise<number | undefined> {
    try {
      return (await this.#client.headBlob(locator.registry, locator.repository, locator.digest, { signal })).size;
    } catch (err) {
      if (err instanceof UpstreamError && err.kind === 'not-found') return undefined;
      throw err;
    }
  }
}
