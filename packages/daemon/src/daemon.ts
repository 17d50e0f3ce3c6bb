import { MirrorMetrics, startMirrorService, type Logger, type MirrorServiceConfig, type RunningMirrorService } from '@peerpull/common';
import { DaemonPeer, type DaemonPeerConfig } from './daemon-peer.ts';
import { SeedBlobSource } from './seed-blob-source.ts';
import { SeedClient } from './seed-client.ts';
import { SeedManifestSource } from './seed-manifest-source.ts';

export interface DaemonConfig extends MirrorServiceConfig {
  tagTtlMs: number;
  maxStaleMs: number;
  seeds: string[];
  seedTimeoutMs: number;
  /** P2P settings; undefined when no cluster key is configured (P2P off). */
  peer?: Omit<DaemonPeerConfig, 'dataDir' | 'seeds'> | undefined;
}

export interface RunningDaemon extends RunningMirrorService {
  peer: DaemonPeer | undefined;
}

/**
 * The node-local mirror. Blobs and manifests by digest: local store → peers → seed →
 * upstream. Tags: seed → upstream → the daemon's own cached tag. With seeds, every tag
 * resolve asks the seed (cheap, on the LAN) so a tag moves on every node at once; the
 * seed and the peers are optimisations, never required.
 */
export async function startDaemon(config: DaemonConfig, logger: Logger): Promise<RunningDaemon> {
  const metrics = new MirrorMetrics();
  const seeds = config.seeds.length
    ? new SeedClient({
        seeds: config.seeds,
        logger: logger.child({ component: 'seeds' }),
        metrics,
        timeoutMs: config.seedTimeoutMs,
        idleTimeoutMs: config.upstreamIdleTimeoutMs,
        peerCapable: config.peer !== undefined,
      })
    : undefined;
  let peer: DaemonPeer | undefined;
  try {
    if (config.peer) {
      peer = await DaemonPeer.start({ ...config.peer, dataDir: config.data, seeds: config.seeds }, logger.child({ component: 'p2p' }), metrics);
    } else {
      logger.warn('no --cluster-key-file: P2P is off; blobs come from the seed and the upstream only');
    }
    const p2p = peer;
    const service = await startMirrorService(
      config,
      {
        service: 'daemon',
        metrics,
        blobSources: (upstream) => [...(p2p ? [p2p.blobSource] : []), ...(seeds ? [new SeedBlobSource(seeds)] : []), upstream],
        manifestSources: (upstream) => [...(p2p ? [p2p.manifestSource] : []), ...(seeds ? [new SeedManifestSource(seeds)] : []), upstream],
        lastResortTagSources: p2p ? [p2p.tagSource] : [],
        tagPolicy: () => ({ ttlMs: seeds ? 0 : config.tagTtlMs, maxStaleMs: config.maxStaleMs }),
        extend: async (_app, parts) => {
          await p2p?.attach(parts.store, parts.blobs);
        },
        beforeScrape: () => p2p?.collectMetrics(),
        beforeClose: async () => {
          await seeds?.close();
          await p2p?.stop();
        },
      },
      logger,
    );
    return { ...service, peer };
  } catch (err) {
    await seeds?.close();
    await peer?.stop();
    throw err;
  }
}
