// Where a P2P burst's time went, read from the daemons' `blob stored` log lines (each carries the
// fetch's attempts: source, outcome, what it said, milliseconds). Per blob fetch: where the bytes came
// from (seed, or which peer, and whether the seed named it or the DHT found it), the depth of that
// peer in the tree (seed recipients are depth 1), and the time spent before the source that served it
// answered (lookups that found nobody, busy answers, pauses).
import fs from 'node:fs';

export interface BurstTrace {
  /** Blob fetches (node × blob) read from the logs. */
  fetches: number;
  /** How many fetches were served at each depth (1 = from the seed, 2 = from a seed recipient, ...). */
  depths: Record<number, number>;
  /** Fetches served by a peer the seed named in a busy answer / found by a DHT lookup. */
  fromNamed: number;
  fromLookup: number;
  /** Median and max ms from a fetch's start until the source that served it was asked (time lost before bytes could flow). */
  waitMsP50: number;
  waitMsMax: number;
  /** Attempts that were busy answers / lookups that found nobody. */
  busyAnswers: number;
  emptyLookups: number;
}

interface Attempt {
  source: string;
  outcome: string;
  detail?: string;
  ms: number;
}

/** Reads the daemons' logs after a burst; undefined when no daemon logged a traced fetch. */
export function readBurstTrace(daemons: { name: string; logFile: string }[]): BurstTrace | undefined {
  const names = new Map<string, string>(); // short peer id → node name
  const served = new Map<string, { from: string; how: string; waitMs: number }>(); // `${node} ${digest}`
  let busyAnswers = 0;
  let emptyLookups = 0;
  for (const d of daemons) {
    let text = '';
    try {
      text = fs.readFileSync(d.logFile, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n')) {
      if (!line.startsWith('{')) continue;
      let entry: { msg?: string; peerId?: string; digest?: string; attempts?: Attempt[] };
      try {
        entry = JSON.parse(line);
      } catch {
        continue;
      }
      if (entry.msg === 'p2p node started' && entry.peerId) names.set(shortPeer(entry.peerId), d.name);
      if (entry.msg !== 'blob stored' || !entry.attempts || !entry.digest) continue;
      const attempts = entry.attempts;
      const ok = attempts.findLastIndex((a) => a.outcome === 'ok');
      if (ok < 0) continue;
      for (const a of attempts) {
        if (a.outcome === 'busy') busyAnswers++;
        if (a.detail?.startsWith('no provider found')) emptyLookups++;
      }
      const waitMs = attempts.slice(0, ok).reduce((sum, a) => sum + a.ms, 0);
      const winner = attempts[ok] as Attempt;
      const peer = /from peer (\S+) \(([^)]*)\)/.exec(winner.detail ?? '');
      served.set(`${d.name} ${entry.digest}`, {
        from: peer ? (peer[1] as string) : winner.source,
        how: peer ? (peer[2]?.includes('named by the seed') ? 'named' : 'lookup') : '',
        waitMs,
      });
    }
  }
  if (served.size === 0) return undefined;
  const depthOf = (key: string, seen: Set<string>): number | undefined => {
    const s = served.get(key);
    if (!s) return undefined;
    if (s.from === 'seed' || s.from === 'upstream') return 1;
    if (seen.has(key)) return undefined;
    seen.add(key);
    const [, digest] = key.split(' ');
    const parent = names.get(s.from);
    const up = parent ? depthOf(`${parent} ${digest}`, seen) : undefined;
    return up === undefined ? undefined : up + 1;
  };
  const depths: Record<number, number> = {};
  let fromNamed = 0;
  let fromLookup = 0;
  for (const [key, s] of served) {
    const depth = depthOf(key, new Set());
    if (depth !== undefined) depths[depth] = (depths[depth] ?? 0) + 1;
    if (s.how === 'named') fromNamed++;
    if (s.how === 'lookup') fromLookup++;
  }
  const waits = [...served.values()].map((s) => s.waitMs).sort((a, b) => a - b);
  return {
    fetches: served.size,
    depths,
    fromNamed,
    fromLookup,
    waitMsP50: waits[Math.floor((waits.length - 1) / 2)] ?? 0,
    waitMsMax: waits.at(-1) ?? 0,
    busyAnswers,
    emptyLookups,
  };
}

/** One line for the benchmark's notes. */
export function describeBurstTrace(t: BurstTrace): string {
  const depths = Object.entries(t.depths).map(([depth, n]) => `d${depth}:${n}`).join(' ');
  return `peer tree (node×blob fetches by depth, 1 = from the seed) ${depths}; from peers named by the seed ${t.fromNamed}, found by lookup ${t.fromLookup}; ` +
    `wait before the serving source was asked p50 ${t.waitMsP50} ms, max ${t.waitMsMax} ms; ${t.busyAnswers} busy answers, ${t.emptyLookups} lookups found nobody`;
}

/** As the daemon shortens peer ids in its notes (`shortPeer` in peer-blob-source.ts). */
function shortPeer(id: string): string {
  return id.length > 16 ? `${id.slice(0, 8)}…${id.slice(-6)}` : id;
}
