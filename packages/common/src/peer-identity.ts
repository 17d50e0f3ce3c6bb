import { chmod, mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys';
import type { PrivateKey } from '@libp2p/interface';

const KEY_FILE = 'peer-key';

/** The node's libp2p identity, kept in the data dir so a restarted node keeps its peer id. */
export async function loadOrCreatePeerKey(dataDir: string): Promise<PrivateKey> {
  const path = join(dataDir, KEY_FILE);
  try {
    return privateKeyFromProtobuf(await readFile(path));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new Error(`cannot read peer key ${path}: ${(err as Error).message}`);
  }
  const key = await generateKeyPair('Ed25519');
  await mkdir(dataDir, { recursive: true });
  const temp = `${path}.tmp`;
  await writeFile(temp, privateKeyToProtobuf(key), { mode: 0o600 });
  await chmod(temp, 0o600);
  await rename(temp, path);
  return key;
}
