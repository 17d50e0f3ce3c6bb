export { DAEMON_OPTIONS } from './daemon-options.ts';
export { startDaemon, type DaemonConfig, type RunningDaemon } from './daemon.ts';
