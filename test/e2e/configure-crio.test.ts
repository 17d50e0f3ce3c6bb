// End-to-end: the CRI-O path. CRI-O (containers/image) sends no ?ns=, so `peerpull configure crio`
// puts the registry into the mirror location's path and the daemon serves /v2/<registry>/<name>/...
// skopeo uses the same containers/image library and the same registries.conf format as CRI-O.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { registryEntry, startPeerpull, type DaemonProcess } from '../fixtures/daemon.ts';
import { getImageLayout, inspectRemote, pushImage } from '../fixtures/images.ts';
import { makeTempDir } from '../fixtures/processes.ts';
import { startRegistry, type Registry } from '../fixtures/registry.ts';
import { skopeo } from '../fixtures/skopeo.ts';
import { waitUntil } from '../fixtures/wait-until.ts';
import { rawRequest } from '../fixtures/raw-http.ts';
import { peerpull, snapshot, writeFile } from './configure-helpers.ts';

const IMAGE = { name: 'crio-small', layers: [200 * 1024, 100 * 1024] };
/** A registry name with a dot and no port, as real ones are; the daemon maps it to the loopback registry. */
const REGISTRY = 'registry.peerpull.test';

describe('CRI-O: peerpull configure crio, and the daemon serving /v2/<registry>/<name>/...', () => {
  let reg: Registry;
  let daemon: DaemonProcess;
  let dir: string;
  let dropIns: string;
  let registriesConf: string;
  let upstreamDigest: string;

  before(async () => {
    reg = await startRegistry();
    await pushImage(await getImageLayout(IMAGE), `${reg.host}/library/${IMAGE.name}:v1`);
    upstreamDigest = (await inspectRemote(`${reg.host}/library/${IMAGE.name}:v1`)).digest;
    // The loopback registry under its own name is the default: only the path prefix can select REGISTRY.
    daemon = await startPeerpull({ registries: [registryEntry(reg), `${REGISTRY}=${reg.url}`], defaultRegistry: reg.host });
    dir = makeTempDir('pp-crio-');
    dropIns = path.join(dir, 'registries.conf.d');
    registriesConf = path.join(dir, 'registries.conf');
    writeFile(path.join(dropIns, '00-shortnames.conf'), '[aliases]\n  "small" = "registry.peerpull.test/library/crio-small"\n');
    writeFile(registriesConf, `unqualified-search-registries = ["docker.io"]\n\n[[registry]]\nprefix = "${REGISTRY}"\nlocation = "${reg.host}"\ninsecure = true\n`);
  });

  after(async () => {
    await daemon?.stop();
    await reg?.stop();
  });

  test('the daemon serves /v2/<registry>/<name>/... without ?ns=, and only for allowlisted registries', async () => {
    const manifest = await rawRequest(daemon.host, 'GET', `/v2/${REGISTRY}/library/${IMAGE.name}/manifests/v1`, {
      headers: { accept: 'application/vnd.oci.image.manifest.v1+json' },
    });
    assert.equal(manifest.status, 200, manifest.body.toString());
    assert.equal(manifest.headers['docker-content-digest'], upstreamDigest);
    await waitUntil('the pull log line', () => daemon.pulls().some((p) => p.registry === REGISTRY));
    const line = daemon.pulls().find((p) => p.registry === REGISTRY);
    assert.equal(line?.repository, `library/${IMAGE.name}`);

    // With ?ns= the path is taken as it is (containerd never sends a registry prefix).
    const withNs = await rawRequest(daemon.host, 'GET', `/v2/${REGISTRY}/library/${IMAGE.name}/manifests/v1?ns=${REGISTRY}`);
    assert.equal(withNs.status, 404);
    // A first segment that is not an allowlisted registry is part of a repository name of the default registry.
    const unknown = await rawRequest(daemon.host, 'GET', `/v2/quay.io/library/${IMAGE.name}/manifests/v1`);
    assert.equal(unknown.status, 404);
  });

  test('configure crio writes a drop-in that keeps registries.conf settings; skopeo pulls through the mirror; fails open; --remove restores', async () => {
    const original = snapshot(dropIns);
    const r = await peerpull([
      'configure', 'crio', '--config-path', dropIns, '--registries-conf', registriesConf, '--mirror', daemon.url,
      '--registries', `${REGISTRY},docker.io,127.0.0.1:5999,_default`,
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /configured: .*90-peerpull\.conf/);
    assert.match(r.stdout, /systemctl reload crio/);
    assert.match(r.stderr, /127\.0\.0\.1:5999: a registry with a port cannot be named in a mirror path; skipped/);
    assert.match(r.stderr, /_default is skipped/);
    const dropIn = fs.readFileSync(path.join(dropIns, '90-peerpull.conf'), 'utf8');
    assert.ok(dropIn.includes(`prefix = "${REGISTRY}"\nlocation = "${reg.host}"\ninsecure = true`), `registries.conf's location kept:\n${dropIn}`);
    assert.ok(dropIn.includes(`[[registry.mirror]]\nlocation = "${daemon.host}/${REGISTRY}"\ninsecure = true`), dropIn);
    assert.ok(dropIn.includes(`location = "${daemon.host}/docker.io"`), dropIn);

    // skopeo reads one registries.conf: give it ours plus the main file's other settings, as CRI-O merges them.
    const conf = path.join(dir, 'skopeo-registries.conf');
    fs.writeFileSync(conf, `unqualified-search-registries = ["docker.io"]\n${dropIn}`);
    const pullTo = (out: string) => skopeo(['--registries-conf', conf, 'copy', `docker://${REGISTRY}/library/${IMAGE.name}:v1`, `dir:${out}`]);

    const before = daemon.pulls().length;
    await pullTo(path.join(dir, 'via-mirror'));
    await waitUntil('the daemon to log the pull', () => daemon.pulls().length - before >= 3);
    const pulls = daemon.pulls().slice(before);
    assert.ok(pulls.every((p) => p.registry === REGISTRY && p.repository === `library/${IMAGE.name}` && p.status === 200), JSON.stringify(pulls));
    assert.deepEqual([...new Set(pulls.map((p) => p.kind))].sort(), ['blob', 'manifest']);

    // Daemon down: containers/image goes on to the registry's own location.
    await daemon.stop();
    reg.clearLog();
    await pullTo(path.join(dir, 'direct'));
    await reg.flushLog();
    assert.ok(reg.countRequests({ kind: 'blob', method: 'GET' }) >= 1, 'pulled from the upstream itself');
    assert.deepEqual(fs.readdirSync(path.join(dir, 'direct')).sort(), fs.readdirSync(path.join(dir, 'via-mirror')).sort());
    await daemon.restart();

    const again = await peerpull(['configure', 'crio', '--config-path', dropIns, '--registries-conf', registriesConf, '--mirror', daemon.url, '--registries', REGISTRY]);
    assert.match(again.stdout, /updated: /, 'a shorter list rewrites the drop-in');
    assert.doesNotMatch(fs.readFileSync(path.join(dropIns, '90-peerpull.conf'), 'utf8'), /docker\.io/);
    const removed = await peerpull(['configure', 'crio', '--config-path', dropIns, '--remove']);
    assert.equal(removed.code, 0, removed.stderr);
    assert.deepEqual(snapshot(dropIns), original);
  });
});

describe('peerpull configure k3s', () => {
  test('adds the mirror as the first endpoint, keeps everything else, and --remove restores the file byte for byte', async () => {
    const dir = makeTempDir('pp-k3s-');
    const file = path.join(dir, 'registries.yaml');
    const original = `# site registries\nmirrors:\n  docker.io:\n    endpoint:\n      - "https://dockerhub-cache.corp.example"   # our old cache\nconfigs:\n  "ghcr.io":\n    auth:\n      username: bot\n      password: secret\n`;
    writeFile(file, original, 0o600);
    const before = snapshot(dir);
    const r = await peerpull(['configure', 'k3s', '--config-path', file, '--registries', 'docker.io,ghcr.io,_default']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /restart k3s/);
    assert.equal(
      fs.readFileSync(file, 'utf8'),
      `# Mirrors written by \`peerpull configure k3s\`: k3s tries the peerpull mirror first and falls back
# to the registry itself. k3s reads this file when it starts (restart k3s / k3s-agent to apply).
# \`peerpull configure k3s --remove\` puts back what was here before.

# site registries
mirrors:
  docker.io:
    endpoint:
      - http://127.0.0.1:5050
      - "https://dockerhub-cache.corp.example" # our old cache
  ghcr.io:
    endpoint:
      - http://127.0.0.1:5050
  "*":
    endpoint:
      - http://127.0.0.1:5050
configs:
  "ghcr.io":
    auth:
      username: bot
      password: secret
`,
    );
    assert.equal(fs.statSync(file).mode & 0o777, 0o600, 'mode kept');

    const again = await peerpull(['configure', 'k3s', '--config-path', file, '--registries', 'docker.io,ghcr.io,_default']);
    assert.match(again.stdout, /^unchanged: /m);
    assert.equal((await peerpull(['configure', 'k3s', '--config-path', file, '--remove'])).code, 0);
    assert.deepEqual(snapshot(dir), before);
  });
});
