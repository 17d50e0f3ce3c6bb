import { lstatSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseRegistryEntry } from '@peerpull/common/registry-allowlist';
import { parse as parseToml, stringify as stringifyToml } from 'smol-toml';
import type { FileChange } from './containerd-hosts.ts';
import { ManagedFiles, STATE_DIR } from './managed-files.ts';
import { DEFAULT_TARGET, type RegistryTarget } from './registry-targets.ts';

export const DEFAULT_CRIO_DROP_IN_DIR = '/etc/containers/registries.conf.d';
export const DEFAULT_REGISTRIES_CONF = '/etc/containers/registries.conf';
/** Drop-ins are read in lexical order and a later [[registry]] with the same prefix replaces an earlier one. */
export const CRIO_DROP_IN = '90-peerpull.conf';

const HEADER = `# Written by \`peerpull configure crio\`: CRI-O (containers/image) tries the peerpull mirror first
# and falls back to the registry itself. The mirror location carries the registry in its path
# (CRI-O sends no ?ns=). Reload CRI-O to apply (systemctl reload crio).
# \`peerpull configure crio --remove\` puts back what was here before.
`;

export interface CrioMirrorConfig {
  dropInDir: string;
  /** The main registries.conf, read (never written) to keep its settings for the mirrored registries. */
  registriesConf: string;
  targets: RegistryTarget[];
  mirror: URL;
  force: boolean;
}

interface RegistryTable {
  prefix?: string;
  location?: string;
  insecure?: boolean;
  blocked?: boolean;
  'mirror-by-digest-only'?: boolean;
  mirror?: { location?: string; insecure?: boolean }[];
  [key: string]: unknown;
}

/**
 * The drop-in: one [[registry]] per target with the mirror (`<mirror host>/<registry>`) as
 * its first [[registry.mirror]]. When registries.conf or another drop-in already has an
 * entry for the registry, its settings and mirrors are carried over (ours replaces it).
 * Registries with a port cannot be a path segment, and CRI-O has no catch-all entry: those
 * are returned as `skipped`.
 */
export function crioDropIn(config: Pick<CrioMirrorConfig, 'targets' | 'mirror'>, existing: Map<string, RegistryTable>): { text: string; skipped: string[] } {
  const mirrorBase = `${config.mirror.host}${config.mirror.pathname.replace(/\/+$/, '')}`;
  const registries: RegistryTable[] = [];
  const skipped: string[] = [];
  for (const target of config.targets) {
    if (target.host === DEFAULT_TARGET || target.host.includes(':')) {
      skipped.push(target.host);
      continue;
    }
    const theirs = existing.get(target.host);
    const ours = { location: `${mirrorBase}/${target.host}`, insecure: config.mirror.protocol === 'http:' };
    const upstream = target.upstream ? new URL(target.upstream) : undefined;
    const isDefaultUpstream = !upstream || upstream.href === parseRegistryEntry(target.host).endpoint.href;
    const entry: RegistryTable = { ...theirs, prefix: target.host, location: theirs?.location ?? (isDefaultUpstream ? target.host : `${upstream.host}${upstream.pathname.replace(/\/+$/, '')}`) };
    if (!theirs && upstream?.protocol === 'http:') entry.insecure = true;
    entry.mirror = [ours, ...(theirs?.mirror ?? []).filter((m) => m.location !== ours.location)];
    registries.push(entry);
  }
  return { text: HEADER + '\n' + stringifyToml({ registry: registries }), skipped };
}

/** The [[registry]] entries CRI-O has now, by prefix (registries.conf, then the other drop-ins in order). */
export function existingRegistries(config: Pick<CrioMirrorConfig, 'dropInDir' | 'registriesConf'>): { byPrefix: Map<string, RegistryTable>; warnings: string[] } {
  const byPrefix = new Map<string, RegistryTable>();
  const warnings: string[] = [];
  const files = [config.registriesConf, ...listDropIns(config.dropInDir).filter((f) => f !== CRIO_DROP_IN).map((f) => join(config.dropInDir, f))];
  for (const file of files) {
    let doc: Record<string, unknown>;
    try {
      doc = parseToml(readFileSync(file, 'utf8')) as Record<string, unknown>;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') warnings.push(`${file}: not read (${(err as Error).message.split('\n')[0]})`);
      continue;
    }
    for (const reg of Array.isArray(doc.registry) ? (doc.registry as RegistryTable[]) : []) {
      const key = reg.prefix ?? reg.location;
      if (typeof key === 'string') byPrefix.set(key, reg);
    }
  }
  return { byPrefix, warnings };
}

function listDropIns(dir: string): string[] {
  try {
    return readdirSync(dir).filter((f) => f.endsWith('.conf')).sort();
  } catch {
    return [];
  }
}

/** Entries of the drop-in directory that are not `*.conf` files. */
function dropInDirProblems(dir: string): string[] {
  let st;
  try {
    st = lstatSync(dir);
  } catch {
    return [];
  }
  if (!st.isDirectory()) return [`${dir} is not a directory`];
  return readdirSync(dir, { withFileTypes: true })
    .filter((e) => e.name !== STATE_DIR && !(e.isFile() && e.name.endsWith('.conf')))
    .map((e) => `${join(dir, e.name)} is not a *.conf file`);
}

export async function applyCrioMirrors(config: CrioMirrorConfig): Promise<{ changes: FileChange[]; warnings: string[] }> {
  const problems = dropInDirProblems(config.dropInDir);
  if (problems.length > 0 && !config.force) {
    throw new Error(
      `refusing to write into ${config.dropInDir}, which does not look like a registries.conf.d directory:\n` +
        problems.map((p) => `  - ${p}`).join('\n') +
        '\nFix the path (--config-path) or use --force.',
    );
  }
  const { byPrefix, warnings } = existingRegistries(config);
  const { text, skipped } = crioDropIn(config, byPrefix);
  for (const host of skipped) {
    warnings.push(
      host === DEFAULT_TARGET
        ? 'CRI-O has no catch-all registry entry: _default is skipped (list the registries instead)'
        : `${host}: a registry with a port cannot be named in a mirror path; skipped`,
    );
  }
  const changes = await ManagedFiles.withLock(config.dropInDir, { force: config.force }, (files) => [
    { path: join(config.dropInDir, CRIO_DROP_IN), result: files.write(CRIO_DROP_IN, () => text) },
  ]);
  return { changes, warnings };
}

export async function removeCrioMirrors(config: { dropInDir: string; force: boolean }): Promise<FileChange[]> {
  return ManagedFiles.withLock(config.dropInDir, { force: config.force }, (files) =>
    files.isManaged(CRIO_DROP_IN) ? [{ path: join(config.dropInDir, CRIO_DROP_IN), result: files.restore(CRIO_DROP_IN) }] : [],
  );
}
