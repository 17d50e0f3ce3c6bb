import {
  MANIFEST_ACCEPT,
  MAX_MANIFEST_BYTES,
  isDigest,
  sha256Digest,
  type Digest,
  type ManifestContent,
  type ManifestLocator,
  type ManifestSource,
  type TagResolution,
} from '@peerpull/common';
import type { SeedClient } from './seed-client.ts';

const ACCEPT = `${MANIFEST_ACCEPT}, */*`;

/**
 * Tags and manifests from the seed, the cluster's source of truth for tags: every daemon
 * asks the same seed for a given tag (rendezvous on the tag), so all nodes see one digest.
 */
export class SeedManifestSource implements ManifestSource {
  readonly name = 'seed' as const;
  readonly #client: SeedClient;

  constructor(client: SeedClient) {
    this.#client = client;
  }

  async resolveTag(locator: ManifestLocator, tag: string, signal: AbortSignal): Promise<TagResolution | undefined> {
    const key = `${locator.registry.host}/${locator.repository}:${tag}`;
    let lastError: unknown = new Error('no seed reachable');
    for (const seed of this.#client.order(key)) {
      try {
        const res = await this.#client.request(seed, locator.registry, {
          method: 'HEAD',
          path: `/v2/${locator.repository}/manifests/${tag}`,
          headers: { accept: ACCEPT },
          signal,
          wholeRequestDeadline: true,
        });
        await res.body.dump();
        if (res.statusCode === 404) return undefined;
        const digest = String(res.headers['docker-content-digest'] ?? '');
        if (res.statusCode !== 200 || !isDigest(digest)) {
          lastError = new Error(`seed ${seed.origin} answered ${res.statusCode}${isDigest(digest) ? '' : ' without a digest'}`);
          continue;
        }
        const age = Number(res.headers.age ?? 0);
        const resolution: TagResolution = { digest, mediaType: String(res.headers['content-type'] ?? ''), size: Number(res.headers['content-length'] ?? 0) };
        if (age > 0) resolution.ageMs = age * 1000;
        return resolution;
      } catch (err) {
        lastError = err;
      }
    }
    throw lastError;
  }

  async fetch(locator: ManifestLocator, digest: Digest, signal: AbortSignal): Promise<ManifestContent | undefined> {
    let lastError: unknown = new Error('no seed reachable');
    for (const seed of this.#client.order(digest)) {
      try {
        const res = await this.#client.request(seed, locator.registry, {
          method: 'GET',
          path: `/v2/${locator.repository}/manifests/${digest}`,
          headers: { accept: ACCEPT },
          signal,
          wholeRequestDeadline: true,
        });
        if (res.statusCode === 404) {
          await res.body.dump();
          return undefined;
        }
        if (res.statusCode !== 200 || Number(res.headers['content-length'] ?? 0) > MAX_MANIFEST_BYTES) {
          await res.body.dump();
          lastError = new Error(`seed ${seed.origin} answered ${res.statusCode}`);
          continue;
        }
        const body = Buffer.from(await res.body.arrayBuffer());
        if (body.length > MAX_MANIFEST_BYTES || sha256Digest(body) !== digest) {
          lastError = new Error(`seed ${seed.origin} sent a manifest that does not match ${digest}`);
          continue;
        }
        return { digest, mediaType: String(res.headers['content-type'] ?? ''), body };
      } catch (err) {
        lastError = err;
      }
    }
    throw lastError;
  }
}
