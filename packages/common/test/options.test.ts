import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { OptionsError, envName, formatHelp, loadOptions, type OptionSpecs } from '../src/options.ts';

const SPECS = {
  listen: { type: 'string', description: 'Address to listen on', default: '127.0.0.1:5000', placeholder: 'HOST:PORT' },
  'cache-size': { type: 'size', description: 'Cache size', default: '20GiB' },
  'tag-ttl': { type: 'duration', description: 'Tag TTL', default: '5m' },
  registry: { type: 'list', description: 'Upstream registries', default: ['docker.io'] },
  'log-level': { type: 'string', description: 'Log level', default: 'info', choices: ['debug', 'info', 'warn'] },
  workers: { type: 'integer', description: 'Workers', default: 4 },
  verbose: { type: 'boolean', description: 'Verbose', default: false },
  token: { type: 'string', description: 'No default' },
} as const satisfies OptionSpecs;

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'peerpull-options-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function configFile(name: string, text: string): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, text);
  return path;
}

function load(argv: string[] = [], env: NodeJS.ProcessEnv = {}) {
  return loadOptions(SPECS, { argv, env });
}

function assertOptionsError(fn: () => unknown, ...patterns: RegExp[]): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof OptionsError, `expected OptionsError, got ${String(err)}`);
    for (const pattern of patterns) assert.match(err.message, pattern);
    return true;
  });
}

