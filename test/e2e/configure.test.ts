// End-to-end: `peerpull configure containerd` and `peerpull daemon --manage-containerd` against a
// real containerd 1.6 (CRI pulls, as the kubelet makes them, reading containerd's own config_path),
// a real `peerpull daemon` process and a real distribution registry (issue 7).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { startContainerd, type Containerd } from '../fixtures/containerd.ts';
import { criPullImage, criRemoveImage } from '../fixtures/cri.ts';
import { registryEntry, startPeerpull, type DaemonProcess } from '../fixtures/daemon.ts';
import { getImageLayout, pushImage } from '../fixtures/images.ts';
import { makeTempDir } from '../fixtures/processes.ts';
import { startRegistry, type Registry } from '../fixtures/registry.ts';
import { waitUntil } from '../fixtures/wait-until.ts';
import { peerpull, snapshot, writeFile } from './configure-helpers.ts';

const IMAGE = { name: 'configure-small', layers: [256 * 1024, 128 * 1024] };

// A hand-written file for another registry: kept byte for byte (content and mode) through configure and --remove.
const QUAY_HOSTS = `# corporate mirror, do not touch
server = "https://quay.io"

[host."https://quay-cache.corp.example:5000"]
   capabilities = ["pull","resolve"]   # odd spacing on purpose
`;

describe('peerpull configure containerd: a real containerd pulls through the daemon and fails open', () => {
  let reg: Registry;
  let daemon: DaemonProcess;
  let ctd: Containerd;
  let ref: string;
  let original: ReturnType<typeof snapshot>;
  const configure = (...extra: string[]) =>
    peerpull(['configure', 'containerd', '--config-path', ctd.hostsDir, '--containerd-config-file', ctd.configPath, '--mirror', daemon.url, ...extra]);

  before(async () => {
    reg = await startRegistry();
    await pushImage(await getImageLayout(IMAGE), `${reg.host}/library/${IMAGE.name}:v1`);
    ref = `${reg.host}/library/${IMAGE.name}:v1`;
    daemon = await startPeerpull({ registries: [registryEntry(reg)] });
    ctd = await startContainerd();
    writeFile(path.join(ctd.hostsDir, 'quay.io/hosts.toml'), QUAY_HOSTS, 0o640);
    writeFile(path.join(ctd.hostsDir, 'ghcr.io/ca.crt'), 'not really a certificate\n', 0o600);
    original = snapshot(ctd.hostsDir);
  });

  after(async () => {
    await ctd?.stop();
    await daemon?.stop();
    await reg?.stop();
  });

  test('configure writes one hosts.toml per registry, checks config_path, and the CRI pull goes through the daemon', async () => {
    const r = await configure('--registries', `${registryEntry(reg)},quay.io,_default`);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`configured: .*/${reg.host.replace(/\./g, '\\.')}/hosts\\.toml`));
    assert.match(r.stdout, /reads hosts\.toml files from .*certs\.d \(config_path in .*config\.toml\)/);
    assert.equal(r.stderr, '', 'no warning: config_path points at the directory');

    const ours = fs.readFileSync(path.join(ctd.hostsDir, reg.host, 'hosts.toml'), 'utf8');
    assert.match(ours, new RegExp(`^server = "${reg.url}"$`, 'm'), 'the upstream stays as server');
    assert.match(ours, new RegExp(`\\[host\\."${daemon.url}"\\]\\ncapabilities = \\[ "pull", "resolve" \\]\\ndial_timeout = "200ms"`));
    const quay = fs.readFileSync(path.join(ctd.hostsDir, 'quay.io/hosts.toml'), 'utf8');
    assert.ok(quay.indexOf(daemon.url) < quay.indexOf('quay-cache.corp.example'), 'merged: the mirror first, then the existing host');
    assert.match(quay, /^server = "https:\/\/quay\.io"$/m);
    assert.doesNotMatch(fs.readFileSync(path.join(ctd.hostsDir, '_default/hosts.toml'), 'utf8'), /^server/m, '_default has no server: each registry is its own');

    const before = daemon.pulls().length;
    assert.match(await criPullImage(ctd.address, ref), /^sha256:[0-9a-f]{64}$/);
    await waitUntil('the daemon to log the pull', () => daemon.pulls().length - before >= 4);
    const pulls = daemon.pulls().slice(before);
    assert.ok(pulls.every((p) => p.registry === reg.host && p.status === 200), JSON.stringify(pulls));
    assert.deepEqual([...new Set(pulls.map((p) => p.kind))].sort(), ['blob', 'manifest']);
  });

  test('running it again changes nothing (idempotent)', async () => {
    const first = snapshot(ctd.hostsDir);
    const r = await configure('--registries', `${registryEntry(reg)},quay.io,_default`);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.match(/^unchanged: /gm)?.length, 3, r.stdout);
    assert.deepEqual(snapshot(ctd.hostsDir), first);
  });

  test('with the daemon stopped, the pull still succeeds from the upstream, at once', async () => {
    await criRemoveImage(ctd.address, ref);
    await daemon.stop();
    reg.clearLog();
    const started = Date.now();
    await criPullImage(ctd.address, ref);
    const ms = Date.now() - started;
    await reg.flushLog();
    assert.ok(reg.countRequests({ kind: 'manifest' }) >= 1 && reg.countRequests({ kind: 'blob', method: 'GET' }) >= 1, 'pulled from the registry itself');
    assert.equal(reg.countRequests({ queryIncludes: 'ns=' }), 0, 'containerd talked to the upstream directly (no ?ns=)');
    assert.ok(ms < 5_000, `fallback took ${ms} ms`);
    await daemon.restart();
  });

  test('--remove puts back the original files byte for byte', async () => {
    const r = await peerpull(['configure', 'containerd', '--config-path', ctd.hostsDir, '--remove']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /restored the original: .*quay\.io\/hosts\.toml/);
    assert.match(r.stdout, /removed: .*_default\/hosts\.toml/);
    assert.deepEqual(snapshot(ctd.hostsDir), original);
    const again = await peerpull(['configure', 'containerd', '--config-path', ctd.hostsDir, '--remove']);
    assert.equal(again.code, 0);
    assert.match(again.stdout, /nothing to do/);
  });

  test('--manage-containerd: entries while ready, removed when not ready and on SIGTERM, restored when ready again', async () => {
    const file = path.join(ctd.hostsDir, reg.host, 'hosts.toml');
    const managed = await startPeerpull({
      registries: [registryEntry(reg)],
      extraArgs: ['--manage-containerd', '--containerd-config-path', ctd.hostsDir, '--manage-interval', '100ms'],
    });
    try {
      await waitUntil('the watchdog to write hosts.toml', () => fs.existsSync(file));
      assert.match(fs.readFileSync(file, 'utf8'), new RegExp(`\\[host\\."${managed.url}"\\]`));
      await criRemoveImage(ctd.address, ref);
      const before = managed.pulls().length;
      await criPullImage(ctd.address, ref);
      await waitUntil('the managed daemon to log the pull', () => managed.pulls().length > before);

      // Not ready (the store directory is gone): the entries go, and pulls go to the upstream.
      const readyz = managed.metricsUrl.replace(/\/metrics$/, '/readyz');
      assert.equal((await fetch(readyz)).status, 200, 'the metrics listener answers /readyz too (kubelet probes)');
      fs.renameSync(managed.dataDir, `${managed.dataDir}.away`);
      await waitUntil('the watchdog to remove hosts.toml', () => !fs.existsSync(file), 5_000);
      const unready = await fetch(readyz);
      assert.equal(unready.status, 503);
      assert.match(((await unready.json()) as { reason: string }).reason, /store not writable/);
      await waitUntil('the watchdog\'s log line', () => managed.logs().some((l) => /not ready: containerd mirror entries removed/.test(l.msg)));
      assert.deepEqual(snapshot(ctd.hostsDir), original);
      fs.renameSync(`${managed.dataDir}.away`, managed.dataDir);
      await waitUntil('the watchdog to restore hosts.toml', () => fs.existsSync(file), 5_000);

      await managed.stop();
      assert.equal(fs.existsSync(file), false, 'removed before the daemon exited');
      assert.deepEqual(snapshot(ctd.hostsDir), original);
      assert.ok(managed.logs().some((l) => /stopping: containerd mirror entries removed/.test(l.msg)));
    } finally {
      await managed.stop();
    }
  });
});

