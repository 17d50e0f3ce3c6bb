// A private containerd 1.6 (own root, state, sockets, certs.d) driven with ctr, for e2e tests and `peerpull demo --real`.
// Runs as root; the overlayfs snapshotter and unpack work on these machines.
import fs from 'node:fs';
import path from 'node:path';
import { makeTempDir, removeTempDir, run, spawnManaged, unmountUnder } from './processes.ts';
import type { ExitInfo, ManagedProcess } from './processes.ts';

export const CONTAINERD_BIN = '/usr/bin/containerd';
export const CTR_BIN = '/usr/bin/ctr';
/** ctr namespace used by pull/fetch/removeImage/images. (CRI uses 'k8s.io'.) */
export const CTR_NAMESPACE = 'test';

export interface StartContainerdOptions {
  /**
   * Registry host ('127.0.0.1:5001') -> mirror URLs ('http://127.0.0.1:5050'), tried in order before the
   * registry itself. A host with an empty list gets a hosts.toml that goes straight to http://<host>.
   * Registries not listed are reached directly (ctr --plain-http).
   */
  mirrors?: Record<string, string[]>;
  /** Also write certs.d/_default/hosts.toml with these mirror URLs (for every registry not listed). */
  defaultMirrors?: string[];
  /** containerd log level (default info). */
  logLevel?: 'info' | 'debug' | 'warn';
  logFile?: string;
  echo?: boolean;
  startTimeoutMs?: number;
}

export interface CtrResult {
  stdout: string;
  stderr: string;
}

export interface Containerd {
  /** Temp dir holding everything (config.toml, root/, state/, certs.d/, c.sock). */
  dir: string;
  /** gRPC unix socket path. */
  address: string;
  /** The certs.d dir (config_path, and what pull/fetch pass as --hosts-dir). */
  hostsDir: string;
  root: string;
  state: string;
  configPath: string;
  process: ManagedProcess;
  /** ctr -a SOCK -n <namespace, default 'test'> ARGS. */
  ctr(args: string[], opts?: { namespace?: string; timeoutMs?: number }): Promise<CtrResult>;
  /** ctr image pull --hosts-dir HOSTS --plain-http REF (fetch + unpack into overlayfs). */
  pull(ref: string, opts?: { platform?: string; allPlatforms?: boolean; timeoutMs?: number }): Promise<CtrResult>;
  /** ctr content fetch --hosts-dir HOSTS --plain-http REF (download only, no unpack). */
  fetch(ref: string, opts?: { platform?: string; allPlatforms?: boolean; timeoutMs?: number }): Promise<CtrResult>;
  /** ctr image rm --sync REF (ignores a missing image). Content is garbage-collected with it. */
  removeImage(ref: string): Promise<void>;
  /** Image names (ctr image ls -q). */
  images(): Promise<string[]>;
  /** (Re)writes certs.d/<host>/hosts.toml; containerd reads it on every pull. */
  setMirrors(host: string, mirrorUrls: string[]): void;
  stop(): Promise<ExitInfo>;
}

function tomlString(s: string): string {
  return JSON.stringify(s); // TOML basic strings use JSON-compatible escapes
}

/** The hosts.toml for `host` with the given mirrors (always at least one [host] table: 1.6 ignores files without). */
export function hostsToml(host: string, mirrorUrls: string[], server = `http://${host}`): string {
  const lines = [`server = ${tomlString(server)}`, ''];
  const hosts = mirrorUrls.length > 0 ? mirrorUrls : [server];
  for (const m of hosts) {
    lines.push(`[host.${tomlString(m)}]`, '  capabilities = ["pull", "resolve"]', '  skip_verify = true', '');
  }
  return lines.join('\n');
}

export function containerdConfig(dir: string, o: { logLevel?: string } = {}): string {
  const p = (s: string) => tomlString(path.join(dir, s));
  return `version = 2
root = ${p('root')}
state = ${p('state')}
oom_score = 0
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = ${p('c.sock')}

[ttrpc]
  address = ${p('c.sock.ttrpc')}

[debug]
  address = ""
  level = ${tomlString(o.logLevel ?? 'info')}

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = ${p('opt')}

[plugins."io.containerd.grpc.v1.cri"]
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = ${p('cni/bin')}
    conf_dir = ${p('cni/conf')}
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = ${p('certs.d')}
`;
}

