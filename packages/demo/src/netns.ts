// Network namespace plumbing shared by the emulated WAN (wan-link.ts) and the emulated cluster LAN
// (node-lan.ts): running `ip`/`tc` with a deadline, telling whether namespaces can be used here, and
// removing a namespace together with what runs in it.
import { spawnSync } from 'node:child_process';

/** Runs a command (10 s deadline); throws with its stderr when it fails. */
export function run(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 10_000 });
  if (r.error) throw new Error(`${cmd} ${args.join(' ')}: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: exit ${r.status}: ${r.stderr.trim()}`);
  return r.stdout;
}

/** Runs a command (10 s deadline); whether it succeeded. */
export function tryRun(cmd: string, args: string[]): boolean {
  return spawnSync(cmd, args, { stdio: 'ignore', timeout: 10_000 }).status === 0;
}

/** Why network namespaces cannot be used here, or undefined when they can. */
export function netnsUnavailable(): string | undefined {
  if (process.platform !== 'linux') return 'not Linux';
  if (process.getuid?.() !== 0) return 'not root';
  if (!tryRun('ip', ['netns', 'list'])) return '`ip netns` is not available';
  if (!tryRun('tc', ['-V'])) return '`tc` is not available';
  return undefined;
}

/** Every network namespace whose name starts with `prefix`. */
export function listNamespaces(prefix: string): string[] {
  const r = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8', timeout: 10_000 });
  if (r.status !== 0) return [];
  return r.stdout.split('\n').map((l) => l.split(' ')[0] ?? '').filter((n) => n.startsWith(prefix));
}

/** SIGKILLs what runs in the namespace and deletes it (its veth ends, and so their peers, go with it). */
export function removeNamespace(netns: string): void {
  const pids = spawnSync('ip', ['netns', 'pids', netns], { encoding: 'utf8', timeout: 10_000 }).stdout ?? '';
  for (const pid of pids.split('\n').map(Number).filter((p) => p > 0)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone
    }
  }
  tryRun('ip', ['netns', 'del', netns]);
}

export function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** A tbf qdisc at `bitsPerSecond` (the bucket holds at least one timer tick's worth and a GSO packet). */
export function tbfArgs(bitsPerSecond: number): string[] {
  const rate = Math.round(bitsPerSecond / 1000);
  const burstKbit = Math.max(256, Math.ceil(rate / 100));
  return ['tbf', 'rate', `${rate}kbit`, 'burst', `${burstKbit}kbit`, 'latency', '100ms'];
}

export function formatRate(bitsPerSecond: number): string {
  if (bitsPerSecond >= 1e9) return `${+(bitsPerSecond / 1e9).toFixed(2)} Gbit/s`;
  if (bitsPerSecond >= 1e6) return `${+(bitsPerSecond / 1e6).toFixed(2)} Mbit/s`;
  return `${+(bitsPerSecond / 1e3).toFixed(2)} kbit/s`;
}
