// The fail-open watchdog's loop, on its own thread: it keeps probing (and can take the
// mirror entries away) even when the daemon's event loop is stuck.
import { parentPort, workerData } from 'node:worker_threads';
import { applyContainerdMirrors, removeContainerdMirrors } from './containerd-hosts.ts';
import type { WatchdogConfig, WatchdogMessage } from './watchdog.ts';

const config = workerData as WatchdogConfig;
const port = parentPort;
if (!port) throw new Error('watchdog-worker.ts runs as a worker thread');

/** Whether the entries are in place: unknown until the first probe decides. */
let applied: boolean | undefined;
let stopping = false;
let lastError = '';
let timer: NodeJS.Timeout | undefined;
let running: Promise<void> = Promise.resolve();

function send(message: WatchdogMessage): void {
  port?.postMessage(message);
}

async function probe(): Promise<string | undefined> {
  try {
    const res = await fetch(config.probeUrl, { signal: AbortSignal.timeout(config.probeTimeoutMs) });
    const body = await res.text();
    return res.ok ? undefined : `readiness ${res.status}: ${body.slice(0, 200)}`;
  } catch (err) {
    return `readiness probe failed: ${(err as Error).message}`;
  }
}

async function apply(): Promise<void> {
  await applyContainerdMirrors({
    certsDir: config.certsDir,
    targets: config.targets,
    mirror: new URL(config.mirror),
    dialTimeoutMs: config.dialTimeoutMs,
    force: false,
  });
}

async function remove(): Promise<void> {
  await removeContainerdMirrors({ certsDir: config.certsDir, force: false });
}

async function tick(): Promise<void> {
  const problem = await probe();
  if (stopping) return;
  try {
    if (!problem && applied !== true) {
      await apply();
      applied = true;
      lastError = '';
      send({ type: 'log', level: 'info', msg: 'containerd mirror entries written', fields: { certsDir: config.certsDir, registries: config.targets.map((t) => t.host) } });
    } else if (problem && applied !== false) {
      await remove();
      applied = false;
      lastError = '';
      send({ type: 'log', level: 'warn', msg: 'daemon not ready: containerd mirror entries removed (pulls go to the upstream)', fields: { reason: problem } });
    }
  } catch (err) {
    const message = (err as Error).message;
    if (message !== lastError) send({ type: 'log', level: 'error', msg: 'cannot update the containerd mirror entries', fields: { err: message } });
    lastError = message;
  }
}

function schedule(): void {
  timer = setTimeout(() => {
    running = tick().finally(() => {
      if (!stopping) schedule();
    });
  }, config.intervalMs);
}

port.on('message', (message: { type: 'stop' }) => {
  if (message.type !== 'stop') return;
  stopping = true;
  clearTimeout(timer);
  void running
    .then(remove)
    .then(
      () => send({ type: 'log', level: 'info', msg: 'stopping: containerd mirror entries removed', fields: {} }),
      (err: Error) => send({ type: 'log', level: 'error', msg: 'stopping: cannot remove the containerd mirror entries', fields: { err: err.message } }),
    )
    .finally(() => send({ type: 'stopped' }));
});

running = tick().finally(() => {
  if (!stopping) schedule();
});
