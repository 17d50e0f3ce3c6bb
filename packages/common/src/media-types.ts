export const MediaType = {
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  dockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerManifestV1Signed: 'application/vnd.docker.distribution.manifest.v1+prettyjws',
  octetStream: 'application/octet-stream',
} as const;

/** Every manifest type a mirror must accept; sent upstream when resolving tags so a tag means one digest for everyone. */
export const MANIFEST_ACCEPT = [
  MediaType.ociIndex,
  MediaType.ociManifest,
  MediaType.dockerManifestList,
  MediaType.dockerManifest,
].join(', ');

export const INDEX_MEDIA_TYPES: ReadonlySet<string> = new Set([MediaType.ociIndex, MediaType.dockerManifestList]);

/** distribution caps manifests at 4 MiB; so do we, since manifests are buffered. */
export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;

/** The media type of a manifest body, from its `mediaType` field, falling back to its shape. */
export function sniffManifestMediaType(body: Uint8Array): string | undefined {
  try {
    const doc = JSON.parse(Buffer.from(body).toString('utf8')) as { mediaType?: unknown; manifests?: unknown; layers?: unknown; schemaVersion?: unknown };
    if (typeof doc.mediaType === 'string') return doc.mediaType;
    if (Array.isArray(doc.manifests)) return MediaType.ociIndex;
    if (Array.isArray(doc.layers)) return MediaType.ociManifest;
    if (doc.schemaVersion === 1) return MediaType.dockerManifestV1Signed;
  } catch {
    return undefined;
  }
  return undefined;
}
