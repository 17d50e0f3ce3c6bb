import { randomBytes } from 'node:crypto';
import { closeSync, fchmodSync, fchownSync, fsyncSync, lstatSync, openSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';

export interface FileAttributes {
  mode: number;
  uid?: number;
  gid?: number;
}

/**
 * Replaces `path` with `data` atomically: a temp file in the same directory, fsync, rename.
 * A reader (containerd reads hosts.toml on every pull) sees the old or the new file, never
 * a torn one, and a crash leaves at most a stray `.peerpull-tmp-*` file.
 */
export function writeFileAtomic(path: string, data: Buffer | string, attrs: FileAttributes = { mode: 0o644 }): void {
  const tmp = join(dirname(path), `.${basename(path)}.peerpull-tmp-${randomBytes(4).toString('hex')}`);
  const fd = openSync(tmp, 'wx', 0o600);
  try {
    fchmodSync(fd, attrs.mode); // not subject to the umask
    if (attrs.uid !== undefined && attrs.gid !== undefined) {
      try {
        fchownSync(fd, attrs.uid, attrs.gid);
      } catch {
        // not root: the file stays ours
      }
    }
    const bytes = typeof data === 'string' ? Buffer.from(data) : data;
    let off = 0;
    while (off < bytes.length) off += writeSync(fd, bytes, off);
    fsyncSync(fd);
  } catch (err) {
    closeSync(fd);
    rmSync(tmp, { force: true });
    throw err;
  }
  closeSync(fd);
  try {
    renameSync(tmp, path);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
  fsyncDir(dirname(path));
}

function fsyncDir(dir: string): void {
  try {
    const fd = openSync(dir, 'r');
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  } catch {
    // best effort: not every filesystem allows fsync on a directory
  }
}

/** The file's bytes and mode, or undefined when it does not exist. Refuses anything but a regular file. */
export function readRegularFile(path: string): ({ data: Buffer } & Required<FileAttributes>) | undefined {
  let st;
  try {
    st = lstatSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  if (!st.isFile()) throw new Error(`${path} is not a regular file (a ${st.isSymbolicLink() ? 'symlink' : 'directory or device'}): refusing to touch it`);
  return { data: readFileSync(path), mode: st.mode & 0o7777, uid: st.uid, gid: st.gid };
}
