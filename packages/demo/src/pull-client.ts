// An HTTP client that pulls an image the way containerd's CRI plugin does, for benchmarks and tests
// that simulate nodes:
//   HEAD  /v2/<name>/manifests/<tag>        Accept: the four manifest media types, */*
//   (GET  /v2/<name>/manifests/<tag>        only if the HEAD had no Docker-Content-Digest)
//   GET   /v2/<name>/manifests/<digest>     Accept: <media type>, */*
//   (GET  /v2/<name>/manifests/<platform digest>  for an OCI index / Docker manifest list)
//   GET   /v2/<name>/blobs/<config>  and  GET /v2/<name>/blobs/<layer>...  at most 3 in flight
// with `?ns=<registry>` on every request when `ns` is given (containerd adds it for mirrors only), and
// `Accept-Encoding: gzip` on GETs (Go's transport does). Every body is hashed while it streams and
// checked against its digest, size and Content-Length; the bytes are discarded. Anything wrong (status,
// digest, size, a Content-Encoding, a stall, a connection closed early) rejects with a PullError.
//
// Transport: a small HTTP/1.1 client on net.Socket reading into one reused 1 MiB buffer per connection
// (`onread`), with keep-alive connection reuse. node:http tops out near 750 MB/s per stream here with
// hashing (its per-chunk overhead on 10-64 KiB reads is as large as the sha256 itself); this client
// reaches ~1.3 GB/s, close to node's sha256 speed, so a benchmark measures the server, not the client.
// It speaks only what registries need: plain http, Content-Length, chunked and close-delimited bodies,
// redirects.
import crypto from 'node:crypto';
import net from 'node:net';

export const MANIFEST_ACCEPT = [
  'application/vnd.docker.distribution.manifest.v2+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.oci.image.index.v1+json',
  '*/*',
].join(', ');

const INDEX_TYPES = new Set([
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
]);

/** What every request of this module sends as User-Agent (lets tests tell its requests apart). */
export const PULL_CLIENT_USER_AGENT = 'peerpull-pull-client/1 (containerd-like)';

const DEFAULT_READ_BUFFER = 1024 * 1024;
const MAX_HEADER_BYTES = 64 * 1024;
const MAX_REDIRECTS = 5;

export interface PullPlatform {
  os: string;
  architecture: string;
  variant?: string;
}

export interface PullImageOptions {
  /** Where to send requests: the registry itself or a mirror, e.g. `http://127.0.0.1:5050`. */
  registryUrl: string;
  /** e.g. `library/bench`. */
  repository: string;
  tag: string;
  /** Upstream registry host[:port], sent as `?ns=` (as containerd does when talking to a mirror). */
  ns?: string;
  /** Blob downloads in flight at once (containerd CRI: 3). */
  maxConcurrent?: number;
  /** Platform picked from an index (default linux/amd64, else the first entry). */
  platform?: PullPlatform;
  /** Connection pool (default: one keep-alive pool shared by everything in this process). */
  pool?: HttpPool;
  /** A response that sends nothing for this long fails the pull (default 30 s). */
  idleTimeoutMs?: number;
  signal?: AbortSignal;
}

export interface PullResult {
  /** Digest of the manifest the tag resolved to (the index's digest for a multi-platform image). */
  manifestDigest: string;
  /** Digest of the image manifest that was pulled (equals manifestDigest for a single-platform image). */
  imageManifestDigest: string;
  /** Body bytes received: manifests, config and layers. */
  bytes: number;
  /** Blobs fetched (config + layers). */
  blobs: number;
  /** Wall time of the whole pull. */
  seconds: number;
  /** Body bytes per `x-peerpull-source` response header value (responses without the header are not counted). */
  bySource: Record<string, number>;
  /** HTTP requests made (redirect hops included). */
  requests: number;
}

export class PullError extends Error {
  readonly status: number | undefined;
  readonly url: string;
  constructor(message: string, url: string, status?: number) {
    super(`${message} (${url})`);
    this.name = 'PullError';
    this.url = url;
    this.status = status;
  }
}

// ---- HTTP/1.1 transport ------------------------------------------------------------------------------

export interface HttpPoolOptions {
  /** Reuse connections (default true). */
  keepAlive?: boolean;
  /** Bytes per socket read (default 1 MiB). */
  readBufferSize?: number;
}

export interface HttpResponse {
  status: number;
  /** Lower-case names; repeated headers joined with ', '. */
  headers: Record<string, string>;
  /** Body bytes received. */
  bytes: number;
  /** sha256 of the body, `sha256:<hex>`. */
  digest: string;
  /** The body, only when keepBody was set. */
  body?: Buffer;
  seconds: number;
}

