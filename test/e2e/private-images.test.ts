// Private images: a token-auth front of our own (Docker's token flow: 401 + Bearer challenge, a token realm
// that wants Basic credentials for private/* and gives anonymous tokens for the rest) in front of the real
// registry. The daemon gets credentials from a Docker config.json (and, in a second daemon, from a
// kubernetes.io/dockerconfigjson Secret with a repository-prefix key). Checks: private pulls work; a private
// digest is served under a repository only if that repository holds it (guessing it under a public name or
// another registry gets 404, never the cached bytes); claims survive a restart; revoked access stops cached
// content after the re-check interval, while an unreachable upstream keeps it within the offline grace; and
// no secret (password, Basic string, issued token) appears in any log line, metric, status or error.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { startRegistry, type Registry } from '../fixtures/registry.ts';
import { CLI, startPeerpull, type DaemonProcess } from '../fixtures/daemon.ts';
import { getImageLayout, pushImage, type BuiltImage } from '../fixtures/images.ts';
import { makeTempDir, run } from '../fixtures/processes.ts';
import { FaultProxy } from '../fixtures/fault-proxy.ts';
import { rawRequest } from '../fixtures/raw-http.ts';
import { ociErrorCodes } from '../fixtures/oci-error.ts';
import { download } from './mirror-helpers.ts';

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const USER = 'puller';
const PASSWORD = `pw-${crypto.randomBytes(12).toString('hex')}`;
const BASIC = Buffer.from(`${USER}:${PASSWORD}`).toString('base64');

