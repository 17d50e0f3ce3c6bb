// Deterministic synthetic images without Docker: OCI image layouts whose layers are gzip'd tarballs of
// pseudo-random (incompressible) data. Used by the demo's embedded upstream and by the tests.
//
// Data: AES-128-CTR keystream keyed by sha256(image name, platform, layer index): deterministic,
// incompressible, ~2 GB/s. Compression: gzip level 0 (stored deflate blocks) by default — valid gzip
// that every client decompresses, and 8x faster than level 1 on random data (100 MB: ~0.25 s vs ~1.8 s).
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import zlib from 'node:zlib';

export const MEDIA_TYPES = {
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
  ociLayerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  dockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerConfig: 'application/vnd.docker.container.image.v1+json',
  dockerLayerGzip: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
} as const;

export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}

export interface ImageSpec {
  /** Unique seed: images with the same name and layer layout have identical bytes. */
  name: string;
  /** Size in bytes of the single file inside each layer (the compressed blob is slightly larger). */
  layers: number[];
  /** More than one -> the top level is an OCI image index. Default: the host platform (linux/amd64 here). */
  platforms?: Platform[];
  /** Tag inside the layout (org.opencontainers.image.ref.name). Default 'v1'. */
  tag?: string;
  /** gzip level for layers (default 0 = stored blocks, fastest; data is incompressible anyway). */
  gzipLevel?: number;
}

export interface BuiltLayer {
  digest: string;
  size: number;
  diffId: string;
  /** Size of the uncompressed tar. */
  tarSize: number;
  mediaType: string;
}

export interface BuiltManifest {
  platform: Platform;
  digest: string;
  size: number;
  configDigest: string;
  configSize: number;
  layers: BuiltLayer[];
}

export interface BuiltImage {
  layoutDir: string;
  tag: string;
  /** Media type of the top-level manifest (OCI index if multi-platform). */
  mediaType: string;
  /** Top-level digest: the index digest if multi-platform, else the image manifest digest. */
  manifestDigest: string;
  manifestSize: number;
  manifests: BuiltManifest[];
  /** Sum of the sizes of all blobs (index, manifests, configs, layers). */
  totalBytes: number;
}

export function hostPlatform(): Platform {
  const arch: Record<string, string> = { x64: 'amd64', arm64: 'arm64', arm: 'arm', ia32: '386', ppc64: 'ppc64le', s390x: 's390x' };
  const p: Platform = { os: 'linux', architecture: arch[process.arch] ?? process.arch };
  if (process.arch === 'arm64') p.variant = 'v8';
  return p;
}

export function sha256(data: crypto.BinaryLike): string {
  return 'sha256:' + crypto.createHash('sha256').update(data).digest('hex');
}

function platformKey(p: Platform): string {
  return `${p.os}/${p.architecture}${p.variant ? '/' + p.variant : ''}`;
}

// ---- tar ------------------------------------------------------------------------------------------

const BLOCK = 512;
const MTIME = 1_700_000_000; // fixed: deterministic layers

function octal(value: number, width: number): string {
  // width includes the trailing NUL
  const s = value.toString(8);
  if (s.length > width - 1) throw new Error(`tar: value ${value} does not fit in ${width - 1} octal digits`);
  return s.padStart(width - 1, '0') + '\0';
}

/** A ustar header for one regular file. */
export function tarHeader(name: string, size: number, mode = 0o644): Buffer {
  if (Buffer.byteLength(name) > 100) throw new Error(`tar: name too long: ${name}`);
  const h = Buffer.alloc(BLOCK);
  h.write(name, 0, 100, 'utf8');
  h.write(octal(mode, 8), 100, 8, 'ascii');
  h.write(octal(0, 8), 108, 8, 'ascii'); // uid
  h.write(octal(0, 8), 116, 8, 'ascii'); // gid
  h.write(octal(size, 12), 124, 12, 'ascii');
  h.write(octal(MTIME, 12), 136, 12, 'ascii');
  h.write('        ', 148, 8, 'ascii'); // checksum placeholder: spaces
  h.write('0', 156, 1, 'ascii'); // regular file
  h.write('ustar\0', 257, 6, 'ascii');
  h.write('00', 263, 2, 'ascii');
  h.write('root', 265, 32, 'ascii');
  h.write('root', 297, 32, 'ascii');
  let sum = 0;
  for (const b of h) sum += b;
  h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 8, 'ascii');
  return h;
}

