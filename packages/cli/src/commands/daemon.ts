import { createLogger, formatHelp, loadOptions } from '@peerpull/common';
import { DAEMON_OPTIONS, startDaemon } from '@peerpull/daemon';
import { runUntilSignal } from '../lifecycle.ts';
import { mirrorServiceConfig, peerConfig } from './service-config.ts';

const USAGE = 'peerpull daemon [options]';
const SUMMARY = `Runs the node-local registry mirror. Point containerd at it with hosts.toml
(see README); it pulls through a verified local cache from the allowlisted upstreams.`;

export async function daemonCommand(argv: string[]): Promise<number> {
  const opts = loadOptions(DAEMON_OPTIONS, { argv, env: process.env });
  if (opts.help) {
    process.stdout.write(formatHelp(USAGE, SUMMARY, DAEMON_OPTIONS));
    return 0;
  }
  const logger = createLogger({ level: opts['log-level'], service: 'daemon' });
  const peer = peerConfig(opts);
  const daemon = await startDaemon(
    {
      ...mirrorServiceConfig(opts),
      tagTtlMs: opts['tag-ttl'],
      maxStaleMs: opts['max-stale'],
      seeds: opts.seed,
      seedTimeoutMs: opts['seed-timeout'],
      peer: peer && {
        ...peer,
        uploadLimit: opts['peer-upload-limit'],
        lookupBudgetMs: opts['peer-lookup-timeout'],
        idleTimeoutMs: opts['peer-idle-timeout'],
      },
    },
    logger,
  );
  return runUntilSignal(logger, () => daemon.close());
}
