import { startMirrorService, type Logger, type MirrorServiceConfig, type RunningMirrorService } from '@peerpull/common';
import { adminApi } from './admin-api.ts';
import { PrefetchJobs } from './prefetch-jobs.ts';
import type { TagPolicies } from './tag-policy.ts';

export interface SeedConfig extends MirrorServiceConfig {
  policies: TagPolicies;
  adminToken?: string | undefined;
}

export type RunningSeed = RunningMirrorService;

/**
 * The cluster's pull-through cache: the source of truth for tags (one digest per tag for
 * the whole cluster per TTL) and the one place that fetches each blob from upstream.
 */
export async function startSeed(config: SeedConfig, logger: Logger): Promise<RunningSeed> {
  return startMirrorService(
    config,
    {
      service: 'seed',
      blobSources: (upstream) => [upstream],
      manifestSources: (upstream) => [upstream],
      tagPolicy: (locator, tag) => config.policies.policy(locator, tag),
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
      },
    },
    logger,
  );
}
