// What the cluster benchmarks (burst, peer-transfer, peer-lookup) share besides measuring: their
// command line (with --out and --keep), a log with the time since start, a work dir, the machine
// they ran on, and writing the results JSON.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs, type ParseArgsOptionDescriptor } from 'node:util';
import { makeTempDir } from '@peerpull/demo/processes';
import { REPO_ROOT } from '../fixtures/daemon.ts';

export interface BenchRun {
  /** The flags, parsed (values as parseArgs gives them: string or boolean). */
  args: Record<string, string | boolean | undefined>;
  startedAt: number;
  /** How to run it again with the same flags (`pnpm bench:peer -- --reps 1`), for the report. */
  command: string;
  /** Progress to stderr, with the seconds since start. */
  log(msg: string): void;
  /** A fresh work dir: removed at exit (makeTempDir), unless --keep. */
  makeWorkDir(prefix: string): string;
  /** Writes the results JSON to --out and says where (and where the kept logs are). */
  writeResults(json: unknown, workDir: string): void;
}

/** Parses the command line; `out` is the default results file (relative to the repository). */
export function startBench(spec: { script: string; out: string; options: Record<string, ParseArgsOptionDescriptor> }): BenchRun {
  const startedAt = Date.now();
  // pnpm passes the `--` of `pnpm bench -- --nodes 10` on to the script.
  const flags = process.argv.slice(2).filter((a, i) => !(i === 0 && a === '--'));
  const { values: args } = parseArgs({
    args: flags,
    options: { ...spec.options, out: { type: 'string', default: spec.out }, keep: { type: 'boolean', default: false } },
    allowPositionals: false,
  });
  return {
    args,
    startedAt,
    command: `pnpm ${spec.script}${flags.length ? ` -- ${flags.join(' ')}` : ''}`,
    log: (msg) => void process.stderr.write(`[bench ${((Date.now() - startedAt) / 1000).toFixed(0).padStart(4)}s] ${msg}\n`),
    makeWorkDir: (prefix) => (args.keep ? fs.mkdtempSync(path.join(os.tmpdir(), prefix)) : makeTempDir(prefix)),
    writeResults(json, workDir) {
      const outFile = path.resolve(REPO_ROOT, args.out as string);
      fs.mkdirSync(path.dirname(outFile), { recursive: true });
      fs.writeFileSync(outFile, `${JSON.stringify(json, null, 2)}\n`);
      process.stdout.write(`\nwrote ${path.relative(REPO_ROOT, outFile)}${args.keep ? `; logs kept in ${workDir}` : ''}\n`);
    },
  };
}

/** The machine a result came from, for the results JSON. */
export function machineInfo(loadavgBefore: number[], loadavgAfter: number[]): Record<string, unknown> {
  return { cpus: os.cpus().length, model: os.cpus()[0]?.model, memGiB: os.totalmem() / 2 ** 30, kernel: os.release(), node: process.version, loadavgBefore, loadavgAfter };
}
