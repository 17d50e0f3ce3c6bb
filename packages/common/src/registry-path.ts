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
