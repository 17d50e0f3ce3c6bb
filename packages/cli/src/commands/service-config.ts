import type { MirrorServiceConfig, PeerLimits } from '@peerpull/common';

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
  'client-timeout': number;
  'private-recheck-interval': number;
  'private-offline-grace': number;
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
    clientTimeoutMs: opts['client-timeout'],
    privateRecheckMs: opts['private-recheck-interval'],
    privateOfflineGraceMs: opts['private-offline-grace'],
  };
}

/** The shared P2P options, or undefined (P2P off) when no cluster key file is given. */
export function peerConfig(opts: {
  'cluster-key-file': string | undefined;
  'p2p-listen': string[];
  'p2p-announce': string[];
  bootstrap: string[];
  'bootstrap-dns': string[];
  'p2p-allow': string[];
  'p2p-max-connections': number;
  'p2p-max-pending-connections': number;
  'p2p-connection-rate': number;
  'dht-provider-records': number;
  'dht-provider-records-per-peer': number;
  'dht-provider-record-rate': number;
}): { clusterKeyFile: string; listen: string[]; announce: string[]; bootstrap: string[]; bootstrapDns: string[]; allow: string[]; limits: PeerLimits } | undefined {
  const clusterKeyFile = opts['cluster-key-file'];
  if (!clusterKeyFile) return undefined;
  return {
    clusterKeyFile,
    listen: opts['p2p-listen'],
    announce: opts['p2p-announce'],
    bootstrap: opts.bootstrap,
    bootstrapDns: opts['bootstrap-dns'],
    allow: opts['p2p-allow'],
    limits: {
      maxConnections: opts['p2p-max-connections'],
      maxPendingConnections: opts['p2p-max-pending-connections'],
      connectionsPerHostPerSecond: opts['p2p-connection-rate'],
      providerRecords: opts['dht-provider-records'],
      providerRecordsPerPeer: opts['dht-provider-records-per-peer'],
      providerRecordsPerPeerPerSecond: opts['dht-provider-record-rate'],
    },
  };
}
