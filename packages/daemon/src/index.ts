export { DAEMON_OPTIONS } from './daemon-options.ts';
export { startDaemon, type DaemonConfig, type RunningDaemon } from './daemon.ts';
export type { DaemonStatus } from './node-status.ts';
export type { ExplainLayer, ExplainReport } from './explain.ts';
export type { CacheListing, RemovedContent, VerifyEvent } from './cache-admin.ts';
export type { SourcesReport } from './source-health.ts';
