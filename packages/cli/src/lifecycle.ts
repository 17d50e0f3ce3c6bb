import type { Logger } from '@peerpull/common';

/** Waits for SIGTERM/SIGINT, then shuts down gracefully; a second signal exits at once. */
export function runUntilSignal(logger: Logger, close: () => Promise<void>): Promise<number> {
  return new Promise((resolve) => {
    let stopping = false;
    const stop = (signal: NodeJS.Signals): void => {
      if (stopping) process.exit(130);
      stopping = true;
      logger.info({ signal }, 'shutting down');
      const force = setTimeout(() => {
        logger.warn('shutdown took too long; exiting');
        resolve(1);
      }, 10_000);
      force.unref();
      close().then(
        () => resolve(0),
        (err: Error) => {
          logger.error({ err: err.message }, 'shutdown failed');
          resolve(1);
        },
      );
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
  });
}
