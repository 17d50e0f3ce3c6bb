import { createServer, type Server } from 'node:http';
import type { MirrorMetrics } from './metrics.ts';

/**
 * Serves `/metrics` on its own listener, so the mirror port can stay on loopback; also
 * `/healthz` and `/readyz` (the mirror's answers) when `readiness` is given, for kubelet
 * probes, which reach a hostNetwork pod at the node IP, never at its loopback.
 */
export async function startMetricsServer(
  metrics: MirrorMetrics,
  host: string,
  port: number,
  beforeScrape?: () => void,
  readiness?: () => Promise<string | undefined>,
): Promise<Server> {
  const server = createServer((req, res) => {
    if (readiness && (req.url === '/healthz' || req.url === '/readyz') && req.method === 'GET') {
      const json = (status: number, body: object) => res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
      if (req.url === '/healthz') return json(200, { status: 'ok' });
      readiness().then(
        (problem) => (problem ? json(503, { status: 'unready', reason: problem }) : json(200, { status: 'ready' })),
        (err: Error) => json(503, { status: 'unready', reason: err.message }),
      );
      return;
    }
    if (req.url !== '/metrics' || (req.method !== 'GET' && req.method !== 'HEAD')) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
      return;
    }
    beforeScrape?.();
    metrics.registry.metrics().then(
      (text) => res.writeHead(200, { 'content-type': metrics.registry.contentType }).end(req.method === 'HEAD' ? undefined : text),
      (err: Error) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`${err.message}\n`),
    );
  });
  server.requestTimeout = 10_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  return server;
}
