import { OptionsError, createLogger, formatHelp, loadOptions } from '@peerpull/common';
import { SEED_OPTIONS, TagPolicies, startSeed } from '@peerpull/seed';
import { runUntilSignal } from '../lifecycle.ts';
import { mirrorServiceConfig, peerConfig } from './service-config.ts';

const USAGE = 'peerpull seed [options]';
const SUMMARY = `Runs the cluster seed: a pull-through cache for all allowlisted upstreams that
resolves each tag to one digest for the whole cluster and fetches each blob from upstream
once. Daemons use it with --seed http://<seed>:5060. Admin API under /api/v1/.`;

export async function seedCommand(argv: string[]): Promise<number> {
  const opts = loadOptions(SEED_OPTIONS, { argv, env: process.env });
  if (opts.help) {
    process.stdout.write(formatHelp(USAGE, SUMMARY, SEED_OPTIONS));
    return 0;
  }
  let policies: TagPolicies;
  try {
    policies = TagPolicies.fromConfig({ ttlMs: opts['tag-ttl'], maxStaleMs: opts['max-stale'] }, opts.policies, opts.pins);
  } catch (err) {
    throw new OptionsError((err as Error).message);
  }
  const logger = createLogger({ level: opts['log-level'], service: 'seed' });
  const seed = await startSeed(
    { ...mirrorServiceConfig(opts), policies, adminToken: opts['admin-token'], peerFanout: opts['peer-fanout'], peer: peerConfig(opts),
      pullLogRetentionMs: opts['pull-log-retention'], pullLogMaxEntries: opts['pull-log-max-entries'] },
    logger,
  );
  return runUntilSignal(logger, () => seed.close());
}
