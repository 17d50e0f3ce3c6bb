import { access, constants } from 'node:fs/promises';
import type { Duplex } from 'node:stream';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance, type FastifyReply } from 'fastify';
import type { Logger } from 'pino';
import type { ContentStore } from './content-store.ts';
import { OciError } from './oci-error.ts';
import { registryApi, type RegistryApiOptions } from './registry-api.ts';

export interface MirrorServerOptions extends RegistryApiOptions {
  logger: Logger;
  store: ContentStore;
  /** Extra readiness conditions beyond a writable store. */
  readiness?: () => Promise<string | undefined>;
  /** Deadline for a client to send a whole request, headers and body (slow-loris); default 30 s. */
  clientTimeoutMs?: number;
}

/**
 * The HTTP server both the daemon and the seed run: the pull API plus health endpoints,
 * with deadlines on the client side too (slow-loris clients are cut off).
 */
export type MirrorServer = FastifyInstance;

export async function createMirrorServer(opts: MirrorServerOptions): Promise<FastifyInstance> {
  const clientTimeoutMs = opts.clientTimeoutMs ?? 30_000;
  const app = Fastify({
    // Given at creation: Node derives headersTimeout (60 s) before Fastify sets requestTimeout, and
    // checks deadlines only every 30 s by default, so a header dripper lived up to 90 s.
    http: {
      headersTimeout: clientTimeoutMs,
      requestTimeout: clientTimeoutMs,
      connectionsCheckingInterval: Math.max(100, Math.min(1_000, Math.floor(clientTimeoutMs / 10))),
    },
    loggerInstance: opts.logger as FastifyBaseLogger,
    // Our own one line per request (registry-api's onResponse hook) replaces Fastify's two.
    logController: new LogController({ disableRequestLogging: true }),
    exposeHeadRoutes: false,
    return503OnClosing: true,
    bodyLimit: 64 * 1024,
    requestTimeout: clientTimeoutMs,
    connectionTimeout: 300_000,
    keepAliveTimeout: 65_000,
    maxRequestsPerSocket: 0,
    routerOptions: { maxParamLength: 2048, ignoreDuplicateSlashes: false, ignoreTrailingSlash: false },
    clientErrorHandler: ociClientError,
    // A malformed percent-escape (`%zz`) fails in the router, before any route's error handler.
    frameworkErrors: (err, _req, reply) => {
      void (reply as FastifyReply).code(400).type('application/json').send(new OciError(400, 'NAME_INVALID', `invalid request URL: ${err.message.slice(0, 200)}`).toBody());
    },
  });
  app.get('/healthz', async () => ({ status: 'ok' }));
  app.get('/readyz', async (_req, reply) => {
    const problem = await readinessProblem(opts.store, opts.readiness);
    if (problem) return reply.code(503).send({ status: 'unready', reason: problem });
    return { status: 'ready' };
  });
  await app.register(registryApi, opts);
  return app;
}

/**
 * Requests Node's HTTP parser rejects before any route sees them (malformed request line, control
 * bytes such as NUL in the target, headers over 16 KiB, a client too slow to send its request): the
 * spec's error JSON like every other error, then the connection is closed.
 */
function ociClientError(this: FastifyInstance, err: Error & { code?: string }, socket: Duplex): void {
  if (err.code === 'ECONNRESET' || socket.destroyed) return;
  const [status, text, message] =
    err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? [408, 'Request Timeout', 'the client did not send its request in time']
    : err.code === 'HPE_HEADER_OVERFLOW' ? [431, 'Request Header Fields Too Large', 'request headers are too large']
    : [400, 'Bad Request', 'malformed HTTP request'];
  this.log.debug({ err: err.message, code: err.code, status }, 'client error');
  const body = JSON.stringify(new OciError(status, 'UNSUPPORTED', message).toBody());
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  // end() flushes the answer first; the timer covers a client that never closes its side.
  socket.end(`HTTP/1.1 ${status} ${text}\r\nContent-Length: ${Buffer.byteLength(body)}\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n${body}`);
  setTimeout(() => socket.destroy(), 1_000).unref();
}

/** Why the service is not ready (the store is not writable, or the service's own condition), or undefined. */
export async function readinessProblem(store: ContentStore, readiness?: () => Promise<string | undefined>): Promise<string | undefined> {
  return (await storeProblem(store)) ?? (await readiness?.());
}

async function storeProblem(store: ContentStore): Promise<string | undefined> {
  try {
    await access(store.dir, constants.W_OK);
    return undefined;
  } catch (err) {
    return `store not writable: ${(err as Error).message}`;
  }
}
