import type { Server } from 'node:http';
import { AuthFile } from './auth-file.ts';
import { BlobResolver } from './blob-resolver.ts';
import type { BlobSource } from './blob-source.ts';
import { ContentStore } from './content-store.ts';
import { formatAddress, parseListenAddress } from './listen-address.ts';
import type { Logger } from './logger.ts';
import { ManifestResolver, type TagPolicy } from './manifest-resolver.ts';
import type { ManifestLocator, ManifestSource } from './manifest-source.ts';
import { MirrorMetrics } from './metrics.ts';
import { startMetricsServer } from './metrics-server.ts';
import { createMirrorServer, readinessProblem, type MirrorServer } from './mirror-server.ts';
import { RegistryAllowlist } from './registry-allowlist.ts';
import { UpstreamBlobSource } from './upstream-blob-source.ts';
import { UpstreamClient, UpstreamError } from './upstream-client.ts';
import { PrivateContentGuard, type AccessKind, type Verdict } from './private-content.ts';
import type { Digest } from './digest.ts';
import { MANIFEST_ACCEPT } from './media-types.ts';
import type { UpstreamRegistry } from './registry-allowlist.ts';
import { UpstreamManifestSource } from './upstream-manifest-source.ts';
import type { PullEvent } from './pull-report.ts';
import { PEERPULL_VERSION } from './version.ts';

/** Pending connections the mirror's listener queues (the kernel caps it at net.core.somaxconn). */
const LISTEN_BACKLOG = 4096;

/** Settings the daemon and the seed share. */
export interface MirrorServiceConfig {
  listen: string;
  data: string;
  registry: string[];
  defaultRegistry: string;
  authFile?: string | undefined;
  cacheSize: number;
  metricsListen?: string | undefined;
  upstreamConnectTimeoutMs: number;
  upstreamTimeoutMs: number;
  upstreamIdleTimeoutMs: number;
  /** Deadline for a client to send a whole request (headers and body); slower clients are cut off. */
  clientTimeoutMs?: number | undefined;
  /** Private content (registries with credentials): how often a repository's claim to a digest is re-checked upstream. */
  privateRecheckMs?: number | undefined;
  /** Private content: how long a checked claim keeps serving while the upstream cannot be asked. */
  privateOfflineGraceMs?: number | undefined;
}

/** The parts a service plugs in: its sources (around the upstream) and tag policy. */
export interface MirrorServiceParts {
  service: 'daemon' | 'seed';
  /** Metrics the caller already registered things on (sources' own metrics). */
  metrics?: MirrorMetrics;
  blobSources: (upstream: UpstreamBlobSource) => BlobSource[];
  manifestSources: (upstream: UpstreamManifestSource) => ManifestSource[];
  /** Asked for tags only when every source and the cache failed (peers). */
  lastResortTagSources?: ManifestSource[];
  tagPolicy: (locator: ManifestLocator, tag: string) => TagPolicy;
  /** Registers extra routes (the seed's admin API) before the server listens. */
  extend?: (app: MirrorServer, service: Omit<RunningMirrorService, 'address' | 'metricsAddress' | 'close'>) => Promise<void>;
  readiness?: () => Promise<string | undefined>;
  /** See RegistryApiOptions.peerFanout (the seed). */
  peerFanout?: number;
  /** Refreshes gauges the service owns before a metrics scrape. */
  beforeScrape?: () => void;
  /** Runs before the rest of close(). */
  beforeClose?: () => Promise<void>;
  /** Sees every answered GET of a manifest or blob (see RegistryApiOptions.onPull). */
  onPull?: (event: PullEvent) => void;
}

export interface RunningMirrorService {
  address: string;
  metricsAddress: string | undefined;
  allowlist: RegistryAllowlist;
  store: ContentStore;
  metrics: MirrorMetrics;
  upstream: UpstreamClient;
  blobs: BlobResolver;
  manifests: ManifestResolver;
  /** Why /readyz says unready, or undefined when ready. */
  readinessProblem(): Promise<string | undefined>;
  close(): Promise<void>;
}

