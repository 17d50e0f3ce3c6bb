// CPU time and peak memory of processes, from /proc (Linux).
import fs from 'node:fs';

const CLK_TCK = 100; // USER_HZ on Linux

/** utime + stime of a process in seconds; undefined once it is gone. */
export function cpuSeconds(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // fields[0] is field 3 (state): utime is field 14, stime field 15
    return (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
  } catch {
    return undefined;
  }
}

/** Peak resident set size (VmHWM) of a process in bytes; undefined once it is gone. */
export function peakRssBytes(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    const m = /^VmHWM:\s+(\d+) kB/m.exec(status);
    return m ? Number(m[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

/**
 * CPU used by a set of processes between start() and stop(), and their peak RSS (VmHWM, read at
 * stop() and whenever sample() is called, so a process killed in between keeps its last reading).
 */
export class ProcessMeter {
  readonly #start = new Map<number, number>();
  readonly #last = new Map<number, number>();
  readonly #peak = new Map<number, number>();
  #timer: NodeJS.Timeout | undefined;

  constructor(pids: (number | undefined)[]) {
    for (const pid of pids) {
      if (pid === undefined) continue;
      const cpu = cpuSeconds(pid);
      if (cpu !== undefined) this.#start.set(pid, cpu);
    }
    this.sample();
    this.#timer = setInterval(() => this.sample(), 200);
    this.#timer.unref();
  }

  sample(): void {
    for (const pid of this.#start.keys()) {
      const cpu = cpuSeconds(pid);
      if (cpu !== undefined) this.#last.set(pid, cpu);
      const rss = peakRssBytes(pid);
      if (rss !== undefined) this.#peak.set(pid, rss);
    }
  }

  /** Stops sampling; returns CPU-seconds used (summed) and the peak RSS of each process. */
  stop(): { cpuSeconds: number; peakRssBytes: number[] } {
    clearInterval(this.#timer);
    this.sample();
    let cpu = 0;
    for (const [pid, start] of this.#start) cpu += (this.#last.get(pid) ?? start) - start;
    return { cpuSeconds: cpu, peakRssBytes: [...this.#peak.values()] };
  }
}
