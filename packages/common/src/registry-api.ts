import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { BlobResolver } from './blob-resolver.ts';
import type { SourceName } from './blob-source.ts';
import { contentRange, parseRange } from './byte-range.ts';
import type { ManifestResolver, ResolvedManifest } from './manifest-resolver.ts';
import type { MirrorMetrics } from './metrics.ts';
import { OciError } from './oci-error.ts';
import type { PullEvent } from './pull-report.ts';
import type { ContentAccess } from './private-content.ts';
import { normalizeRepository } from './reference.ts';
import type { RegistryAllowlist, UpstreamRegistry } from './registry-allowlist.ts';
import { parseRegistryPath, splitRegistryPrefix, type RegistryPath } from './registry-path.ts';

export interface RegistryApiOptions {
  allowlist: RegistryAllowlist;
  /** The registry for requests without `?ns=` (clients that are not containerd). */
  defaultRegistry: string;
  manifests: ManifestResolver;
  blobs: BlobResolver;
  metrics: MirrorMetrics;
  /**
   * The seed's burst control: at most this many P2P-capable daemons download one blob from
   * here at once; others are told "busy" and get it from those peers instead.
   */
  peerFanout?: number;
  /** Sees every answered GET of a manifest or blob (the pull audit log); must return at once. */
  onPull?: (event: PullEvent) => void;
  /** Decides whether a digest may be served under a repository (private content: see private-content.ts). */
  access?: ContentAccess;
}

/** What one request was about, for the request log line and metrics. */
interface PullRecord {
  registry?: string;
  repository?: string;
  kind?: 'manifest' | 'blob';
  reference?: string;
  digest?: string;
  source?: SourceName;
  bytes?: number;
}

declare module 'fastify' {
  interface FastifyRequest {
    pull?: PullRecord;
  }
}

const PULL_METHODS = new Set(['GET', 'HEAD']);
/** A P2P-capable daemon's libp2p peer id, sent with its blob requests to the seed. */
export const PEER_HEADER = 'x-peerpull-peer';
/** In the seed's "busy" answer: the peer ids of the daemons it is sending the blob to, comma-separated. */
export const PROVIDERS_HEADER = 'x-peerpull-providers';
/** How long a completed upload to a P2P-capable daemon still counts against `peerFanout`. */
const FANOUT_HOLD_MS = 30_000;

interface ApiContext extends RegistryApiOptions {
  /**
   * Blob uploads in progress to P2P-capable daemons, per digest (for `peerFanout`): each recipient's
   * peer id ('' when it did not say), so a daemon told "busy" learns whom to fetch from instead.
   */
  activeUploads: Map<string, string[]>;
}


/**
 * The OCI distribution pull API, read-only, for any allowlisted upstream. Everything a
 * client can get wrong is answered with the spec's error JSON and a 4xx; every miss is a
 * prompt 404 so containerd falls back to its next host.
 */
export async function registryApi(app: FastifyInstance, opts: RegistryApiOptions): Promise<void> {
  const context: ApiContext = { ...opts, activeUploads: new Map() };
  app.addHook('onRequest', async (req, reply) => {
    reply.header('docker-distribution-api-version', 'registry/2.0');
    // Refuse writes before the body is parsed: otherwise a push with a manifest or layer
    // content type gets Fastify's 415 (or 413) instead of the spec's 405 UNSUPPORTED.
    if (!PULL_METHODS.has(req.method)) {
      throw new OciError(405, 'UNSUPPORTED', 'this registry is a read-only mirror: push and delete are not supported');
    }
  });

  app.setErrorHandler((err, req, reply) => {
    if (err instanceof OciError) {
      // "Busy" (the seed's fan-out limit) is burst control working, not a failure: keep it out of the error log.
      if (err.status >= 500 && err.headers['x-peerpull-busy'] === undefined) req.log.error({ err: err.message }, 'request failed');
      return reply.code(err.status).headers(err.headers).type('application/json').send(err.toBody());
    }
    const status = (err as { statusCode?: number }).statusCode;
    if (status && status >= 400 && status < 500) {
      return reply.code(status).type('application/json').send(new OciError(status, 'UNSUPPORTED', (err as Error).message).toBody());
    }
    req.log.error({ err }, 'internal error');
    return reply.code(500).type('application/json').send(new OciError(500, 'UNAVAILABLE', 'internal error').toBody());
  });

  app.setNotFoundHandler((req, reply) => {
    reply.code(404).type('application/json').send(new OciError(404, 'NAME_UNKNOWN', `no route for ${req.method} ${req.url.split('?')[0]}`).toBody());
  });

  app.addHook('onResponse', async (req, reply) => {
    const pull = req.pull;
    if (!pull?.kind) return;
    // Serve first, account after: in a burst, the requests already waiting in this event-loop turn
    // get their first bytes before the finished ones are counted and logged.
    await new Promise<void>((resolve) => setImmediate(resolve));
    const result = reply.statusCode < 400 ? 'hit' : reply.statusCode === 404 ? 'miss' : 'error';
    opts.metrics.requests.inc({ registry: pull.registry ?? '', kind: pull.kind, result, source: pull.source ?? 'none' });
    if (pull.bytes && req.method === 'GET' && reply.statusCode < 300) {
      opts.metrics.bytesServed.inc({ source: pull.source ?? 'local' }, pull.bytes);
    }
    opts.metrics.requestDuration.observe({ kind: pull.kind, source: pull.source ?? 'none' }, reply.elapsedTime / 1000);
    if (opts.onPull && req.method === 'GET') {
      const event: PullEvent = {
        time: Date.now(),
        registry: pull.registry ?? '',
        repository: pull.repository ?? '',
        kind: pull.kind,
        status: reply.statusCode,
        bytes: reply.statusCode < 300 ? (pull.bytes ?? 0) : 0,
        source: pull.source ?? 'none',
        ms: Math.round(reply.elapsedTime),
        client: req.ip,
      };
      if (pull.reference) event.reference = pull.reference;
      if (pull.digest) event.digest = pull.digest;
      opts.onPull(event);
    }
    req.log.info(
      { ...pull, method: req.method, status: reply.statusCode, ms: Math.round(reply.elapsedTime * 10) / 10 },
      'pull',
    );
  });

  app.route({
    method: ['GET', 'HEAD', 'PUT', 'POST', 'PATCH', 'DELETE', 'OPTIONS'],
    url: '/v2/*',
    handler: async (req, reply) => handle(req, reply, context),
  });
  app.route({
    method: ['GET', 'HEAD'],
    url: '/v2',
    handler: async (_req, reply) => reply.type('application/json').send({}),
  });
}

