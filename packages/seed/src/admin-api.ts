import { timingSafeEqual } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import {
  ManifestResolver,
  OciError,
  formatImageReference,
  manifestReferences,
  parseImageReference,
  type BlobResolver,
  type ContentStore,
  type Digest,
  type RegistryAllowlist,
} from '@peerpull/common';
import type { PrefetchJobs } from './prefetch-jobs.ts';

export interface AdminApiOptions {
  adminToken: string | undefined;
  allowlist: RegistryAllowlist;
  defaultRegistry: string;
  store: ContentStore;
  manifests: ManifestResolver;
  blobs: BlobResolver;
  prefetch: PrefetchJobs;
}

/** The seed's admin API under /api/v1/: prefetch before an upgrade, refresh a tag, list images. */
export async function adminApi(app: FastifyInstance, opts: AdminApiOptions): Promise<void> {
  app.setErrorHandler((err, _req, reply) => {
    if (err instanceof OciError) return reply.code(err.status).send({ error: err.message, code: err.code });
    const status = (err as { statusCode?: number }).statusCode ?? 500;
    return reply.code(status).send({ error: status >= 500 ? 'internal error' : (err as Error).message });
  });

  if (opts.adminToken) {
    const expected = Buffer.from(`Bearer ${opts.adminToken}`);
    app.addHook('onRequest', async (req, reply) => {
      const given = Buffer.from(req.headers.authorization ?? '');
      if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
        return reply.code(401).header('www-authenticate', 'Bearer realm="peerpull-admin"').send({ error: 'admin token required' });
      }
    });
  }

  app.post('/prefetch', async (req, reply) => {
    const body = (req.body ?? {}) as { images?: unknown; platforms?: unknown };
    const job = opts.prefetch.start(body.images, body.platforms);
    return reply.code(202).header('location', `/api/v1/prefetch/${job.id}`).send(job);
  });

  app.get<{ Params: { id: string } }>('/prefetch/:id', async (req, reply) => {
    const job = opts.prefetch.get(req.params.id);
    if (!job) return reply.code(404).send({ error: `no prefetch job ${req.params.id}` });
    return job;
  });

  app.post('/refresh', async (req) => {
    const { image } = (req.body ?? {}) as { image?: unknown };
    if (typeof image !== 'string') throw new OciError(400, 'UNSUPPORTED', 'expected {"image": "registry/repository:tag"}');
    let ref;
    try {
      ref = parseImageReference(image, opts.defaultRegistry);
    } catch (err) {
      throw new OciError(400, 'UNSUPPORTED', (err as Error).message);
    }
    if (!ref.tag || ref.digest) throw new OciError(400, 'UNSUPPORTED', 'refresh takes a tag, not a digest');
    const registry = opts.allowlist.lookup(ref.registry);
    if (!registry) throw new OciError(400, 'UNSUPPORTED', `registry ${ref.registry} is not in the allowlist`);
    const locator = { registry, repository: ref.repository };
    const previous = (await opts.store.getTag(ManifestResolver.tagKey(locator, ref.tag)))?.digest;
    const manifest = await opts.manifests.refreshTag(locator, ref.tag);
    return { image: formatImageReference(ref), digest: manifest.digest, previous: previous ?? null, changed: previous !== manifest.digest };
  });

  app.get('/images', async () => {
    const tags = await opts.store.listTags();
    const images = await Promise.all(
      tags.map(async ({ key, record }) => {
        const colon = key.lastIndexOf(':');
        return {
          image: key.slice(0, colon),
          tag: key.slice(colon + 1),
          digest: record.digest,
          mediaType: record.mediaType,
          size: await imageSize(opts.store, record.digest, record.mediaType),
          fetchedAt: new Date(record.validatedAt).toISOString(),
          lastPulledAt: record.lastPulledAt ? new Date(record.lastPulledAt).toISOString() : null,
        };
      }),
    );
    return { images };
  });
}

/** Bytes of the config and layers a stored manifest (or each stored platform manifest of an index) references. */
async function imageSize(store: ContentStore, digest: Digest, mediaType: string): Promise<number | null> {
  if (!store.has(digest)) return null;
  const refs = manifestReferences(await store.readAll(digest), mediaType);
  let total = refs.blobs.reduce((sum, b) => sum + b.size, 0);
  for (const child of refs.manifests) {
    if (store.has(child.digest)) total += (await imageSize(store, child.digest, child.mediaType)) ?? 0;
  }
  return total;
}
