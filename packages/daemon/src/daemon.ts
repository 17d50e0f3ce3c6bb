import { MirrorMetrics, startMirrorService, type Logger, type MirrorServiceConfig, type RunningMirrorService } from '@peerpull/common';
import { SeedBlobSource } from './seed-blob-source.ts';
import { SeedClient } from './seed-client.ts';
import { SeedManifestSource } from './seed-manifest-source.ts';

export interface DaemonConfig extends MirrorServiceConfig {
  tagTtlMs: number;
  maxStaleMs: number;
  seeds: string[];
  seedTimeoutMs: number;
}

export type RunningDaemon = RunningMirrorService;

/**
 * The node-local mirror. Blobs: local store → seed → upstream. Tags: seed → upstream →
 * the daemon's own cached tag. With seeds, every tag resolve asks the seed (cheap, on the
 * LAN) so a tag moves on every node at once; the seed is an optimisation, never required.
 */
export async function startDaemon(config: DaemonConfig, logger: Logger): Promise<RunningDaemon> {
  const metrics = new MirrorMetrics();
  const seeds = config.seeds.length
    ? new SeedClient({ seeds: config.seeds, logger: logger.child({ component: 'seeds' }), metrics, timeoutMs: config.seedTimeoutMs, idleTimeoutMs: config.upstreamIdleTimeoutMs })
    : undefined;
  try {
    return await startMirrorService(
      config,
      {
        service: 'daemon',
        metrics,
        blobSources: (upstream) => (seeds ? [new SeedBlobSource(seeds), upstream] : [upstream]),
        manifestSources: (upstream) => (seeds ? [new SeedManifestSource(seeds), upstream] : [upstream]),
        tagPolicy: () => ({ ttlMs: seeds ? 0 : config.tagTtlMs, maxStaleMs: config.maxStaleMs }),
        beforeClose: async () => seeds?.close(),
      },
      logger,
    );
  } catch (err) {
    await seeds?.close();
    throw err;
  }
}
