#!/usr/bin/env node
import { OptionsError } from '@peerpull/common';
import { daemonCommand } from './commands/daemon.ts';
import { demoCommand } from './commands/demo.ts';
import { seedCommand } from './commands/seed.ts';

const VERSION = '0.1.0';

const COMMANDS: Record<string, { summary: string; run: (argv: string[]) => Promise<number> }> = {
  daemon: { summary: 'Run the node-local registry mirror (the DaemonSet / systemd service)', run: daemonCommand },
  seed: { summary: 'Run the cluster seed cache (pull-through cache and source of truth for tags)', run: seedCommand },
  demo: { summary: 'Run a self-contained demo on this machine, offline, and show where bytes came from', run: demoCommand },
};

function usage(): string {
  const rows = Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(10)}${c.summary}`);
  return `peerpull ${VERSION}: peer-to-peer, node-local container image distribution

Usage: peerpull <command> [options]

Commands:
${rows.join('\n')}

Run 'peerpull <command> --help' for a command's options. Every option can also be set
as a PEERPULL_* environment variable or in a YAML file given with --config.
`;
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (!command || command === 'help' || command === '--help' || command === '-h') {
    process.stdout.write(usage());
    return command ? 0 : 2;
  }
  if (command === 'version' || command === '--version') {
    process.stdout.write(`${VERSION}\n`);
    return 0;
  }
  const entry = COMMANDS[command];
  if (!entry) {
    process.stderr.write(`peerpull: unknown command "${command}"\n\n${usage()}`);
    return 2;
  }
  try {
    return await entry.run(rest);
  } catch (err) {
    if (err instanceof OptionsError) {
      process.stderr.write(`peerpull ${command}: ${err.message}\nRun 'peerpull ${command} --help' for the options.\n`);
      return 2;
    }
    process.stderr.write(`peerpull ${command}: ${(err as Error).message}\n`);
    return 1;
  }
}

process.exitCode = await main(process.argv.slice(2));
