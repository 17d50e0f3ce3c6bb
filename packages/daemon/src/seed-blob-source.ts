import { MISS_HEADER, PROVIDERS_HEADER, SourceBusyError, SourceUnavailableError, type BlobLocator, type BlobSource, type OpenOptions, type SourceBody } from '@peerpull/common';
import type { SeedClient } from './seed-client.ts';

/** Blobs from the cluster's seeds: the digest's preferred seed first, the others if it fails. */
export class SeedBlobSource implements BlobSource {
  readonly name = 'seed' as const;
  readonly #client: SeedClient;

  constructor(client: SeedClient) {
    this.#client = client;
  }

  async open(locator: BlobLocator, offset: number, signal: AbortSignal, opts: OpenOptions = {}): Promise<SourceBody | undefined> {
    let lastError: unknown;
    const seeds = this.#client.order(locator.digest);
    // Known down: a failure, not "the cluster has no such blob" (the resolver may then look harder among peers).
    if (seeds.length === 0) throw new SourceUnavailableError('every seed is cooling down after failures');
    for (const seed of seeds) {
      let res;
      try {
        res = await this.#client.request(seed, locator.registry, {
          method: 'GET',
          path: `/v2/${locator.repository}/blobs/${locator.digest}`,
          headers: { ...(offset > 0 ? { range: `bytes=${offset}-` } : {}), ...(opts.insist ? { 'x-peerpull-insist': '1' } : {}) },
          signal,
        });
      } catch (err) {
        lastError = err;
        continue;
      }
      if (res.statusCode === 200) {
        const length = res.headers['content-length'];
        return { size: typeof length === 'string' ? Number(length) : undefined, offset: 0, body: res.body };
      }
      if (res.statusCode === 206) {
        const range = /^bytes (\d+)-\d+\/(\d+|\*)$/.exec(String(res.headers['content-range'] ?? ''));
        if (range && Number(range[1]) === offset) {
          return { size: range[2] === '*' ? undefined : Number(range[2]), offset, body: res.body };
        }
      }
      await res.body.dump().catch(() => undefined);
      // Not the next seed: that would fetch the blob upstream a second time.
      if (res.headers['x-peerpull-busy'] !== undefined) {
        const named = res.headers[PROVIDERS_HEADER];
        const providers = typeof named === 'string' ? named.split(',').filter(Boolean).slice(0, 8) : [];
        throw new SourceBusyError(`seed is already uploading this blob to other nodes${providers.length ? ` (${providers.length} named)` : ''}`, providers);
      }
      // The seed's own sources failed (its uplink is down): an outage, not a miss; another seed may have it.
      if (res.statusCode === 404 && res.headers[MISS_HEADER] === 'unavailable') {
        lastError = new Error(`seed ${seed.origin} could not reach its sources`);
        continue;
      }
      // A seed that answers 404 is a pull-through cache that could not get it: the others won't either.
      if (res.statusCode === 404) return undefined;
      lastError = new Error(`seed ${seed.origin} answered ${res.statusCode}`);
    }
    if (lastError) throw lastError;
    return undefined;
  }

  async size(locator: BlobLocator, signal: AbortSignal): Promise<number | undefined> {
    for (const seed of this.#client.order(locator.digest)) {
      try {
        const res = await this.#client.request(seed, locator.registry, {
          method: 'HEAD',
          path: `/v2/${locator.repository}/blobs/${locator.digest}`,
          signal,
          wholeRequestDeadline: true,
        });
        await res.body.dump();
        if (res.statusCode === 200) return Number(res.headers['content-length']);
        if (res.statusCode === 404) return undefined;
      } catch {
        continue;
      }
    }
    throw new Error('no seed answered');
  }
}