async function handle(req: FastifyRequest, reply: FastifyReply, opts: ApiContext): Promise<unknown> {
  const [path = '', query = ''] = splitUrl(req.url);
  const target = parseRegistryPath(path);
  if (!target) throw new OciError(404, 'NAME_UNKNOWN', `no such endpoint: ${path.slice(0, 200)}`);
  if (!PULL_METHODS.has(req.method) || target.kind === 'upload') {
    throw new OciError(405, 'UNSUPPORTED', 'this registry is a read-only mirror: push and delete are not supported');
  }
  if (target.kind === 'base') return reply.type('application/json').send({});
  if (target.kind === 'tags' || target.kind === 'referrers') {
    throw new OciError(404, 'UNSUPPORTED', `${target.kind} listing is not supported by this mirror`);
  }
  const { registry, name } = resolveNamespace(query, target.name, opts);
  const repository = normalizeRepository(registry.host, name);
  const locator = { registry, repository };
  if (target.kind === 'manifest') {
    req.pull = { registry: registry.host, repository, kind: 'manifest', reference: target.ref.kind === 'tag' ? target.ref.tag : target.ref.digest };
    if (target.ref.kind === 'digest') await opts.access?.authorize('manifest', registry, repository, target.ref.digest);
    const manifest = target.ref.kind === 'tag'
      ? await opts.manifests.byTag(locator, target.ref.tag)
      : await opts.manifests.byDigest(locator, target.ref.digest);
    // Before the client sees it: what it references may now be asked for under this repository.
    await opts.access?.recordManifest(registry, repository, manifest);
    return sendManifest(req, reply, manifest);
  }
  return sendBlob(req, reply, opts, { ...locator, digest: target.digest }, target);
}

function sendManifest(req: FastifyRequest, reply: FastifyReply, manifest: ResolvedManifest): FastifyReply {
  Object.assign(req.pull ?? {}, { digest: manifest.digest, source: manifest.source, bytes: manifest.body.length });
  reply
    .code(200)
    .header('content-type', manifest.mediaType)
    .header('content-length', manifest.body.length)
    .header('docker-content-digest', manifest.digest)
    .header('etag', `"${manifest.digest}"`)
    .header('x-peerpull-source', manifest.source);
  if (manifest.staleAgeMs !== undefined) {
    reply.header('age', Math.floor(manifest.staleAgeMs / 1000));
    reply.header('warning', '110 peerpull "Response is Stale"');
  }
  return req.method === 'HEAD' ? reply.send() : reply.send(manifest.body);
}

