import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { parse as parseYaml } from 'yaml';
import { parseDuration, parseSize } from './human-units.ts';

/** `structured`: a mapping or list, written in the config file (or as YAML/JSON text in a flag or variable). */
export type OptionType = 'string' | 'boolean' | 'integer' | 'size' | 'duration' | 'list' | 'structured';

export interface OptionSpec {
  type: OptionType;
  description: string;
  default?: string | number | boolean | readonly string[] | Record<string, unknown> | readonly unknown[];
  /** Shown in help instead of the type, e.g. `HOST:PORT`. */
  placeholder?: string;
  /** For strings: the accepted values. */
  choices?: readonly string[];
}

export type OptionSpecs = Record<string, OptionSpec>;

type ValueOf<T extends OptionType> = T extends 'boolean'
  ? boolean
  : T extends 'list'
    ? string[]
    : T extends 'integer' | 'size' | 'duration'
      ? number
      : T extends 'structured'
        ? unknown
        : string;

/** Parsed values: sizes in bytes, durations in milliseconds. Options without a default may be undefined. */
export type OptionValues<S extends OptionSpecs> = {
  [K in keyof S]: S[K] extends { default: unknown } ? ValueOf<S[K]['type']> : ValueOf<S[K]['type']> | undefined;
};

export class OptionsError extends Error {
  override name = 'OptionsError';
}

/** Options every command accepts. */
export const COMMON_OPTIONS = {
  config: { type: 'string', description: 'YAML file with any of these options (keys as the flag names)', placeholder: 'FILE' },
  help: { type: 'boolean', description: 'Show this help', default: false },
} as const satisfies OptionSpecs;

export function envName(option: string): string {
  return `PEERPULL_${option.toUpperCase().replace(/-/g, '_')}`;
}

/**
 * Resolves a command's options. Precedence: flags, then `PEERPULL_*` environment variables,
 * then the `--config` YAML file, then defaults. Every error names the offending key and
 * where it came from.
 */
export function loadOptions<S extends OptionSpecs>(
  specs: S,
  input: { argv: string[]; env: NodeJS.ProcessEnv },
): OptionValues<S & typeof COMMON_OPTIONS> & { positionals: string[] } {
  const all: OptionSpecs = { ...COMMON_OPTIONS, ...specs };
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({
      args: input.argv,
      allowPositionals: true,
      strict: true,
      options: Object.fromEntries(
        Object.entries(all).map(([name, spec]) => [name, { type: spec.type === 'boolean' ? 'boolean' : 'string', multiple: spec.type === 'list' }]),
      ) as NonNullable<NonNullable<Parameters<typeof parseArgs>[0]>['options']>,
    });
  } catch (err) {
    throw new OptionsError((err as Error).message.replace(/^.*?: /, ''));
  }
  const flags = parsed.values as Record<string, unknown>;
  const configPath = (flags.config as string | undefined) ?? input.env[envName('config')];
  const file = configPath ? readConfigFile(configPath, all) : {};
  const result: Record<string, unknown> = { positionals: parsed.positionals };
  for (const [name, spec] of Object.entries(all)) {
    const env = input.env[envName(name)];
    let raw: unknown;
    let origin: string;
    if (flags[name] !== undefined) {
      raw = flags[name];
      origin = `--${name}`;
    } else if (env !== undefined && env !== '' && name !== 'help') {
      raw = spec.type === 'list' ? env.split(',').map((s) => s.trim()).filter(Boolean) : env;
      origin = envName(name);
    } else if (name in file) {
      raw = file[name];
      origin = `${configPath}: ${name}`;
    } else {
      raw = spec.default;
      origin = `default of ${name}`;
    }
    const value = raw === undefined ? undefined : convert(raw, spec.type, origin);
    if (spec.choices && value !== undefined && !spec.choices.includes(value as string)) {
      throw new OptionsError(`invalid value for ${origin}: ${JSON.stringify(value)} is not one of ${spec.choices.join(', ')}`);
    }
    result[name] = value;
  }
  return result as OptionValues<S & typeof COMMON_OPTIONS> & { positionals: string[] };
}

