import { fileURLToPath } from 'node:url';
import { formatHelp, loadOptions, parseSize, type OptionSpecs } from '@peerpull/common';
import { runDemo } from '@peerpull/demo';

export const DEMO_OPTIONS = {
  nodes: { type: 'integer', description: 'Daemons (nodes) in the demo cluster', default: 4 },
  'image-size': { type: 'size', description: 'Size of the generated image', default: '150MB' },
  'wan-rate': { type: 'string', description: 'Emulated WAN rate to the upstream (e.g. 100mbit, 50MB; 0 = unlimited)', default: '200mbit', placeholder: 'RATE' },
  'wan-latency': { type: 'duration', description: 'Emulated WAN delay, added in each direction', default: '25ms' },
  p2p: { type: 'boolean', description: 'Let nodes fetch from each other (--p2p=false: seed only)', default: true },
  keep: { type: 'boolean', description: 'Keep the data dirs and logs', default: false },
  real: { type: 'boolean', description: 'Use the real distribution registry (docker-registry, pushed with skopeo) in a network namespace behind a tc-shaped link, and a private containerd per node', default: false },
} as const satisfies OptionSpecs;

const USAGE = 'peerpull demo [options]';
const SUMMARY = `Runs a cluster on this machine, offline: an embedded upstream registry with a generated
image behind an emulated WAN, one seed and N daemons (separate processes), then pulls the
image on every node at once and shows where each byte came from. With --real (root, and the
docker-registry, skopeo and containerd packages): the real registry and containerd instead.`;

export async function demoCommand(argv: string[]): Promise<number> {
  const opts = loadOptions(DEMO_OPTIONS, { argv, env: process.env });
  if (opts.help) {
    process.stdout.write(formatHelp(USAGE, SUMMARY, DEMO_OPTIONS));
    return 0;
  }
  return runDemo({
    cliPath: fileURLToPath(new URL('../main.ts', import.meta.url)),
    nodes: Math.max(1, opts.nodes),
    imageBytes: opts['image-size'],
    wanRate: parseRate(opts['wan-rate']),
    wanLatencyMs: opts['wan-latency'],
    p2p: opts.p2p,
    keep: opts.keep,
    real: opts.real,
    out: process.stdout,
  });
}

/** `100mbit` → bytes per second; a plain size (`50MB`) is bytes per second too. */
function parseRate(text: string): number {
  const bits = /^\s*(\d+(?:\.\d+)?)\s*(k|m|g)bit\s*$/i.exec(text);
  if (bits) return (Number(bits[1]) * { k: 1e3, m: 1e6, g: 1e9 }[(bits[2] as string).toLowerCase() as 'k' | 'm' | 'g']) / 8;
  return parseSize(text);
}