describe('private images', () => {
  let reg: Registry;
  let priv: BuiltImage;
  let pub: BuiltImage;
  /** The token-protected registry (credentials in the auth file): private/* needs them. */
  let up: FaultProxy;
  /** Another registry, anonymous (no credentials): it has no private/* repositories. */
  let other: FaultProxy;
  let daemon: DaemonProcess;
  let secretDaemon: DaemonProcess | undefined;
  const issuedTokens: string[] = [];
  const grants = new Map<string, string>();
  let revoked = false;
  let outage = false;
  const work = makeTempDir('pp-private-');

  const layerOf = (img: BuiltImage, i: number) => img.manifests[0]!.layers[i]!;
  const blobPath = (repo: string, digest: string, ns?: string) => `/v2/${repo}/blobs/${digest}${ns ? `?ns=${encodeURIComponent(ns)}` : ''}`;

  before(async () => {
    reg = await startRegistry();
    [priv, pub] = await Promise.all([getImageLayout({ name: 'private-app', layers: [300_000, 200_000] }), getImageLayout({ name: 'public-app', layers: [100_000] })]);
    await Promise.all([
      pushImage(priv, `${reg.host}/private/app:v1`),
      pushImage(priv, `${reg.host}/library/copy:v1`), // the same digests, legitimately public in another repository
      pushImage(pub, `${reg.host}/library/public:v1`),
    ]);
    [up, other] = await Promise.all([FaultProxy.start(reg.url), FaultProxy.start(reg.url)]);
    up.script = (r) => {
      if (outage && r.url !== '/v2/') return { kind: 'respond', status: 503, body: 'maintenance' };
      const url = new URL(r.url, 'http://x');
      if (url.pathname === '/token') {
        const repo = /^repository:(.+):pull$/.exec(url.searchParams.get('scope') ?? '')?.[1] ?? '';
        const basicOk = r.headers.authorization === `Basic ${BASIC}` && !revoked;
        if (repo.startsWith('private/') && !basicOk) return { kind: 'respond', status: 401, headers: { 'content-type': 'application/json' }, body: '{"details":"access denied"}' };
        const token = `tok-${crypto.randomBytes(16).toString('hex')}`;
        issuedTokens.push(token);
        grants.set(token, repo);
        return { kind: 'respond', status: 200, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token, expires_in: 300 }) };
      }
      const repo = /^\/v2\/(.+)\/(manifests|blobs)\//.exec(url.pathname)?.[1];
      const bearer = r.headers.authorization?.replace(/^Bearer /, '');
      const granted = bearer !== undefined && grants.get(bearer) === repo && !(revoked && repo?.startsWith('private/'));
      if (url.pathname === '/v2/' || (repo && !granted)) {
        const challenge = `Bearer realm="${up.url}/token",service="test-registry"${repo ? `,scope="repository:${repo}:pull"` : ''}`;
        const headers: Record<string, string> = { 'content-type': 'application/json', 'www-authenticate': challenge };
        return { kind: 'respond', status: 401, headers, body: '{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}' };
      }
      return undefined; // granted: pass on to the registry
    };
    other.script = (r) => (r.url.includes('/private/') ? { kind: 'respond', status: 404, headers: { 'content-type': 'application/json' }, body: '{"errors":[{"code":"NAME_UNKNOWN","message":"no such repository"}]}' } : undefined);
    const authFile = path.join(work, 'config.json');
    fs.writeFileSync(authFile, JSON.stringify({ auths: { [up.host]: { auth: BASIC } } }), { mode: 0o600 });
    daemon = await startPeerpull({
      registries: [`${up.host}=${up.url}`, `${other.host}=${other.url}`],
      defaultRegistry: up.host,
      extraArgs: ['--auth-file', authFile, '--private-recheck-interval', '1s', '--log-level', 'debug'],
    });
  });

  after(async () => {
    await Promise.all([daemon?.stop(), secretDaemon?.stop()]);
    await Promise.all([up?.close(), other?.close()]);
    await reg?.stop();
  });

  test('a private image pulls through the daemon with credentials from a Docker config.json', async () => {
    const m = await rawRequest(daemon.host, 'GET', '/v2/private/app/manifests/v1', { headers: { accept: OCI_MANIFEST } });
    assert.equal(m.status, 200, m.body.toString());
    assert.equal(m.headers['docker-content-digest'], priv.manifestDigest);
    for (const digest of [priv.manifests[0]!.configDigest, ...priv.manifests[0]!.layers.map((l) => l.digest)]) {
      const b = await download(`${daemon.url}${blobPath('private/app', digest)}`);
      assert.equal(b.status, 200);
      assert.equal(b.digest, digest);
    }
    assert.ok(up.requests.some((r) => r.url.startsWith('/token') && r.headers.authorization === `Basic ${BASIC}`), 'the token was asked for with the credentials');
    assert.ok(daemon.logs().some((l) => l.msg.includes('credentials loaded')), 'the daemon says which registries are private');
  });

  test('guessing a private digest under a public repository or another registry: 404, never the cached bytes', async () => {
    const layer = layerOf(priv, 0);
    const before = up.requests.length;
    const guesses: [string, string, string | undefined][] = [
      ['GET', blobPath('library/public', layer.digest), undefined],
      ['HEAD', blobPath('library/public', layer.digest), undefined],
      ['GET', blobPath('library/public', layer.digest, other.host), other.host],
      ['GET', blobPath('private/app', layer.digest, other.host), other.host],
      ['GET', blobPath('library/nope', priv.manifests[0]!.configDigest), undefined],
      ['GET', `/v2/library/public/manifests/${priv.manifestDigest}`, undefined],
    ];
    for (const [method, target] of guesses) {
      const res = await rawRequest(daemon.host, method, target, { headers: { accept: OCI_MANIFEST } });
      assert.equal(res.status, 404, `${method} ${target}`);
      if (method === 'GET') assert.match(String(ociErrorCodes(res.body)), /BLOB_UNKNOWN|MANIFEST_UNKNOWN/, target);
      assert.ok(res.body.length < 1_000, 'no blob bytes in the answer');
    }
    const asked = up.requests.slice(before);
    assert.ok(asked.some((r) => r.method === 'HEAD' && r.url === `/v2/library/public/blobs/${layer.digest}`), 'the upstream was asked, under the repository the client named');
    assert.equal(asked.filter((r) => r.method === 'GET' && r.url.includes('/blobs/')).length, 0, 'and no blob bytes were fetched for the guess');
    assert.ok(other.requests.some((r) => r.method === 'HEAD' && r.url.includes(layer.digest)), 'the other registry was asked too, and said no');
  });

  test('a repository that really holds the digest gets it from the cache (confirmed with a HEAD, no second download)', async () => {
    const layer = layerOf(priv, 1);
    const before = up.requests.length;
    const res = await download(`${daemon.url}${blobPath('library/copy', layer.digest)}`);
    assert.equal(res.status, 200);
    assert.equal(res.digest, layer.digest);
    assert.equal(res.headers['x-peerpull-source'], 'local');
    const asked = up.requests.slice(before).filter((r) => r.url.includes(layer.digest));
    assert.deepEqual(asked.map((r) => r.method).filter((m) => m !== 'HEAD'), [], 'only a HEAD went upstream');
  });

  test('the claims survive a restart: guesses still get 404; the owner repository still pulls from the cache', async () => {
    await daemon.stop();
    await daemon.restart();
    const guess = await rawRequest(daemon.host, 'GET', blobPath('library/public', layerOf(priv, 0).digest));
    assert.equal(guess.status, 404);
    const owner = await download(`${daemon.url}${blobPath('private/app', layerOf(priv, 0).digest)}`);
    assert.equal(owner.status, 200);
    assert.equal(owner.digest, layerOf(priv, 0).digest);
    assert.equal(owner.headers['x-peerpull-source'], 'local');
  });

  test('an unreachable upstream: cached private content keeps serving within the offline grace', async () => {
    await new Promise((r) => setTimeout(r, 1_100)); // past the re-check interval
    outage = true;
    try {
      const res = await download(`${daemon.url}${blobPath('private/app', layerOf(priv, 0).digest)}`);
      assert.equal(res.status, 200);
      assert.equal(res.digest, layerOf(priv, 0).digest);
    } finally {
      outage = false;
    }
  });

  test('revoked access: once the re-check interval has passed, cached private content is no longer served', async () => {
    revoked = true;
    grants.clear();
    try {
      await new Promise((r) => setTimeout(r, 1_100));
      for (const digest of [layerOf(priv, 0).digest, priv.manifests[0]!.configDigest]) {
        const res = await rawRequest(daemon.host, 'GET', blobPath('private/app', digest));
        assert.equal(res.status, 404, `${digest}: ${res.body.toString().slice(0, 200)}`);
      }
      const m = await rawRequest(daemon.host, 'GET', `/v2/private/app/manifests/${priv.manifestDigest}`, { headers: { accept: OCI_MANIFEST } });
      assert.equal(m.status, 404);
      assert.ok(daemon.logs().some((l) => /no longer grants/.test(l.msg)), 'logged');
      // Public content of the same registry is unaffected.
      const p = await rawRequest(daemon.host, 'GET', '/v2/library/public/manifests/v1', { headers: { accept: OCI_MANIFEST } });
      assert.equal(p.status, 200);
    } finally {
      revoked = false;
    }
  });

  test('a kubernetes.io/dockerconfigjson Secret with a repository-prefix key: private pulls work; the prefix scopes the credentials', async () => {
    const secret = {
      apiVersion: 'v1',
      kind: 'Secret',
      type: 'kubernetes.io/dockerconfigjson',
      metadata: { name: 'pull-secret' },
      data: { '.dockerconfigjson': Buffer.from(JSON.stringify({ auths: { [`${up.host}/private`]: { username: USER, password: PASSWORD } } })).toString('base64') },
    };
    const file = path.join(work, 'secret.json');
    fs.writeFileSync(file, JSON.stringify(secret), { mode: 0o600 });
    secretDaemon = await startPeerpull({ registries: [`${up.host}=${up.url}`], extraArgs: ['--auth-file', file] });
    const m = await rawRequest(secretDaemon.host, 'GET', '/v2/private/app/manifests/v1', { headers: { accept: OCI_MANIFEST } });
    assert.equal(m.status, 200);
    const b = await download(`${secretDaemon.url}${blobPath('private/app', layerOf(priv, 1).digest)}`);
    assert.equal(b.digest, layerOf(priv, 1).digest);
    const before = up.requests.length;
    const p = await rawRequest(secretDaemon.host, 'GET', '/v2/library/public/manifests/v1', { headers: { accept: OCI_MANIFEST } });
    assert.equal(p.status, 200);
    assert.ok(up.requests.slice(before).filter((r) => r.url.startsWith('/token')).every((r) => r.headers.authorization === undefined), 'library/* is outside the prefix: asked anonymously');
  });

  test('no secret in any log line, metric, status answer or error: not the password, the Basic string or any issued token', async () => {
    // A broken credentials file must not be echoed in the error either.
    const broken = path.join(work, 'broken.json');
    fs.writeFileSync(broken, `{"auths": {"${up.host}": {"auth": "${BASIC}", "password": "${PASSWORD}"}`);
    const failed = await run(process.execPath, [CLI, 'daemon', '--listen', '127.0.0.1:0', '--metrics-listen', '', '--data', path.join(work, 'd2'), '--registry', `${up.host}=${up.url}`, '--default-registry', up.host, '--auth-file', broken], { allowFailure: true, timeoutMs: 30_000 });
    assert.notEqual(failed.code, 0, 'a broken auth file stops the daemon');
    assert.match(failed.stderr, /auth file/);

    const secrets = [PASSWORD, BASIC, Buffer.from(PASSWORD).toString('base64'), ...issuedTokens];
    assert.ok(issuedTokens.length >= 2, `tokens were issued (${issuedTokens.length})`);
    const texts: [string, string][] = [];
    for (const d of [daemon, secretDaemon!]) {
      texts.push([`${d.host} output`, d.process.lines.map((l) => l.line).join('\n')]);
      texts.push([`${d.host} metrics`, await d.metrics()]);
      for (const api of ['/api/v1/status', '/api/v1/cache', `/api/v1/explain?image=${encodeURIComponent(`${up.host}/private/app:v1`)}`]) {
        const res = await fetch(`${d.url}${api}`).catch(() => undefined);
        if (res) texts.push([`${d.host} ${api}`, await res.text()]);
      }
    }
    texts.push(['broken auth file: stderr', failed.stderr + failed.stdout]);
    const dataFiles = fs.readdirSync(daemon.dataDir).filter((f) => f.endsWith('.jsonl'));
    for (const f of dataFiles) texts.push([`data/${f}`, fs.readFileSync(path.join(daemon.dataDir, f), 'utf8')]);
    // (It counted lines once, and passed thanks to a Fastify deprecation warning on stderr.)
    assert.ok(texts[0]![1].split('\n').length > 10 && texts[0]![1].includes('"level":20'), 'there is output to search, debug lines included');
    for (const [where, text] of texts) {
      for (const secret of secrets) assert.equal(text.includes(secret), false, `${where} contains a secret (${secret.slice(0, 6)}…)`);
      assert.equal(/authorization"?\s*[:=]\s*"?(basic|bearer) /i.test(text), false, `${where} contains an Authorization header`);
    }
  });
});
