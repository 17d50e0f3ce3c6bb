import { pino, type Logger, type LevelWithSilent } from 'pino';
import { recentProblems } from './recent-problems.ts';

export type { Logger };

export const LOG_LEVELS: readonly LevelWithSilent[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

/** JSON lines on stdout, as Fastify logs; `service` tells daemon and seed apart in a shared pipeline. */
export function createLogger(opts: { level: string; service: string; destination?: number | string }): Logger {
  return pino(
    {
      level: opts.level,
      base: { service: opts.service },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: { paths: ['req.headers.authorization', 'headers.authorization', '*.password', '*.token'], censor: '[redacted]' },
      // Warnings and errors are also kept in memory for `peerpull status` ("last errors").
      hooks: {
        logMethod(args, method, level) {
          if (level >= 40) recentProblems.record(level, args);
          return method.apply(this, args);
        },
      },
    },
    pino.destination({ dest: opts.destination ?? 1, sync: false }),
  );
}
