import type { Digest } from './digest.ts';
import { isDigest } from './digest.ts';
import { INDEX_MEDIA_TYPES } from './media-types.ts';

export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}

export interface ManifestReferences {
  /** For an index: the manifests it lists, with their platforms. */
  manifests: { digest: Digest; size: number; mediaType: string; platform?: Platform }[];
  /** For an image manifest: the config and layers. */
  blobs: { digest: Digest; size: number; mediaType: string }[];
}

interface Descriptor {
  digest?: unknown;
  size?: unknown;
  mediaType?: unknown;
  platform?: { os?: unknown; architecture?: unknown; variant?: unknown };
}

/** What a manifest points at. Unknown or malformed entries are skipped, never trusted. */
export function manifestReferences(body: Buffer, mediaType: string): ManifestReferences {
  const doc = JSON.parse(body.toString('utf8')) as { manifests?: Descriptor[]; config?: Descriptor; layers?: Descriptor[]; mediaType?: string };
  const out: ManifestReferences = { manifests: [], blobs: [] };
  if (INDEX_MEDIA_TYPES.has(mediaType) || Array.isArray(doc.manifests)) {
    for (const d of doc.manifests ?? []) {
      const desc = descriptor(d);
      if (!desc) continue;
      const p = d.platform;
      const entry: ManifestReferences['manifests'][number] = desc;
      if (p && typeof p.os === 'string' && typeof p.architecture === 'string') {
        entry.platform = { os: p.os, architecture: p.architecture, ...(typeof p.variant === 'string' ? { variant: p.variant } : {}) };
      }
      out.manifests.push(entry);
    }
    return out;
  }
  for (const d of [doc.config, ...(doc.layers ?? [])]) {
    const desc = d && descriptor(d);
    if (desc) out.blobs.push(desc);
  }
  return out;
}

/** `linux/amd64`, `linux/arm64/v8`. */
export function parsePlatform(text: string): Platform {
  const parts = text.split('/');
  const [os, architecture, variant] = parts;
  // More than three parts, or an empty one ('linux/', 'linux/amd64/'), is a typo: never drop part of it silently.
  if (!os || !architecture || parts.length > 3 || variant === '') throw new Error(`invalid platform "${text}" (expected os/arch[/variant], e.g. linux/amd64)`);
  return variant ? { os, architecture, variant } : { os, architecture };
}

export function formatPlatform(p: Platform): string {
  return p.variant ? `${p.os}/${p.architecture}/${p.variant}` : `${p.os}/${p.architecture}`;
}

export function platformMatches(want: Platform, have: Platform | undefined): boolean {
  if (!have) return false;
  return want.os === have.os && want.architecture === have.architecture && (!want.variant || want.variant === have.variant);
}

function descriptor(d: Descriptor): { digest: Digest; size: number; mediaType: string } | undefined {
  if (typeof d.digest !== 'string' || !isDigest(d.digest) || typeof d.size !== 'number') return undefined;
  return { digest: d.digest, size: d.size, mediaType: typeof d.mediaType === 'string' ? d.mediaType : '' };
}
