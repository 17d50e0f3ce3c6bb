import type { Logger, UpstreamRegistry } from '@peerpull/common';

export interface SourceHealthOptions {
  /** Connected P2P peers; undefined when P2P is off. */
  peers: (() => number) | undefined;
  /** Seed base URLs. */
  seeds: string[];
  upstreams: UpstreamRegistry[];
  logger: Logger;
  /** Deadline for one probe. */
  probeTimeoutMs?: number;
  /** How long a seed probe's answer is reused. */
  seedProbeMaxAgeMs?: number;
  /** How long an upstream probe's answer is reused. */
  upstreamProbeMaxAgeMs?: number;
}

export interface ProbeResult {
  reachable: boolean;
  error?: string;
  checkedAt: number;
  ms: number;
}

export interface SourcesReport {
  usable: boolean;
  /** Connected peers, or null when P2P is off. */
  peers: number | null;
  seeds: ({ url: string } & ProbeResult)[];
  upstreams: ({ registry: string } & ProbeResult)[];
}

interface ProbeState {
  last?: ProbeResult;
  pending?: Promise<ProbeResult>;
}

/**
 * Whether the daemon has anywhere to get content from: peers joined, or a seed answering,
 * or an upstream registry answering. With none of them a miss cannot be served, so the
 * daemon says it is not ready (and containerd's fallback, or the configure watchdog, sends
 * pulls to the registry directly). Probes run only when needed and in that order, so a
 * daemon with peers or a seed never probes the upstreams for readiness.
 */
export class SourceHealth {
  readonly #opts: Required<Omit<SourceHealthOptions, 'peers'>> & Pick<SourceHealthOptions, 'peers'>;
  readonly #seedProbes = new Map<string, ProbeState>();
  readonly #upstreamProbes = new Map<string, ProbeState>();
  #lastUsable: boolean | undefined;

  constructor(opts: SourceHealthOptions) {
    this.#opts = { probeTimeoutMs: 2_000, seedProbeMaxAgeMs: 2_000, upstreamProbeMaxAgeMs: 5_000, ...opts };
  }

  /** The readiness condition: undefined when some source is usable, else why not. */
  async problem(): Promise<string | undefined> {
    const peers = this.#opts.peers?.() ?? 0;
    if (peers > 0) return this.#transition(undefined);
    const seeds = await Promise.all(this.#opts.seeds.map((url) => this.#probeSeed(url)));
    if (seeds.some((s) => s.reachable)) return this.#transition(undefined);
    const upstreams = await Promise.all(this.#opts.upstreams.map((r) => this.#probeUpstream(r)));
    if (upstreams.some((u) => u.reachable)) return this.#transition(undefined);
    const parts = [this.#opts.peers ? 'no peer connected' : 'P2P off'];
    if (this.#opts.seeds.length) parts.push(`no seed reachable (${seeds.map((s, i) => `${this.#opts.seeds[i]}: ${s.error}`).join(', ')})`);
    parts.push(`no upstream reachable (${upstreams.map((u, i) => `${this.#opts.upstreams[i]?.host}: ${u.error}`).join(', ')})`);
    return this.#transition(`no source usable: ${parts.join('; ')}`);
  }

  /** Every source probed (answers younger than the max ages are reused): for `peerpull status`. */
  async report(): Promise<SourcesReport> {
    const [seeds, upstreams] = await Promise.all([
      Promise.all(this.#opts.seeds.map(async (url) => ({ url, ...(await this.#probeSeed(url)) }))),
      Promise.all(this.#opts.upstreams.map(async (r) => ({ registry: r.host, ...(await this.#probeUpstream(r)) }))),
    ]);
    const peers = this.#opts.peers ? this.#opts.peers() : null;
    return { usable: (peers ?? 0) > 0 || seeds.some((s) => s.reachable) || upstreams.some((u) => u.reachable), peers, seeds, upstreams };
  }

  #transition(problem: string | undefined): string | undefined {
    const usable = problem === undefined;
    if (this.#lastUsable !== undefined && usable !== this.#lastUsable) {
      if (usable) this.#opts.logger.info('a content source is usable again: ready');
      else this.#opts.logger.warn({ reason: problem }, 'no content source usable: not ready');
    }
    this.#lastUsable = usable;
    return problem;
  }

  #probeSeed(url: string): Promise<ProbeResult> {
    return this.#probe(this.#seedProbes, url, this.#opts.seedProbeMaxAgeMs, `${url.replace(/\/+$/, '')}/healthz`, (status) => status === 200);
  }

  #probeUpstream(registry: UpstreamRegistry): Promise<ProbeResult> {
    // Any HTTP answer means the registry is there: /v2/ is 401 without a token on most of them.
    return this.#probe(this.#upstreamProbes, registry.host, this.#opts.upstreamProbeMaxAgeMs, `${registry.endpoint.href.replace(/\/+$/, '')}/v2/`, () => true);
  }

  #probe(states: Map<string, ProbeState>, key: string, maxAgeMs: number, url: string, ok: (status: number) => boolean): Promise<ProbeResult> {
    let state = states.get(key);
    if (!state) states.set(key, (state = {}));
    if (state.last && Date.now() - state.last.checkedAt < maxAgeMs) return Promise.resolve(state.last);
    if (state.pending) return state.pending;
    const probeState = state;
    const started = performance.now();
    const pending = fetch(url, { method: 'GET', redirect: 'manual', signal: AbortSignal.timeout(this.#opts.probeTimeoutMs), headers: { 'user-agent': 'peerpull-daemon (health)' } })
      .then(async (res): Promise<ProbeResult> => {
        await res.body?.cancel().catch(() => undefined);
        const good = ok(res.status);
        return { reachable: good, ...(good ? {} : { error: `HTTP ${res.status}` }), checkedAt: Date.now(), ms: Math.round(performance.now() - started) };
      })
      .catch((err: Error): ProbeResult => ({ reachable: false, error: describe(err), checkedAt: Date.now(), ms: Math.round(performance.now() - started) }))
      .then((result) => {
        probeState.last = result;
        probeState.pending = undefined;
        return result;
      });
    probeState.pending = pending;
    return pending;
  }
}

function describe(err: Error): string {
  if (err.name === 'TimeoutError' || err.name === 'AbortError') return 'timed out';
  const cause = (err as { cause?: { code?: string; message?: string } }).cause;
  return cause?.code ?? cause?.message ?? err.message;
}
