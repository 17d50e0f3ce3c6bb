// deploy/kubernetes renders with `kubectl kustomize` (base and every overlay) and the rendered
// objects hang together: images, ports, probes, volumes, securityContext, the generated cluster
// key, and option variables the programs really have. The init container's and preStop's commands
// are run for real against a temp certs.d. deploy/systemd passes `systemd-analyze verify`.
import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { parseAllDocuments } from 'yaml';
import { DEFAULT_REGISTRIES, envName, type OptionSpecs } from '@peerpull/common';
import { DAEMON_OPTIONS } from '@peerpull/daemon';
import { SEED_OPTIONS } from '@peerpull/seed';
import { REPO_ROOT } from '../fixtures/daemon.ts';
import { makeTempDir } from '../fixtures/processes.ts';
import { peerpull, snapshot, writeFile } from './configure-helpers.ts';

const KUBECTL = ['/usr/bin/kubectl', '/usr/local/bin/kubectl'].find((p) => fs.existsSync(p));
const SYSTEMD_ANALYZE = fs.existsSync('/usr/bin/systemd-analyze') ? '/usr/bin/systemd-analyze' : undefined;
const IMAGE = 'ghcr.io/peerpull/peerpull:0.1.0';

// ---- minimal typing of what the checks read ----------------------------------------------------------
interface EnvVar { name: string; value?: string; valueFrom?: unknown }
interface Probe { httpGet?: { path: string; port: string | number } }
interface Container {
  name: string;
  image: string;
  args?: string[];
  env?: EnvVar[];
  ports?: { name: string; containerPort: number }[];
  livenessProbe?: Probe;
  readinessProbe?: Probe;
  startupProbe?: Probe;
  lifecycle?: { preStop?: { exec?: { command: string[] } } };
  securityContext?: Record<string, unknown> & { capabilities?: { drop?: string[] } };
  volumeMounts?: { name: string; mountPath: string; readOnly?: boolean }[];
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
}
interface PodSpec {
  hostNetwork?: boolean;
  dnsPolicy?: string;
  priorityClassName?: string;
  tolerations?: unknown[];
  serviceAccountName?: string;
  automountServiceAccountToken?: boolean;
  securityContext?: Record<string, unknown>;
  initContainers?: Container[];
  containers: Container[];
  volumes?: { name: string; hostPath?: { path: string }; secret?: { secretName: string }; emptyDir?: object }[];
}
interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  spec?: Record<string, unknown> & {
    template?: { metadata: { labels: Record<string, string> }; spec: PodSpec };
    selector?: { matchLabels?: Record<string, string> } & Record<string, string>;
    ports?: { name: string; port: number; targetPort?: string | number }[];
    clusterIP?: string;
    serviceName?: string;
    volumeClaimTemplates?: { metadata: { name: string } }[];
    podSelector?: { matchLabels: Record<string, string> };
    ingress?: { ports: { port: number }[] }[];
    endpoints?: { port: string }[];
  };
  data?: Record<string, string>;
}

let deployDir: string;
let clusterKey: string;

function render(dir: string): K8sObject[] {
  const r = spawnSync(KUBECTL as string, ['kustomize', dir], { encoding: 'utf8', timeout: 60_000 });
  assert.equal(r.status, 0, `kubectl kustomize ${dir} failed:\n${r.stderr}`);
  return parseAllDocuments(r.stdout).map((d) => d.toJSON() as K8sObject).filter(Boolean);
}

function one(objects: K8sObject[], kind: string, name?: string): K8sObject {
  const found = objects.filter((o) => o.kind === kind && (name === undefined || o.metadata.name === name));
  assert.equal(found.length, 1, `exactly one ${kind}${name ? ` ${name}` : ''}`);
  return found[0] as K8sObject;
}

function container(obj: K8sObject, name: string, init = false): Container {
  const list = init ? obj.spec?.template?.spec.initContainers : obj.spec?.template?.spec.containers;
  const c = list?.find((x) => x.name === name);
  assert.ok(c, `${obj.metadata.name}: ${init ? 'init ' : ''}container ${name}`);
  return c;
}