export async function startContainerd(opts: StartContainerdOptions = {}): Promise<Containerd> {
  // short prefix: the socket path must stay well under the 108-byte sun_path limit
  const dir = makeTempDir('ppctd-');
  const address = path.join(dir, 'c.sock');
  if (Buffer.byteLength(address) >= 100) throw new Error(`containerd socket path too long: ${address}`);
  const hostsDir = path.join(dir, 'certs.d');
  const root = path.join(dir, 'root');
  const state = path.join(dir, 'state');
  for (const d of [hostsDir, root, state, path.join(dir, 'opt'), path.join(dir, 'cni/bin'), path.join(dir, 'cni/conf')]) {
    fs.mkdirSync(d, { recursive: true });
  }
  const configPath = path.join(dir, 'config.toml');
  fs.writeFileSync(configPath, containerdConfig(dir, { logLevel: opts.logLevel }));

  const setMirrors = (host: string, mirrorUrls: string[]) => {
    const d = path.join(hostsDir, host);
    fs.mkdirSync(d, { recursive: true });
    fs.writeFileSync(path.join(d, 'hosts.toml'), hostsToml(host, mirrorUrls));
  };
  for (const [host, mirrors] of Object.entries(opts.mirrors ?? {})) setMirrors(host, mirrors);
  if (opts.defaultMirrors && opts.defaultMirrors.length > 0) {
    const d = path.join(hostsDir, '_default');
    fs.mkdirSync(d, { recursive: true });
    const lines: string[] = [];
    for (const m of opts.defaultMirrors) lines.push(`[host.${tomlString(m)}]`, '  capabilities = ["pull", "resolve"]', '  skip_verify = true', '');
    fs.writeFileSync(path.join(d, 'hosts.toml'), lines.join('\n'));
  }

  const proc = spawnManaged(CONTAINERD_BIN, ['--config', configPath], {
    name: 'containerd',
    logFile: opts.logFile,
    echo: opts.echo,
  });

  const ctr = async (args: string[], o: { namespace?: string; timeoutMs?: number } = {}): Promise<CtrResult> => {
    const r = await run(CTR_BIN, ['-a', address, '-n', o.namespace ?? CTR_NAMESPACE, ...args], {
      timeoutMs: o.timeoutMs ?? 120_000,
    });
    return { stdout: r.stdout, stderr: r.stderr };
  };

  let stopped: Promise<ExitInfo> | undefined;
  const stop = (): Promise<ExitInfo> => {
    stopped ??= (async () => {
      const info = await proc.stop('SIGTERM', 10_000);
      unmountUnder(dir);
      removeTempDir(dir);
      return info;
    })();
    return stopped;
  };

  try {
    await proc.waitForLine(/containerd successfully booted/, opts.startTimeoutMs ?? 20_000);
    await ctr(['version'], { timeoutMs: 10_000 });
  } catch (e) {
    await stop();
    throw e;
  }

  const pullArgs = (o: { platform?: string; allPlatforms?: boolean }) => {
    const a = ['--hosts-dir', hostsDir, '--plain-http'];
    if (o.platform) a.push('--platform', o.platform);
    if (o.allPlatforms) a.push('--all-platforms');
    return a;
  };

  return {
    dir,
    address,
    hostsDir,
    root,
    state,
    configPath,
    process: proc,
    ctr,
    pull: (ref, o = {}) => ctr(['image', 'pull', ...pullArgs(o), ref], { timeoutMs: o.timeoutMs }),
    fetch: (ref, o = {}) => ctr(['content', 'fetch', ...pullArgs(o), ref], { timeoutMs: o.timeoutMs }),
    async removeImage(ref) {
      const r = await run(CTR_BIN, ['-a', address, '-n', CTR_NAMESPACE, 'image', 'rm', '--sync', ref], {
        timeoutMs: 60_000,
        allowFailure: true,
      });
      if (r.code !== 0 && !/not found/i.test(r.stderr)) {
        throw new Error(`ctr image rm ${ref}: failed (exit code ${r.code})\nstderr:\n${r.stderr.trim()}`);
      }
    },
    async images() {
      const r = await ctr(['image', 'ls', '-q']);
      return r.stdout.split('\n').map((s) => s.trim()).filter((s) => s !== '');
    },
    setMirrors,
    stop,
  };
}
