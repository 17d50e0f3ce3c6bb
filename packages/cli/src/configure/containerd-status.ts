import { join } from 'node:path';
import { readRegularFile } from './atomic-file.ts';
import { checkContainerdConfig } from './containerd-config-check.ts';
import { parseHostsToml } from './containerd-hosts.ts';
import { mirrorText, type RegistryTarget } from './registry-targets.ts';

/**
 * `configure containerd --check`: is containerd reading certs.d, does each registry's
 * hosts.toml list the mirror first, and does the mirror answer? Changes nothing.
 */
export async function containerdStatus(opts: { certsDir: string; targets: RegistryTarget[]; mirror: URL; containerdConfig: string }): Promise<{ ok: boolean; lines: string[] }> {
  const lines: string[] = [];
  let ok = true;
  const mark = (good: boolean, text: string): void => {
    if (!good) ok = false;
    lines.push(`${good ? 'ok  ' : 'FAIL'} ${text}`);
  };
  const check = checkContainerdConfig(opts.containerdConfig, opts.certsDir);
  mark(check.ok, check.message);
  const mirror = mirrorText(opts.mirror);
  for (const target of opts.targets) {
    const path = join(opts.certsDir, target.host, 'hosts.toml');
    let first: string | undefined;
    try {
      const file = readRegularFile(path);
      first = file ? Object.keys(parseHostsToml(file.data, join(opts.certsDir, target.host)).host ?? {})[0] : undefined;
    } catch (err) {
      mark(false, (err as Error).message);
      continue;
    }
    mark(first?.replace(/\/+$/, '') === mirror, first ? `${path}: first host is ${first}` : `${path}: missing (run peerpull configure containerd)`);
  }
  try {
    const res = await fetch(new URL('/v2/', opts.mirror), { signal: AbortSignal.timeout(2_000) });
    await res.arrayBuffer();
    mark(res.ok, `mirror ${mirror} answers /v2/ with ${res.status}`);
  } catch (err) {
    mark(false, `mirror ${mirror} does not answer (${(err as Error).message}): pulls go straight to the upstream`);
  }
  return { ok, lines };
}