/** Wires store → resolvers → pull API → listeners, as both the daemon and the seed run them. */
export async function startMirrorService(config: MirrorServiceConfig, parts: MirrorServiceParts, logger: Logger): Promise<RunningMirrorService> {
  const allowlist = new RegistryAllowlist(config.registry);
  if (!allowlist.lookup(config.defaultRegistry)) {
    throw new Error(`default-registry "${config.defaultRegistry}" is not in the registry allowlist (${allowlist.hosts().join(', ')})`);
  }
  const listen = parseListenAddress(config.listen);
  const metricsListen = config.metricsListen ? parseListenAddress(config.metricsListen) : undefined;
  const authFile = AuthFile.load(config.authFile);

  const store = await ContentStore.open({ dir: config.data, maxBytes: config.cacheSize, logger: logger.child({ component: 'store' }) });
  const metrics = parts.metrics ?? new MirrorMetrics();
  metrics.info.set({ version: PEERPULL_VERSION, service: parts.service }, 1);
  metrics.cacheMaxBytes.set(config.cacheSize);
  store.on('removed', (_info: unknown, reason: string) => {
    if (reason.startsWith('evicted')) metrics.cacheEvictions.inc();
  });
  const upstream = new UpstreamClient({
    onResponse: (registry, code) => {
      metrics.upstreamRequests.inc({ registry, code });
      if (code === '429') metrics.upstreamRateLimited.inc({ registry });
    },
    authFile,
    logger: logger.child({ component: 'upstream' }),
    connectTimeoutMs: config.upstreamConnectTimeoutMs,
    headersTimeoutMs: config.upstreamTimeoutMs,
    requestDeadlineMs: config.upstreamTimeoutMs,
    bodyIdleTimeoutMs: config.upstreamIdleTimeoutMs,
  });
  // Content fetched with credentials is private: served under a repository only if that repository holds it.
  const access = authFile.size > 0
    ? await PrivateContentGuard.open({
        dir: config.data,
        isPrivateRegistry: (host) => authFile.hasCredentialsFor(host),
        verify: (kind, registry, repository, digest) => verifyUpstream(upstream, kind, registry, repository, digest),
        logger: logger.child({ component: 'private' }),
        ...(config.privateRecheckMs !== undefined ? { recheckMs: config.privateRecheckMs } : {}),
        ...(config.privateOfflineGraceMs !== undefined ? { offlineGraceMs: config.privateOfflineGraceMs } : {}),
      })
    : undefined;
  if (access) logger.info({ registries: authFile.describe() }, 'credentials loaded: their content is private (served per repository)');
  const blobs = new BlobResolver({
    store,
    sources: parts.blobSources(new UpstreamBlobSource(upstream)),
    logger: logger.child({ component: 'blobs' }),
    metrics,
  });
  const manifests = new ManifestResolver({
    store,
    sources: parts.manifestSources(new UpstreamManifestSource(upstream)),
    lastResortTagSources: parts.lastResortTagSources ?? [],
    logger: logger.child({ component: 'manifests' }),
    tagPolicy: parts.tagPolicy,
    // A seed may itself wait on the upstream before it answers: give every source a little more.
    sourceTimeoutMs: config.upstreamTimeoutMs + 5_000,
    metrics,
  });
  const readiness = async (): Promise<string | undefined> => {
    const problem = await readinessProblem(store, parts.readiness);
    metrics.ready.set(problem === undefined ? 1 : 0);
    return problem;
  };
  metrics.readinessCheck = async () => (await readiness()) === undefined;
  const service = { allowlist, store, metrics, upstream, blobs, manifests, readinessProblem: readiness };

  let app: MirrorServer | undefined;
  let metricsServer: Server | undefined;
  try {
    app = await createMirrorServer({
      logger,
      store,
      allowlist,
      defaultRegistry: config.defaultRegistry,
      manifests,
      blobs,
      metrics,
      ...(parts.readiness ? { readiness: parts.readiness } : {}),
      ...(parts.onPull ? { onPull: parts.onPull } : {}),
      ...(parts.peerFanout !== undefined ? { peerFanout: parts.peerFanout } : {}),
      ...(config.clientTimeoutMs !== undefined ? { clientTimeoutMs: config.clientTimeoutMs } : {}),
      ...(access ? { access } : {}),
    });
    await parts.extend?.(app, service);
    // A burst of pod starts opens hundreds of connections at once; Node's default backlog (511) drops the
    // rest of the SYNs and those clients wait out TCP's 1 s / 3 s retransmits.
    await app.listen({ host: listen.host, port: listen.port, backlog: LISTEN_BACKLOG });
    if (metricsListen) {
      metricsServer = await startMetricsServer(metrics, metricsListen.host, metricsListen.port, () => {
        metrics.cacheBytes.set(store.totalBytes);
        metrics.cacheEntries.set(store.entries);
        collectRateLimits(upstream, metrics);
        parts.beforeScrape?.();
      }, readiness);
    }
  } catch (err) {
    await app?.close();
    await upstream.close();
    await store.close();
    throw err;
  }
  const address = boundAddress(app.server.address(), config.listen);
  const metricsAddress = metricsServer ? boundAddress(metricsServer.address(), config.metricsListen ?? '') : undefined;
  // Where it listens is said at any level but silent: operators at --log-level warn need it too, and
  // supervisors (the demo's cluster, the tests) read the bound ports from this line.
  const startupLog = logger.level === 'silent' || logger.isLevelEnabled('info') ? logger : logger.child({}, { level: 'info' });
  startupLog.info(
    { address, metricsAddress, data: config.data, registries: allowlist.hosts(), defaultRegistry: config.defaultRegistry },
    `peerpull ${parts.service} ready`,
  );
  const server = app;
  return {
    ...service,
    address,
    metricsAddress,
    async close() {
      await parts.beforeClose?.();
      await server.close();
      await new Promise<void>((resolve) => (metricsServer ? metricsServer.close(() => resolve()) : resolve()));
      await blobs.settle();
      await upstream.close();
      await store.close();
    },
  };
}