function env(c: Container): Record<string, string | undefined> {
  return Object.fromEntries((c.env ?? []).map((e) => [e.name, e.value]));
}

function matches(selector: Record<string, string> | undefined, labels: Record<string, string> | undefined): boolean {
  return !!selector && Object.entries(selector).every(([k, v]) => labels?.[k] === v);
}

/** Every PEERPULL_* variable a container sets is an option of the command it runs. */
function assertKnownOptions(c: Container, specs: OptionSpecs): void {
  const known = new Set(Object.keys(specs).map(envName));
  for (const e of c.env ?? []) {
    if (e.name.startsWith('PEERPULL_')) assert.ok(known.has(e.name), `${c.name}: ${e.name} is not an option of the command`);
  }
}

function assertHardened(c: Container): void {
  assert.equal(c.securityContext?.allowPrivilegeEscalation, false, `${c.name}: allowPrivilegeEscalation`);
  assert.equal(c.securityContext?.readOnlyRootFilesystem, true, `${c.name}: readOnlyRootFilesystem`);
  assert.deepEqual(c.securityContext?.capabilities?.drop, ['ALL'], `${c.name}: drops every capability`);
  assert.ok(c.resources?.requests?.memory && c.resources?.limits?.memory, `${c.name}: memory request and limit`);
  assert.equal(c.image, IMAGE, `${c.name}: image`);
}

/** Runs `peerpull ARGS` (the container's command without the binary) with host paths mapped into root. */
async function runMapped(args: string[], root: string) {
  const mapped = args.map((a) => (a.startsWith('/etc/') ? path.join(root, a) : a));
  return peerpull(mapped);
}

