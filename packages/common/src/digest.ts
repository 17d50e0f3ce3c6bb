import { createHash, type Hash } from 'node:crypto';
import { OciError } from './oci-error.ts';

/** A validated content digest, e.g. `sha256:<64 lowercase hex>`. Only sha256 is supported. */
export type Digest = string & { readonly __digest: unique symbol };

const SHA256 = /^sha256:[a-f0-9]{64}$/;
const ANY_DIGEST = /^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/;

export function isDigest(value: string): value is Digest {
  return SHA256.test(value);
}

/** Looks like a digest (so not a tag), even if we cannot verify it. */
export function looksLikeDigest(value: string): boolean {
  return value.includes(':') && ANY_DIGEST.test(value);
}

export function parseDigest(value: string): Digest {
  if (isDigest(value)) return value;
  if (looksLikeDigest(value) && !value.startsWith('sha256:')) {
    throw new OciError(400, 'DIGEST_INVALID', `unsupported digest algorithm: ${value.split(':')[0]} (only sha256)`);
  }
  throw new OciError(400, 'DIGEST_INVALID', `invalid digest: ${truncate(value)}`);
}

export function digestHex(digest: Digest): string {
  return digest.slice('sha256:'.length);
}

export function sha256Digest(data: Uint8Array | string): Digest {
  return `sha256:${createHash('sha256').update(data).digest('hex')}` as Digest;
}

/** Incremental sha256 whose state survives a switch of source mid-blob. */
export class DigestHasher {
  readonly #hash: Hash = createHash('sha256');
  bytes = 0;

  update(chunk: Uint8Array): void {
    this.#hash.update(chunk);
    this.bytes += chunk.byteLength;
  }

  digest(): Digest {
    return `sha256:${this.#hash.digest('hex')}` as Digest;
  }
}

function truncate(value: string): string {
  return value.length > 80 ? `${value.slice(0, 80)}…` : value;
}