function readConfigFile(path: string, specs: OptionSpecs): Record<string, unknown> {
  let doc: unknown;
  try {
    doc = parseYaml(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new OptionsError(`cannot read config file ${path}: ${(err as Error).message}`);
  }
  if (doc === null || doc === undefined) return {};
  if (typeof doc !== 'object' || Array.isArray(doc)) throw new OptionsError(`config file ${path}: expected a mapping of option names to values`);
  for (const key of Object.keys(doc)) {
    if (!(key in specs) || key === 'config' || key === 'help') {
      throw new OptionsError(`config file ${path}: unknown key "${key}" (known keys: ${Object.keys(specs).filter((k) => k !== 'config' && k !== 'help').join(', ')})`);
    }
  }
  return doc as Record<string, unknown>;
}

function convert(raw: unknown, type: OptionType, origin: string): unknown {
  const fail = (why: string): never => {
    throw new OptionsError(`invalid value for ${origin}: ${why}`);
  };
  try {
    switch (type) {
      case 'boolean':
        if (typeof raw === 'boolean') return raw;
        if (raw === 'true' || raw === '1' || raw === 'yes') return true;
        if (raw === 'false' || raw === '0' || raw === 'no') return false;
        return fail(`expected true or false, got ${JSON.stringify(raw)}`);
      case 'integer': {
        const n = typeof raw === 'number' ? raw : Number(raw);
        if (!Number.isInteger(n) || n < 0) return fail(`expected a non-negative integer, got ${JSON.stringify(raw)}`);
        return n;
      }
      case 'size':
        if (typeof raw !== 'string' && typeof raw !== 'number') return fail(`expected a size like 20GiB, got ${JSON.stringify(raw)}`);
        return parseSize(raw);
      case 'duration':
        if (typeof raw !== 'string' && typeof raw !== 'number') return fail(`expected a duration like 5m, got ${JSON.stringify(raw)}`);
        return parseDuration(raw);
      case 'list':
        if (Array.isArray(raw)) return raw.map(String);
        if (typeof raw === 'string') return raw.split(',').map((s) => s.trim()).filter(Boolean);
        return fail(`expected a list, got ${JSON.stringify(raw)}`);
      case 'structured':
        return typeof raw === 'string' ? parseYaml(raw) : raw;
      case 'string':
        if (typeof raw === 'string' || typeof raw === 'number') return String(raw);
        return fail(`expected a string, got ${JSON.stringify(raw)}`);
    }
  } catch (err) {
    if (err instanceof OptionsError) throw err;
    return fail((err as Error).message);
  }
}

export function formatHelp(usage: string, summary: string, specs: OptionSpecs): string {
  const all: OptionSpecs = { ...specs, ...COMMON_OPTIONS };
  const rows = Object.entries(all).map(([name, spec]) => {
    const arg = spec.type === 'boolean' ? '' : ` ${spec.placeholder ?? spec.type.toUpperCase()}`;
    const def = spec.default === undefined || spec.type === 'boolean' && spec.default === false || spec.type === 'structured'
      ? ''
      : ` (default: ${Array.isArray(spec.default) ? spec.default.join(',') : String(spec.default)})`;
    const repeat = spec.type === 'list' ? ' [repeatable]' : '';
    return [`  --${name}${arg}`, `${spec.description}${repeat}${def}; env ${envName(name)}`];
  });
  const width = Math.min(40, Math.max(...rows.map(([left]) => (left ?? '').length)) + 2);
  const lines = rows.map(([left = '', right = '']) => (left.length + 2 > width ? `${left}\n${' '.repeat(width)}${right}` : `${left.padEnd(width)}${right}`));
  return `Usage: ${usage}\n\n${summary}\n\nOptions:\n${lines.join('\n')}\n`;
}