interface RequestSpec {
  method: 'GET' | 'HEAD';
  url: URL;
  headers: Record<string, string>;
  keepBody: boolean;
  idleTimeoutMs: number;
  signal: AbortSignal | undefined;
}

type BodyMode = 'none' | 'length' | 'chunked' | 'close';

/** Parses one response from the bytes a connection delivers. */
class ResponseReader {
  readonly spec: RequestSpec;
  readonly started = performance.now();
  readonly #hash = crypto.createHash('sha256');
  readonly #chunks: Buffer[] = [];
  #head: Buffer | undefined = Buffer.alloc(0);
  status = 0;
  headers: Record<string, string> = {};
  bytes = 0;
  mode: BodyMode = 'none';
  #remaining = 0;
  // chunked framing
  #chunkState: 'size' | 'data' | 'data-crlf' | 'trailer' = 'size';
  #line = '';
  done = false;
  /** Bytes seen of this response (head included): 0 means the connection died before answering. */
  received = 0;
  /** The server asked to close the connection (or the body is close-delimited). */
  closeAfter = false;

  constructor(spec: RequestSpec) {
    this.spec = spec;
  }

  /** Consumes bytes; returns how many belonged to this response. Throws on protocol errors. */
  feed(data: Buffer): number {
    this.received += data.length;
    let used = 0;
    if (this.#head !== undefined) {
      const prevLen = this.#head.length;
      const head = prevLen === 0 ? data : Buffer.concat([this.#head, data]);
      const end = head.indexOf('\r\n\r\n', Math.max(0, prevLen - 3));
      if (end < 0) {
        if (head.length > MAX_HEADER_BYTES) throw new Error('response header too large');
        this.#head = Buffer.from(head); // copy: `data` is the connection's reused read buffer
        return data.length;
      }
      this.#parseHead(head.subarray(0, end).toString('latin1'));
      this.#head = undefined;
      used = end + 4 - prevLen;
      if (this.mode === 'none' || (this.mode === 'length' && this.#remaining === 0)) {
        this.done = true;
        return used;
      }
    }
    return used + this.#body(data.subarray(used));
  }

  /** The connection reached EOF. */
  eof(): void {
    if (this.done) return;
    if (this.mode === 'close' && this.#head === undefined) {
      this.done = true;
      return;
    }
    throw new Error(this.#head !== undefined ? 'connection closed before a response' : `connection closed after ${this.bytes} body bytes`);
  }

  result(): HttpResponse {
    const r: HttpResponse = {
      status: this.status,
      headers: this.headers,
      bytes: this.bytes,
      digest: `sha256:${this.#hash.digest('hex')}`,
      seconds: (performance.now() - this.started) / 1000,
    };
    if (this.spec.keepBody) r.body = Buffer.concat(this.#chunks);
    return r;
  }

  #parseHead(text: string): void {
    const lines = text.split('\r\n');
    const m = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? '');
    if (!m) throw new Error(`bad status line: ${JSON.stringify((lines[0] ?? '').slice(0, 100))}`);
    this.status = Number(m[1]);
    for (const line of lines.slice(1)) {
      const colon = line.indexOf(':');
      if (colon <= 0) throw new Error(`bad header line: ${JSON.stringify(line.slice(0, 100))}`);
      const name = line.slice(0, colon).trim().toLowerCase();
      const value = line.slice(colon + 1).trim();
      this.headers[name] = this.headers[name] === undefined ? value : `${this.headers[name]}, ${value}`;
    }
    if (/\bclose\b/i.test(this.headers.connection ?? '') || lines[0]!.startsWith('HTTP/1.0')) this.closeAfter = true;
    if (this.spec.method === 'HEAD' || this.status === 204 || this.status === 304 || (this.status >= 100 && this.status < 200)) {
      if (this.status >= 100 && this.status < 200) throw new Error(`unexpected ${this.status} response`);
      this.mode = 'none';
    } else if (/\bchunked\b/i.test(this.headers['transfer-encoding'] ?? '')) {
      this.mode = 'chunked';
    } else if (this.headers['content-length'] !== undefined) {
      if (!/^\d+$/.test(this.headers['content-length'])) throw new Error(`bad Content-Length: ${this.headers['content-length']}`);
      this.mode = 'length';
      this.#remaining = Number(this.headers['content-length']);
    } else {
      this.mode = 'close';
      this.closeAfter = true;
    }
  }

  #take(data: Buffer): void {
    if (data.length === 0) return;
    this.#hash.update(data);
    this.bytes += data.length;
    if (this.spec.keepBody) this.#chunks.push(Buffer.from(data));
  }

  #body(data: Buffer): number {
    if (this.mode === 'close') {
      this.#take(data);
      return data.length;
    }
    if (this.mode === 'length') {
      const n = Math.min(this.#remaining, data.length);
      this.#take(data.subarray(0, n));
      this.#remaining -= n;
      if (this.#remaining === 0) this.done = true;
      return n;
    }
    // chunked
    let i = 0;
    while (i < data.length && !this.done) {
      if (this.#chunkState === 'data') {
        const n = Math.min(this.#remaining, data.length - i);
        this.#take(data.subarray(i, i + n));
        this.#remaining -= n;
        i += n;
        if (this.#remaining === 0) this.#chunkState = 'data-crlf';
        continue;
      }
      const nl = data.indexOf(0x0a, i);
      const end = nl < 0 ? data.length : nl + 1;
      this.#line += data.subarray(i, end).toString('latin1');
      i = end;
      if (nl < 0) {
        if (this.#line.length > 4096) throw new Error('chunk framing line too long');
        continue;
      }
      const line = this.#line.replace(/\r?\n$/, '');
      this.#line = '';
      if (this.#chunkState === 'data-crlf') {
        if (line !== '') throw new Error('missing CRLF after chunk data');
        this.#chunkState = 'size';
      } else if (this.#chunkState === 'size') {
        const size = parseInt(line.split(';')[0]!.trim(), 16);
        if (!Number.isFinite(size) || size < 0) throw new Error(`bad chunk size line: ${JSON.stringify(line.slice(0, 40))}`);
        if (size === 0) this.#chunkState = 'trailer';
        else {
          this.#remaining = size;
          this.#chunkState = 'data';
        }
      } else if (line === '') {
        this.done = true; // end of trailers
      }
    }
    return i;
  }
}

class Connection {
  readonly socket: net.Socket;
  readonly key: string;
  reader: ResponseReader | undefined;
  onDone: ((err: Error | undefined) => void) | undefined;
  /** Completed requests on this connection. */
  uses = 0;
  closed = false;
  readonly #buffer: Buffer;

  constructor(key: string, host: string, port: number, bufferSize: number, onClose: (c: Connection) => void) {
    this.key = key;
    this.#buffer = Buffer.allocUnsafe(bufferSize);
    this.socket = net.connect({
      host,
      port,
      noDelay: true,
      onread: { buffer: this.#buffer, callback: (n: number) => this.#onRead(n) },
    });
    const closed = (err?: Error) => {
      if (this.closed) return;
      this.closed = true;
      onClose(this);
      if (this.reader && this.onDone) {
        let error = err;
        if (!error) {
          try {
            this.reader.eof();
          } catch (e) {
            error = e as Error;
          }
        }
        this.#finish(error);
      }
    };
    this.socket.on('timeout', () => this.socket.destroy(new Error(`no data for ${this.socket.timeout} ms`)));
    this.socket.once('end', () => {
      closed();
      this.socket.destroy();
    });
    this.socket.once('error', (err) => closed(err));
    this.socket.once('close', () => closed());
  }

  #onRead(n: number): boolean {
    const reader = this.reader;
    if (!reader) {
      this.socket.destroy(); // bytes nobody asked for
      return false;
    }
    try {
      const used = reader.feed(this.#buffer.subarray(0, n));
      if (reader.done) {
        if (used !== n) reader.closeAfter = true; // extra bytes: do not reuse
        this.#finish(undefined);
      }
    } catch (err) {
      this.#finish(err as Error);
      this.socket.destroy();
      return false;
    }
    return true;
  }

  #finish(err: Error | undefined): void {
    const done = this.onDone;
    this.onDone = undefined;
    done?.(err);
  }
}

/** Keep-alive HTTP/1.1 connections per origin. Idle connections do not keep the process alive. */
export class HttpPool {
  readonly #idle = new Map<string, Connection[]>();
  readonly #all = new Set<Connection>();
  readonly #keepAlive: boolean;
  readonly #bufferSize: number;

  constructor(opts: HttpPoolOptions = {}) {
    this.#keepAlive = opts.keepAlive ?? true;
    this.#bufferSize = opts.readBufferSize ?? DEFAULT_READ_BUFFER;
  }

  /** Closes every connection. */
  close(): void {
    for (const c of this.#all) c.socket.destroy();
    this.#all.clear();
    this.#idle.clear();
  }

  /** One request; the body is hashed while it streams and dropped unless keepBody. Rejects on transport errors only. */
  async request(spec: RequestSpec): Promise<HttpResponse> {
    if (spec.url.protocol !== 'http:') throw new PullError('only http:// is supported', spec.url.href);
    for (let attempt = 0; ; attempt++) {
      const conn = this.#acquire(spec.url);
      const reused = conn.uses > 0;
      try {
        return await this.#send(conn, spec);
      } catch (err) {
        // A reused connection the server had already closed: retry once on a fresh one (Go does too).
        const answered = (err as { responseBytes?: number }).responseBytes ?? 0;
        if (reused && attempt === 0 && answered === 0 && !spec.signal?.aborted) continue;
        throw new PullError(`${spec.method} failed: ${(err as Error).message}`, spec.url.href);
      }
    }
  }

  #acquire(url: URL): Connection {
    const key = url.host;
    const idle = this.#idle.get(key);
    let conn: Connection | undefined;
    while (idle && idle.length > 0 && !conn) {
      const c = idle.pop()!;
      if (!c.closed) conn = c;
    }
    if (!conn) {
      conn = new Connection(key, url.hostname, Number(url.port || 80), this.#bufferSize, (c) => this.#forget(c));
      this.#all.add(conn);
    }
    conn.socket.ref();
    return conn;
  }

  #forget(c: Connection): void {
    this.#all.delete(c);
    const idle = this.#idle.get(c.key);
    const i = idle?.indexOf(c) ?? -1;
    if (i >= 0) idle!.splice(i, 1);
  }

  #send(conn: Connection, spec: RequestSpec): Promise<HttpResponse> {
    return new Promise<HttpResponse>((resolve, reject) => {
      const reader = new ResponseReader(spec);
      conn.reader = reader;
      const onAbort = () => conn.socket.destroy(new Error('aborted'));
      spec.signal?.addEventListener('abort', onAbort, { once: true });
      if (spec.signal?.aborted) onAbort();
      conn.socket.setTimeout(spec.idleTimeoutMs);
      conn.onDone = (err) => {
        spec.signal?.removeEventListener('abort', onAbort);
        conn.socket.setTimeout(0);
        conn.reader = undefined;
        if (err) {
          conn.socket.destroy();
          reject(Object.assign(err, { responseBytes: reader.received }));
          return;
        }
        conn.uses++;
        if (this.#keepAlive && !reader.closeAfter && !conn.closed) {
          conn.socket.unref();
          const idle = this.#idle.get(conn.key) ?? [];
          idle.push(conn);
          this.#idle.set(conn.key, idle);
        } else {
          conn.socket.destroy();
        }
        resolve(reader.result());
      };
      const headers: Record<string, string> = { host: spec.url.host, 'user-agent': PULL_CLIENT_USER_AGENT, ...spec.headers };
      if (!this.#keepAlive) headers.connection = 'close';
      let head = `${spec.method} ${spec.url.pathname}${spec.url.search} HTTP/1.1\r\n`;
      for (const [k, v] of Object.entries(headers)) head += `${k}: ${v}\r\n`;
      conn.socket.write(`${head}\r\n`);
    });
  }
}

const sharedPool = new HttpPool();

interface FetchOptions {
  accept?: string;
  keepBody?: boolean;
  pool: HttpPool;
  idleTimeoutMs: number;
  signal?: AbortSignal | undefined;
}

/** A request following redirects (as Go does: the final response is returned). */
async function fetchHashed(method: 'GET' | 'HEAD', url: URL, opts: FetchOptions, counter: Counter): Promise<HttpResponse> {
  const headers: Record<string, string> = {};
  if (opts.accept) headers.accept = opts.accept;
  // Go's transport sends this on every GET without Range; a registry must not compress blobs anyway.
  if (method === 'GET') headers['accept-encoding'] = 'gzip';
  let current = url;
  for (let hop = 0; ; hop++) {
    const r = await opts.pool.request({ method, url: current, headers, keepBody: opts.keepBody ?? false, idleTimeoutMs: opts.idleTimeoutMs, signal: opts.signal });
    counter.add(r);
    const location = r.headers.location;
    if (![301, 302, 303, 307, 308].includes(r.status) || !location) return r;
    if (hop >= MAX_REDIRECTS) throw new PullError('too many redirects', url.href, r.status);
    current = new URL(location, current);
  }
}

// ---- the pull ------------------------------------------------------------------------------------------

interface Descriptor {
  mediaType?: string;
  digest: string;
  size: number;
  platform?: PullPlatform;
}

interface ManifestJson {
  mediaType?: string;
  config?: Descriptor;
  layers?: Descriptor[];
  manifests?: Descriptor[];
}

class Counter {
  bytes = 0;
  requests = 0;
  readonly bySource: Record<string, number> = {};
  add(r: HttpResponse): void {
    this.requests++;
    this.bytes += r.bytes;
    const source = r.headers['x-peerpull-source'];
    if (source !== undefined) this.bySource[source] = (this.bySource[source] ?? 0) + r.bytes;
  }
}

function buildUrl(registryUrl: string, repository: string, kind: 'manifests' | 'blobs', reference: string, ns: string | undefined): URL {
  const url = new URL(`${registryUrl.replace(/\/$/, '')}/v2/${repository}/${kind}/${reference}`);
  if (ns !== undefined) url.searchParams.set('ns', ns);
  return url;
}

function mediaTypeOf(r: HttpResponse): string {
  return (r.headers['content-type'] ?? '').split(';')[0]!.trim();
}

function describeFailure(r: HttpResponse): string {
  const body = r.body && r.body.length > 0 ? `: ${r.body.toString('utf8').slice(0, 300)}` : '';
  return `HTTP ${r.status}${body}`;
}

function checkBody(r: HttpResponse, url: URL, want: { digest: string; size?: number | undefined }, what: string): void {
  const enc = r.headers['content-encoding'];
  if (enc !== undefined && enc !== 'identity') throw new PullError(`${what}: unexpected Content-Encoding ${enc}`, url.href, r.status);
  const declared = r.headers['content-length'];
  if (declared !== undefined && Number(declared) !== r.bytes) throw new PullError(`${what}: Content-Length ${declared} but ${r.bytes} bytes arrived`, url.href, r.status);
  if (want.size !== undefined && r.bytes !== want.size) throw new PullError(`${what}: ${r.bytes} bytes, descriptor says ${want.size}`, url.href, r.status);
  if (r.digest !== want.digest) throw new PullError(`${what}: digest mismatch: got ${r.digest}, want ${want.digest}`, url.href, r.status);
}

interface Location {
  registryUrl: string;
  repository: string;
  ns: string | undefined;
}

/** GETs a manifest by digest and checks its bytes hash to that digest. */
async function getManifestByDigest(
  loc: Location,
  desc: { digest: string; mediaType?: string | undefined; size?: number | undefined },
  fo: FetchOptions,
  counter: Counter,
): Promise<{ json: ManifestJson; mediaType: string }> {
  const url = buildUrl(loc.registryUrl, loc.repository, 'manifests', desc.digest, loc.ns);
  const accept = desc.mediaType ? `${desc.mediaType}, */*` : MANIFEST_ACCEPT;
  const r = await fetchHashed('GET', url, { ...fo, accept, keepBody: true }, counter);
  if (r.status !== 200) throw new PullError(`GET manifest: ${describeFailure(r)}`, url.href, r.status);
  checkBody(r, url, desc, 'manifest');
  let json: ManifestJson;
  try {
    json = JSON.parse(r.body!.toString('utf8')) as ManifestJson;
  } catch {
    throw new PullError('manifest is not JSON', url.href, r.status);
  }
  return { json, mediaType: mediaTypeOf(r) || json.mediaType || desc.mediaType || '' };
}

async function getBlobChecked(loc: Location, desc: { digest: string; size?: number | undefined }, fo: FetchOptions, counter: Counter): Promise<HttpResponse> {
  const url = buildUrl(loc.registryUrl, loc.repository, 'blobs', desc.digest, loc.ns);
  const r = await fetchHashed('GET', url, { ...fo, keepBody: false }, counter);
  if (r.status !== 200) throw new PullError(`GET blob: HTTP ${r.status}`, url.href, r.status);
  checkBody(r, url, desc, 'blob');
  return r;
}

function pickPlatform(manifests: Descriptor[], want: PullPlatform | undefined): Descriptor | undefined {
  const target = want ?? { os: 'linux', architecture: 'amd64' };
  const match = manifests.find(
    (m) =>
      m.platform?.os === target.os &&
      m.platform?.architecture === target.architecture &&
      (target.variant === undefined || m.platform?.variant === target.variant),
  );
  if (match) return match;
  return want ? undefined : manifests[0];
}

/** Pulls one image (one platform) as containerd does; see the module comment. */
export async function pullImage(opts: PullImageOptions): Promise<PullResult> {
  const started = performance.now();
  const maxConcurrent = Math.max(1, opts.maxConcurrent ?? 3);
  const fo: FetchOptions = { pool: opts.pool ?? sharedPool, idleTimeoutMs: opts.idleTimeoutMs ?? 30_000, signal: opts.signal };
  const loc: Location = { registryUrl: opts.registryUrl, repository: opts.repository, ns: opts.ns };
  const counter = new Counter();

  // 1. Resolve the tag: HEAD, or a GET when the HEAD has no digest (as containerd does).
  const tagUrl = buildUrl(opts.registryUrl, opts.repository, 'manifests', opts.tag, opts.ns);
  const head = await fetchHashed('HEAD', tagUrl, { ...fo, accept: MANIFEST_ACCEPT }, counter);
  if (head.status !== 200) throw new PullError(`HEAD manifest: HTTP ${head.status}`, tagUrl.href, head.status);
  let manifestDigest = head.headers['docker-content-digest'];
  let topType = mediaTypeOf(head);
  let topSize = head.headers['content-length'] !== undefined ? Number(head.headers['content-length']) : undefined;
  if (!manifestDigest) {
    const r = await fetchHashed('GET', tagUrl, { ...fo, accept: MANIFEST_ACCEPT, keepBody: true }, counter);
    if (r.status !== 200) throw new PullError(`GET manifest by tag: ${describeFailure(r)}`, tagUrl.href, r.status);
    manifestDigest = r.digest;
    topSize = r.bytes;
    topType = mediaTypeOf(r) || topType;
  }
  if (!/^sha256:[a-f0-9]{64}$/.test(manifestDigest)) throw new PullError(`bad Docker-Content-Digest: ${manifestDigest}`, tagUrl.href, head.status);

  // 2. The manifest by digest; for an index, the platform's manifest.
  let { json, mediaType } = await getManifestByDigest(loc, { digest: manifestDigest, mediaType: topType || undefined, size: topSize }, fo, counter);
  let imageManifestDigest = manifestDigest;
  if (INDEX_TYPES.has(mediaType) || (json.manifests !== undefined && json.layers === undefined)) {
    const chosen = pickPlatform(json.manifests ?? [], opts.platform);
    if (!chosen) throw new PullError(`no manifest for platform ${JSON.stringify(opts.platform)} in the index`, tagUrl.href);
    imageManifestDigest = chosen.digest;
    ({ json, mediaType } = await getManifestByDigest(loc, chosen, fo, counter));
  }
  if (!json.config || !Array.isArray(json.layers)) throw new PullError(`not an image manifest (${mediaType})`, tagUrl.href);

  // 3. Config, then layers, at most maxConcurrent in flight, each verified.
  const queue: Descriptor[] = [json.config, ...json.layers];
  const blobs = queue.length;
  const worker = async (): Promise<void> => {
    for (let d = queue.shift(); d !== undefined; d = queue.shift()) await getBlobChecked(loc, d, fo, counter);
  };
  await Promise.all(Array.from({ length: Math.min(maxConcurrent, blobs) }, worker));

  return {
    manifestDigest,
    imageManifestDigest,
    bytes: counter.bytes,
    blobs,
    seconds: (performance.now() - started) / 1000,
    bySource: counter.bySource,
    requests: counter.requests,
  };
}

export interface GetBlobOptions {
  registryUrl: string;
  repository: string;
  digest: string;
  ns?: string;
  /** Expected size, checked when given. */
  size?: number;
  pool?: HttpPool;
  idleTimeoutMs?: number;
  signal?: AbortSignal;
}

export interface GetBlobResult {
  bytes: number;
  seconds: number;
  /** The `x-peerpull-source` header, when present. */
  source: string | undefined;
}

/** One verified blob GET (hashed while streaming, discarded). Rejects on a non-200, a wrong digest or size. */
export async function getBlob(opts: GetBlobOptions): Promise<GetBlobResult> {
  const fo: FetchOptions = { pool: opts.pool ?? sharedPool, idleTimeoutMs: opts.idleTimeoutMs ?? 30_000, signal: opts.signal };
  const r = await getBlobChecked({ registryUrl: opts.registryUrl, repository: opts.repository, ns: opts.ns }, { digest: opts.digest, size: opts.size }, fo, new Counter());
  return { bytes: r.bytes, seconds: r.seconds, source: r.headers['x-peerpull-source'] };
}
