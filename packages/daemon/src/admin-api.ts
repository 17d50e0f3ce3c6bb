import { PassThrough } from 'node:stream';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { OciError, isDigest, parseSize, type Digest } from '@peerpull/common';
import type { CacheAdmin } from './cache-admin.ts';
import type { Explainer } from './explain.ts';
import type { NodeStatusCollector } from './node-status.ts';

export interface DaemonAdminApiOptions {
  status: NodeStatusCollector;
  explainer: Explainer;
  cache: CacheAdmin;
  /** P2P on: who provides a digest, as a pull's lookup would find them (and how fast). */
  providers?: ((digest: Digest, budgetMs: number | undefined) => Promise<unknown>) | undefined;
}

const MAX_LOOKUP_BUDGET_MS = 10_000;

/**
 * The daemon's admin API under /api/v1/, on the mirror listener, for `peerpull status`,
 * `explain` and `cache`. The mirror listener is loopback-only by default (containerd on the
 * same node is its only client) and this API answers loopback clients only, whatever the
 * listen address: the operator runs the CLI on the node (or in the daemon's pod). The
 * metrics listener, reachable from the cluster, serves only /metrics and the health checks.
 */
export async function daemonAdminApi(app: FastifyInstance, opts: DaemonAdminApiOptions): Promise<void> {
  app.setErrorHandler((err, _req, reply) => {
    if (err instanceof OciError) return reply.code(err.status).send({ error: err.message, code: err.code });
    const status = (err as { statusCode?: number }).statusCode ?? 500;
    return reply.code(status).send({ error: status >= 500 ? `internal error: ${(err as Error).message}` : (err as Error).message });
  });
  app.addHook('onRequest', async (req, reply) => {
    if (!isLoopback(req)) return reply.code(403).send({ error: 'the daemon admin API answers loopback clients only: run peerpull on the node itself' });
  });

  app.get('/status', async () => opts.status.status());

  app.get<{ Querystring: { image?: string; platform?: string } }>('/explain', async (req) => {
    const { image, platform } = req.query;
    if (!image) throw new OciError(400, 'UNSUPPORTED', 'expected ?image=registry/repository:tag');
    return opts.explainer.explain(image, platform || undefined);
  });

  app.get('/cache', async () => opts.cache.list());

  app.get<{ Querystring: { digest?: string; budget?: string } }>('/providers', async (req) => {
    const { digest, budget } = req.query;
    if (!opts.providers) throw new OciError(404, 'UNSUPPORTED', 'P2P is off on this node (no --cluster-key-file)');
    if (!digest || !isDigest(digest)) throw new OciError(400, 'DIGEST_INVALID', 'expected ?digest=sha256:<64 hex>');
    const budgetMs = budget === undefined ? undefined : Number(budget);
    if (budgetMs !== undefined && !(Number.isInteger(budgetMs) && budgetMs > 0 && budgetMs <= MAX_LOOKUP_BUDGET_MS)) {
      throw new OciError(400, 'UNSUPPORTED', `budget: milliseconds, 1 to ${MAX_LOOKUP_BUDGET_MS}`);
    }
    return opts.providers(digest, budgetMs);
  });

  app.post('/cache/rm', async (req) => {
    const { target } = (req.body ?? {}) as { target?: unknown };
    if (typeof target !== 'string' || !target) throw new OciError(400, 'UNSUPPORTED', 'expected {"target": "<image or digest>"}');
    return opts.cache.remove(target);
  });

  app.post('/cache/gc', async (req) => {
    const { target } = (req.body ?? {}) as { target?: unknown };
    let targetBytes: number | undefined;
    if (target !== undefined && target !== null) {
      try {
        targetBytes = parseSize(target as string | number);
      } catch (err) {
        throw new OciError(400, 'UNSUPPORTED', (err as Error).message);
      }
    }
    return opts.cache.gc(targetBytes);
  });

  // Streams one JSON line per event (progress, each bad blob, a summary): verifying a big cache takes a while.
  app.post('/cache/verify', async (req, reply) => {
    const out = new PassThrough();
    const aborted = new AbortController();
    req.raw.socket.once('close', () => aborted.abort());
    void opts.cache
      .verify((event) => out.write(`${JSON.stringify(event)}\n`), aborted.signal)
      .catch((err: Error) => out.write(`${JSON.stringify({ type: 'error', error: err.message })}\n`))
      .finally(() => out.end());
    return reply.type('application/x-ndjson').header('cache-control', 'no-store').send(out);
  });
}

function isLoopback(req: FastifyRequest): boolean {
  const address = req.socket.remoteAddress ?? '';
  return address === '::1' || address.startsWith('127.') || address.startsWith('::ffff:127.');
}
