import { timingSafeEqual } from 'node:crypto';
import type { FastifyInstance } from 'fastify';

/** Requires `Authorization: Bearer <token>` on every route of `app` when a token is configured. */
export function requireAdminToken(app: FastifyInstance, token: string | undefined): void {
  if (!token) return;
  const expected = Buffer.from(`Bearer ${token}`);
  app.addHook('onRequest', async (req, reply) => {
    const given = Buffer.from(req.headers.authorization ?? '');
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
      return reply.code(401).header('www-authenticate', 'Bearer realm="peerpull-admin"').send({ error: 'admin token required' });
    }
  });
}
