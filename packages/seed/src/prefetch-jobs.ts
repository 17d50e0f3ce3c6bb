import { randomUUID } from 'node:crypto';
import {
  OciError,
  formatImageReference,
  formatPlatform,
  manifestReferences,
  parseImageReference,
  parsePlatform,
  platformMatches,
  type BlobIngest,
  type BlobResolver,
  type Digest,
  type Logger,
  type ManifestResolver,
  type Platform,
  type RegistryAllowlist,
  type UpstreamRegistry,
} from '@peerpull/common';

export interface PrefetchImageProgress {
  image: string;
  state: 'pending' | 'running' | 'done' | 'failed';
  digest?: string;
  bytesTotal: number;
  bytesDone: number;
  blobsTotal: number;
  blobsDone: number;
  error?: string;
}

export interface PrefetchJobView {
  id: string;
  state: 'running' | 'done' | 'failed';
  platforms: string[];
  createdAt: string;
  finishedAt?: string;
  bytesTotal: number;
  bytesDone: number;
  images: PrefetchImageProgress[];
}

interface ImageWork {
  progress: PrefetchImageProgress;
  completedBytes: number;
  live: Set<BlobIngest>;
}

interface Job {
  id: string;
  platforms: Platform[];
  createdAt: number;
  finishedAt?: number;
  images: ImageWork[];
}

export interface PrefetchJobsOptions {
  allowlist: RegistryAllowlist;
  defaultRegistry: string;
  manifests: ManifestResolver;
  blobs: BlobResolver;
  logger: Logger;
}

const MAX_JOBS_KEPT = 100;
const BLOB_CONCURRENCY = 4;

/**
 * Warms the seed before an upgrade: resolves each image (all platforms of an index, or the
 * listed ones) and pulls every blob into the store, reporting monotonic progress.
 */
export class PrefetchJobs {
  readonly #jobs = new Map<string, Job>();
  readonly #opts: PrefetchJobsOptions;

  constructor(opts: PrefetchJobsOptions) {
    this.#opts = opts;
  }

