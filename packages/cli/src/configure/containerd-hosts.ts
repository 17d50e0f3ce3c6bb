import { lstatSync, mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { parse as parseToml, stringify as stringifyToml } from 'smol-toml';
import { readRegularFile } from './atomic-file.ts';
import { ManagedFiles, STATE_DIR, type RestoreResult, type WriteResult } from './managed-files.ts';
import { mirrorText, type RegistryTarget } from './registry-targets.ts';

export const DEFAULT_CERTS_DIR = '/etc/containerd/certs.d';
const HOSTS_FILE = 'hosts.toml';

export interface ContainerdMirrorConfig {
  /** containerd's `config_path` (certs.d). */
  certsDir: string;
  targets: RegistryTarget[];
  mirror: URL;
  /** containerd's `dial_timeout` for the mirror: a dead mirror costs at most this per pull. */
  dialTimeoutMs: number;
  force: boolean;
}

export interface FileChange {
  path: string;
  result: WriteResult | RestoreResult;
}

const HEADER = `# Written by \`peerpull configure containerd\`: containerd tries the peerpull mirror first and
# falls back to the next host, then to \`server\` (the upstream), when the mirror is down or
# answers 404. \`peerpull configure containerd --remove\` puts back what was here before
# (a copy is kept in ../${STATE_DIR}/).
`;

/**
 * The hosts.toml for one registry: the mirror first (pull + resolve only, short dial
 * timeout), then the hosts the original file listed, then the original's `server` (or the
 * upstream). Root-level settings of the original (ca, client, header, ...) are kept. Always
 * has a `[host]` table: containerd 1.6 ignores a hosts.toml without one.
 */
export function hostsToml(target: RegistryTarget, mirror: URL, dialTimeoutMs: number, original?: Buffer): string {
  const base = original ? parseHostsToml(original, target.host) : {};
  const { host: theirHosts, server, ...rootSettings } = base;
  const mirrorKey = mirrorText(mirror);
  const hosts: Record<string, unknown> = {
    [mirrorKey]: { capabilities: ['pull', 'resolve'], dial_timeout: `${dialTimeoutMs}ms` },
  };
  for (const [url, settings] of Object.entries(theirHosts ?? {})) {
    if (url.replace(/\/+$/, '') !== mirrorKey) hosts[url] = settings;
  }
  const upstream = server ?? target.upstream;
  return HEADER + '\n' + stringifyToml({ ...(upstream ? { server: upstream } : {}), ...rootSettings, host: hosts });
}

interface HostsFile {
  server?: string;
  host?: Record<string, unknown>;
  [key: string]: unknown;
}

/** Parses a hosts.toml and checks the shape containerd expects; throws a message naming the file. */
export function parseHostsToml(data: Buffer, label: string): HostsFile {
  let doc: Record<string, unknown>;
  try {
    doc = parseToml(data.toString('utf8')) as Record<string, unknown>;
  } catch (err) {
    throw new Error(`${label}/${HOSTS_FILE} is not valid TOML: ${(err as Error).message.split('\n')[0]}`);
  }
  if (doc.server !== undefined && typeof doc.server !== 'string') throw new Error(`${label}/${HOSTS_FILE}: "server" is not a string`);
  const hosts = doc.host;
  if (hosts !== undefined && (typeof hosts !== 'object' || hosts === null || Array.isArray(hosts) || Object.values(hosts).some((h) => typeof h !== 'object' || h === null || Array.isArray(h)))) {
    throw new Error(`${label}/${HOSTS_FILE}: "host" is not a table of [host."<url>"] tables`);
  }
  return doc as HostsFile;
}

// certs.d/<host[:port]>, certs.d/[v6]:port, certs.d/_default
const HOST_DIR = /^(?:_default|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?(?::\d{1,5})?|\[[0-9a-fA-F:.]+\](?::\d{1,5})?)$/;

/**
 * What in certs.d does not look like containerd's hosts directory (so peerpull should not
 * write into it without --force): entries that are not `<registry host>/` directories, and
 * hosts.toml files of the registries to configure that peerpull cannot parse and merge.
 */
export function certsDirProblems(certsDir: string, targets: RegistryTarget[], files: { isManaged(rel: string): boolean } | undefined): string[] {
  let st;
  try {
    st = lstatSync(certsDir);
  } catch {
    return [];
  }
  if (!st.isDirectory()) return [`${certsDir} is not a directory`];
  const problems: string[] = [];
  for (const entry of readdirSync(certsDir, { withFileTypes: true })) {
    if (entry.name === STATE_DIR) continue;
    if (!entry.isDirectory() || !HOST_DIR.test(entry.name)) {
      problems.push(`${join(certsDir, entry.name)} is not a <registry host>/ directory`);
    }
  }
  for (const target of targets) {
    const rel = `${target.host}/${HOSTS_FILE}`;
    if (files?.isManaged(rel)) continue;
    try {
      const file = readRegularFile(join(certsDir, rel));
      if (file) parseHostsToml(file.data, join(certsDir, target.host));
    } catch (err) {
      problems.push((err as Error).message);
    }
  }
  return problems;
}

/**
 * Points containerd at the mirror for every target registry (one hosts.toml each), and puts
 * back the files of registries no longer listed. Idempotent.
 */
export async function applyContainerdMirrors(config: ContainerdMirrorConfig): Promise<FileChange[]> {
  mkdirSync(config.certsDir, { recursive: true, mode: 0o755 });
  return ManagedFiles.withLock(config.certsDir, { force: config.force }, (files) => {
    const problems = certsDirProblems(config.certsDir, config.targets, files);
    if (problems.length > 0 && !config.force) {
      throw new Error(
        `refusing to write into ${config.certsDir}, which does not look like containerd's hosts directory (config_path):\n` +
          problems.map((p) => `  - ${p}`).join('\n') +
          '\nFix the path (--config-path) or the files, or use --force (the files are backed up and restored by --remove).',
      );
    }
    const changes: FileChange[] = [];
    const wanted = new Set(config.targets.map((t) => `${t.host}/${HOSTS_FILE}`));
    for (const target of config.targets) {
      const rel = `${target.host}/${HOSTS_FILE}`;
      const result = files.write(rel, (original) => {
        // --force over a file peerpull cannot parse: replace it (it is backed up), do not merge.
        const mergeable = original && (config.force ? safeParse(original, target.host) : true);
        return hostsToml(target, config.mirror, config.dialTimeoutMs, mergeable ? original : undefined);
      });
      changes.push({ path: join(config.certsDir, rel), result });
    }
    for (const rel of files.managed()) {
      if (!wanted.has(rel)) changes.push({ path: join(config.certsDir, rel), result: files.restore(rel) });
    }
    return changes;
  });
}

/** Puts back every file peerpull wrote in certs.d, byte for byte. */
export async function removeContainerdMirrors(config: { certsDir: string; force: boolean }): Promise<FileChange[]> {
  if (!lstatSafe(config.certsDir)) return [];
  return ManagedFiles.withLock(config.certsDir, { force: config.force }, (files) =>
    files.managed().map((rel) => ({ path: join(config.certsDir, rel), result: files.restore(rel) })),
  );
}

function safeParse(data: Buffer, label: string): boolean {
  try {
    parseHostsToml(data, label);
    return true;
  } catch {
    return false;
  }
}

function lstatSafe(path: string): boolean {
  try {
    lstatSync(path);
    return true;
  } catch {
    return false;
  }
}
