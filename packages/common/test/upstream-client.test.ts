import { after, afterEach, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { AuthFile } from '../src/auth-file.ts';
import { sha256Digest } from '../src/digest.ts';
import { parseRegistryEntry, type UpstreamRegistry } from '../src/registry-allowlist.ts';
import { UpstreamClient, UpstreamError, parseRetryAfter, type UpstreamClientOptions } from '../src/upstream-client.ts';

const logger = pino({ level: 'silent' });
const REPO = 'library/x';
const MANIFEST = Buffer.from(JSON.stringify({
  schemaVersion: 2,
  mediaType: 'application/vnd.oci.image.manifest.v1+json',
  config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha256Digest('{}'), size: 2 },
  layers: [],
}));
const BLOB = Buffer.from('blob bytes '.repeat(1000));
const BLOB_DIGEST = sha256Digest(BLOB);

interface Recorded {
  method: string;
  path: string;
  query: URLSearchParams;
  headers: IncomingHttpHeaders;
}

type Handler = (req: IncomingMessage, res: ServerResponse, url: URL) => void;

interface TestServer {
  port: number;
  origin: string;
  requests: Recorded[];
  handler: Handler;
  close(): Promise<void>;
}

/** A tiny HTTP server on 127.0.0.1 whose behaviour each test sets through `handler`. */
async function startServer(): Promise<TestServer> {
  const state: TestServer = {
    port: 0,
    origin: '',
    requests: [],
    handler: (_req, res) => res.writeHead(500).end(),
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    state.requests.push({ method: req.method ?? '', path: url.pathname, query: url.searchParams, headers: req.headers });
    state.handler(req, res, url);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  state.port = (server.address() as AddressInfo).port;
  state.origin = `http://127.0.0.1:${state.port}`;
  return state;
}

function challenge(server: TestServer, scope = `repository:${REPO}:pull`): string {
  return `Bearer realm="${server.origin}/token",service="test",scope="${scope}"`;
}

/** A registry that wants `Bearer tok-N` (any N it issued) on every /v2/ request. */
function bearerRegistry(server: TestServer, routes: (req: IncomingMessage, res: ServerResponse, url: URL) => void): { issued: string[] } {
  const issued: string[] = [];
  server.handler = (req, res, url) => {
    if (url.pathname === '/token') {
      const token = `tok-${issued.length + 1}`;
      issued.push(token);
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ token, expires_in: 300 }));
      return;
    }
    const auth = req.headers.authorization ?? '';
    if (!issued.some((token) => auth === `Bearer ${token}`)) {
      res.writeHead(401, { 'www-authenticate': challenge(server), 'content-type': 'application/json' }).end('{"errors":[{"code":"UNAUTHORIZED"}]}');
      return;
    }
    routes(req, res, url);
  };
  return { issued };
}

function sendManifest(res: ServerResponse): void {
  res.writeHead(200, {
    'content-type': 'application/vnd.oci.image.manifest.v1+json',
    'content-length': MANIFEST.length,
    'docker-content-digest': sha256Digest(MANIFEST),
  }).end(MANIFEST);
}

async function readAll(stream: AsyncIterable<Buffer>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk);
  return Buffer.concat(chunks);
}

let dir: string;
let server: TestServer;
let other: TestServer;
let registry: UpstreamRegistry;
const clients: UpstreamClient[] = [];

