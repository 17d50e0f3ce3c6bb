// Helpers for the `peerpull configure` / `--manage-containerd` end-to-end tests.
import fs from 'node:fs';
import path from 'node:path';
import { CLI } from '../fixtures/daemon.ts';
import { run, type RunResult } from '../fixtures/processes.ts';

/** Runs the real CLI (`node packages/cli/src/main.ts ARGS`); never rejects on a non-zero exit. */
export function peerpull(args: string[], env: NodeJS.ProcessEnv = {}): Promise<RunResult> {
  return run(process.execPath, [CLI, ...args], { allowFailure: true, timeoutMs: 30_000, env: { ...process.env, ...env } });
}

export interface FileSnapshot {
  /** 'dir' or the file's bytes as base64. */
  content: string;
  mode: string;
}

/** Every entry below dir (recursively) with its content and mode: compare two to prove "byte for byte". */
export function snapshot(dir: string): Record<string, FileSnapshot> {
  const out: Record<string, FileSnapshot> = {};
  const walk = (rel: string): void => {
    for (const entry of fs.readdirSync(path.join(dir, rel), { withFileTypes: true })) {
      const r = rel ? `${rel}/${entry.name}` : entry.name;
      const abs = path.join(dir, r);
      const mode = (fs.lstatSync(abs).mode & 0o7777).toString(8);
      if (entry.isDirectory()) {
        out[r] = { content: 'dir', mode };
        walk(r);
      } else {
        out[r] = { content: fs.readFileSync(abs).toString('base64'), mode };
      }
    }
  };
  walk('');
  return out;
}

/** Writes a file with a mode (creating its directory). */
export function writeFile(file: string, content: string, mode = 0o644): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, content);
  fs.chmodSync(file, mode);
}
