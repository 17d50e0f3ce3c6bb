import { createHash, hkdfSync } from 'node:crypto';
import { readFileSync } from 'node:fs';

const MIN_KEY_BYTES = 32;

/**
 * The shared secret that makes a set of nodes one cluster. It is mixed into the noise
 * handshake as its prologue: two nodes with different keys cannot finish the handshake,
 * so a stranger cannot connect, join the DHT or fetch a blob. The prologue is never sent
 * and costs nothing per byte (a pnet protector would add a second cipher on every byte).
 */
export class ClusterKey {
  readonly #secret: Buffer;

  private constructor(secret: Buffer) {
    this.#secret = secret;
  }

  /** Reads a key file: 32+ random bytes, raw or as hex/base64 text (a Kubernetes Secret). */
  static load(path: string): ClusterKey {
    let raw: Buffer;
    try {
      raw = readFileSync(path);
    } catch (err) {
      throw new Error(`cannot read cluster key file ${path}: ${(err as Error).message}`);
    }
    return ClusterKey.fromBytes(decodeKeyText(raw), path);
  }

  static fromBytes(secret: Buffer, origin = 'cluster key'): ClusterKey {
    if (secret.length < MIN_KEY_BYTES) {
      throw new Error(`${origin}: the cluster key must hold at least ${MIN_KEY_BYTES} random bytes (e.g. \`head -c 32 /dev/urandom | base64\`); got ${secret.length}`);
    }
    return new ClusterKey(secret);
  }

  /** The noise prologue: bound to this use, so the key is never used raw anywhere. */
  noisePrologue(): Uint8Array {
    return createHash('sha256').update('peerpull/noise-prologue/v1\0').update(this.#secret).digest();
  }

  /**
   * A 32-byte key for one purpose (HKDF-SHA256 with the purpose as its info), so a key used to
   * authenticate HTTP requests can never be confused with the noise prologue or another use.
   */
  deriveKey(purpose: string): Buffer {
    return Buffer.from(hkdfSync('sha256', this.#secret, 'peerpull/cluster-key/v1', purpose, 32));
  }

  /** A stable, non-secret id for logs: which cluster a node thinks it is in. */
  fingerprint(): string {
    return createHash('sha256').update('peerpull/fingerprint/v1\0').update(this.#secret).digest('hex').slice(0, 12);
  }
}

function decodeKeyText(raw: Buffer): Buffer {
  const text = raw.toString('utf8').trim();
  if (/^[0-9a-fA-F]+$/.test(text) && text.length % 2 === 0) return Buffer.from(text, 'hex');
  if (/^[A-Za-z0-9+/=_-]+$/.test(text) && text.length >= 40) return Buffer.from(text, 'base64');
  return raw;
}
