import { parseDigest, type Digest } from './digest.ts';
import { OciError } from './oci-error.ts';
import { parseManifestRef, parseRepositoryName, type ManifestRef } from './reference.ts';

export type RegistryPath =
  | { kind: 'base' }
  | { kind: 'manifest'; name: string; ref: ManifestRef }
  | { kind: 'blob'; name: string; digest: Digest }
  | { kind: 'upload'; name: string }
  | { kind: 'tags'; name: string }
  | { kind: 'referrers'; name: string };

/**
 * Parses the path of a `/v2/...` request (without the query string). Percent-encoding
 * is refused outright: no valid name, tag or digest needs it, and decoding is how
 * `%2e%2e` style traversal sneaks past validation.
 */
export function parseRegistryPath(path: string): RegistryPath | undefined {
  if (path === '/v2/' || path === '/v2') return { kind: 'base' };
  if (!path.startsWith('/v2/')) return undefined;
  if (path.includes('%') || path.includes('\\')) {
    throw new OciError(400, 'NAME_INVALID', 'invalid repository name: percent-encoded or escaped characters are not allowed');
  }
  const rest = path.slice('/v2/'.length);
  const upload = /^(.+)\/blobs\/uploads(?:\/.*)?$/.exec(rest);
  if (upload) return { kind: 'upload', name: upload[1] as string };
  const match = /^(.+)\/(manifests|blobs|tags|referrers)\/([^/]+)$/.exec(rest);
  if (!match) return undefined;
  const [, rawName = '', kind, tail = ''] = match;
  const name = parseRepositoryName(rawName);
  switch (kind) {
    case 'manifests':
      return { kind: 'manifest', name, ref: parseManifestRef(tail) };
    case 'blobs':
      return { kind: 'blob', name, digest: parseDigest(tail) };
    case 'tags':
      return tail === 'list' ? { kind: 'tags', name } : undefined;
    default:
      return { kind: 'referrers', name };
  }
}

/**
 * A registry named by the first path segment, for clients that cannot send `?ns=`: CRI-O
 * (containers/image) with the mirror location `127.0.0.1:5050/docker.io` asks for
 * `/v2/docker.io/library/nginx/...`. The rule, applied only when a request has no `?ns=`:
 * the first segment is a registry when it contains a `.` and `isRegistry` accepts it (the
 * caller passes its allowlist) and a repository follows it. A default-registry repository
 * whose first segment is itself an allowlisted registry name is read as that registry (the
 * only ambiguous case; Docker Hub namespaces cannot contain a `.`). A registry with a port
 * cannot be named this way: `:` is not valid in a repository name.
 */
export function splitRegistryPrefix(name: string, isRegistry: (host: string) => boolean): { registry: string; name: string } | undefined {
  const slash = name.indexOf('/');
  if (slash < 0) return undefined;
  const first = name.slice(0, slash);
  return first.includes('.') && isRegistry(first) ? { registry: first, name: name.slice(slash + 1) } : undefined;
}
