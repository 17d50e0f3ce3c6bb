// Thin wrappers around skopeo 1.9 (the only image-copy CLI available here), plus pushImage/inspectRemote.
import fs from 'node:fs';
import path from 'node:path';
import { run } from './processes.ts';
import type { RunResult } from './processes.ts';
import { MEDIA_TYPES, sha256, type BuiltImage, type Platform } from './synthetic-image.ts';

export const SKOPEO_BIN = '/usr/bin/skopeo';
export const SKOPEO_TIMEOUT_MS = 120_000;

export interface SkopeoResult {
  stdout: string;
  stderr: string;
}

export interface SkopeoCopyOptions {
  /** --all: copy every platform of an index / manifest list. */
  all?: boolean;
  /** TLS verification for a docker:// source (default false: loopback registries speak plain HTTP). */
  srcTlsVerify?: boolean;
  /** TLS verification for a docker:// destination (default false). */
  destTlsVerify?: boolean;
  /** --format: manifest type to write ('oci' or 'v2s2'). */
  format?: 'oci' | 'v2s2';
  /** Extra arguments placed before the refs. */
  extraArgs?: string[];
  timeoutMs?: number;
}

/** 'host/name:tag' -> 'docker://host/name:tag'; refs with a transport are kept. */
export function dockerRef(ref: string): string {
  return /^[a-z-]+:(?!\d)/.test(ref) && !ref.startsWith('localhost:') ? ref : `docker://${ref}`;
}

/** Runs skopeo with --insecure-policy; rejects with an Error containing skopeo's stderr. */
export async function skopeo(args: readonly string[], opts: { timeoutMs?: number } = {}): Promise<RunResult> {
  return run(SKOPEO_BIN, ['--insecure-policy', ...args], { timeoutMs: opts.timeoutMs ?? SKOPEO_TIMEOUT_MS });
}

/** skopeo copy SRC DEST. Refs need a transport (docker://, oci:, dir:); bare 'host/name:tag' means docker://. */
export async function skopeoCopy(srcRef: string, destRef: string, opts: SkopeoCopyOptions = {}): Promise<SkopeoResult> {
  const src = dockerRef(srcRef);
  const dest = dockerRef(destRef);
  const args = ['copy'];
  if (src.startsWith('docker://')) args.push(`--src-tls-verify=${opts.srcTlsVerify ?? false}`);
  if (dest.startsWith('docker://')) args.push(`--dest-tls-verify=${opts.destTlsVerify ?? false}`);
  if (opts.all) args.push('--all');
  if (opts.format) args.push('--format', opts.format);
  if (opts.extraArgs) args.push(...opts.extraArgs);
  args.push(src, dest);
  const r = await skopeo(args, { timeoutMs: opts.timeoutMs });
  return { stdout: r.stdout, stderr: r.stderr };
}

/**
 * Copies an image (default: the host platform's manifest) from a registry into a `dir:` directory
 * (files named after the blob hex digests, plus `manifest.json`).
 */
export async function copyToDir(
  ref: string,
  dir: string,
  opts: Omit<SkopeoCopyOptions, 'destTlsVerify' | 'format'> = {},
): Promise<SkopeoResult> {
  return skopeoCopy(ref, `dir:${dir}`, opts);
}

/** skopeo inspect --raw: the exact manifest bytes the registry serves for ref. */
export async function inspectRaw(ref: string, opts: { tlsVerify?: boolean; timeoutMs?: number } = {}): Promise<Buffer> {
  const r = await skopeo(['inspect', '--raw', `--tls-verify=${opts.tlsVerify ?? false}`, dockerRef(ref)], {
    timeoutMs: opts.timeoutMs,
  });
  return r.stdoutBuffer;
}

// ---- pushing and inspecting images ----------------------------------------------------------------

export interface PushOptions {
  /** 'oci' keeps the layout's manifests byte for byte; 'v2s2' converts to Docker schema2 (new digests). */
  format?: 'oci' | 'v2s2';
  /** Tag inside the layout (default: the layout's only/first ref). */
  tag?: string;
  timeoutMs?: number;
}

interface LayoutRef {
  tag: string;
  mediaType: string;
}

function readLayoutRef(layoutDir: string, tag?: string): LayoutRef {
  const idx = JSON.parse(fs.readFileSync(path.join(layoutDir, 'index.json'), 'utf8')) as {
    manifests?: { mediaType?: string; annotations?: Record<string, string> }[];
  };
  const entries = idx.manifests ?? [];
  const entry = tag
    ? entries.find((m) => m.annotations?.['org.opencontainers.image.ref.name'] === tag)
    : entries[0];
  const name = entry?.annotations?.['org.opencontainers.image.ref.name'];
  if (!entry || !name) throw new Error(`no ${tag ? `tag ${tag}` : 'tagged manifest'} in ${layoutDir}/index.json`);
  return { tag: name, mediaType: entry.mediaType ?? MEDIA_TYPES.ociManifest };
}

/**
 * Pushes a layout (or a BuiltImage) to `dest` ('127.0.0.1:5001/library/big:v1') with skopeo.
 * Indexes are pushed with --all (with format 'v2s2' they become Docker manifest lists).
 */
export async function pushImage(layout: string | BuiltImage, dest: string, opts: PushOptions = {}): Promise<void> {
  const layoutDir = typeof layout === 'string' ? layout : layout.layoutDir;
  const ref = readLayoutRef(layoutDir, opts.tag ?? (typeof layout === 'string' ? undefined : layout.tag));
  const isIndex = ref.mediaType === MEDIA_TYPES.ociIndex || ref.mediaType === MEDIA_TYPES.dockerManifestList;
  await skopeoCopy(`oci:${layoutDir}:${ref.tag}`, dest.startsWith('docker://') ? dest : `docker://${dest}`, {
    all: isIndex,
    format: opts.format === 'v2s2' ? 'v2s2' : undefined,
    timeoutMs: opts.timeoutMs,
  });
}

export interface RemoteManifest {
  /** sha256 of the exact bytes the registry serves. */
  digest: string;
  mediaType: string;
  /** The raw manifest text. */
  raw: string;
  rawBytes: Buffer;
  /** Parsed JSON. */
  manifest: {
    mediaType?: string;
    schemaVersion?: number;
    config?: { mediaType: string; digest: string; size: number };
    layers?: { mediaType: string; digest: string; size: number }[];
    manifests?: { mediaType: string; digest: string; size: number; platform?: Platform }[];
  };
}

/** The manifest a registry serves for ref ('host/name:tag' or '...@sha256:...'), and its digest. */
export async function inspectRemote(ref: string, opts: { tlsVerify?: boolean } = {}): Promise<RemoteManifest> {
  const rawBytes = await inspectRaw(ref, opts);
  const raw = rawBytes.toString('utf8');
  const manifest = JSON.parse(raw) as RemoteManifest['manifest'];
  let mediaType = manifest.mediaType;
  if (!mediaType) mediaType = manifest.manifests ? MEDIA_TYPES.ociIndex : MEDIA_TYPES.ociManifest;
  return { digest: sha256(rawBytes), mediaType, raw, rawBytes, manifest };
}
