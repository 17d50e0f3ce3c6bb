import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, rmSync, statSync } from 'node:fs';
import { dirname, join, relative, sep } from 'node:path';
import { readRegularFile, writeFileAtomic, type FileAttributes } from './atomic-file.ts';

/** Where peerpull keeps its record and the backups, inside the directory it manages. */
export const STATE_DIR = '.peerpull';
const STATE_FILE = 'state.json';
const LOCK_DIR = 'lock';
const LOCK_WAIT_MS = 10_000;
/** A lock older than this was left by a process that died (an operation takes milliseconds). */
const LOCK_STALE_MS = 30_000;

export type WriteResult = 'created' | 'updated' | 'unchanged';
/** `kept-modified`: someone changed the file after peerpull wrote it; it was left alone (use force). */
export type RestoreResult = 'restored' | 'removed' | 'not-managed' | 'kept-modified';

interface Entry {
  /** sha256 of the bytes peerpull wrote. */
  sha256: string;
  /** The file that was there before (its bytes are in the backup), or null when there was none. */
  original: Required<FileAttributes> | null;
  /** Directories (relative to the root) peerpull created for this file, outermost first. */
  createdDirs: string[];
}

interface State {
  version: 1;
  files: Record<string, Entry>;
}

export class DriftError extends Error {
  override name = 'DriftError';
}

/**
 * The files peerpull writes into a directory it does not own (containerd's certs.d, CRI-O's
 * registries.conf.d, k3s's config dir): what was there before is backed up under
 * `<root>/.peerpull/` and put back byte for byte (content, mode, owner) by restore(); a
 * file someone changed after peerpull wrote it is never overwritten or restored over
 * without `force`. One process at a time per root (a lock directory), so a watchdog and a
 * `configure --remove` can run at once. When nothing is managed any more, `.peerpull/`
 * itself is removed and the directory is as it was.
 */
export class ManagedFiles {
  readonly root: string;
  readonly #force: boolean;
  readonly #state: State;

  private constructor(root: string, force: boolean, state: State) {
    this.root = root;
    this.#force = force;
    this.#state = state;
  }

  /** Runs fn with the root locked. */
  static async withLock<T>(root: string, opts: { force: boolean }, fn: (files: ManagedFiles) => T | Promise<T>): Promise<T> {
    await acquireLock(root);
    try {
      const files = new ManagedFiles(root, opts.force, loadState(root));
      return await fn(files);
    } finally {
      releaseLock(root);
    }
  }

