import { access, constants } from 'node:fs/promises';
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { ContentStore } from './content-store.ts';
import { registryApi, type RegistryApiOptions } from './registry-api.ts';

export interface MirrorServerOptions extends RegistryApiOptions {
  logger: Logger;
  store: ContentStore;
  /** Extra readiness conditions beyond a writable store. */
  readiness?: () => Promise<string | undefined>;
}

/**
 * The HTTP server both the daemon and the seed run: the pull API plus health endpoints,
 * with deadlines on the client side too (slow-loris clients are cut off).
 */
export type MirrorServer = FastifyInstance;

export async function createMirrorServer(opts: MirrorServerOptions): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: opts.logger as FastifyBaseLogger,
    disableRequestLogging: true,
    exposeHeadRoutes: false,
    return503OnClosing: true,
    bodyLimit: 64 * 1024,
    requestTimeout: 30_000,
    connectionTimeout: 300_000,
    keepAliveTimeout: 65_000,
    maxRequestsPerSocket: 0,
    routerOptions: { maxParamLength: 2048, ignoreDuplicateSlashes: false, ignoreTrailingSlash: false },
  });
  app.get('/healthz', async () => ({ status: 'ok' }));
  app.get('/readyz', async (_req, reply) => {
    const problem = await storeProblem(opts.store) ?? (await opts.readiness?.());
    if (problem) return reply.code(503).send({ status: 'unready', reason: problem });
    return { status: 'ready' };
  });
  await app.register(registryApi, opts);
  return app;
}

async function storeProblem(store: ContentStore): Promise<string | undefined> {
  try {
    await access(store.dir, constants.W_OK);
    return undefined;
  } catch (err) {
    return `store not writable: ${(err as Error).message}`;
  }
}