describe('peerpull configure containerd: directories and files it does not understand', () => {
  const configure = (dir: string, ...extra: string[]) =>
    peerpull(['configure', 'containerd', '--config-path', dir, '--containerd-config-file', path.join(dir, 'none.toml'), '--registries', 'docker.io', ...extra]);

  test('refuses an unknown directory without --force and leaves it untouched; --force and --remove round-trip', async () => {
    const dir = makeTempDir('pp-notcertsd-');
    writeFile(path.join(dir, 'notes.txt'), 'hello\n');
    writeFile(path.join(dir, 'some dir/x'), 'x\n');
    const original = snapshot(dir);
    const r = await configure(dir);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /refusing to write into .* does not look like containerd's hosts directory/);
    assert.match(r.stderr, /notes\.txt is not a <registry host>\/ directory/);
    assert.deepEqual(snapshot(dir), original, 'nothing written, not even the state directory');

    const forced = await configure(dir, '--force');
    assert.equal(forced.code, 0, forced.stderr);
    assert.match(forced.stderr, /warning: containerd will not use these files yet: .*none\.toml does not exist/);
    assert.ok(fs.existsSync(path.join(dir, 'docker.io/hosts.toml')));
    assert.equal((await peerpull(['configure', 'containerd', '--config-path', dir, '--remove'])).code, 0);
    assert.deepEqual(snapshot(dir), original);
  });

  test('refuses a hosts.toml it cannot parse; a file changed by hand is neither overwritten nor restored over without --force', async () => {
    const dir = makeTempDir('pp-certsd-');
    writeFile(path.join(dir, 'docker.io/hosts.toml'), 'server = "https://registry-1.docker.io"\n[host\n');
    const broken = await configure(dir);
    assert.equal(broken.code, 1);
    assert.match(broken.stderr, /docker\.io\/hosts\.toml is not valid TOML/);

    writeFile(path.join(dir, 'docker.io/hosts.toml'), 'server = "https://registry-1.docker.io"\n');
    const original = snapshot(dir);
    assert.equal((await configure(dir)).code, 0);
    const file = path.join(dir, 'docker.io/hosts.toml');
    fs.appendFileSync(file, '# edited by hand\n');
    const edited = snapshot(dir);
    const again = await configure(dir);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /was changed since peerpull wrote it/);
    const remove = await peerpull(['configure', 'containerd', '--config-path', dir, '--remove']);
    assert.equal(remove.code, 1);
    assert.match(remove.stdout, /left alone: changed since peerpull wrote it/);
    assert.deepEqual(snapshot(dir), edited);
    assert.equal((await peerpull(['configure', 'containerd', '--config-path', dir, '--remove', '--force'])).code, 0);
    assert.deepEqual(snapshot(dir), original);
  });

  test('concurrent runs (a watchdog and a preStop, say) are serialized: one backup, and --remove restores it', async () => {
    const dir = makeTempDir('pp-certsd-race-');
    writeFile(path.join(dir, 'docker.io/hosts.toml'), 'server = "https://registry-1.docker.io"\n', 0o600);
    const original = snapshot(dir);
    const results = await Promise.all([1, 2, 3, 4].map((i) => configure(dir, '--mirror', `http://127.0.0.1:${5050 + (i % 2)}`)));
    assert.deepEqual(results.map((r) => r.code), [0, 0, 0, 0], results.map((r) => r.stderr).join('\n'));
    assert.deepEqual(fs.readdirSync(path.join(dir, '.peerpull/backup/docker.io')), ['hosts.toml']);
    assert.equal((await peerpull(['configure', 'containerd', '--config-path', dir, '--remove'])).code, 0);
    assert.deepEqual(snapshot(dir), original);
  });

  test('says exactly what to change in config.toml (1.x and 2.x layouts), and --check reports it', async () => {
    const dir = makeTempDir('pp-ctdcfg-');
    const certs = path.join(dir, 'certs.d');
    const cfg = path.join(dir, 'config.toml');
    const run = (...extra: string[]) => peerpull(['configure', 'containerd', '--config-path', certs, '--containerd-config-file', cfg, '--registries', 'docker.io', '--mirror', 'http://127.0.0.1:9', ...extra]);

    writeFile(cfg, 'version = 2\n[plugins."io.containerd.grpc.v1.cri".containerd]\n  snapshotter = "overlayfs"\n');
    let r = await run();
    assert.equal(r.code, 0, 'the files are written anyway (harmless until containerd reads them)');
    assert.match(r.stderr, /containerd 1\.x \(config version 2\) does not read hosts\.toml files: config_path is not set/);
    assert.ok(r.stderr.includes(`[plugins."io.containerd.grpc.v1.cri".registry]\n    config_path = "${certs}"`), r.stderr);

    writeFile(cfg, 'version = 3\n[plugins."io.containerd.cri.v1.images".registry]\n  config_path = "/etc/containerd/certs.d"\n');
    r = await run();
    assert.match(r.stderr, /reads hosts\.toml files from \/etc\/containerd\/certs\.d .*not from /);
    assert.ok(r.stderr.includes(`[plugins."io.containerd.cri.v1.images".registry]\n    config_path = "${certs}"`), r.stderr);

    writeFile(cfg, `version = 2\n[plugins."io.containerd.grpc.v1.cri".registry]\n  config_path = "${certs}"\n  [plugins."io.containerd.grpc.v1.cri".registry.mirrors."docker.io"]\n    endpoint = ["https://x"]\n`);
    r = await run();
    assert.match(r.stderr, /deprecated .*mirrors.*refuses to start with both/);

    writeFile(cfg, `version = 2\nimports = ["${dir}/conf.d/*.toml"]\n`);
    writeFile(path.join(dir, 'conf.d/registry.toml'), `version = 2\n[plugins."io.containerd.grpc.v1.cri".registry]\n  config_path = "/elsewhere:${certs}"\n`);
    r = await run();
    assert.equal(r.stderr, '');
    assert.match(r.stdout, /reads hosts\.toml files from .*certs\.d \(config_path in .*conf\.d\/registry\.toml\) \(\/elsewhere come first/);

    const check = await run('--check');
    assert.equal(check.code, 1, 'the mirror does not answer');
    assert.match(check.stdout, /^ok {3}containerd 1\.x/m);
    assert.match(check.stdout, /^ok {3}.*docker\.io\/hosts\.toml: first host is http:\/\/127\.0\.0\.1:9$/m);
    assert.match(check.stdout, /^FAIL mirror http:\/\/127\.0\.0\.1:9 does not answer/m);
  });
});