/** Size of a one-file tar archive holding `size` bytes. */
export function tarSize(size: number): number {
  return BLOCK + Math.ceil(size / BLOCK) * BLOCK + 2 * BLOCK;
}

const CHUNK = 1 << 20;
const ZERO_CHUNK = Buffer.alloc(CHUNK);

function keystream(seed: string): crypto.Cipheriv {
  const k = crypto.createHash('sha256').update(seed).digest();
  return crypto.createCipheriv('aes-128-ctr', k.subarray(0, 16), k.subarray(16, 32));
}

/** Deterministic pseudo-random bytes (AES-CTR keystream of seed). */
export function randomBytesFor(seed: string, size: number): Buffer {
  return keystream(seed).update(Buffer.alloc(size));
}

async function* tarStream(fileName: string, size: number, seed: string, onChunk: (b: Buffer) => void): AsyncGenerator<Buffer> {
  const emit = (b: Buffer) => {
    onChunk(b);
    return b;
  };
  yield emit(tarHeader(fileName, size));
  const cipher = keystream(seed);
  let left = size;
  while (left > 0) {
    const n = Math.min(left, CHUNK);
    yield emit(cipher.update(n === CHUNK ? ZERO_CHUNK : ZERO_CHUNK.subarray(0, n)));
    left -= n;
  }
  const pad = (BLOCK - (size % BLOCK)) % BLOCK;
  yield emit(Buffer.alloc(pad + 2 * BLOCK));
}

/** Writes a gzip'd one-file tar of deterministic random data to `file`. */
export async function writeLayer(
  file: string,
  opts: { seed: string; fileName: string; size: number; gzipLevel?: number },
): Promise<Omit<BuiltLayer, 'mediaType'>> {
  const rawHash = crypto.createHash('sha256');
  const gzHash = crypto.createHash('sha256');
  let gzSize = 0;
  let rawSize = 0;
  const counter = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      gzHash.update(chunk);
      gzSize += chunk.length;
      cb(null, chunk);
    },
  });
  await pipeline(
    Readable.from(
      tarStream(opts.fileName, opts.size, opts.seed, (b) => {
        rawHash.update(b);
        rawSize += b.length;
      }),
    ),
    zlib.createGzip({ level: opts.gzipLevel ?? 0, chunkSize: CHUNK }),
    counter,
    fs.createWriteStream(file),
  );
  return {
    digest: 'sha256:' + gzHash.digest('hex'),
    size: gzSize,
    diffId: 'sha256:' + rawHash.digest('hex'),
    tarSize: rawSize,
  };
}

// ---- layout ---------------------------------------------------------------------------------------

function blobPath(layoutDir: string, digest: string): string {
  const [alg, hex] = digest.split(':');
  return path.join(layoutDir, 'blobs', alg!, hex!);
}

function writeBlob(layoutDir: string, data: Buffer): { digest: string; size: number } {
  const digest = sha256(data);
  fs.writeFileSync(blobPath(layoutDir, digest), data);
  return { digest, size: data.length };
}

// Layers already generated in this process, keyed by their seed: copied instead of regenerated.

async function materializeLayer(
  layoutDir: string,
  seed: string,
  fileName: string,
  size: number,
  gzipLevel: number,
): Promise<BuiltLayer> {
  const temp = path.join(layoutDir, 'blobs', 'sha256', `.layer-${crypto.randomBytes(6).toString('hex')}`);
  const layer = await writeLayer(temp, { seed, fileName, size, gzipLevel });
  fs.renameSync(temp, blobPath(layoutDir, layer.digest));
  return { ...layer, mediaType: MEDIA_TYPES.ociLayerGzip };
}

