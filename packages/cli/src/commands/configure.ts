import { OptionsError, formatHelp, loadOptions, type OptionSpecs } from '@peerpull/common/options';
import { DEFAULT_REGISTRIES } from '@peerpull/common/registry-allowlist';
import { DEFAULT_CONTAINERD_CONFIG, checkContainerdConfig } from '../configure/containerd-config-check.ts';
import { DEFAULT_CERTS_DIR, applyContainerdMirrors, removeContainerdMirrors, type FileChange } from '../configure/containerd-hosts.ts';
import { DEFAULT_CRIO_DROP_IN_DIR, DEFAULT_REGISTRIES_CONF, applyCrioMirrors, removeCrioMirrors } from '../configure/crio-registries.ts';
import { DEFAULT_K3S_REGISTRIES, applyK3sMirrors, removeK3sMirrors } from '../configure/k3s-registries.ts';
import { containerdStatus } from '../configure/containerd-status.ts';
import { parseMirrorUrl, parseRegistryTargets } from '../configure/registry-targets.ts';

const SHARED = {
  registries: {
    type: 'list',
    description: 'Registries to pull through the mirror: host, host=upstream-url (as the daemon\'s --registry), or _default for all others',
    default: DEFAULT_REGISTRIES,
    placeholder: 'HOST[=URL]',
  },
  mirror: { type: 'string', description: 'URL of the peerpull daemon as the runtime reaches it', default: 'http://127.0.0.1:5050', placeholder: 'URL' },
  remove: { type: 'boolean', description: 'Put back what was there before peerpull (byte for byte) instead of configuring', default: false },
  force: { type: 'boolean', description: 'Write into a directory or over a file peerpull does not understand, or that was changed since peerpull wrote it', default: false },
} as const satisfies OptionSpecs;

export const CONFIGURE_CONTAINERD_OPTIONS = {
  ...SHARED,
  'config-path': { type: 'string', description: 'containerd\'s hosts directory (config_path): one <registry>/hosts.toml each', default: DEFAULT_CERTS_DIR, placeholder: 'DIR' },
  'containerd-config-file': { type: 'string', description: 'containerd\'s config file, checked for config_path', default: DEFAULT_CONTAINERD_CONFIG, placeholder: 'FILE' },
  'dial-timeout': { type: 'duration', description: 'How long containerd waits to connect to the mirror before the next host', default: '200ms' },
  check: { type: 'boolean', description: 'Change nothing: check containerd\'s config_path, the hosts.toml files and the mirror; exit 1 when not in place', default: false },
} as const satisfies OptionSpecs;

export const CONFIGURE_K3S_OPTIONS = {
  ...SHARED,
  'config-path': { type: 'string', description: 'k3s\'s registries.yaml (read by k3s when it starts)', default: DEFAULT_K3S_REGISTRIES, placeholder: 'FILE' },
} as const satisfies OptionSpecs;

export const CONFIGURE_CRIO_OPTIONS = {
  ...SHARED,
  'config-path': { type: 'string', description: 'The registries.conf.d drop-in directory', default: DEFAULT_CRIO_DROP_IN_DIR, placeholder: 'DIR' },
  'registries-conf': { type: 'string', description: 'The main registries.conf (read only: settings of the mirrored registries are carried over)', default: DEFAULT_REGISTRIES_CONF, placeholder: 'FILE' },
} as const satisfies OptionSpecs;

const USAGE = `Usage: peerpull configure <containerd|k3s|crio> [options]

Points a container runtime at the peerpull mirror, so that it tries the mirror first and
falls back to the upstream registry when the mirror is down. Backs up what it changes and
puts it back with --remove. Safe to run again (idempotent).

  containerd  one <registry>/hosts.toml per registry in containerd's certs.d (applies at once)
  k3s         the mirrors: section of /etc/rancher/k3s/registries.yaml (applies when k3s restarts)
  crio        a registries.conf.d drop-in (applies when CRI-O reloads)

Run 'peerpull configure <runtime> --help' for the options.
`;

export async function configureCommand(argv: string[]): Promise<number> {
  const [runtime, ...rest] = argv;
  if (!runtime || runtime === '--help' || runtime === '-h' || runtime === 'help') {
    process.stdout.write(USAGE);
    return runtime ? 0 : 2;
  }
  switch (runtime) {
    case 'containerd':
      return configureContainerd(rest);
    case 'k3s':
      return configureK3s(rest);
    case 'crio':
    case 'cri-o':
      return configureCrio(rest);
    default:
      throw new OptionsError(`unknown runtime "${runtime}" (expected containerd, k3s or crio)`);
  }
}

