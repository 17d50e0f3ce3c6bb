import { basename, dirname } from 'node:path';
import { Document, isMap, isScalar, isSeq, parseDocument } from 'yaml';
import { readRegularFile } from './atomic-file.ts';
import type { FileChange } from './containerd-hosts.ts';
import { ManagedFiles } from './managed-files.ts';
import { DEFAULT_TARGET, mirrorText, type RegistryTarget } from './registry-targets.ts';

export const DEFAULT_K3S_REGISTRIES = '/etc/rancher/k3s/registries.yaml';

const HEADER = ` Mirrors written by \`peerpull configure k3s\`: k3s tries the peerpull mirror first and falls back
 to the registry itself. k3s reads this file when it starts (restart k3s / k3s-agent to apply).
 \`peerpull configure k3s --remove\` puts back what was here before.`;

export interface K3sMirrorConfig {
  file: string;
  targets: RegistryTarget[];
  mirror: URL;
  force: boolean;
}

/**
 * registries.yaml with the mirror as the first endpoint of each target registry (`"*"` for
 * `_default`); everything else in the original (configs, other mirrors, comments) is kept.
 */
export function registriesYaml(targets: RegistryTarget[], mirror: URL, original?: Buffer): string {
  const doc = original ? parseRegistriesYaml(original) : new Document({});
  if (!isMap(doc.contents)) doc.contents = doc.createNode({});
  const url = mirrorText(mirror);
  for (const target of targets) {
    const key = target.host === DEFAULT_TARGET ? '*' : target.host;
    const existing = doc.getIn(['mirrors', key, 'endpoint'], true);
    if (isSeq(existing)) {
      // Edit the list in place: the other endpoints keep their comments and quoting.
      existing.items = existing.items.filter((item) => String(isScalar(item) ? item.value : item).replace(/\/+$/, '') !== url);
      existing.items.unshift(doc.createNode(url));
    } else {
      doc.setIn(['mirrors', key, 'endpoint'], doc.createNode([url]));
    }
  }
  doc.commentBefore = doc.commentBefore ? `${HEADER}\n\n${doc.commentBefore}` : HEADER;
  return doc.toString();
}

function parseRegistriesYaml(data: Buffer): Document {
  const doc = parseDocument(data.toString('utf8'));
  if (doc.errors.length > 0) throw new Error(`not valid YAML: ${doc.errors[0]?.message.split('\n')[0]}`);
  if (doc.contents !== null && !isMap(doc.contents)) throw new Error('not a mapping');
  const mirrors = doc.get('mirrors');
  if (mirrors !== undefined && mirrors !== null && !isMap(mirrors)) throw new Error('"mirrors" is not a mapping');
  if (isMap(mirrors)) {
    for (const pair of mirrors.items) {
      if (!isMap(pair.value)) throw new Error(`mirrors.${String(pair.key)} is not a mapping`);
      const endpoint = pair.value.get('endpoint');
      if (endpoint !== undefined && !isSeq(endpoint)) throw new Error(`mirrors.${String(pair.key)}.endpoint is not a list`);
    }
  }
  return doc;
}

export async function applyK3sMirrors(config: K3sMirrorConfig): Promise<FileChange[]> {
  return ManagedFiles.withLock(dirname(config.file), { force: config.force }, (files) => {
    const rel = basename(config.file);
    if (!files.isManaged(rel)) {
      const current = readRegularFile(config.file);
      if (current) {
        try {
          parseRegistriesYaml(current.data);
        } catch (err) {
          if (!config.force) {
            throw new Error(`refusing to change ${config.file}: ${(err as Error).message}. Fix it, or use --force (it is backed up and restored by --remove).`);
          }
        }
      }
    }
    const result = files.write(rel, (original) => {
      let mergeable = original;
      if (original && config.force) {
        try {
          parseRegistriesYaml(original);
        } catch {
          mergeable = undefined;
        }
      }
      return registriesYaml(config.targets, config.mirror, mergeable);
    });
    return [{ path: config.file, result }];
  });
}

export async function removeK3sMirrors(config: { file: string; force: boolean }): Promise<FileChange[]> {
  return ManagedFiles.withLock(dirname(config.file), { force: config.force }, (files) => {
    const rel = basename(config.file);
    return files.isManaged(rel) ? [{ path: config.file, result: files.restore(rel) }] : [];
  });
}