function client(opts: Partial<UpstreamClientOptions> = {}): UpstreamClient {
  const c = new UpstreamClient({ authFile: AuthFile.load(undefined), logger, connectTimeoutMs: 1000, headersTimeoutMs: 5000, requestDeadlineMs: 3000, ...opts });
  clients.push(c);
  return c;
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'peerpull-upstream-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('UpstreamClient', () => {
  before(async () => {
    server = await startServer();
    other = await startServer();
    registry = parseRegistryEntry(`127.0.0.1:${server.port}=${server.origin}`);
  });
  afterEach(async () => {
    await Promise.all(clients.splice(0).map((c) => c.close()));
    server.requests.length = 0;
    other.requests.length = 0;
  });
  after(async () => {
    await server.close();
    await other.close();
  });

  test('anonymous registry: no token dance, body and digest returned', async () => {
    server.handler = (_req, res) => sendManifest(res);
    const manifest = await client().getManifest(registry, REPO, 'latest');
    assert.deepEqual(manifest.body, MANIFEST);
    assert.equal(manifest.digest, sha256Digest(MANIFEST));
    assert.equal(manifest.mediaType, 'application/vnd.oci.image.manifest.v1+json');
    assert.equal(server.requests.length, 1);
    assert.equal(server.requests[0]?.headers.authorization, undefined);
  });

  test('401 challenge: fetches a token, retries with Bearer, caches it per scope', async () => {
    const { issued } = bearerRegistry(server, (_req, res) => sendManifest(res));
    const c = client();
    const first = await c.getManifest(registry, REPO, 'latest');
    const second = await c.getManifest(registry, REPO, 'latest');
    assert.deepEqual(first.body, MANIFEST);
    assert.deepEqual(second.body, MANIFEST);

    const tokenRequests = server.requests.filter((r) => r.path === '/token');
    assert.equal(tokenRequests.length, 1, 'one token for two manifest requests');
    assert.equal(tokenRequests[0]?.query.get('service'), 'test');
    assert.equal(tokenRequests[0]?.query.get('scope'), `repository:${REPO}:pull`);
    assert.equal(tokenRequests[0]?.headers.authorization, undefined, 'anonymous token request');

    const manifestRequests = server.requests.filter((r) => r.path === `/v2/${REPO}/manifests/latest`);
    assert.deepEqual(manifestRequests.map((r) => r.headers.authorization), [undefined, 'Bearer tok-1', 'Bearer tok-1']);
    assert.deepEqual(issued, ['tok-1']);

    // Another repository is another scope: a token of its own, and no 401 round trip this time.
    await c.headManifest(registry, 'library/y', 'latest');
    const scopes = server.requests.filter((r) => r.path === '/token').map((r) => r.query.get('scope'));
    assert.deepEqual(scopes, [`repository:${REPO}:pull`, 'repository:library/y:pull']);
    const yRequests = server.requests.filter((r) => r.path === '/v2/library/y/manifests/latest');
    assert.deepEqual(yRequests.map((r) => r.headers.authorization), ['Bearer tok-2']);
  });

  test('concurrent requests for one scope share one token fetch', async () => {
    bearerRegistry(server, (_req, res) => sendManifest(res));
    const c = client();
    await c.headManifest(registry, REPO, 'latest'); // learns the challenge
    server.requests.length = 0;
    await Promise.all(Array.from({ length: 5 }, () => c.headManifest(registry, 'library/z', 'latest')));
    assert.equal(server.requests.filter((r) => r.path === '/token').length, 1);
    assert.equal(server.requests.filter((r) => r.path === '/v2/library/z/manifests/latest' && r.headers.authorization === 'Bearer tok-2').length, 5);
  });

  test('sends Basic credentials from the auth file to the token endpoint only', async () => {
    const configPath = join(dir, 'config.json');
    await writeFile(configPath, JSON.stringify({
      auths: { [`127.0.0.1:${server.port}`]: { auth: Buffer.from('alice:s3cret:with:colons').toString('base64') } },
    }));
    bearerRegistry(server, (_req, res) => sendManifest(res));
    const c = client({ authFile: AuthFile.load(configPath) });
    await c.getManifest(registry, REPO, 'latest');

    const tokenRequests = server.requests.filter((r) => r.path === '/token');
    assert.equal(tokenRequests.length, 1);
    assert.equal(tokenRequests[0]?.headers.authorization, `Basic ${Buffer.from('alice:s3cret:with:colons').toString('base64')}`);
    for (const r of server.requests.filter((r) => r.path.startsWith('/v2/'))) {
      assert.ok(!r.headers.authorization?.startsWith('Basic'), 'the registry itself never sees the password');
    }
  });

  test('a Basic challenge is answered with the auth file credentials', async () => {
    const configPath = join(dir, 'basic.json');
    await writeFile(configPath, JSON.stringify({ auths: { [`http://127.0.0.1:${server.port}/v2/`]: { username: 'bob', password: 'pw' } } }));
    const expected = `Basic ${Buffer.from('bob:pw').toString('base64')}`;
    server.handler = (req, res) => {
      if (req.headers.authorization !== expected) return void res.writeHead(401, { 'www-authenticate': 'Basic realm="test"' }).end();
      sendManifest(res);
    };
    const manifest = await client({ authFile: AuthFile.load(configPath) }).getManifest(registry, REPO, 'latest');
    assert.deepEqual(manifest.body, MANIFEST);
    assert.deepEqual(server.requests.map((r) => r.headers.authorization), [undefined, expected]);
  });

  test('a blob redirect to another origin is followed without the Authorization header', async () => {
    other.handler = (_req, res) => res.writeHead(200, { 'content-length': BLOB.length, 'content-type': 'application/octet-stream' }).end(BLOB);
    bearerRegistry(server, (_req, res, url) => {
      if (url.pathname === `/v2/${REPO}/blobs/${BLOB_DIGEST}`) {
        return void res.writeHead(307, { location: `${other.origin}/cdn/blob?sig=abc` }).end();
      }
      res.writeHead(404).end();
    });
    const blob = await client().getBlob(registry, REPO, BLOB_DIGEST);
    assert.equal(blob.offset, 0);
    assert.equal(blob.size, BLOB.length);
    assert.deepEqual(await readAll(blob.body), BLOB);

    const registryBlobRequests = server.requests.filter((r) => r.path.includes('/blobs/'));
    assert.equal(registryBlobRequests.at(-1)?.headers.authorization, 'Bearer tok-1');
    assert.equal(other.requests.length, 1);
    assert.equal(other.requests[0]?.path, '/cdn/blob');
    assert.equal(other.requests[0]?.query.get('sig'), 'abc');
    assert.equal(other.requests[0]?.headers.authorization, undefined, 'credentials must not leak to the redirect target');
  });

  test('a ranged blob request resumes at the offset, and a bad Content-Range is refused', async () => {
    server.handler = (req, res) => {
      const start = Number(/^bytes=(\d+)-$/.exec(req.headers.range ?? '')?.[1] ?? 0);
      res.writeHead(206, { 'content-range': `bytes ${start}-${BLOB.length - 1}/${BLOB.length}`, 'content-length': BLOB.length - start }).end(BLOB.subarray(start));
    };
    const blob = await client().getBlob(registry, REPO, BLOB_DIGEST, { offset: 100 });
    assert.equal(blob.offset, 100);
    assert.equal(blob.size, BLOB.length);
    assert.deepEqual(await readAll(blob.body), BLOB.subarray(100));
    assert.equal(server.requests[0]?.headers.range, 'bytes=100-');

    // Unread, the refused body must be dropped without an unhandled 'error' (that would kill the process).
    server.handler = (_req, res) => res.writeHead(206, { 'content-range': `bytes 0-9/${BLOB.length}` }).end(BLOB.subarray(0, 10));
    await assert.rejects(client().getBlob(registry, REPO, BLOB_DIGEST, { offset: 100 }), (err: unknown) => {
      assert.ok(err instanceof UpstreamError);
      assert.equal(err.kind, 'invalid');
      return true;
    });
  });

  test('a 503 is retried, then the request succeeds', async () => {
    let calls = 0;
    server.handler = (_req, res) => {
      calls++;
      if (calls === 1) return void res.writeHead(503).end('busy');
      sendManifest(res);
    };
    const manifest = await client().getManifest(registry, REPO, 'latest');
    assert.deepEqual(manifest.body, MANIFEST);
    assert.equal(calls, 2);
  });

  test('5xx beyond the retry budget is UpstreamError unavailable with the status', async () => {
    server.handler = (_req, res) => res.writeHead(502).end();
    await assert.rejects(client({ retries: 1 }).getManifest(registry, REPO, 'latest'), (err: unknown) => {
      assert.ok(err instanceof UpstreamError);
      assert.equal(err.kind, 'unavailable');
      assert.equal(err.status, 502);
      return true;
    });
    assert.equal(server.requests.length, 2);
  });

  test('a 429 with a long Retry-After fails fast as rate-limited', async () => {
    server.handler = (_req, res) => res.writeHead(429, { 'retry-after': '3600', 'ratelimit-limit': '100;w=21600', 'ratelimit-remaining': '0;w=21600' }).end();
    const c = client();
    const started = performance.now();
    await assert.rejects(c.getManifest(registry, REPO, 'latest'), (err: unknown) => {
      assert.ok(err instanceof UpstreamError);
      assert.equal(err.kind, 'rate-limited');
      assert.equal(err.status, 429);
      assert.equal(err.retryAfterMs, 3_600_000);
      return true;
    });
    assert.ok(performance.now() - started < 1000, 'no inline wait for an hour-long Retry-After');
    assert.equal(server.requests.length, 1);
    const state = c.rateLimits.get(registry.host);
    assert.equal(state?.limit, 100);
    assert.equal(state?.remaining, 0);
    assert.ok(state?.backoffUntil !== undefined && state.backoffUntil > Date.now() + 3_500_000);
  });

  test('a 429 with a short Retry-After is waited out inline', async () => {
    let calls = 0;
    server.handler = (_req, res) => {
      calls++;
      if (calls === 1) return void res.writeHead(429, { 'retry-after': '0' }).end();
      sendManifest(res);
    };
    const manifest = await client().getManifest(registry, REPO, 'latest');
    assert.deepEqual(manifest.body, MANIFEST);
    assert.equal(calls, 2);
  });

  test('404 is not-found, 403 is unauthorized', async () => {
    server.handler = (_req, res) => res.writeHead(404).end();
    await assert.rejects(client().getManifest(registry, REPO, 'nope'), { name: 'UpstreamError', kind: 'not-found', status: 404 });
    server.handler = (_req, res) => res.writeHead(403).end();
    await assert.rejects(client().headBlob(registry, REPO, BLOB_DIGEST), { name: 'UpstreamError', kind: 'unauthorized', status: 403 });
  });

  test('a body that is not a manifest is invalid', async () => {
    server.handler = (_req, res) => res.writeHead(200, { 'content-type': 'text/html' }).end('<html>login</html>');
    await assert.rejects(client().getManifest(registry, REPO, 'latest'), { name: 'UpstreamError', kind: 'invalid' });
  });

  test('fails fast with unavailable when nothing listens on the port', async () => {
    const closed = await startServer();
    await closed.close();
    const dead = parseRegistryEntry(`127.0.0.1:${closed.port}=${closed.origin}`);
    const started = performance.now();
    await assert.rejects(client().getManifest(dead, REPO, 'latest'), (err: unknown) => {
      assert.ok(err instanceof UpstreamError);
      assert.equal(err.kind, 'unavailable');
      assert.match(err.message, /ECONNREFUSED/);
      return true;
    });
    assert.ok(performance.now() - started < 2000, `took ${Math.round(performance.now() - started)} ms`);
  });

  test('a hanging token endpoint fails within the request deadline (manifest)', async () => {
    server.handler = (req, res, url) => {
      if (url.pathname === '/token') return; // never answers
      res.writeHead(401, { 'www-authenticate': challenge(server) }).end();
    };
    const started = performance.now();
    await assert.rejects(client({ requestDeadlineMs: 300 }).getManifest(registry, REPO, 'latest'), (err: unknown) => {
      assert.ok(err instanceof UpstreamError, String(err));
      assert.match(err.message, /token request failed: deadline exceeded/);
      return true;
    });
    const elapsed = performance.now() - started;
    assert.ok(elapsed >= 250 && elapsed < 1500, `took ${Math.round(elapsed)} ms`);
  });

  test('a hanging token endpoint fails within the request deadline (blob)', async () => {
    server.handler = (req, res, url) => {
      if (url.pathname === '/token') return; // never answers
      res.writeHead(401, { 'www-authenticate': challenge(server) }).end();
    };
    const started = performance.now();
    await assert.rejects(client({ requestDeadlineMs: 300, headersTimeoutMs: 10_000 }).getBlob(registry, REPO, BLOB_DIGEST), (err: unknown) => {
      assert.ok(err instanceof UpstreamError, String(err));
      assert.match(err.message, /token request failed/);
      return true;
    });
    const elapsed = performance.now() - started;
    assert.ok(elapsed < 1500, `took ${Math.round(elapsed)} ms`);
  });

  test('a hanging registry fails within the request deadline', async () => {
    server.handler = () => undefined; // never answers
    const started = performance.now();
    await assert.rejects(client({ requestDeadlineMs: 300 }).headManifest(registry, REPO, 'latest'), (err: unknown) => {
      assert.ok(err instanceof UpstreamError);
      assert.equal(err.kind, 'unavailable');
      assert.match(err.message, /deadline exceeded/);
      return true;
    });
    assert.ok(performance.now() - started < 1500);
  });

  test('a redirect loop is cut off', async () => {
    server.handler = (_req, res) => res.writeHead(302, { location: '/v2/loop' }).end();
    await assert.rejects(client().getManifest(registry, REPO, 'latest'), (err: unknown) => {
      assert.ok(err instanceof UpstreamError);
      assert.match(err.message, /too many redirects/);
      return true;
    });
    assert.equal(server.requests.length, 6);
  });
});

describe('parseRetryAfter', () => {
  test('seconds and HTTP dates', () => {
    assert.equal(parseRetryAfter(undefined), undefined);
    assert.equal(parseRetryAfter('120'), 120_000);
    assert.equal(parseRetryAfter('garbage'), undefined);
    const inAMinute = parseRetryAfter(new Date(Date.now() + 60_000).toUTCString());
    assert.ok(inAMinute !== undefined && inAMinute > 55_000 && inAMinute <= 60_000);
    assert.equal(parseRetryAfter(new Date(Date.now() - 60_000).toUTCString()), 0);
  });
});
