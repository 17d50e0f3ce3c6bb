import { Worker } from 'node:worker_threads';
import type { Logger } from '@peerpull/common';
import type { RegistryTarget } from './registry-targets.ts';

/** Settings of `peerpull daemon --manage-containerd` (plain data: they cross to the worker thread). */
export interface WatchdogConfig {
  certsDir: string;
  targets: RegistryTarget[];
  /** The mirror URL written into hosts.toml. */
  mirror: string;
  dialTimeoutMs: number;
  /** The daemon's own /readyz. */
  probeUrl: string;
  probeTimeoutMs: number;
  intervalMs: number;
}

export type WatchdogMessage =
  | { type: 'log'; level: 'info' | 'warn' | 'error'; msg: string; fields: Record<string, unknown> }
  | { type: 'stopped' };

export interface MirrorWatchdog {
  /** Removes the entries (before the daemon stops listening) and ends the thread. */
  stop(): Promise<void>;
}

/**
 * Fail open: writes containerd's mirror entries while the daemon answers /readyz and
 * removes them as soon as it does not, or when it is about to stop, so containerd goes
 * straight to the upstream instead of to a sick daemon. Runs on a worker thread, so a stuck
 * daemon event loop shows up as a probe timeout instead of stopping the watchdog too.
 */
export function startMirrorWatchdog(config: WatchdogConfig, logger: Logger): MirrorWatchdog {
  const worker = new Worker(new URL('./watchdog-worker.ts', import.meta.url), { workerData: config });
  let stopped: (() => void) | undefined;
  worker.on('message', (message: WatchdogMessage) => {
    if (message.type === 'stopped') stopped?.();
    else logger[message.level](message.fields, message.msg);
  });
  worker.on('error', (err) => logger.error({ err: err.message }, 'containerd watchdog failed; mirror entries are no longer managed'));
  worker.unref();
  return {
    async stop() {
      await new Promise<void>((resolve) => {
        stopped = resolve;
        const timeout = setTimeout(resolve, config.probeTimeoutMs + 10_000);
        timeout.unref();
        worker.once('exit', () => resolve());
        worker.postMessage({ type: 'stop' });
      });
      await worker.terminate();
    },
  };
}
