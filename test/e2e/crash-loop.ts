// The kill -9 scenario, shared by hardening-faults.test.ts (a few rounds, in CI) and
// test/bench/kill9.bench.ts (50 rounds, the count): 20 clients pull images through one daemon while
// the upstream is throttled so transfers take a while; the daemon is killed with SIGKILL at a seeded random
// moment; then every file under blobs/ must hash to its name, tmp/ must be emptied by the restart, the
// daemon's own `cache verify` (when its admin API has it) must find nothing bad, and the same 20 pulls must
// all complete with the right bytes.
import fs from 'node:fs';
import path from 'node:path';
import { startRegistry, type Registry } from '../fixtures/registry.ts';
import { startPeerpull, type DaemonProcess } from '../fixtures/daemon.ts';
import { getImageLayout, pushImage, type BuiltImage } from '../fixtures/images.ts';
import { FaultProxy } from '../fixtures/fault-proxy.ts';
import { corruptStoredBlobs, download, MiB, tmpFiles } from './mirror-helpers.ts';
import { seededRandom, storedBlobs } from './hardening-helpers.ts';

export interface CrashLoopOptions {
  rounds: number;
  clients?: number;
  seed?: number;
  /** Upstream bytes per second per response (makes kills land mid-transfer). */
  throttleBytesPerSecond?: number;
  log?: (line: string) => void;
}

export interface CrashRound {
  round: number;
  killAfterMs: number;
  /** Pulls that had completed when the kill came. */
  completedBeforeKill: number;
  /** Files under blobs/ right after the kill, and how many of them did not hash to their name. */
  storedAfterKill: number;
  corruptAfterKill: string[];
  /** Files left in tmp/ by the kill (partial downloads), and after the restart. */
  tmpAfterKill: number;
  tmpAfterRestart: number;
  /** `cache verify` after the restart: bad blobs (undefined when the daemon has no such API). */
  verifyBad: number | undefined;
  /** The retried pulls: how many completed with the right bytes. */
  retryOk: number;
  retryFailures: string[];
}

export interface CrashLoopResult {
  rounds: CrashRound[];
  kills: number;
}

const IMAGES = 4;
const LAYERS = [700_000, 1_100_000, 1_500_000, 1_900_000, 2_300_000];
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';

/** One client's pull: manifest by tag, then config and layers (three at a time, like the CRI), verifying every digest. */
async function pull(daemon: DaemonProcess, image: BuiltImage, repo: string): Promise<string | undefined> {
  const m = image.manifests[0]!;
  try {
    const manifest = await download(`${daemon.url}/v2/library/${repo}/manifests/v1`, { headers: { accept: OCI_MANIFEST }, timeoutMs: 60_000 });
    if (manifest.status !== 200 || manifest.aborted || manifest.digest !== image.manifestDigest) return `manifest: ${manifest.status}${manifest.aborted ? ' aborted' : ''}`;
    const blobs = [m.configDigest, ...m.layers.map((l) => l.digest)];
    let next = 0;
    let failure: string | undefined;
    await Promise.all(
      Array.from({ length: 3 }, async () => {
        while (next < blobs.length && !failure) {
          const digest = blobs[next++]!;
          const res = await download(`${daemon.url}/v2/library/${repo}/blobs/${digest}`, { timeoutMs: 60_000 });
          if (res.status !== 200 || res.aborted || res.digest !== digest) failure = `blob ${digest.slice(7, 19)}: ${res.status}${res.aborted ? ' aborted' : ''}`;
        }
      }),
    );
    return failure;
  } catch (err) {
    return (err as Error).message;
  }
}

export class CrashLoop {
  reg!: Registry;
  upstream!: FaultProxy;
  daemon!: DaemonProcess;
  images: BuiltImage[] = [];
  readonly #opts: Required<CrashLoopOptions>;

  constructor(opts: CrashLoopOptions) {
    this.#opts = { clients: 20, seed: 9, throttleBytesPerSecond: 3 * MiB, log: () => undefined, ...opts };
  }

