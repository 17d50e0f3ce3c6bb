import {
  REPORT_SIGNATURE_HEADER,
  type Logger,
  type MirrorMetrics,
  type NodeHeartbeat,
  type NodeReport,
  type PullEvent,
  type ReportSigner,
} from '@peerpull/common';

export interface SeedReporterOptions {
  seeds: string[];
  /** Stable node id (peer ID, else the name) and display name. */
  id: string;
  name: string;
  /** How often queued pulls are sent. */
  intervalMs: number;
  /** How often a heartbeat goes along (the first one at once). */
  heartbeatMs: number;
  heartbeat: () => Promise<NodeHeartbeat>;
  signer: ReportSigner | undefined;
  logger: Logger;
  metrics: MirrorMetrics;
  /** Pulls queued at most; beyond, new ones are dropped (counted). */
  maxQueue?: number;
  /** Pulls per request at most. */
  maxBatch?: number;
  timeoutMs?: number;
}

/**
 * Sends the node's completed pulls (the cluster's audit log) and its heartbeat to every seed,
 * in the background: a bounded queue, batches, and a batch no seed accepted is dropped. A
 * pull never waits for any of it; losing the seed loses records, never pulls.
 */
export class SeedReporter {
  readonly #opts: Required<SeedReporterOptions>;
  #queue: PullEvent[] = [];
  #timer: NodeJS.Timeout | undefined;
  #sending: Promise<void> | undefined;
  #lastHeartbeat = 0;
  #failing = false;
  #stopped = false;

  constructor(opts: SeedReporterOptions) {
    this.#opts = { maxQueue: 10_000, maxBatch: 500, timeoutMs: 3_000, ...opts } as Required<SeedReporterOptions>;
  }

  /** Queues a completed pull; O(1), never throws, never waits. */
  record(event: PullEvent): void {
    if (this.#stopped) return;
    if (this.#queue.length >= this.#opts.maxQueue) {
      this.#opts.metrics.pullReports.inc({ outcome: 'dropped' });
      return;
    }
    this.#queue.push(event);
  }

  get queued(): number {
    return this.#queue.length;
  }

  start(): void {
    this.#schedule(0);
  }

  /** Stops; sends what is queued (within a short deadline) first. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    await this.#sending;
    if (this.#queue.length) await this.#send(1_000).catch(() => undefined);
  }

  #schedule(delayMs: number): void {
    if (this.#stopped) return;
    this.#timer = setTimeout(() => {
      this.#sending = this.#send(this.#opts.timeoutMs)
        .catch((err: Error) => this.#opts.logger.debug({ err: err.message }, 'report failed'))
        .finally(() => {
          this.#sending = undefined;
          this.#schedule(this.#opts.intervalMs);
        });
    }, delayMs);
    this.#timer.unref();
  }

  async #send(timeoutMs: number): Promise<void> {
    const heartbeatDue = Date.now() - this.#lastHeartbeat >= this.#opts.heartbeatMs;
    if (!heartbeatDue && this.#queue.length === 0) return;
    const pulls = this.#queue.splice(0, this.#opts.maxBatch);
    const report: NodeReport = { id: this.#opts.id, name: this.#opts.name, sentAt: Date.now(), pulls };
    if (heartbeatDue) {
      try {
        report.heartbeat = await this.#opts.heartbeat();
      } catch (err) {
        this.#opts.logger.debug({ err: (err as Error).message }, 'could not build the heartbeat');
      }
    }
    const body = JSON.stringify(report);
    const headers: Record<string, string> = { 'content-type': 'application/json', 'user-agent': 'peerpull-daemon' };
    if (this.#opts.signer) headers[REPORT_SIGNATURE_HEADER] = this.#opts.signer.sign(body);
    const results = await Promise.all(
      this.#opts.seeds.map(async (seed) => {
        try {
          const res = await fetch(`${seed.replace(/\/+$/, '')}/api/v1/report`, { method: 'POST', headers, body, signal: AbortSignal.timeout(timeoutMs) });
          const text = await res.text().catch(() => '');
          return res.ok ? undefined : `${seed}: HTTP ${res.status} ${text.slice(0, 200)}`;
        } catch (err) {
          return `${seed}: ${(err as Error).message}`;
        }
      }),
    );
    const failures = results.filter((r): r is string => r !== undefined);
    const accepted = failures.length < this.#opts.seeds.length;
    if (report.heartbeat && accepted) this.#lastHeartbeat = Date.now();
    if (pulls.length) this.#opts.metrics.pullReports.inc({ outcome: accepted ? 'sent' : 'dropped' }, pulls.length);
    if (failures.length && !this.#failing) {
      this.#opts.logger.warn({ failures, droppedPulls: accepted ? 0 : pulls.length }, 'could not report pulls to the seed (pulls are unaffected; their records are dropped)');
    } else if (!failures.length && this.#failing) {
      this.#opts.logger.info('reporting pulls to the seed again');
    }
    this.#failing = failures.length > 0;
  }
}