function canonicalJson(value: unknown): Buffer {
  return Buffer.from(JSON.stringify(value));
}

/**
 * Builds an OCI image layout in `dir` (created if missing; an existing index.json is replaced).
 * Each platform gets its own layers (seeded by name, platform and index) and config.
 */
export async function buildImageLayout(dir: string, spec: ImageSpec): Promise<BuiltImage> {
  const tag = spec.tag ?? 'v1';
  const platforms = spec.platforms && spec.platforms.length > 0 ? spec.platforms : [hostPlatform()];
  const gzipLevel = spec.gzipLevel ?? 0;
  fs.mkdirSync(path.join(dir, 'blobs', 'sha256'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));

  const safeName = spec.name.replace(/[^A-Za-z0-9._-]/g, '_').slice(0, 40);
  const manifests: BuiltManifest[] = [];
  for (const platform of platforms) {
    const pk = platformKey(platform);
    const layers = await Promise.all(
      spec.layers.map((size, i) =>
        materializeLayer(
          dir,
          `peerpull-test-image\0${spec.name}\0${pk}\0${i}`,
          `${safeName}-${pk.replace(/\//g, '-')}-${i}.bin`,
          size,
          gzipLevel,
        ),
      ),
    );
    const config = {
      created: '2024-01-01T00:00:00Z',
      architecture: platform.architecture,
      os: platform.os,
      ...(platform.variant ? { variant: platform.variant } : {}),
      config: {
        Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'],
        Labels: { 'org.peerpull.test.name': spec.name },
      },
      rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) },
      history: layers.map((_l, i) => ({ created: '2024-01-01T00:00:00Z', created_by: `peerpull test layer ${i}` })),
    };
    const cfg = writeBlob(dir, canonicalJson(config));
    const manifest = {
      schemaVersion: 2,
      mediaType: MEDIA_TYPES.ociManifest,
      config: { mediaType: MEDIA_TYPES.ociConfig, digest: cfg.digest, size: cfg.size },
      layers: layers.map((l) => ({ mediaType: l.mediaType, digest: l.digest, size: l.size })),
    };
    const m = writeBlob(dir, canonicalJson(manifest));
    manifests.push({ platform, digest: m.digest, size: m.size, configDigest: cfg.digest, configSize: cfg.size, layers });
  }

  let top: { mediaType: string; digest: string; size: number };
  if (manifests.length === 1) {
    const only = manifests[0]!;
    top = { mediaType: MEDIA_TYPES.ociManifest, digest: only.digest, size: only.size };
  } else {
    const index = {
      schemaVersion: 2,
      mediaType: MEDIA_TYPES.ociIndex,
      manifests: manifests.map((m) => ({
        mediaType: MEDIA_TYPES.ociManifest,
        digest: m.digest,
        size: m.size,
        platform: m.platform,
      })),
    };
    top = { mediaType: MEDIA_TYPES.ociIndex, ...writeBlob(dir, canonicalJson(index)) };
  }
  const layoutIndex = {
    schemaVersion: 2,
    mediaType: MEDIA_TYPES.ociIndex,
    manifests: [{ ...top, annotations: { 'org.opencontainers.image.ref.name': tag } }],
  };
  fs.writeFileSync(path.join(dir, 'index.json'), JSON.stringify(layoutIndex));

  let totalBytes = manifests.length > 1 ? top.size : 0;
  for (const m of manifests) totalBytes += m.size + m.configSize + m.layers.reduce((n, l) => n + l.size, 0);
  return {
    layoutDir: dir,
    tag,
    mediaType: top.mediaType,
    manifestDigest: top.digest,
    manifestSize: top.size,
    manifests,
    totalBytes,
  };
}