  /** Validates the request (400 on a bad image, platform or registry) and starts the job. */
  start(images: unknown, platforms: unknown): PrefetchJobView {
    if (!Array.isArray(images) || images.length === 0 || images.some((i) => typeof i !== 'string')) {
      throw new OciError(400, 'UNSUPPORTED', 'expected {"images": ["registry/repository:tag", ...]}');
    }
    if (platforms !== undefined && (!Array.isArray(platforms) || platforms.some((p) => typeof p !== 'string'))) {
      throw new OciError(400, 'UNSUPPORTED', 'expected "platforms": ["linux/amd64", ...]');
    }
    let parsedPlatforms: Platform[];
    let refs: { image: string; registry: UpstreamRegistry; repository: string; reference: string }[];
    try {
      parsedPlatforms = ((platforms as string[] | undefined) ?? []).map(parsePlatform);
      refs = (images as string[]).map((text) => {
        const ref = parseImageReference(text, this.#opts.defaultRegistry);
        const registry = this.#opts.allowlist.lookup(ref.registry);
        if (!registry) throw new Error(`registry ${ref.registry} is not in the allowlist`);
        return { image: formatImageReference(ref), registry, repository: ref.repository, reference: (ref.digest ?? ref.tag) as string };
      });
    } catch (err) {
      throw new OciError(400, 'UNSUPPORTED', (err as Error).message);
    }
    const job: Job = {
      id: randomUUID(),
      platforms: parsedPlatforms,
      createdAt: Date.now(),
      images: refs.map((r) => ({ progress: { image: r.image, state: 'pending', bytesTotal: 0, bytesDone: 0, blobsTotal: 0, blobsDone: 0 }, completedBytes: 0, live: new Set() })),
    };
    this.#jobs.set(job.id, job);
    for (const old of [...this.#jobs.keys()].slice(0, Math.max(0, this.#jobs.size - MAX_JOBS_KEPT))) this.#jobs.delete(old);
    void this.#run(job, refs);
    return this.#view(job);
  }

  get(id: string): PrefetchJobView | undefined {
    const job = this.#jobs.get(id);
    return job && this.#view(job);
  }

  async #run(job: Job, refs: { registry: UpstreamRegistry; repository: string; reference: string }[]): Promise<void> {
    for (const [i, ref] of refs.entries()) {
      const work = job.images[i] as ImageWork;
      work.progress.state = 'running';
      try {
        await this.#prefetchImage(work, job.platforms, ref);
        work.progress.state = 'done';
      } catch (err) {
        work.progress.state = 'failed';
        work.progress.error = (err as Error).message;
        this.#opts.logger.warn({ job: job.id, image: work.progress.image, err: (err as Error).message }, 'prefetch failed');
      }
    }
    job.finishedAt = Date.now();
    this.#opts.logger.info({ job: job.id, images: job.images.map((w) => ({ image: w.progress.image, state: w.progress.state })) }, 'prefetch finished');
  }

  async #prefetchImage(work: ImageWork, platforms: Platform[], ref: { registry: UpstreamRegistry; repository: string; reference: string }): Promise<void> {
    const locator = { registry: ref.registry, repository: ref.repository };
    const top = ref.reference.startsWith('sha256:')
      ? await this.#opts.manifests.byDigest(locator, ref.reference as Digest)
      : await this.#opts.manifests.byTag(locator, ref.reference);
    work.progress.digest = top.digest;
    const topRefs = manifestReferences(top.body, top.mediaType);
    const images = topRefs.manifests.length
      ? await Promise.all(
          topRefs.manifests
            .filter((m) => platforms.length === 0 || platforms.some((p) => platformMatches(p, m.platform)))
            .map(async (m) => manifestReferences((await this.#opts.manifests.byDigest(locator, m.digest)).body, m.mediaType)),
        )
      : [topRefs];
    if (topRefs.manifests.length && images.length === 0) throw new Error('no manifest in the index matches the requested platforms');
    const blobs = new Map<Digest, number>();
    for (const image of images) for (const b of image.blobs) blobs.set(b.digest, b.size);
    work.progress.blobsTotal = blobs.size;
    work.progress.bytesTotal = [...blobs.values()].reduce((a, b) => a + b, 0);
    const queue = [...blobs.entries()];
    const worker = async (): Promise<void> => {
      for (let next = queue.shift(); next; next = queue.shift()) {
        const [digest, size] = next;
        const ingest = await this.#opts.blobs.fetchToStore({ ...locator, digest });
        if (ingest) {
          work.live.add(ingest);
          try {
            await ingest.done();
          } finally {
            work.live.delete(ingest);
          }
        }
        work.completedBytes += size;
        work.progress.blobsDone++;
      }
    };
    await Promise.all(Array.from({ length: BLOB_CONCURRENCY }, worker));
  }

  #view(job: Job): PrefetchJobView {
    const images = job.images.map((w) => {
      const inFlight = [...w.live].reduce((sum, ingest) => sum + ingest.written, 0);
      return { ...w.progress, bytesDone: Math.min(w.progress.bytesTotal, w.completedBytes + inFlight) };
    });
    const view: PrefetchJobView = {
      id: job.id,
      state: job.finishedAt === undefined ? 'running' : images.some((i) => i.state === 'failed') ? 'failed' : 'done',
      platforms: job.platforms.map(formatPlatform),
      createdAt: new Date(job.createdAt).toISOString(),
      bytesTotal: images.reduce((a, i) => a + i.bytesTotal, 0),
      bytesDone: images.reduce((a, i) => a + i.bytesDone, 0),
      images,
    };
    if (job.finishedAt !== undefined) view.finishedAt = new Date(job.finishedAt).toISOString();
    return view;
  }
}
