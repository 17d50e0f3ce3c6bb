import { readFileSync } from 'node:fs';
import type { FastifyInstance } from 'fastify';

const ASSETS: Record<string, string> = {
  'index.html': 'text/html; charset=utf-8',
  'dashboard.js': 'text/javascript; charset=utf-8',
  'dashboard.css': 'text/css; charset=utf-8',
  'favicon.svg': 'image/svg+xml',
};

/** Everything the page loads comes from the seed itself: no CDN, works offline. */
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/**
 * The cluster dashboard at `/`: plain HTML, CSS and JavaScript files shipped with the seed
 * (no build step), read once at start-up. The page polls `/api/v1/cluster`.
 */
export async function dashboard(app: FastifyInstance): Promise<void> {
  const files = new Map(Object.entries(ASSETS).map(([name, type]) => [name, { type, body: readFileSync(new URL(`./dashboard/${name}`, import.meta.url)) }]));
  const send = (name: string) => async (_req: unknown, reply: import('fastify').FastifyReply) => {
    const file = files.get(name);
    if (!file) return reply.code(404).send({ error: 'not found' });
    return reply
      .header('content-type', file.type)
      .header('content-security-policy', CSP)
      .header('x-content-type-options', 'nosniff')
      .header('cache-control', 'no-cache')
      .send(file.body);
  };
  app.get('/', send('index.html'));
  app.get('/favicon.ico', send('favicon.svg'));
  app.get<{ Params: { file: string } }>('/dashboard/:file', async (req, reply) => send(req.params.file)(req, reply));
}
