export { SEED_OPTIONS } from './seed-options.ts';
export { startSeed, type SeedConfig, type RunningSeed } from './seed.ts';
export { TagPolicies } from './tag-policy.ts';
export type { ClusterView } from './cluster-api.ts';
export type { SeedStatus } from './seed-status.ts';
export type { NodeView } from './node-registry.ts';
export type { PrefetchJobView, PrefetchImageProgress } from './prefetch-jobs.ts';
