/** One warning or error the process logged. */
export interface Problem {
  time: string;
  level: 'warn' | 'error' | 'fatal';
  msg: string;
  /** The `err` field of the log line, when it had one. */
  err?: string;
}

/**
 * The last warnings and errors this process logged, newest last, for `peerpull status` and the
 * seed's dashboard ("last errors"). Fed by the logger (see createLogger); bounded.
 */
export class RecentProblems {
  readonly #max: number;
  readonly #items: Problem[] = [];

  constructor(max = 50) {
    this.#max = max;
  }

  record(level: number, args: unknown[]): void {
    const [first, second] = args;
    let msg = '';
    let err: string | undefined;
    if (typeof first === 'string') msg = first;
    else {
      if (typeof second === 'string') msg = second;
      if (first instanceof Error) err = first.message;
      else if (first && typeof first === 'object') {
        const e = (first as { err?: unknown }).err;
        if (typeof e === 'string') err = e;
        else if (e instanceof Error) err = e.message;
      }
    }
    const problem: Problem = { time: new Date().toISOString(), level: level >= 60 ? 'fatal' : level >= 50 ? 'error' : 'warn', msg };
    if (err) problem.err = err.slice(0, 500);
    this.#items.push(problem);
    if (this.#items.length > this.#max) this.#items.splice(0, this.#items.length - this.#max);
  }

  /** The newest `n`, newest last. */
  latest(n = this.#max): Problem[] {
    return this.#items.slice(-n);
  }
}

/** The process-wide record every logger made by createLogger feeds. */
export const recentProblems = new RecentProblems();
