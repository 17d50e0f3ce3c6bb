import { OptionsError } from '@peerpull/common/options';
import { parseRegistryEntry } from '@peerpull/common/registry-allowlist';

/** containerd's (and k3s's "*") catch-all: every registry without its own entry. */
export const DEFAULT_TARGET = '_default';

/** A registry to send through the mirror, and its upstream (containerd's `server`). */
export interface RegistryTarget {
  /** `docker.io`, `ghcr.io`, `127.0.0.1:5001`, or `_default`. */
  host: string;
  /** `https://registry-1.docker.io`; undefined for `_default` (each registry is its own upstream). */
  upstream?: string;
}

/**
 * Parses `--registries` entries: `host`, `host=upstream-url` (the same syntax as the daemon's
 * `--registry`, so one list can drive both), or `_default`; commas separate entries too.
 */
export function parseRegistryTargets(values: readonly string[]): RegistryTarget[] {
  const entries = values.flatMap((v) => v.split(',')).map((v) => v.trim()).filter(Boolean);
  if (entries.length === 0) throw new OptionsError('--registries: name at least one registry');
  const seen = new Set<string>();
  const targets: RegistryTarget[] = [];
  for (const entry of entries) {
    let target: RegistryTarget;
    if (entry.trim() === DEFAULT_TARGET) {
      target = { host: DEFAULT_TARGET };
    } else {
      try {
        const { host, endpoint } = parseRegistryEntry(entry);
        target = { host, upstream: endpoint.href.replace(/\/+$/, '') };
      } catch (err) {
        throw new OptionsError(`--registries: ${(err as Error).message}`);
      }
    }
    if (seen.has(target.host)) throw new OptionsError(`--registries: ${target.host} is listed twice`);
    seen.add(target.host);
    targets.push(target);
  }
  return targets;
}

/** `http://127.0.0.1:5050` (trailing slashes dropped); the mirror must be an http(s) origin. */
export function parseMirrorUrl(value: string): URL {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new OptionsError(`--mirror: invalid URL ${JSON.stringify(value)} (expected e.g. http://127.0.0.1:5050)`);
  }
  if ((url.protocol !== 'http:' && url.protocol !== 'https:') || url.username || url.search || url.hash) {
    throw new OptionsError(`--mirror: expected an http(s) URL without credentials or query, got ${JSON.stringify(value)}`);
  }
  return url;
}

/** The URL text as configuration files want it: no trailing slash. */
export function mirrorText(url: URL): string {
  return url.href.replace(/\/+$/, '');
}
