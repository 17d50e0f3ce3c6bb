import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { AuthFile } from '../src/auth-file.ts';
import { sha256Digest, type Digest } from '../src/digest.ts';
import { OciError } from '../src/oci-error.ts';
import { PrivateContentGuard, type Verdict } from '../src/private-content.ts';
import { parseRegistryEntry } from '../src/registry-allowlist.ts';

const logger = pino({ level: 'silent' });
const PRIVATE = parseRegistryEntry('private.example=https://private.example');
const PUBLIC = parseRegistryEntry('docker.io');
const layer = sha256Digest('layer');
const config = sha256Digest('config');
const manifestBody = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config: { digest: config, size: 6, mediaType: 'x' }, layers: [{ digest: layer, size: 5, mediaType: 'y' }] }));
const manifest = { digest: sha256Digest(manifestBody), mediaType: 'application/vnd.oci.image.manifest.v1+json', body: manifestBody };

async function guard(dir: string, verdicts: Record<string, Verdict>, clock: { now: number }) {
  const asked: string[] = [];
  const g = await PrivateContentGuard.open({
    dir,
    logger,
    isPrivateRegistry: (host) => host === PRIVATE.host,
    verify: async (kind, registry, repository, digest) => {
      asked.push(`${kind} ${registry.host}/${repository} ${digest.slice(7, 13)}`);
      return verdicts[`${registry.host}/${repository}`] ?? 'no';
    },
    recheckMs: 1_000,
    offlineGraceMs: 10_000,
    now: () => clock.now,
  });
  return { g, asked };
}

const refused = async (p: Promise<void>, code: string) =>
  assert.rejects(p, (err: unknown) => err instanceof OciError && err.status === 404 && err.code === code);

test('a private digest is served under the repositories whose manifests referenced it, and no other, without asking upstream', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'pp-private-'));
  const clock = { now: 1_000_000 };
  const { g, asked } = await guard(dir, {}, clock);
  await g.recordManifest(PRIVATE, 'team/app', manifest);
  await g.authorize('blob', PRIVATE, 'team/app', layer);
  await g.authorize('blob', PRIVATE, 'team/app', config);
  await g.authorize('manifest', PRIVATE, 'team/app', manifest.digest);
  assert.deepEqual(asked, [], 'recorded claims need no upstream check');
  await refused(g.authorize('blob', PRIVATE, 'team/other', layer), 'BLOB_UNKNOWN');
  await refused(g.authorize('blob', PUBLIC, 'library/nginx', layer), 'BLOB_UNKNOWN');
  await refused(g.authorize('manifest', PUBLIC, 'library/nginx', manifest.digest), 'MANIFEST_UNKNOWN');
  assert.equal(asked.length, 3, 'each guess was checked upstream under the name the client used');
  // Public content of a public registry is never checked.
  await g.authorize('blob', PUBLIC, 'library/nginx', sha256Digest('public'));
  assert.equal(asked.length, 3);
});

test('claims persist across restarts, are re-checked after the interval, honour the offline grace, and are dropped when refused', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'pp-private-'));
  const clock = { now: 1_000_000 };
  const verdicts: Record<string, Verdict> = { 'docker.io/library/copy': 'yes' };
  const first = await guard(dir, verdicts, clock);
  await first.g.recordManifest(PRIVATE, 'team/app', manifest);
  await first.g.authorize('blob', PUBLIC, 'library/copy', layer); // the upstream confirms: recorded too
  const lines = readFileSync(join(dir, 'private-content.jsonl'), 'utf8').trim().split('\n');
  assert.equal(lines.length, 4);

  writeFileSync(join(dir, 'private-content.jsonl'), `${lines.join('\n')}\n{"d":"sha256:torn`); // a crash mid-line
  const second = await guard(dir, verdicts, clock);
  assert.equal(second.g.isPrivate(layer), true, 'still private after a restart');
  verdicts['private.example/team/app'] = 'yes';
  await second.g.authorize('blob', PRIVATE, 'team/app', layer); // loaded claims are re-checked once
  assert.equal(second.asked.length, 1);
  await second.g.authorize('blob', PRIVATE, 'team/app', layer);
  assert.equal(second.asked.length, 1, 'then trusted for the re-check interval');

  clock.now += 1_500;
  verdicts['private.example/team/app'] = 'unknown';
  await second.g.authorize('blob', PRIVATE, 'team/app', layer); // upstream unreachable: within the grace
  clock.now += 20_000;
  await refused(second.g.authorize('blob', PRIVATE, 'team/app', layer), 'BLOB_UNKNOWN'); // past the grace
  verdicts['private.example/team/app'] = 'no';
  await refused(second.g.authorize('blob', PRIVATE, 'team/app', config), 'BLOB_UNKNOWN');
  verdicts['private.example/team/app'] = 'yes';
  await second.g.authorize('blob', PRIVATE, 'team/app', config); // granted again
  await refused(second.g.authorize('blob', PRIVATE, 'team/nope', config as Digest), 'BLOB_UNKNOWN');
});

test('AuthFile: a dockerconfigjson Secret manifest, repository-prefix keys (longest wins), legacy URL keys; errors never quote the file', () => {
  const dir = mkdtempSync(join(tmpdir(), 'pp-auth-'));
  const config = {
    auths: {
      'https://index.docker.io/v1/': { auth: Buffer.from('hub:hubpw').toString('base64') },
      'ghcr.io': { username: 'org', password: 'orgpw' },
      'ghcr.io/team': { username: 'team', password: 'teampw' },
      'ghcr.io/team/special/': { identitytoken: 'tok' },
    },
  };
  const secret = { apiVersion: 'v1', kind: 'Secret', type: 'kubernetes.io/dockerconfigjson', data: { '.dockerconfigjson': Buffer.from(JSON.stringify(config)).toString('base64') } };
  writeFileSync(join(dir, 'secret.json'), JSON.stringify(secret));
  const file = AuthFile.load(join(dir, 'secret.json'));
  assert.equal(file.get('docker.io')?.username, 'hub');
  assert.equal(file.get('ghcr.io', 'other/x')?.username, 'org');
  assert.equal(file.get('ghcr.io', 'team/app')?.username, 'team');
  assert.equal(file.get('ghcr.io', 'teamx/app')?.username, 'org', 'a prefix matches whole path segments only');
  assert.equal(file.get('ghcr.io', 'team/special/app')?.password, 'tok');
  assert.equal(file.get('quay.io'), undefined);
  assert.equal(file.hasCredentialsFor('ghcr.io'), true);
  assert.equal(file.hasCredentialsFor('quay.io'), false);
  assert.deepEqual(file.describe().sort(), ['ghcr.io', 'ghcr.io/team', 'ghcr.io/team/special', 'index.docker.io']);

  writeFileSync(join(dir, 'opaque.json'), JSON.stringify({ ...secret, type: 'Opaque' }));
  assert.throws(() => AuthFile.load(join(dir, 'opaque.json')), /expected kubernetes.io\/dockerconfigjson/);
  writeFileSync(join(dir, 'broken.json'), '{"auths": {"x": {"password": "hunter2-secret"');
  assert.throws(() => AuthFile.load(join(dir, 'broken.json')), (err: Error) => !err.message.includes('hunter2') && /not valid JSON/.test(err.message));
});