/** Does the repository hold the digest, by the upstream's own account (a HEAD with the repository's credentials)? */
async function verifyUpstream(upstream: UpstreamClient, kind: AccessKind, registry: UpstreamRegistry, repository: string, digest: Digest): Promise<Verdict> {
  try {
    if (kind === 'blob') await upstream.headBlob(registry, repository, digest);
    else await upstream.headManifest(registry, repository, digest, { accept: `${MANIFEST_ACCEPT}, */*` });
    return 'yes';
  } catch (err) {
    if (err instanceof UpstreamError && (err.kind === 'not-found' || err.kind === 'unauthorized')) return 'no';
    return 'unknown';
  }
}

/** Each registry's rate-limit state as it last answered (Docker Hub's ratelimit-* headers, 429 back-off). */
function collectRateLimits(upstream: UpstreamClient, metrics: MirrorMetrics): void {
  const now = Date.now();
  for (const [registry, state] of upstream.rateLimits) {
    if (state.remaining !== undefined) metrics.upstreamRateLimitRemaining.set({ registry }, state.remaining);
    if (state.limit !== undefined) metrics.upstreamRateLimitLimit.set({ registry }, state.limit);
    metrics.upstreamBackoffSeconds.set({ registry }, Math.max(0, ((state.backoffUntil ?? 0) - now) / 1000));
  }
}

function boundAddress(bound: ReturnType<Server['address']>, fallback: string): string {
  return typeof bound === 'object' && bound ? formatAddress(bound.address, bound.port) : fallback;
}
