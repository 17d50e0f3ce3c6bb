export { DAEMON_OPTIONS } from './daemon-options.ts';
export { startDaemon, type DaemonConfig, type RunningDaemon } from './daemon.ts';
export type { DaemonStatus } from './node-status.ts';
export type { ExplainLayer, ExplainReport } from './explain.ts';
export type { CacheListing, RemovedContent, VerifyEvent } from './cache-admin.ts';
export type { SourcesReport } from './source-health.ts';
export { PeerHttpAuth } from './peer-http-auth.ts';
export { PEER_HTTP_PATH_PREFIX } from './peer-http-transfer.ts';