async function sendBlob(
  req: FastifyRequest,
  reply: FastifyReply,
  opts: ApiContext,
  locator: { registry: UpstreamRegistry; repository: string; digest: import('./digest.ts').Digest },
  target: Extract<RegistryPath, { kind: 'blob' }>,
): Promise<FastifyReply> {
  req.pull = { registry: locator.registry.host, repository: locator.repository, kind: 'blob', digest: target.digest };
  await opts.access?.authorize('blob', locator.registry, locator.repository, target.digest);
  reply.header('docker-content-digest', target.digest).header('accept-ranges', 'bytes');
  if (req.method === 'HEAD') {
    const { size, source } = await opts.blobs.stat(locator);
    req.pull.source = source;
    return reply.code(200).header('content-type', 'application/octet-stream').header('content-length', size).header('x-peerpull-source', source).send();
  }
  if (opts.peerFanout !== undefined && req.headers['x-peerpull-p2p'] === '1' && req.headers['x-peerpull-insist'] === undefined) {
    const recipients = opts.activeUploads.get(target.digest) ?? [];
    if (recipients.length >= opts.peerFanout) {
      req.pull.source = 'local';
      // Name the nodes receiving it: a DHT lookup may not find them yet (an announcement takes a while
      // to spread), and they are the shallowest providers, streaming at the WAN edge.
      const providers = recipients.filter((id) => id !== '');
      throw new OciError(503, 'UNAVAILABLE', 'busy: this blob is already being sent to other nodes; fetch it from them', undefined, {
        'x-peerpull-busy': '1',
        'retry-after': '1',
        ...(providers.length ? { [PROVIDERS_HEADER]: providers.join(',') } : {}),
      });
    }
    const recipient = peerIdHeader(req.headers[PEER_HEADER]);
    recipients.push(recipient);
    opts.activeUploads.set(target.digest, recipients);
    const release = (): void => {
      const left = opts.activeUploads.get(target.digest);
      if (!left) return;
      left.splice(left.indexOf(recipient), 1);
      if (left.length === 0) opts.activeUploads.delete(target.digest);
    };
    // A daemon that got the whole blob keeps its slot a while: it provides the blob now, but the rest
    // of a burst finds it in the DHT only after its announcement spread, which takes longer than
    // sending a small blob. Freeing the slot at once would send each small blob to every daemon.
    reply.raw.once('close', () => {
      if (reply.raw.writableFinished && reply.raw.statusCode < 300) setTimeout(release, FANOUT_HOLD_MS).unref();
      else release();
    });
  }
  const handle = await opts.blobs.open(locator);
  req.pull.source = handle.source;
  reply.header('content-type', 'application/octet-stream').header('x-peerpull-source', handle.source);
  if (handle.uncached) reply.header('x-peerpull-uncached', handle.uncached);
  const rangeHeader = req.headers.range;
  if (rangeHeader !== undefined && handle.size !== undefined && !opts.blobs.mustResendWhole(target.digest)) {
    const range = parseRange(rangeHeader, handle.size);
    if (range.kind === 'unsatisfiable' || range.kind === 'invalid') {
      reply.header('content-range', `bytes */${handle.size}`);
      throw new OciError(416, 'RANGE_INVALID', `range not satisfiable: ${rangeHeader.slice(0, 100)} (blob is ${handle.size} bytes)`);
    }
    if (range.kind === 'range') {
      const { start, end } = range.range;
      req.pull.bytes = end - start + 1;
      return reply
        .code(206)
        .header('content-range', contentRange(range.range, handle.size))
        .header('content-length', end - start + 1)
        .send(handle.read(start, end));
    }
  }
  if (handle.size !== undefined) {
    reply.header('content-length', handle.size);
    req.pull.bytes = handle.size;
  }
  return reply.code(200).send(handle.read());
}

/** The upstream: `?ns=` (containerd), else a registry as the first path segment (CRI-O), else the default. */
function resolveNamespace(query: string, repoName: string, opts: RegistryApiOptions): { registry: UpstreamRegistry; name: string } {
  const params = new URLSearchParams(query);
  const ns = params.get('ns');
  const prefixed = ns === null ? splitRegistryPrefix(repoName, (host) => opts.allowlist.lookup(host) !== undefined) : undefined;
  const name = ns ?? prefixed?.registry ?? opts.defaultRegistry;
  const registry = opts.allowlist.lookup(name);
  // Not on the allowlist: answer before any outbound connection. 404 sends containerd to the registry itself.
  if (!registry) throw new OciError(404, 'NAME_UNKNOWN', `registry ${JSON.stringify(name.slice(0, 100))} is not served by this mirror`);
  return { registry, name: prefixed?.name ?? repoName };
}

/** A peer id as the header carries it (base58btc), '' for anything else: it is echoed to other daemons. */
function peerIdHeader(value: string | string[] | undefined): string {
  return typeof value === 'string' && /^[1-9A-HJ-NP-Za-km-z]{32,64}$/.test(value) ? value : '';
}

function splitUrl(url: string): [string, string] {
  const q = url.indexOf('?');
  return q < 0 ? [url, ''] : [url.slice(0, q), url.slice(q + 1)];
}
