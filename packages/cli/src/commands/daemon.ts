import { OptionsError, createLogger, formatHelp, loadOptions, parseListenAddress } from '@peerpull/common';
import { DAEMON_OPTIONS, startDaemon } from '@peerpull/daemon';
import { parseRegistryTargets } from '../configure/registry-targets.ts';
import { startMirrorWatchdog, type WatchdogConfig } from '../configure/watchdog.ts';
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
  const watchdogFor = opts['manage-containerd'] ? watchdogConfig(opts) : undefined; // options checked before starting
  const logger = createLogger({ level: opts['log-level'], service: 'daemon' });
  const peer = peerConfig(opts);
  const daemon = await startDaemon(
    {
      ...mirrorServiceConfig(opts),
      tagTtlMs: opts['tag-ttl'],
      maxStaleMs: opts['max-stale'],
      seeds: opts.seed,
      seedTimeoutMs: opts['seed-timeout'],
      nodeName: opts['node-name'],
      reportIntervalMs: opts['report-interval'],
      peer: peer && {
        ...peer,
        uploadLimit: opts['peer-upload-limit'],
        uploadLimitPerPeer: opts['peer-upload-limit-per-peer'],
        lookupBudgetMs: opts['peer-lookup-timeout'],
        lastResortLookupMs: opts['peer-lookup-last-resort'],
        idleTimeoutMs: opts['peer-idle-timeout'],
        transport: opts['peer-transport'] as 'libp2p' | 'http',
        httpListen: opts['peer-http-listen'],
      },
    },
    logger,
  );
  const watchdog = watchdogFor ? startMirrorWatchdog(watchdogFor(daemon.address), logger) : undefined;
  return runUntilSignal(logger, async () => {
    await watchdog?.stop(); // containerd stops sending pulls here before the listener closes
    await daemon.close();
  });
}

/** --manage-containerd: the entries point at the address the daemon is bound to. */
function watchdogConfig(opts: {
  registry: string[];
  'manage-registries': string[];
  'containerd-config-path': string;
  'manage-interval': number;
}): (address: string) => WatchdogConfig {
  const targets = parseRegistryTargets(opts['manage-registries'].length > 0 ? opts['manage-registries'] : opts.registry);
  const intervalMs = opts['manage-interval'];
  if (!Number.isFinite(intervalMs) || intervalMs <= 0) throw new OptionsError('--manage-interval: expected a positive duration like 2s');
  return (address) => {
    const { host, port } = parseListenAddress(address);
    const reachable = host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '[::1]' : host.includes(':') ? `[${host}]` : host;
    const mirror = `http://${reachable}:${port}`;
    return {
      certsDir: opts['containerd-config-path'],
      targets,
      mirror,
      dialTimeoutMs: 200,
      probeUrl: `${mirror}/readyz`,
      probeTimeoutMs: Math.min(intervalMs, 2_000),
      intervalMs,
    };
  };
}