describe('deploy/kubernetes', { skip: KUBECTL ? false : 'kubectl is not installed' }, () => {
  before(() => {
    // Render a copy, with a key made for the test: the repository holds no key (.gitignore).
    deployDir = path.join(makeTempDir('pp-deploy-'), 'kubernetes');
    fs.cpSync(path.join(REPO_ROOT, 'deploy/kubernetes'), deployDir, { recursive: true, filter: (src) => path.basename(src) !== 'cluster-key' });
    clusterKey = `${crypto.randomBytes(32).toString('base64')}\n`;
    fs.writeFileSync(path.join(deployDir, 'base/cluster-key'), clusterKey, { mode: 0o600 });
  });

  test('the cluster key is generated from an uncommitted file, never a value in the repository', () => {
    const tracked = spawnSync('git', ['ls-files', 'deploy'], { cwd: REPO_ROOT, encoding: 'utf8' });
    if (tracked.status === 0) assert.doesNotMatch(tracked.stdout, /cluster-key$/m);
    const ignored = spawnSync('git', ['check-ignore', '-q', 'deploy/kubernetes/base/cluster-key'], { cwd: REPO_ROOT });
    if (ignored.status !== 128) assert.equal(ignored.status, 0, 'deploy/kubernetes/base/cluster-key is git-ignored');
    for (const file of fs.readdirSync(path.join(REPO_ROOT, 'deploy/kubernetes'), { recursive: true, encoding: 'utf8' })) {
      if (file.endsWith('.yaml')) assert.doesNotMatch(fs.readFileSync(path.join(REPO_ROOT, 'deploy/kubernetes', file), 'utf8'), /^kind: Secret/m, file);
    }
    const keyless = path.join(makeTempDir('pp-deploy-nokey-'), 'kubernetes');
    fs.cpSync(deployDir, keyless, { recursive: true, filter: (src) => path.basename(src) !== 'cluster-key' });
    const r = spawnSync(KUBECTL as string, ['kustomize', path.join(keyless, 'base')], { encoding: 'utf8' });
    assert.notEqual(r.status, 0, 'no key file, no render (there is no fallback value)');
    assert.match(r.stderr, /cluster-key/);

    const secret = one(render(path.join(deployDir, 'base')), 'Secret');
    assert.match(secret.metadata.name, /^peerpull-cluster-key-[a-z0-9]+$/);
    assert.equal(Buffer.from(secret.data?.['cluster-key'] ?? '', 'base64').toString(), clusterKey);
  });

  test('base: namespace, service account without API access, daemon DaemonSet, seed StatefulSet, services, PDB, NetworkPolicy', () => {
    const objects = render(path.join(deployDir, 'base'));
    assert.deepEqual(
      objects.map((o) => o.kind).sort(),
      ['DaemonSet', 'Namespace', 'NetworkPolicy', 'PodDisruptionBudget', 'Secret', 'Service', 'Service', 'ServiceAccount', 'StatefulSet'],
    );
    assert.ok(objects.every((o) => o.kind === 'Namespace' || o.metadata.namespace === 'peerpull'));
    const secret = one(objects, 'Secret');
    assert.equal((one(objects, 'ServiceAccount') as unknown as { automountServiceAccountToken: boolean }).automountServiceAccountToken, false);

    // The daemon.
    const ds = one(objects, 'DaemonSet', 'peerpull-daemon');
    const pod = ds.spec?.template?.spec as PodSpec;
    assert.equal(pod.hostNetwork, true);
    assert.equal(pod.dnsPolicy, 'ClusterFirstWithHostNet');
    assert.equal(pod.priorityClassName, 'system-node-critical');
    assert.deepEqual(pod.tolerations, [{ operator: 'Exists' }]);
    assert.equal(pod.serviceAccountName, 'peerpull');
    assert.equal(pod.automountServiceAccountToken, false);
    const daemon = container(ds, 'daemon');
    assert.deepEqual(daemon.args, ['daemon']);
    assertHardened(daemon);
    assertKnownOptions(daemon, DAEMON_OPTIONS);
    const metricsPort = Number(DAEMON_OPTIONS['metrics-listen'].default.split(':').pop());
    const p2pPort = Number(/tcp\/(\d+)/.exec(DAEMON_OPTIONS['p2p-listen'].default[0] as string)?.[1]);
    assert.deepEqual(daemon.ports, [{ name: 'p2p', containerPort: p2pPort }, { name: 'metrics', containerPort: metricsPort }]);
    for (const [probe, p] of [['startupProbe', '/healthz'], ['livenessProbe', '/healthz'], ['readinessProbe', '/readyz']] as const) {
      assert.deepEqual(daemon[probe]?.httpGet, { path: p, port: 'metrics' }, `${probe}: on the metrics listener (the kubelet cannot reach the pod's loopback)`);
    }
    const de = env(daemon);
    assert.equal(de.PEERPULL_MANAGE_CONTAINERD, 'true');
    assert.equal(de.PEERPULL_P2P_ANNOUNCE, `/ip4/$(NODE_IP)/tcp/${p2pPort}`);
    const mounts = Object.fromEntries((daemon.volumeMounts ?? []).map((m) => [m.name, m.mountPath]));
    const volumes = Object.fromEntries((pod.volumes ?? []).map((v) => [v.name, v]));
    assert.equal(volumes.data?.hostPath?.path, de.PEERPULL_DATA, 'the cache is a hostPath at the data directory');
    assert.equal(mounts.data, de.PEERPULL_DATA);
    assert.equal(volumes['containerd-config']?.hostPath?.path, '/etc/containerd', 'the host\'s containerd dir, at the same path');
    assert.equal(mounts['containerd-config'], '/etc/containerd');
    assert.ok(de.PEERPULL_CONTAINERD_CONFIG_PATH?.startsWith('/etc/containerd/'));
    assert.equal(volumes['cluster-key']?.secret?.secretName, secret.metadata.name, 'the generated Secret (name with its hash)');
    assert.equal(de.PEERPULL_CLUSTER_KEY_FILE, `${mounts['cluster-key']}/cluster-key`);

    // The init container configures containerd, preStop removes it.
    const init = container(ds, 'configure', true);
    assertHardened(init);
    assert.deepEqual(init.args?.slice(0, 2), ['configure', 'containerd']);
    assert.ok(init.args?.includes(de.PEERPULL_CONTAINERD_CONFIG_PATH as string));
    assert.deepEqual(daemon.lifecycle?.preStop?.exec?.command.slice(0, 4), ['peerpull', 'configure', 'containerd', '--remove']);

    // Services: peer discovery and the seed.
    const peers = one(objects, 'Service', 'peerpull-peers');
    assert.equal(peers.spec?.clusterIP, 'None');
    assert.ok(matches(peers.spec?.selector as Record<string, string>, ds.spec?.template?.metadata.labels));
    assert.equal(de.PEERPULL_BOOTSTRAP_DNS, `${peers.metadata.name}:${peers.spec?.ports?.find((p) => p.name === 'p2p')?.port}`);

    const sts = one(objects, 'StatefulSet', 'peerpull-seed');
    const seedSvc = one(objects, 'Service', sts.spec?.serviceName);
    assert.equal(seedSvc.spec?.clusterIP, 'None', 'headless: one stable name per seed');
    assert.ok(matches(seedSvc.spec?.selector as Record<string, string>, sts.spec?.template?.metadata.labels));
    const seed = container(sts, 'seed');
    assert.deepEqual(seed.args, ['seed']);
    assertHardened(seed);
    assertKnownOptions(seed, SEED_OPTIONS);
    assert.equal(sts.spec?.template?.spec.securityContext?.runAsNonRoot, true, 'the seed runs as non-root');
    const seedPort = Number(SEED_OPTIONS.listen.default.split(':').pop());
    assert.equal(de.PEERPULL_SEED, `http://${sts.metadata.name}-0.${seedSvc.metadata.name}:${seedPort}`);
    assert.deepEqual(seed.readinessProbe?.httpGet, { path: '/readyz', port: 'registry' });
    assert.equal(seed.ports?.find((p) => p.name === 'registry')?.containerPort, seedPort);
    assert.equal(sts.spec?.volumeClaimTemplates?.[0]?.metadata.name, 'data');
    assert.ok(seed.volumeMounts?.some((m) => m.name === 'data' && m.mountPath === env(seed).PEERPULL_DATA), 'the PVC holds the seed cache');

    const pdb = one(objects, 'PodDisruptionBudget');
    assert.ok(matches(pdb.spec?.selector?.matchLabels, sts.spec?.template?.metadata.labels));
    const np = one(objects, 'NetworkPolicy');
    assert.ok(matches(np.spec?.podSelector?.matchLabels, sts.spec?.template?.metadata.labels));
    const allowed = np.spec?.ingress?.flatMap((i) => i.ports.map((p) => p.port)).sort();
    assert.deepEqual(allowed, seed.ports?.map((p) => p.containerPort).sort(), 'the seed\'s registry, P2P and metrics ports, nothing else');
    assert.equal(objects.filter((o) => /Role/.test(o.kind)).length, 0, 'no RBAC at all');
  });

  test('the init container and preStop commands work as rendered (against a temp host /etc/containerd)', async () => {
    const ds = one(render(path.join(deployDir, 'base')), 'DaemonSet');
    const host = makeTempDir('pp-host-');
    writeFile(path.join(host, 'etc/containerd/config.toml'), 'version = 2\n[plugins."io.containerd.grpc.v1.cri".registry]\n  config_path = "/etc/containerd/certs.d"\n');
    writeFile(path.join(host, 'etc/containerd/certs.d/docker.io/hosts.toml'), 'server = "https://registry-1.docker.io"\n[host."https://mirror.corp.example"]\n');
    const original = snapshot(host);
    const init = await runMapped(container(ds, 'configure', true).args ?? [], host);
    assert.equal(init.code, 0, init.stderr);
    for (const registry of DEFAULT_REGISTRIES) {
      assert.match(fs.readFileSync(path.join(host, 'etc/containerd/certs.d', registry, 'hosts.toml'), 'utf8'), /\[host\."http:\/\/127\.0\.0\.1:5050"\]/);
    }
    const preStop = container(ds, 'daemon').lifecycle?.preStop?.exec?.command ?? [];
    assert.equal(preStop[0], 'peerpull');
    assert.equal((await runMapped(preStop.slice(1), host)).code, 0);
    assert.deepEqual(snapshot(host), original);
  });

  test('overlays: k3s writes registries.yaml, edge serves stale tags forever, monitoring adds ServiceMonitors', () => {
    const k3s = render(path.join(deployDir, 'overlays/k3s'));
    const ds = one(k3s, 'DaemonSet');
    const init = container(ds, 'configure', true);
    assert.deepEqual(init.args?.slice(0, 4), ['configure', 'k3s', '--config-path', '/etc/rancher/k3s/registries.yaml']);
    assert.deepEqual(init.volumeMounts, [{ name: 'k3s-config', mountPath: '/etc/rancher/k3s' }]);
    const daemon = container(ds, 'daemon');
    assert.equal(env(daemon).PEERPULL_MANAGE_CONTAINERD, 'false');
    assert.equal(daemon.lifecycle, undefined, 'no preStop removal: k3s reads registries.yaml only when it starts');
    assert.ok(!(daemon.volumeMounts ?? []).some((m) => m.mountPath === '/etc/containerd'));
    assert.ok(!(ds.spec?.template?.spec.volumes ?? []).some((v) => v.name === 'containerd-config'));

    const edge = render(path.join(deployDir, 'overlays/edge'));
    const seed = container(one(edge, 'StatefulSet'), 'seed');
    assert.equal(env(seed).PEERPULL_MAX_STALE, 'forever');
    assertKnownOptions(seed, SEED_OPTIONS);
    assertKnownOptions(container(one(edge, 'DaemonSet'), 'daemon'), DAEMON_OPTIONS);

    const mon = render(path.join(deployDir, 'overlays/monitoring'));
    const monitors = mon.filter((o) => o.kind === 'ServiceMonitor');
    assert.equal(monitors.length, 2);
    for (const sm of monitors) {
      assert.equal(sm.metadata.namespace, 'peerpull');
      const svc = mon.filter((o) => o.kind === 'Service' && matches(sm.spec?.selector?.matchLabels, o.metadata.labels));
      assert.equal(svc.length, 1, `${sm.metadata.name} selects one Service`);
      assert.ok(svc[0]?.spec?.ports?.some((p) => p.name === sm.spec?.endpoints?.[0]?.port), `${sm.metadata.name}: the Service has the port`);
    }
  });
});

