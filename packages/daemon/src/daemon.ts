import type { Server } from 'node:http';
import {
  AuthFile,
  BlobResolver,
  ContentStore,
  ManifestResolver,
  MirrorMetrics,
  RegistryAllowlist,
  UpstreamBlobSource,
  UpstreamClient,
  UpstreamManifestSource,
  createMirrorServer,
  formatAddress,
  parseListenAddress,
  startMetricsServer,
  type Logger,
  type MirrorServer,
} from '@peerpull/common';

export interface DaemonConfig {
  listen: string;
  data: string;
  registry: string[];
  defaultRegistry: string;
  authFile?: string | undefined;
  cacheSize: number;
  tagTtlMs: number;
  maxStaleMs: number;
  metricsListen?: string | undefined;
  upstreamConnectTimeoutMs: number;
  upstreamTimeoutMs: number;
  upstreamIdleTimeoutMs: number;
}

export interface RunningDaemon {
  /** The mirror's bound address, e.g. `127.0.0.1:5050`. */
  address: string;
  metricsAddress: string | undefined;
  store: ContentStore;
  metrics: MirrorMetrics;
  close(): Promise<void>;
}

/** Builds the node-local mirror: store → sources (upstream, for now) → the pull API. */
export async function startDaemon(config: DaemonConfig, logger: Logger): Promise<RunningDaemon> {
  const allowlist = new RegistryAllowlist(config.registry);
  if (!allowlist.lookup(config.defaultRegistry)) {
    throw new Error(`default-registry "${config.defaultRegistry}" is not in the registry allowlist (${allowlist.hosts().join(', ')})`);
  }
  const listen = parseListenAddress(config.listen);
  const metricsListen = config.metricsListen ? parseListenAddress(config.metricsListen) : undefined;
  const authFile = AuthFile.load(config.authFile);

  const store = await ContentStore.open({ dir: config.data, maxBytes: config.cacheSize, logger: logger.child({ component: 'store' }) });
  const metrics = new MirrorMetrics();
  const upstream = new UpstreamClient({
    authFile,
    logger: logger.child({ component: 'upstream' }),
    connectTimeoutMs: config.upstreamConnectTimeoutMs,
    headersTimeoutMs: config.upstreamTimeoutMs,
    requestDeadlineMs: config.upstreamTimeoutMs,
    bodyIdleTimeoutMs: config.upstreamIdleTimeoutMs,
  });
  const blobs = new BlobResolver({ store, sources: [new UpstreamBlobSource(upstream)], logger: logger.child({ component: 'blobs' }), metrics });
  const manifests = new ManifestResolver({
    store,
    sources: [new UpstreamManifestSource(upstream)],
    logger: logger.child({ component: 'manifests' }),
    tagPolicy: () => ({ ttlMs: config.tagTtlMs, maxStaleMs: config.maxStaleMs }),
    sourceTimeoutMs: config.upstreamTimeoutMs,
  });

  let app: MirrorServer | undefined;
  let metricsServer: Server | undefined;
  try {
    app = await createMirrorServer({ logger, store, allowlist, defaultRegistry: config.defaultRegistry, manifests, blobs, metrics });
    await app.listen({ host: listen.host, port: listen.port });
    if (metricsListen) {
      metricsServer = await startMetricsServer(metrics, metricsListen.host, metricsListen.port, () => {
        metrics.cacheBytes.set(store.totalBytes);
        metrics.cacheEntries.set(store.entries);
      });
    }
  } catch (err) {
    await app?.close();
    await upstream.close();
    await store.close();
    throw err;
  }
  const bound = app.server.address();
  const address = typeof bound === 'object' && bound ? formatAddress(bound.address, bound.port) : config.listen;
  const metricsBound = metricsServer?.address();
  const metricsAddress = typeof metricsBound === 'object' && metricsBound ? formatAddress(metricsBound.address, metricsBound.port) : undefined;
  logger.info({ address, metricsAddress, data: config.data, registries: allowlist.hosts(), defaultRegistry: config.defaultRegistry }, 'peerpull daemon ready');

  return {
    address,
    metricsAddress,
    store,
    metrics,
    async close() {
      await app.close();
      await new Promise<void>((resolve) => (metricsServer ? metricsServer.close(() => resolve()) : resolve()));
      await upstream.close();
      await store.close();
    },
  };
}
