#!/usr/bin/env node
// Light imports only: each command loads its modules when it runs (`configure`, which runs
// in init containers and preStop hooks, then starts without loading libp2p and the server).
import { OptionsError } from '@peerpull/common/options';

const VERSION = '0.1.0';

const COMMANDS: Record<string, { summary: string; run: (argv: string[]) => Promise<number> }> = {
  daemon: { summary: 'Run the node-local registry mirror (the DaemonSet / systemd service)', run: async (argv) => (await import('./commands/daemon.ts')).daemonCommand(argv) },
  seed: { summary: 'Run the cluster seed cache (pull-through cache and source of truth for tags)', run: async (argv) => (await import('./commands/seed.ts')).seedCommand(argv) },
  configure: { summary: 'Point containerd, k3s or CRI-O at the mirror (fails open; --remove undoes it)', run: async (argv) => (await import('./commands/configure.ts')).configureCommand(argv) },
  status: { summary: 'Is it working? Sources, peers, cache, hit ratio, WAN saved, errors (daemon and --seed)', run: async (argv) => (await import('./commands/status.ts')).statusCommand(argv) },
  explain: { summary: 'Where each layer of an image is, and where the last pull got it from and why', run: async (argv) => (await import('./commands/explain.ts')).explainCommand(argv) },
  prefetch: { summary: 'Have the seed fetch images now, with live progress', run: async (argv) => (await import('./commands/prefetch.ts')).prefetchCommand(argv) },
  cache: { summary: 'List, remove, evict or verify what this node holds (ls | rm | gc | verify)', run: async (argv) => (await import('./commands/cache.ts')).cacheCommand(argv) },
  pulls: { summary: 'The cluster\'s pull audit log, from the seed', run: async (argv) => (await import('./commands/pulls.ts')).pullsCommand(argv) },
  demo: { summary: 'Run a self-contained demo on this machine, offline, and show where bytes came from', run: async (argv) => (await import('./commands/demo.ts')).demoCommand(argv) },
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