describe('loadOptions', () => {
  test('defaults are converted: sizes to bytes, durations to ms', () => {
    const opts = load();
    assert.equal(opts.listen, '127.0.0.1:5000');
    assert.equal(opts['cache-size'], 20 * 2 ** 30);
    assert.equal(opts['tag-ttl'], 300_000);
    assert.deepEqual(opts.registry, ['docker.io']);
    assert.equal(opts['log-level'], 'info');
    assert.equal(opts.workers, 4);
    assert.equal(opts.verbose, false);
    assert.equal(opts.help, false);
    assert.equal(opts.token, undefined);
    assert.equal(opts.config, undefined);
    assert.deepEqual(opts.positionals, []);
  });

  test('precedence: flags > PEERPULL_* env > config file > defaults', async () => {
    const config = await configFile('precedence.yaml', 'listen: 127.0.0.1:1\ncache-size: 1GiB\ntag-ttl: 1m\nworkers: 1\n');
    const env = { PEERPULL_LISTEN: '127.0.0.1:2', PEERPULL_CACHE_SIZE: '2GiB' };
    const opts = load(['--config', config, '--listen', '127.0.0.1:3'], env);
    assert.equal(opts.listen, '127.0.0.1:3', 'flag beats env and file');
    assert.equal(opts['cache-size'], 2 * 2 ** 30, 'env beats file');
    assert.equal(opts['tag-ttl'], 60_000, 'file beats default');
    assert.equal(opts.workers, 1);
    assert.deepEqual(opts.registry, ['docker.io'], 'default when nobody says otherwise');
    assert.equal(opts.config, config);

    assert.equal(load(['--config', config], env).listen, '127.0.0.1:2');
    assert.equal(load(['--config', config]).listen, '127.0.0.1:1');
    assert.equal(load().listen, '127.0.0.1:5000');
  });

  test('the config file may be named by PEERPULL_CONFIG', async () => {
    const config = await configFile('via-env.yaml', 'workers: 9\n');
    assert.equal(load([], { PEERPULL_CONFIG: config }).workers, 9);
  });

  test('an empty environment variable is ignored', () => {
    assert.equal(load([], { PEERPULL_LISTEN: '' }).listen, '127.0.0.1:5000');
  });

  test('list flags are repeatable; list env variables are comma-separated', async () => {
    assert.deepEqual(load(['--registry', 'ghcr.io', '--registry', 'quay.io']).registry, ['ghcr.io', 'quay.io']);
    assert.deepEqual(load([], { PEERPULL_REGISTRY: 'ghcr.io, quay.io,,registry.k8s.io ' }).registry, ['ghcr.io', 'quay.io', 'registry.k8s.io']);
    assert.deepEqual(load(['--registry', 'gcr.io'], { PEERPULL_REGISTRY: 'ghcr.io' }).registry, ['gcr.io']);
    const yamlList = await configFile('list.yaml', 'registry:\n  - docker.io\n  - 127.0.0.1:5001=http://127.0.0.1:5001\n');
    assert.deepEqual(load(['--config', yamlList]).registry, ['docker.io', '127.0.0.1:5001=http://127.0.0.1:5001']);
    const yamlString = await configFile('list-string.yaml', 'registry: "a.io, b.io"\n');
    assert.deepEqual(load(['--config', yamlString]).registry, ['a.io', 'b.io']);
  });

  test('positionals are kept', () => {
    assert.deepEqual(load(['pull', '--verbose', 'nginx']).positionals, ['pull', 'nginx']);
  });

  test('booleans from flags, env and file', async () => {
    assert.equal(load(['--verbose']).verbose, true);
    assert.equal(load([], { PEERPULL_VERBOSE: 'yes' }).verbose, true);
    assert.equal(load([], { PEERPULL_VERBOSE: '0' }).verbose, false);
    const config = await configFile('bool.yaml', 'verbose: true\n');
    assert.equal(load(['--config', config]).verbose, true);
    assertOptionsError(() => load([], { PEERPULL_VERBOSE: 'maybe' }), /PEERPULL_VERBOSE/, /expected true or false/);
  });

  test('PEERPULL_HELP does not turn on help', () => {
    assert.equal(load([], { PEERPULL_HELP: 'true' }).help, false);
    assert.equal(load(['--help']).help, true);
  });

  test('an unknown config key is an error naming the key and the known keys', async () => {
    const config = await configFile('unknown.yaml', 'listen: 127.0.0.1:1\ncache_size: 1GiB\n');
    assertOptionsError(() => load(['--config', config]), /unknown key "cache_size"/, new RegExp(config.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')), /known keys: .*cache-size/);
  });

  test('config and help are not valid config file keys', async () => {
    const config = await configFile('nested.yaml', 'config: other.yaml\n');
    assertOptionsError(() => load(['--config', config]), /unknown key "config"/);
  });

  test('an invalid size names the option and where it came from', async () => {
    assertOptionsError(() => load(['--cache-size', 'lots']), /invalid value for --cache-size/, /invalid size "lots"/);
    assertOptionsError(() => load([], { PEERPULL_CACHE_SIZE: '12XB' }), /invalid value for PEERPULL_CACHE_SIZE/, /invalid size "12XB"/);
    const config = await configFile('bad-size.yaml', 'cache-size: huge\n');
    assertOptionsError(() => load(['--config', config]), new RegExp(`invalid value for .*bad-size\\.yaml: cache-size`), /invalid size "huge"/);
    const listConfig = await configFile('bad-size-type.yaml', 'cache-size: [1, 2]\n');
    assertOptionsError(() => load(['--config', listConfig]), /cache-size/, /expected a size/);
  });

  test('an invalid duration names the option', () => {
    assertOptionsError(() => load(['--tag-ttl', '5 minutes']), /invalid value for --tag-ttl/, /invalid duration/);
  });

  test('integers must be non-negative whole numbers', () => {
    assert.equal(load(['--workers', '16']).workers, 16);
    assertOptionsError(() => load(['--workers=-1']), /--workers/, /non-negative integer/);
    assertOptionsError(() => load(['--workers', '2.5']), /--workers/);
    assertOptionsError(() => load([], { PEERPULL_WORKERS: 'many' }), /PEERPULL_WORKERS/);
  });

  test('choices are enforced from every origin', async () => {
    assert.equal(load(['--log-level', 'debug'])['log-level'], 'debug');
    assertOptionsError(() => load(['--log-level', 'loud']), /--log-level/, /"loud" is not one of debug, info, warn/);
    assertOptionsError(() => load([], { PEERPULL_LOG_LEVEL: 'trace' }), /PEERPULL_LOG_LEVEL/, /not one of/);
    const config = await configFile('choice.yaml', 'log-level: verbose\n');
    assertOptionsError(() => load(['--config', config]), /choice\.yaml: log-level/, /not one of/);
  });

  test('unknown flags and missing flag values are OptionsErrors', () => {
    assertOptionsError(() => load(['--no-such-flag']), /--no-such-flag/);
    assertOptionsError(() => load(['--listen']), /--listen/);
  });

  test('config file problems are reported with the path', async () => {
    const missing = join(dir, 'missing.yaml');
    assertOptionsError(() => load(['--config', missing]), /cannot read config file .*missing\.yaml/);
    const list = await configFile('list-doc.yaml', '- a\n- b\n');
    assertOptionsError(() => load(['--config', list]), /expected a mapping/);
    const broken = await configFile('broken.yaml', 'listen: [unclosed\n');
    assertOptionsError(() => load(['--config', broken]), /cannot read config file .*broken\.yaml/);
    const empty = await configFile('empty.yaml', '');
    assert.equal(load(['--config', empty]).listen, '127.0.0.1:5000');
  });
});

describe('envName and formatHelp', () => {
  test('envName', () => {
    assert.equal(envName('cache-size'), 'PEERPULL_CACHE_SIZE');
    assert.equal(envName('listen'), 'PEERPULL_LISTEN');
  });

  test('help lists every option with its env variable and default', () => {
    const help = formatHelp('peerpull daemon [options]', 'Runs the mirror.', SPECS);
    assert.match(help, /^Usage: peerpull daemon \[options\]/);
    assert.match(help, /--listen HOST:PORT/);
    assert.match(help, /--cache-size SIZE/);
    assert.match(help, /env PEERPULL_CACHE_SIZE/);
    assert.match(help, /default: 20GiB/);
    assert.match(help, /Upstream registries \[repeatable\] \(default: docker\.io\)/);
    assert.match(help, /--config FILE/);
  });
});
