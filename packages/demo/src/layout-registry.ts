import { createReadStream, readFileSync, statSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import path from 'node:path';

interface LayoutDescriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
}

/**
 * A minimal read-only registry serving OCI image layouts from disk: the demo's embedded,
 * offline "upstream" (`--real` and the tests use the real distribution registry instead).
 * It counts the body bytes it sends, which is what the demo reports as upstream traffic.
 * The WAN in front of it is emulated by a WanLink relay (wan-link.ts).
 */
export class LayoutRegistry {
  readonly #repos = new Map<string, { dir: string; tags: Map<string, LayoutDescriptor> }>();
  #server: Server | undefined;
  bytesSent = 0;
  blobRequests = 0;

  /** Serves the layout in `dir` as `repository` (tags from `org.opencontainers.image.ref.name`). */
  addRepository(repository: string, dir: string): void {
    const index = JSON.parse(readFileSync(path.join(dir, 'index.json'), 'utf8')) as { manifests: LayoutDescriptor[] };
    const tags = new Map<string, LayoutDescriptor>();
    for (const m of index.manifests) {
      const tag = m.annotations?.['org.opencontainers.image.ref.name'];
      if (tag) tags.set(tag, m);
    }
    this.#repos.set(repository, { dir, tags });
  }

  async listen(host = '127.0.0.1', port = 0): Promise<string> {
    this.#server = createServer((req, res) => this.#handle(req.method ?? 'GET', req.url ?? '/', res));
    await new Promise<void>((resolve) => this.#server?.listen(port, host, resolve));
    const address = this.#server.address();
    if (!address || typeof address === 'string') throw new Error('no address');
    return `${host}:${address.port}`;
  }

  async close(): Promise<void> {
    this.#server?.closeAllConnections();
    await new Promise<void>((resolve) => (this.#server ? this.#server.close(() => resolve()) : resolve()));
  }

  #handle(method: string, url: string, res: import('node:http').ServerResponse): void {
    const pathname = url.split('?')[0] ?? '';
    if (pathname === '/v2/' || pathname === '/v2') {
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      return;
    }
    const match = /^\/v2\/(.+)\/(manifests|blobs)\/([^/]+)$/.exec(pathname);
    const repo = match ? this.#repos.get(match[1] as string) : undefined;
    if (!match || !repo || (method !== 'GET' && method !== 'HEAD')) {
      res.writeHead(404, { 'content-type': 'application/json' }).end('{"errors":[{"code":"NAME_UNKNOWN","message":"not found"}]}');
      return;
    }
    const reference = match[3] as string;
    const tagged = match[2] === 'manifests' ? repo.tags.get(reference) : undefined;
    const digest = tagged?.digest ?? reference;
    if (!/^sha256:[a-f0-9]{64}$/.test(digest)) {
      res.writeHead(404, { 'content-type': 'application/json' }).end('{"errors":[{"code":"MANIFEST_UNKNOWN","message":"unknown"}]}');
      return;
    }
    const file = path.join(repo.dir, 'blobs', 'sha256', digest.slice(7));
    let size: number;
    try {
      size = statSync(file).size;
    } catch {
      res.writeHead(404, { 'content-type': 'application/json' }).end('{"errors":[{"code":"BLOB_UNKNOWN","message":"unknown"}]}');
      return;
    }
    let contentType = 'application/octet-stream';
    if (match[2] === 'manifests') {
      const doc = JSON.parse(readFileSync(file, 'utf8')) as { mediaType?: string };
      contentType = doc.mediaType ?? 'application/vnd.oci.image.manifest.v1+json';
    }
    res.writeHead(200, { 'content-type': contentType, 'content-length': size, 'docker-content-digest': digest });
    if (method === 'HEAD') {
      res.end();
      return;
    }
    if (match[2] === 'blobs') this.blobRequests++;
    this.bytesSent += size;
    createReadStream(file).pipe(res);
  }
}
