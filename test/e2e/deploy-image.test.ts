// The container image cannot be built here (no Docker engine), so this runs what the Dockerfile
// does: the build stage's COPY lines and its `pnpm install` (production dependencies only), then
// the final stage's layout (COPY --from=build, the `peerpull` symlink), and runs the entrypoint
// from there: `peerpull --help`, and a daemon that starts (the native store binding loads).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { REPO_ROOT } from '../fixtures/daemon.ts';
import { makeTempDir, spawnManaged } from '../fixtures/processes.ts';

const PNPM = spawnSync('sh', ['-c', 'command -v pnpm'], { encoding: 'utf8' }).stdout.trim();

interface Stage {
  name: string | undefined;
  lines: string[];
}

function dockerfileStages(text: string): Stage[] {
  const lines = text.split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
  const stages: Stage[] = [];
  for (const line of lines) {
    const from = /^FROM\s+\S+(?:\s+AS\s+(\S+))?$/i.exec(line);
    if (from) stages.push({ name: from[1], lines: [] });
    else stages.at(-1)?.lines.push(line);
  }
  return stages;
}

/** `a "b c" d` -> ['a', 'b c', 'd'] (enough for the Dockerfile's RUN line). */
function shellWords(line: string): string[] {
  return [...line.matchAll(/"([^"]*)"|'([^']*)'|(\S+)/g)].map((m) => m[1] ?? m[2] ?? m[3] ?? '');
}

/** Docker COPY: several sources or a dest ending in / -> into the directory; a directory source -> its contents. */
function dockerCopy(sources: string[], dest: string, contextDir: string, workdir: string): void {
  const target = path.join(workdir, dest);
  for (const src of sources) {
    const from = path.join(contextDir, src);
    const isDir = fs.statSync(from).isDirectory();
    const to = isDir ? target : sources.length > 1 || dest.endsWith('/') ? path.join(target, path.basename(src)) : target;
    fs.mkdirSync(isDir ? to : path.dirname(to), { recursive: true });
    fs.cpSync(from, to, { recursive: true });
  }
}

test('production install as the Dockerfile does it: `peerpull` runs from the result', { skip: PNPM ? false : 'pnpm is not on the PATH' }, async () => {
  const dockerfile = fs.readFileSync(path.join(REPO_ROOT, 'Dockerfile'), 'utf8');
  const stages = dockerfileStages(dockerfile);
  const build = stages.find((s) => s.name === 'build');
  const final = stages.at(-1);
  assert.ok(build && final && final !== build, 'a multi-stage Dockerfile with a build stage');
  assert.match(dockerfile, /^ARG NODE_IMAGE=node:24-slim$/m);

  // .dockerignore is an allowlist, and lets through every COPY source.
  const ignore = fs.readFileSync(path.join(REPO_ROOT, '.dockerignore'), 'utf8').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
  assert.equal(ignore[0], '*', '.dockerignore starts by excluding everything');
  const allowed = ignore.filter((l) => l.startsWith('!')).map((l) => l.slice(1));

  const root = makeTempDir('pp-image-');
  const app = path.join(root, 'build/app');
  let workdir = '/';
  let installed = false;
  for (const line of build.lines) {
    const [instr = '', ...rest] = shellWords(line);
    if (/^WORKDIR$/i.test(instr)) workdir = rest[0] as string;
    if (/^COPY$/i.test(instr)) {
      assert.equal(workdir, '/app');
      const dest = rest.at(-1) as string;
      const sources = rest.slice(0, -1);
      for (const src of sources) assert.ok(allowed.some((a) => src === a || path.matchesGlob(src, a) || src.startsWith(`${a}/`)), `.dockerignore lets ${src} through`);
      dockerCopy(sources, dest, REPO_ROOT, app);
    }
    if (/^RUN$/i.test(instr) && rest[0] === 'pnpm') {
      assert.ok(rest.includes('--prod') && rest.includes('--frozen-lockfile'), 'production dependencies, from the lockfile');
      const r = spawnSync(PNPM, [...rest.slice(1), '--prefer-offline', '--reporter=silent'], { cwd: app, encoding: 'utf8', timeout: 300_000, env: { ...process.env, CI: 'true' } });
      assert.equal(r.status, 0, `pnpm ${rest.slice(1).join(' ')}:\n${r.stdout}\n${r.stderr}`);
      installed = true;
    }
  }
  assert.ok(installed, 'the build stage runs pnpm install');

  // The final stage: COPY --from=build /app /app, and the symlink.
  assert.ok(final.lines.includes('COPY --from=build /app /app'));
  assert.ok(final.lines.includes('RUN ln -s /app/deploy/bin/peerpull /usr/local/bin/peerpull'));
  assert.ok(final.lines.includes('ENTRYPOINT ["peerpull"]'));
  assert.ok(final.lines.some((l) => /^USER\s+(?!root|0\b)\S+/.test(l)), 'a non-root user by default');
  const image = path.join(root, 'image');
  fs.cpSync(app, path.join(image, 'app'), { recursive: true, verbatimSymlinks: true });
  fs.mkdirSync(path.join(image, 'usr/local/bin'), { recursive: true });
  const entrypoint = path.join(image, 'usr/local/bin/peerpull');
  fs.symlinkSync(path.join(image, 'app/deploy/bin/peerpull'), entrypoint);

  const pnpmDir = path.join(image, 'app/node_modules/.pnpm');
  const packages = fs.readdirSync(pnpmDir);
  assert.ok(packages.some((p) => p.startsWith('fastify@')), 'runtime dependencies are installed');
  assert.ok(!packages.some((p) => p.startsWith('typescript@') || p.startsWith('@types+node@')), 'no dev dependencies');
  assert.ok(!fs.existsSync(path.join(image, 'app/packages/common/test')) && !fs.existsSync(path.join(image, 'app/test/e2e')), 'no tests in the image');

  const help = spawnSync(entrypoint, ['--help'], { encoding: 'utf8', timeout: 30_000 });
  assert.equal(help.status, 0, help.stderr);
  assert.match(help.stdout, /^Usage: peerpull <command> \[options\]$/m);
  assert.match(help.stdout, /^ {2}configure /m);
  const configureHelp = spawnSync(entrypoint, ['configure', 'containerd', '--help'], { encoding: 'utf8', timeout: 30_000 });
  assert.equal(configureHelp.status, 0, configureHelp.stderr);

  // A daemon starts from the image layout (libp2p, fastify and the native LevelDB binding load).
  const daemon = spawnManaged(entrypoint, [
    'daemon', '--listen', '127.0.0.1:0', '--metrics-listen', '', '--data', path.join(root, 'data'),
    '--registry', '127.0.0.1:9=http://127.0.0.1:9', '--default-registry', '127.0.0.1:9', '--p2p-listen', '/ip4/127.0.0.1/tcp/0',
  ], { name: 'image-daemon' });
  try {
    await daemon.waitForLine(/"msg":"peerpull daemon ready"/, 30_000);
  } finally {
    await daemon.stop('SIGTERM', 10_000);
  }
  assert.equal(daemon.exitInfo?.code, 0, daemon.tail());
});