  async setup(): Promise<void> {
    this.reg = await startRegistry();
    this.images = await Promise.all(Array.from({ length: IMAGES }, (_, i) => getImageLayout({ name: `hardening-crash-${i}`, layers: LAYERS.map((s) => s + i) })));
    await Promise.all(this.images.map((img, i) => pushImage(img, `${this.reg.host}/library/crash${i}:v1`)));
    this.upstream = await FaultProxy.start(this.reg.url);
    this.upstream.throttleBytesPerSecond = this.#opts.throttleBytesPerSecond;
    this.daemon = await startPeerpull({ registries: [`${this.upstream.host}=${this.upstream.url}`], extraArgs: ['--upstream-timeout', '5s', '--upstream-idle-timeout', '5s'] });
  }

  async teardown(): Promise<void> {
    await this.daemon?.stop();
    await this.upstream?.close();
    await this.reg?.stop();
  }

  #pulls(onSuccess: () => void = () => undefined): Promise<(string | undefined)[]> {
    return Promise.all(
      Array.from({ length: this.#opts.clients }, async (_, i) => {
        const failure = await pull(this.daemon, this.images[i % IMAGES]!, `crash${i % IMAGES}`);
        if (failure === undefined) onSuccess();
        return failure;
      }),
    );
  }

  async #verifyViaApi(): Promise<number | undefined> {
    try {
      const res = await fetch(`${this.daemon.url}/api/v1/cache/verify`, { method: 'POST' });
      if (res.status !== 200) return undefined;
      const events = (await res.text()).trim().split('\n').map((l) => JSON.parse(l) as { type: string; bad?: number });
      return events.find((e) => e.type === 'done')?.bad;
    } catch {
      return undefined;
    }
  }

  async run(): Promise<CrashLoopResult> {
    const random = seededRandom(this.#opts.seed);
    const rounds: CrashRound[] = [];
    let kills = 0;
    for (let round = 1; round <= this.#opts.rounds; round++) {
      const killAfterMs = Math.round(100 + random() * 2_400);
      let completed = 0;
      const pulls = this.#pulls(() => completed++);
      await new Promise((r) => setTimeout(r, killAfterMs));
      const completedAtKill = completed;
      await this.daemon.kill9();
      kills++;
      await pulls; // every client ends (connection reset) once the process is gone
      const dataDir = this.daemon.dataDir;
      const storedAfterKill = storedBlobs(dataDir).length;
      const corruptAfterKill = corruptStoredBlobs(dataDir);
      const tmpAfterKill = tmpFiles(dataDir).length;
      await this.daemon.restart();
      const tmpAfterRestart = tmpFiles(dataDir).length;
      const verifyBad = await this.#verifyViaApi();
      const retry = await this.#pulls();
      const failures = retry.filter((r): r is string => r !== undefined);
      const result: CrashRound = {
        round,
        killAfterMs,
        completedBeforeKill: completedAtKill,
        storedAfterKill,
        corruptAfterKill,
        tmpAfterKill,
        tmpAfterRestart,
        verifyBad,
        retryOk: retry.length - failures.length,
        retryFailures: failures.slice(0, 5),
      };
      rounds.push(result);
      this.#opts.log(
        `round ${round}/${this.#opts.rounds}: kill -9 after ${killAfterMs} ms (${completedAtKill}/${this.#opts.clients} pulls done, ${storedAfterKill} blobs stored, ${corruptAfterKill.length} corrupt, ${tmpAfterKill} partial in tmp/); ` +
          `restart: tmp/ ${tmpAfterRestart}, verify bad ${verifyBad ?? 'n/a'}; retried pulls ${result.retryOk}/${retry.length} ok`,
      );
      // Next round starts cold again: a second kill (now at rest), and the blobs removed while the daemon is
      // down (the metadata stays: start-up must drop the records of files that are gone).
      await this.daemon.kill9();
      kills++;
      fs.rmSync(path.join(dataDir, 'blobs'), { recursive: true, force: true });
      await this.daemon.restart();
    }
    return { rounds, kills };
  }
}