  /** Paths (relative to the root) peerpull has written and not restored. */
  managed(): string[] {
    return Object.keys(this.#state.files).sort();
  }

  isManaged(rel: string): boolean {
    return rel in this.#state.files;
  }

  /** Writes the file built from the original (so re-running never merges into its own output). */
  write(rel: string, build: (original: Buffer | undefined) => Buffer | string): WriteResult {
    const abs = this.#abs(rel);
    const entry = this.#state.files[rel];
    const current = readRegularFile(abs);
    if (!entry) {
      const createdDirs = this.#mkdirs(dirname(rel));
      const content = Buffer.from(build(current?.data));
      if (current) {
        mkdirSync(dirname(this.#backupPath(rel)), { recursive: true, mode: 0o700 });
        writeFileAtomic(this.#backupPath(rel), current.data, { mode: 0o600 });
      }
      const original = current ? { mode: current.mode, uid: current.uid, gid: current.gid } : null;
      this.#state.files[rel] = { sha256: sha256(content), original, createdDirs };
      this.#save(); // record first: a crash after this leaves a state restore() understands
      writeFileAtomic(abs, content, original ?? { mode: 0o644 });
      return 'created';
    }
    const originalBytes = entry.original ? readFileSync(this.#backupPath(rel)) : undefined;
    const content = Buffer.from(build(originalBytes));
    const ours = current !== undefined && sha256(current.data) === entry.sha256;
    // The original still (or again) in place: a crash between recording and writing, or a hand restore.
    const pristine = current === undefined ? entry.original === null : originalBytes?.equals(current.data) === true;
    if (!ours && !pristine && !this.#force) {
      throw new DriftError(
        `${abs} was changed since peerpull wrote it; not overwriting it. Use --force to overwrite it ` +
          `(the file from before peerpull stays backed up in ${join(this.root, STATE_DIR)} and is restored by --remove).`,
      );
    }
    if (ours && sha256(content) === entry.sha256) return 'unchanged';
    this.#mkdirs(dirname(rel));
    entry.sha256 = sha256(content);
    this.#save();
    writeFileAtomic(abs, content, entry.original ?? { mode: 0o644 });
    return 'updated';
  }

  /** Puts back what was there before peerpull (or removes the file if there was nothing). */
  restore(rel: string): RestoreResult {
    const entry = this.#state.files[rel];
    if (!entry) return 'not-managed';
    const abs = this.#abs(rel);
    const current = readRegularFile(abs);
    const originalBytes = entry.original ? readFileSync(this.#backupPath(rel)) : undefined;
    const ours = current === undefined || sha256(current.data) === entry.sha256 || originalBytes?.equals(current.data) === true;
    if (!ours && !this.#force) return 'kept-modified';
    if (entry.original && originalBytes) {
      writeFileAtomic(abs, originalBytes, entry.original);
      rmSync(this.#backupPath(rel), { force: true });
    } else {
      rmSync(abs, { force: true });
    }
    for (const dir of [...entry.createdDirs].reverse()) removeIfEmpty(join(this.root, dir));
    delete this.#state.files[rel];
    this.#save();
    return entry.original ? 'restored' : 'removed';
  }

  #abs(rel: string): string {
    const abs = join(this.root, rel);
    if (relative(this.root, abs).startsWith('..') || rel.split(/[\\/]/).includes(STATE_DIR)) throw new Error(`refusing to manage ${rel} outside ${this.root}`);
    return abs;
  }

  #backupPath(rel: string): string {
    return join(this.root, STATE_DIR, 'backup', rel);
  }

  /** mkdir -p below the root; returns the directories it created, outermost first. */
  #mkdirs(relDir: string): string[] {
    const created: string[] = [];
    if (relDir === '.' || relDir === '') return created;
    let acc = '';
    for (const part of relDir.split(sep)) {
      acc = acc ? join(acc, part) : part;
      const abs = join(this.root, acc);
      if (existsSync(abs)) {
        if (!statSync(abs).isDirectory()) throw new Error(`${abs} is not a directory: refusing to touch it`);
        continue;
      }
      mkdirSync(abs, { mode: 0o755 });
      created.push(acc);
    }
    return created;
  }

  #save(): void {
    const dir = join(this.root, STATE_DIR);
    if (Object.keys(this.#state.files).length === 0) {
      rmSync(join(dir, STATE_FILE), { force: true });
      removeIfEmpty(join(dir, 'backup'), true);
      return;
    }
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    writeFileAtomic(join(dir, STATE_FILE), `${JSON.stringify(this.#state, null, 2)}\n`, { mode: 0o600 });
  }
}

function loadState(root: string): State {
  const path = join(root, STATE_DIR, STATE_FILE);
  const file = readRegularFile(path);
  if (!file) return { version: 1, files: {} };
  let state: unknown;
  try {
    state = JSON.parse(file.data.toString('utf8'));
  } catch (err) {
    throw new Error(`${path} is not valid JSON (${(err as Error).message}); it records the files peerpull changed and their backups: fix or remove it by hand`);
  }
  if (typeof state !== 'object' || state === null || (state as State).version !== 1 || typeof (state as State).files !== 'object') {
    throw new Error(`${path} was written by another version of peerpull; refusing to touch ${root}`);
  }
  return state as State;
}

function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/** rmdir (recursively for empty trees when `tree`), ignoring a directory that is not empty or gone. */
function removeIfEmpty(dir: string, tree = false): void {
  try {
    if (tree) {
      for (const entry of readDirSafe(dir)) removeIfEmpty(join(dir, entry), true);
    }
    rmdirSync(dir);
  } catch {
    // not empty, or already gone
  }
}

function readDirSafe(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

async function acquireLock(root: string): Promise<void> {
  const stateDir = join(root, STATE_DIR);
  const lock = join(stateDir, LOCK_DIR);
  const deadline = Date.now() + LOCK_WAIT_MS;
  for (;;) {
    try {
      mkdirSync(stateDir, { recursive: true, mode: 0o700 });
      mkdirSync(lock);
      return;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'EEXIST' && code !== 'ENOENT') throw err;
      try {
        if (Date.now() - statSync(lock).mtimeMs > LOCK_STALE_MS) rmSync(lock, { recursive: true, force: true });
      } catch {
        // released meanwhile
      }
    }
    if (Date.now() > deadline) throw new Error(`${lock} is held by another peerpull process (remove it if none is running)`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

function releaseLock(root: string): void {
  const stateDir = join(root, STATE_DIR);
  rmSync(join(stateDir, LOCK_DIR), { recursive: true, force: true });
  // Nothing managed any more (save() already removed the backups): leave the directory as it
  // was. Not recursive: another process may hold the lock by now, and then this fails.
  if (!existsSync(join(stateDir, STATE_FILE))) removeIfEmpty(stateDir);
}
