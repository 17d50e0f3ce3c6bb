import { MAX_MANIFEST_BYTES, sha256Digest, sniffManifestMediaType, type Digest, type ManifestContent, type ManifestLocator, type ManifestSource } from '@peerpull/common';
import type { PeerBlobSource } from './peer-blob-source.ts';

/** Manifests by digest from peers (they live in the same content store as blobs). Tags never come from peers. */
export class PeerManifestSource implements ManifestSource {
  readonly name = 'peer' as const;
  readonly #blobs: PeerBlobSource;

  constructor(blobs: PeerBlobSource) {
    this.#blobs = blobs;
  }

  async fetch(locator: ManifestLocator, digest: Digest, signal: AbortSignal): Promise<ManifestContent | undefined> {
    try {
      return await this.#fetch(locator, digest, signal);
    } finally {
      this.#blobs.fetchEnded({ ...locator, digest });
    }
  }

  async #fetch(locator: ManifestLocator, digest: Digest, signal: AbortSignal): Promise<ManifestContent | undefined> {
    const opened = await this.#blobs.open({ ...locator, digest }, 0, signal).catch(() => undefined);
    if (!opened) return undefined;
    if (opened.size !== undefined && opened.size > MAX_MANIFEST_BYTES) {
      opened.body.destroy();
      return undefined;
    }
    const chunks: Buffer[] = [];
    let total = 0;
    for await (const chunk of opened.body as AsyncIterable<Buffer>) {
      total += chunk.length;
      if (total > MAX_MANIFEST_BYTES) {
        opened.body.destroy();
        return undefined;
      }
      chunks.push(chunk);
    }
    const body = Buffer.concat(chunks);
    if (sha256Digest(body) !== digest) {
      this.#blobs.reportCorrupt({ ...locator, digest });
      return undefined;
    }
    const mediaType = sniffManifestMediaType(body);
    return mediaType ? { digest, mediaType, body } : undefined;
  }
}
