import type { ContentStore } from './content-store.ts';
import type { Digest } from './digest.ts';
import type { NodeImage } from './pull-report.ts';
import { formatPlatform, manifestReferences } from './manifest-references.ts';
import { INDEX_MEDIA_TYPES } from './media-types.ts';

export interface ImageBlob {
  digest: Digest;
  size: number;
  mediaType: string;
  kind: 'config' | 'layer';
  present: boolean;
}

export interface ImagePlatform {
  /** `linux/amd64`; undefined for a single-platform image. */
  platform?: string;
  digest: Digest;
  /** The platform's manifest is stored (else its blobs are unknown). */
  present: boolean;
  blobs: ImageBlob[];
}

/** A tagged image as one store holds it. */
export interface LocalImage {
  /** `registry/repository:tag`. */
  image: string;
  digest: Digest;
  mediaType: string;
  platforms: ImagePlatform[];
  /** Bytes of the config and layers present. */
  bytes: number;
  /** Bytes of the config and layers of the platforms whose manifest is stored. */
  totalBytes: number;
  /** Every blob of at least one platform is present. */
  complete: boolean;
  validatedAt: number;
  lastPulledAt?: number;
}

/** The tagged images in a store, with which of their blobs it holds. Reads manifests from the store only. */
export async function listLocalImages(store: ContentStore): Promise<LocalImage[]> {
  const out: LocalImage[] = [];
  for (const { key, record } of await store.listTags()) {
    const platforms = await imagePlatforms(store, record.digest, record.mediaType);
    let bytes = 0;
    let totalBytes = 0;
    for (const p of platforms) {
      for (const b of p.blobs) {
        totalBytes += b.size;
        if (b.present) bytes += b.size;
      }
    }
    const image: LocalImage = {
      image: key,
      digest: record.digest,
      mediaType: record.mediaType,
      platforms,
      bytes,
      totalBytes,
      complete: platforms.some((p) => p.present && p.blobs.every((b) => b.present)),
      validatedAt: record.validatedAt,
    };
    if (record.lastPulledAt !== undefined) image.lastPulledAt = record.lastPulledAt;
    out.push(image);
  }
  return out.sort((a, b) => a.image.localeCompare(b.image));
}

/** The platforms of a stored manifest (one, unnamed, for an image manifest; each entry of an index). */
export async function imagePlatforms(store: ContentStore, digest: Digest, mediaType: string): Promise<ImagePlatform[]> {
  if (!store.has(digest)) return [];
  let refs;
  try {
    refs = manifestReferences(await store.readAll(digest), store.stat(digest)?.mediaType ?? mediaType);
  } catch {
    return [];
  }
  if (refs.manifests.length > 0 || INDEX_MEDIA_TYPES.has(mediaType)) {
    const out: ImagePlatform[] = [];
    for (const child of refs.manifests) {
      const [inner] = await imagePlatforms(store, child.digest, child.mediaType);
      const entry: ImagePlatform = inner ?? { digest: child.digest, present: false, blobs: [] };
      if (child.platform) entry.platform = formatPlatform(child.platform);
      out.push(entry);
    }
    return out;
  }
  return [
    {
      digest,
      present: true,
      blobs: refs.blobs.map((b, i) => ({ ...b, kind: i === 0 ? 'config' : 'layer', present: store.has(b.digest) })),
    },
  ];
}

/** Every digest an image consists of that the store holds: manifests, configs, layers. */
export function imageDigests(image: LocalImage): Digest[] {
  const out = new Set<Digest>([image.digest]);
  for (const p of image.platforms) {
    if (p.present) out.add(p.digest);
    for (const b of p.blobs) out.add(b.digest);
  }
  return [...out];
}

/** The tagged images in a store as a node reports them, recomputed only after the store changed. */
export class LocalImagesView {
  readonly #store: ContentStore;
  #generation = 0;
  #cached: { generation: number; images: Promise<NodeImage[]> } | undefined;

  constructor(store: ContentStore) {
    this.#store = store;
    const bump = (): void => void this.#generation++;
    store.on('added', bump);
    store.on('removed', bump);
    store.on('tag', bump);
  }

  images(): Promise<NodeImage[]> {
    if (this.#cached?.generation !== this.#generation) {
      const images = listLocalImages(this.#store).then((list) =>
        list.map((i) => ({ image: i.image, digest: i.digest, bytes: i.bytes, complete: i.complete })),
      );
      this.#cached = { generation: this.#generation, images };
      images.catch(() => (this.#cached = undefined));
    }
    return this.#cached.images;
  }
}
