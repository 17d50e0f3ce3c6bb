import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { ClusterKey, MirrorMetrics, ReportSigner, startMirrorService, type Logger, type MirrorServiceConfig, type PeerLimits, type RunningMirrorService } from '@peerpull/common';
import type { PeerNode } from '@peerpull/common/peer';
import { adminApi } from './admin-api.ts';
import { clusterApi, reportApi } from './cluster-api.ts';
import { dashboard } from './dashboard.ts';
import { NodeRegistry } from './node-registry.ts';
import { PrefetchJobs } from './prefetch-jobs.ts';
import { PullLog } from './pull-log.ts';
import { SeedStatusCollector } from './seed-status.ts';
import type { TagPolicies } from './tag-policy.ts';

export interface SeedPeerConfig {
  clusterKeyFile: string;
  listen: string[];
  announce: string[];
  bootstrap: string[];
  bootstrapDns: string[];
  allow: string[];
  limits?: Partial<PeerLimits>;
}

export interface SeedConfig extends MirrorServiceConfig {
  policies: TagPolicies;
  adminToken?: string | undefined;
  peerFanout: number;
  /** P2P settings; undefined when no cluster key is configured. */
  peer?: SeedPeerConfig | undefined;
  /** Retention of the pull audit log. */
  pullLogRetentionMs?: number;
  pullLogMaxEntries?: number;
}

export interface RunningSeed extends RunningMirrorService {
  peer: PeerNode | undefined;
}

/**
 * The cluster's pull-through cache: the source of truth for tags (one digest per tag for
 * the whole cluster per TTL) and the one place that fetches each blob from upstream. With a
 * cluster key it is also a bootstrap peer and DHT server for the daemons (it does not
 * provide blobs in the DHT: daemons reach it over HTTP, and its fan-out limit sends the
 * rest of a burst to the peers).
 */
export async function startSeed(config: SeedConfig, logger: Logger): Promise<RunningSeed> {
  const startedAt = Date.now();
  const clusterKey = config.peer ? ClusterKey.load(config.peer.clusterKeyFile) : undefined;
  const metrics = new MirrorMetrics();
  // libp2p is loaded only when P2P is on.
  const peer = config.peer
    ? await (await import('@peerpull/common/peer')).PeerNode.start({
        ...config.peer,
        clusterKey: clusterKey as ClusterKey,
        dataDir: config.data,
        allowLoopback: true,
        onRefused: (kind) => metrics.peerRefusals.inc({ kind }),
        logger: logger.child({ component: 'p2p' }),
      })
    : undefined;
  let pullLog: PullLog | undefined;
  let status: SeedStatusCollector | undefined;
  let address = config.listen;
  try {
    pullLog = await PullLog.open({
      dir: path.join(config.data, 'pull-log'),
      maxAgeMs: config.pullLogRetentionMs ?? 7 * 86_400_000,
      maxEntries: config.pullLogMaxEntries ?? 200_000,
      logger: logger.child({ component: 'pull-log' }),
    });
    const log = pullLog;
    const nodes = new NodeRegistry();
    const service = await startMirrorService(
      config,
      {
        service: 'seed',
        metrics,
        blobSources: (upstream) => [upstream],
        manifestSources: (upstream) => [upstream],
        tagPolicy: (locator, tag) => config.policies.policy(locator, tag),
        peerFanout: config.peerFanout,
        extend: async (app, service) => {
          const prefetch = new PrefetchJobs({
            allowlist: service.allowlist,
            defaultRegistry: config.defaultRegistry,
            manifests: service.manifests,
            blobs: service.blobs,
            logger: logger.child({ component: 'prefetch' }),
          });
          await app.register(adminApi, {
            prefix: '/api/v1',
            adminToken: config.adminToken,
            allowlist: service.allowlist,
            defaultRegistry: config.defaultRegistry,
            store: service.store,
            manifests: service.manifests,
            blobs: service.blobs,
            prefetch,
          });
          status = new SeedStatusCollector({
            startedAt,
            address: () => address,
            store: service.store,
            blobs: service.blobs,
            metrics: service.metrics,
            upstream: service.upstream,
            peer,
            nodes,
            pullLog: log,
            readinessProblem: service.readinessProblem,
          });
          const clusterOptions = { adminToken: config.adminToken, signer: clusterKey ? new ReportSigner(clusterKey) : undefined, pullLog: log, nodes, status };
          await app.register(reportApi, { prefix: '/api/v1', ...clusterOptions });
          await app.register(clusterApi, { prefix: '/api/v1', ...clusterOptions });
          await app.register(dashboard);
          await app.register(async (scope: FastifyInstance) => {
            // Public (no admin token): daemons bootstrap from it. The cluster key still gates connections.
            scope.get('/api/v1/peer', async (_req, reply) => {
              if (!peer) return reply.code(404).send({ error: 'P2P is off on this seed (no cluster key)' });
              const ports = [...new Set(peer.addresses().map((a) => Number(/\/tcp\/(\d+)/.exec(a)?.[1])).filter((p) => p > 0))];
              return { peerId: peer.peerId.toString(), ports, addrs: peer.addresses() };
            });
          });
        },
        beforeScrape: () => {
          if (!peer) return;
          metrics.peersConnected.set(peer.connectedPeers());
          metrics.dhtRoutingTableSize.set(peer.routingTableSize());
          metrics.dhtProviderRecords.set(peer.providerRecords);
        },
        beforeClose: async () => {
          status?.stop();
          await peer?.stop();
        },
      },
      logger,
    );
    address = service.address;
    status?.start();
    return {
      ...service,
      peer,
      async close() {
        await service.close();
        await log.close();
      },
    };
  } catch (err) {
    await peer?.stop();
    await pullLog?.close();
    throw err;
  }
}
