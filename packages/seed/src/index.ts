export { SEED_OPTIONS } from './seed-options.ts';
export { startSeed, type SeedConfig, type RunningSeed } from './seed.ts';
export { TagPolicies } from './tag-policy.ts';
