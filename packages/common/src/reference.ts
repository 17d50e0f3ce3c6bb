import { OciError } from './oci-error.ts';
import { isDigest, looksLikeDigest, parseDigest, type Digest } from './digest.ts';

// Grammar from the OCI distribution spec.
const COMPONENT = '[a-z0-9]+(?:(?:\\.|_|__|-+)[a-z0-9]+)*';
const NAME = new RegExp(`^${COMPONENT}(?:/${COMPONENT})*$`);
const TAG = /^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$/;
const MAX_NAME_LENGTH = 255;
// host[:port], lower case only, no userinfo, no trailing dot.
const REGISTRY_HOST = /^(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)(?:\.(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?))*(?::[0-9]{1,5})?$/;

export const DOCKER_HUB = 'docker.io';

export function isRepositoryName(name: string): boolean {
  return name.length <= MAX_NAME_LENGTH && NAME.test(name);
}

export function parseRepositoryName(name: string): string {
  if (!isRepositoryName(name)) throw new OciError(400, 'NAME_INVALID', `invalid repository name: ${name.slice(0, 80)}`);
  return name;
}

export function isTag(tag: string): boolean {
  return TAG.test(tag);
}

/** A manifest reference is a tag or a digest. */
export type ManifestRef = { kind: 'tag'; tag: string } | { kind: 'digest'; digest: Digest };

export function parseManifestRef(reference: string): ManifestRef {
  if (looksLikeDigest(reference)) return { kind: 'digest', digest: parseDigest(reference) };
  if (isTag(reference)) return { kind: 'tag', tag: reference };
  throw new OciError(400, 'TAG_INVALID', `invalid tag: ${reference.slice(0, 80)}`);
}

export function isRegistryHost(host: string): boolean {
  return host.length <= 253 && REGISTRY_HOST.test(host);
}

/** Docker Hub's single-segment names live under `library/`. */
export function normalizeRepository(registry: string, repository: string): string {
  if (registry === DOCKER_HUB && !repository.includes('/')) return `library/${repository}`;
  return repository;
}

export interface ImageReference {
  registry: string;
  repository: string;
  tag?: string;
  digest?: Digest;
}

/**
 * Parses `[registry/]repository[:tag][@digest]` as the docker CLI does: the first path
 * segment is a registry if it contains `.` or `:` or is `localhost`.
 */
export function parseImageReference(input: string, defaultRegistry = DOCKER_HUB): ImageReference {
  let rest = input.trim();
  let digest: Digest | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = parseDigest(rest.slice(at + 1));
    rest = rest.slice(0, at);
  }
  let tag: string | undefined;
  const lastColon = rest.lastIndexOf(':');
  if (lastColon > rest.lastIndexOf('/')) {
    tag = rest.slice(lastColon + 1);
    rest = rest.slice(0, lastColon);
    if (!isTag(tag)) throw new Error(`invalid tag in image reference: ${input}`);
  }
  let registry = defaultRegistry;
  const slash = rest.indexOf('/');
  if (slash > 0) {
    const first = rest.slice(0, slash);
    if (first.includes('.') || first.includes(':') || first === 'localhost') {
      registry = first;
      rest = rest.slice(slash + 1);
    }
  }
  if (registry === 'index.docker.io' || registry === 'registry-1.docker.io') registry = DOCKER_HUB;
  const repository = normalizeRepository(registry, rest);
  if (!isRepositoryName(repository)) throw new Error(`invalid repository in image reference: ${input}`);
  if (!tag && !digest) tag = 'latest';
  const ref: ImageReference = { registry, repository };
  if (tag) ref.tag = tag;
  if (digest) ref.digest = digest;
  return ref;
}

export function formatImageReference(ref: ImageReference): string {
  let out = `${ref.registry}/${ref.repository}`;
  if (ref.tag) out += `:${ref.tag}`;
  if (ref.digest) out += `@${ref.digest}`;
  return out;
}

export { isDigest };
