import type { MirrorServiceConfig } from '@peerpull/common';

/** The options the daemon and the seed share, as parsed by loadOptions. */
interface SharedOptionValues {
  listen: string;
  data: string;
  registry: string[];
  'default-registry': string;
  'auth-file': string | undefined;
  'cache-size': number;
  'metrics-listen': string;
  'upstream-connect-timeout': number;
  'upstream-timeout': number;
  'upstream-idle-timeout': number;
}

export function mirrorServiceConfig(opts: SharedOptionValues): MirrorServiceConfig {
  return {
    listen: opts.listen,
    data: opts.data,
    registry: opts.registry,
    defaultRegistry: opts['default-registry'],
    authFile: opts['auth-file'],
    cacheSize: opts['cache-size'],
    metricsListen: opts['metrics-listen'],
    upstreamConnectTimeoutMs: opts['upstream-connect-timeout'],
    upstreamTimeoutMs: opts['upstream-timeout'],
    upstreamIdleTimeoutMs: opts['upstream-idle-timeout'],
  };
}