async function configureContainerd(argv: string[]): Promise<number> {
  const opts = loadOptions(CONFIGURE_CONTAINERD_OPTIONS, { argv, env: process.env });
  if (opts.help) return help('containerd', 'Writes one hosts.toml per registry into containerd\'s certs.d: the mirror first, the upstream as server.', CONFIGURE_CONTAINERD_OPTIONS);
  noPositionals(opts.positionals);
  const certsDir = opts['config-path'];
  if (opts.remove) return report(await removeContainerdMirrors({ certsDir, force: opts.force }));
  const targets = parseRegistryTargets(opts.registries);
  const mirror = parseMirrorUrl(opts.mirror);
  if (opts.check) {
    const status = await containerdStatus({ certsDir, targets, mirror, containerdConfig: opts['containerd-config-file'] });
    for (const line of status.lines) process.stdout.write(`${line}\n`);
    return status.ok ? 0 : 1;
  }
  const dialTimeoutMs = opts['dial-timeout'];
  if (!Number.isFinite(dialTimeoutMs) || dialTimeoutMs <= 0) throw new OptionsError('--dial-timeout: expected a positive duration like 200ms');
  const code = report(await applyContainerdMirrors({ certsDir, targets, mirror, dialTimeoutMs: Math.ceil(dialTimeoutMs), force: opts.force }));
  const check = checkContainerdConfig(opts['containerd-config-file'], certsDir);
  if (check.ok) process.stdout.write(`${check.message}\n`);
  else warn(`containerd will not use these files yet: ${check.message}`);
  return code;
}

async function configureK3s(argv: string[]): Promise<number> {
  const opts = loadOptions(CONFIGURE_K3S_OPTIONS, { argv, env: process.env });
  if (opts.help) return help('k3s', 'Writes the mirrors: section of k3s\'s registries.yaml (k3s falls back to the registry itself).', CONFIGURE_K3S_OPTIONS);
  noPositionals(opts.positionals);
  const file = opts['config-path'];
  const changes = opts.remove
    ? await removeK3sMirrors({ file, force: opts.force })
    : await applyK3sMirrors({ file, targets: parseRegistryTargets(opts.registries), mirror: parseMirrorUrl(opts.mirror), force: opts.force });
  const code = report(changes);
  if (changes.some((c) => c.result !== 'unchanged' && c.result !== 'not-managed')) {
    process.stdout.write('k3s reads registries.yaml when it starts: restart k3s (systemctl restart k3s, or k3s-agent on agents) to apply.\n');
  }
  return code;
}

async function configureCrio(argv: string[]): Promise<number> {
  const opts = loadOptions(CONFIGURE_CRIO_OPTIONS, { argv, env: process.env });
  if (opts.help) return help('crio', 'Writes a registries.conf.d drop-in with the mirror (the registry in its path) for each registry.', CONFIGURE_CRIO_OPTIONS);
  noPositionals(opts.positionals);
  const dropInDir = opts['config-path'];
  let changes: FileChange[];
  if (opts.remove) {
    changes = await removeCrioMirrors({ dropInDir, force: opts.force });
  } else {
    const result = await applyCrioMirrors({
      dropInDir,
      registriesConf: opts['registries-conf'],
      targets: parseRegistryTargets(opts.registries),
      mirror: parseMirrorUrl(opts.mirror),
      force: opts.force,
    });
    for (const w of result.warnings) warn(w);
    changes = result.changes;
  }
  const code = report(changes);
  if (changes.some((c) => c.result !== 'unchanged' && c.result !== 'not-managed')) {
    process.stdout.write('Reload CRI-O to apply: systemctl reload crio (or send crio a SIGHUP).\n');
  }
  return code;
}

const RESULT_TEXT: Record<FileChange['result'], string> = {
  created: 'configured',
  updated: 'updated',
  unchanged: 'unchanged',
  restored: 'restored the original',
  removed: 'removed',
  'not-managed': 'not managed by peerpull',
  'kept-modified': 'left alone: changed since peerpull wrote it (use --force to restore the original)',
};

/** One line per file; exit 1 when a file was left alone. */
function report(changes: FileChange[]): number {
  if (changes.length === 0) process.stdout.write('nothing to do: peerpull manages no files there\n');
  for (const change of changes) process.stdout.write(`${RESULT_TEXT[change.result]}: ${change.path}\n`);
  return changes.some((c) => c.result === 'kept-modified') ? 1 : 0;
}

function help(runtime: string, summary: string, specs: OptionSpecs): number {
  process.stdout.write(formatHelp(`peerpull configure ${runtime} [options]`, summary, specs));
  return 0;
}

function warn(message: string): void {
  process.stderr.write(`peerpull configure: warning: ${message}\n`);
}

function noPositionals(positionals: string[]): void {
  if (positionals.length > 0) throw new OptionsError(`unexpected argument "${positionals[0]}"`);
}