describe('deploy/systemd', { skip: SYSTEMD_ANALYZE ? false : 'systemd-analyze is not installed' }, () => {
  test('the units pass systemd-analyze verify, with the hardening and the configure/remove pair', () => {
    const dir = makeTempDir('pp-systemd-');
    const units = ['peerpull-daemon.service', 'peerpull-seed.service'];
    for (const unit of units) {
      // verify checks that ExecStart's binary exists: point it at this checkout's wrapper.
      const text = fs.readFileSync(path.join(REPO_ROOT, 'deploy/systemd', unit), 'utf8');
      fs.writeFileSync(path.join(dir, unit), text.replaceAll('/usr/local/bin/peerpull', path.join(REPO_ROOT, 'deploy/bin/peerpull')));
    }
    const r = spawnSync(SYSTEMD_ANALYZE as string, ['verify', ...units.map((u) => path.join(dir, u))], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stderr.trim(), '', 'no warnings (unknown keys only warn)');
    const daemon = fs.readFileSync(path.join(REPO_ROOT, 'deploy/systemd/peerpull-daemon.service'), 'utf8');
    for (const line of ['ProtectSystem=strict', 'NoNewPrivileges=yes', 'StateDirectory=peerpull', 'CapabilityBoundingSet=', 'ReadWritePaths=/etc/containerd/certs.d', 'Environment=PEERPULL_MANAGE_CONTAINERD=true']) {
      assert.match(daemon, new RegExp(`^${line.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`, 'm'));
    }
    assert.match(daemon, /^ExecStartPost=-\/usr\/local\/bin\/peerpull configure containerd /m);
    assert.match(daemon, /^ExecStopPost=-\/usr\/local\/bin\/peerpull configure containerd --remove /m);
    assert.match(fs.readFileSync(path.join(REPO_ROOT, 'deploy/systemd/peerpull-seed.service'), 'utf8'), /^DynamicUser=yes$/m);
  });
});
