import { globSync, readFileSync } from 'node:fs';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { parse as parseToml } from 'smol-toml';

export const DEFAULT_CONTAINERD_CONFIG = '/etc/containerd/config.toml';

export interface ConfigCheck {
  ok: boolean;
  /** What was found, and when not ok, exactly what to change. */
  message: string;
}

/** Where each config layout keeps the registry settings (`version` in config.toml). */
const LAYOUTS = {
  1: { section: ['plugins', 'cri', 'registry'], header: '[plugins.cri.registry]', defaultPath: '', containerd: 'containerd 1.x (config version 1)' },
  2: { section: ['plugins', 'io.containerd.grpc.v1.cri', 'registry'], header: '[plugins."io.containerd.grpc.v1.cri".registry]', defaultPath: '', containerd: 'containerd 1.x (config version 2)' },
  3: {
    section: ['plugins', 'io.containerd.cri.v1.images', 'registry'],
    header: '[plugins."io.containerd.cri.v1.images".registry]',
    defaultPath: '/etc/containerd/certs.d:/etc/docker/certs.d',
    containerd: 'containerd 2.x (config version 3)',
  },
} as const;

/**
 * Checks that containerd's CRI plugin reads hosts.toml files from `certsDir`: its
 * `config_path` (a `:`-separated list) must include it, and the deprecated `mirrors` must
 * not be set next to it (containerd refuses to start with both). Reads `imports` too.
 */
export function checkContainerdConfig(configFile: string, certsDir: string): ConfigCheck {
  const want = resolve(certsDir);
  let text: string;
  try {
    text = readFileSync(configFile, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') return { ok: false, message: `cannot read ${configFile}: ${(err as Error).message}` };
    return {
      ok: false,
      message:
        `${configFile} does not exist. containerd 2.x then reads /etc/containerd/certs.d by default; containerd 1.x ` +
        `does not read hosts.toml files at all until config_path is set. For 1.x, create the file with:\n\n` +
        `  version = 2\n  ${LAYOUTS[2].header}\n    config_path = ${JSON.stringify(want)}\n\n` +
        `and restart containerd (systemctl restart containerd).`,
    };
  }
  let doc: Record<string, unknown>;
  try {
    doc = parseToml(text) as Record<string, unknown>;
  } catch (err) {
    return { ok: false, message: `${configFile} is not valid TOML: ${(err as Error).message.split('\n')[0]}` };
  }
  const version = doc.version === undefined ? 1 : doc.version;
  if (version !== 1 && version !== 2 && version !== 3) return { ok: false, message: `${configFile}: unknown config version ${String(version)}` };
  const layout = LAYOUTS[version];

  // The main file, then each import (later files override earlier ones, as containerd merges them).
  let configPath: string | undefined;
  let mirrorsIn: string | undefined;
  let foundIn = configFile;
  for (const [file, d] of [[configFile, doc] as const, ...readImports(configFile, doc)]) {
    const registry = dig(d, layout.section);
    if (typeof registry?.config_path === 'string') {
      configPath = registry.config_path;
      foundIn = file;
    }
    if (registry?.mirrors && typeof registry.mirrors === 'object' && Object.keys(registry.mirrors).length > 0) mirrorsIn = file;
  }
  const effective = configPath ?? layout.defaultPath;
  const roots = effective.split(':').filter(Boolean).map((p) => resolve(p));
  const fix = `in ${foundIn}:\n\n  ${layout.header}\n    config_path = ${JSON.stringify(want)}\n\n`;
  if (mirrorsIn) {
    return {
      ok: false,
      message:
        `${mirrorsIn} sets the deprecated ${layout.header.slice(0, -1)}.mirrors]; containerd refuses to start with both it and config_path. ` +
        `Move those mirrors into hosts.toml files under ${want}, delete the mirrors section, and set ${fix}then restart containerd.`,
    };
  }
  if (roots.length === 0) {
    return {
      ok: false,
      message: `${layout.containerd} does not read hosts.toml files: config_path is not set. Add ${fix}then restart containerd (systemctl restart containerd); hosts.toml changes need no restart after that.`,
    };
  }
  if (!roots.includes(want)) {
    return {
      ok: false,
      message:
        `containerd reads hosts.toml files from ${roots.join(', ')} (config_path in ${foundIn}), not from ${want}. ` +
        `Either run configure with --config-path ${roots[0]}, or set ${fix}then restart containerd.`,
    };
  }
  const shadow = roots.indexOf(want) > 0 ? ` (${roots.slice(0, roots.indexOf(want)).join(', ')} come first: a registry directory there wins)` : '';
  return { ok: true, message: `${layout.containerd} reads hosts.toml files from ${want} (config_path in ${foundIn})${shadow}.` };
}

function readImports(configFile: string, doc: Record<string, unknown>): [string, Record<string, unknown>][] {
  const imports = Array.isArray(doc.imports) ? doc.imports.filter((i): i is string => typeof i === 'string') : [];
  const out: [string, Record<string, unknown>][] = [];
  for (const pattern of imports) {
    const abs = isAbsolute(pattern) ? pattern : join(dirname(configFile), pattern);
    for (const file of globSync(abs).sort()) {
      try {
        out.push([file, parseToml(readFileSync(file, 'utf8')) as Record<string, unknown>]);
      } catch {
        // containerd would refuse it too; the main file's check still says something useful
      }
    }
  }
  return out;
}

function dig(doc: Record<string, unknown>, path: readonly string[]): Record<string, unknown> | undefined {
  let node: unknown = doc;
  for (const key of path) {
    if (typeof node !== 'object' || node === null) return undefined;
    node = (node as Record<string, unknown>)[key];
  }
  return typeof node === 'object' && node !== null ? (node as Record<string, unknown>) : undefined;
}
