import { hostname } from 'node:os';
import {
  ClusterKey,
  MirrorMetrics,
  ReportSigner,
  startMirrorService,
  type FetchTrace,
  type Logger,
  type MirrorServiceConfig,
  type PullEvent,
  type RunningMirrorService,
} from '@peerpull/common';
import { daemonAdminApi } from './admin-api.ts';
import { CacheAdmin } from './cache-admin.ts';
import type { DaemonPeer, DaemonPeerConfig } from './daemon-peer.ts';
import { Explainer } from './explain.ts';
import { NodeStatusCollector } from './node-status.ts';
import { PullHistory } from './pull-history.ts';
import { SeedBlobSource } from './seed-blob-source.ts';
import { SeedClient } from './seed-client.ts';
import { SeedManifestSource } from './seed-manifest-source.ts';
import { SeedReporter } from './seed-reporter.ts';
import { SourceHealth } from './source-health.ts';

export interface DaemonConfig extends MirrorServiceConfig {
  tagTtlMs: number;
  maxStaleMs: number;
  seeds: string[];
  seedTimeoutMs: number;
  /** P2P settings; undefined when no cluster key is configured (P2P off). */
  peer?: Omit<DaemonPeerConfig, 'dataDir' | 'seeds'> | undefined;
  /** How this node is named in the seed's audit log and dashboard (default: the host name). */
  nodeName?: string | undefined;
  /** How often completed pulls are reported to the seeds (0: never). */
  reportIntervalMs?: number | undefined;
}

export interface RunningDaemon extends RunningMirrorService {
  peer: DaemonPeer | undefined;
}

const HEARTBEAT_MS = 5_000;

/**
 * The node-local mirror. Blobs and manifests by digest: local store → peers → seed →
 * upstream. Tags: seed → upstream → the daemon's own cached tag. With seeds, every tag
 * resolve asks the seed (cheap, on the LAN) so a tag moves on every node at once; the
 * seed and the peers are optimisations, never required.
 */
export async function startDaemon(config: DaemonConfig, logger: Logger): Promise<RunningDaemon> {
  const startedAt = Date.now();
  const metrics = new MirrorMetrics();
  const seeds = config.seeds.length
    ? new SeedClient({
        seeds: config.seeds,
        logger: logger.child({ component: 'seeds' }),
        metrics,
        timeoutMs: config.seedTimeoutMs,
        responseTimeoutMs: config.upstreamTimeoutMs + config.seedTimeoutMs,
        idleTimeoutMs: config.upstreamIdleTimeoutMs,
        peerCapable: config.peer !== undefined,
      })
    : undefined;
  let peer: DaemonPeer | undefined;
  let reporter: SeedReporter | undefined;
  const history = new PullHistory();
  const onPull = (event: PullEvent): void => {
    history.recordPull(event);
    reporter?.record(event);
  };
  try {
    if (config.peer) {
      // libp2p is loaded only when P2P is on (~35 MB of RSS and start-up time otherwise).
      const { DaemonPeer } = await import('./daemon-peer.ts');
      peer = await DaemonPeer.start({ ...config.peer, dataDir: config.data, seeds: config.seeds }, logger.child({ component: 'p2p' }), metrics);
      if (seeds) seeds.peerId = peer.node.peerId.toString();
    } else {
      logger.warn('no --cluster-key-file: P2P is off; blobs come from the seed and the upstream only');
    }
    const p2p = peer;
    let health: SourceHealth | undefined;
    let addresses = { address: config.listen, metricsAddress: config.metricsListen as string | undefined };
    const service = await startMirrorService(
      config,
      {
        service: 'daemon',
        metrics,
        blobSources: (upstream) => [...(p2p ? [p2p.blobSource] : []), ...(seeds ? [new SeedBlobSource(seeds)] : []), upstream],
        manifestSources: (upstream) => [...(p2p ? [p2p.manifestSource] : []), ...(seeds ? [new SeedManifestSource(seeds)] : []), upstream],
        lastResortTagSources: p2p ? [p2p.tagSource] : [],
        tagPolicy: () => ({ ttlMs: seeds ? 0 : config.tagTtlMs, maxStaleMs: config.maxStaleMs }),
        // Ready while some source is usable: peers joined, a seed answering, or an upstream answering.
        readiness: async () => health?.problem(),
        onPull,
        extend: async (app, parts) => {
          await p2p?.attach(parts.store, parts.blobs);
          parts.blobs.events.on('fetch-finished', (trace: FetchTrace) => history.recordFetch(trace));
          health = new SourceHealth({
            peers: p2p ? () => p2p.node.connectedPeers() : undefined,
            seeds: config.seeds,
            upstreams: parts.allowlist.list(),
            logger: logger.child({ component: 'health' }),
          });
          const status = new NodeStatusCollector({
            id: p2p?.node.peerId.toString() ?? nodeName(config),
            name: nodeName(config),
            startedAt,
            store: parts.store,
            blobs: parts.blobs,
            metrics,
            upstream: parts.upstream,
            peer: p2p,
            seeds,
            health,
            readinessProblem: parts.readinessProblem,
            addresses: () => addresses,
          });
          const explainer = new Explainer({
            store: parts.store,
            manifests: parts.manifests,
            blobs: parts.blobs,
            allowlist: parts.allowlist,
            defaultRegistry: config.defaultRegistry,
            peer: p2p,
            seeds,
            history,
          });
          await app.register(daemonAdminApi, {
            prefix: '/api/v1',
            status,
            explainer,
            cache: new CacheAdmin(parts.store, config.defaultRegistry),
            providers: p2p && ((digest, budgetMs) => p2p.providerReport(digest, budgetMs)),
          });
          if (config.seeds.length && (config.reportIntervalMs ?? 1_000) > 0) {
            reporter = new SeedReporter({
              seeds: config.seeds,
              id: p2p?.node.peerId.toString() ?? nodeName(config),
              name: nodeName(config),
              intervalMs: config.reportIntervalMs ?? 1_000,
              heartbeatMs: Math.max(HEARTBEAT_MS, config.reportIntervalMs ?? 1_000),
              heartbeat: () => status.heartbeat(),
              signer: config.peer ? new ReportSigner(ClusterKey.load(config.peer.clusterKeyFile)) : undefined,
              logger: logger.child({ component: 'report' }),
              metrics,
            });
          }
        },
        beforeScrape: () => p2p?.collectMetrics(),
        beforeClose: async () => {
          await reporter?.stop();
          await seeds?.close();
          await p2p?.stop();
        },
      },
      logger,
    );
    addresses = { address: service.address, metricsAddress: service.metricsAddress };
    reporter?.start();
    return { ...service, peer };
  } catch (err) {
    await reporter?.stop();
    await seeds?.close();
    await peer?.stop();
    throw err;
  }
}

function nodeName(config: DaemonConfig): string {
  return config.nodeName || hostname();
}
