// Helpers shared by the mirror end-to-end tests (mirror-pull.test.ts, mirror-faults.test.ts):
// raw HTTP (exact paths, exact bytes), streaming blob downloads that report how they ended, and a
// listener that counts connections (to prove that nothing was contacted).
import crypto from 'node:crypto';
import { once } from 'node:events';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';

export const MiB = 1024 * 1024;

// ---- raw HTTP ---------------------------------------------------------------------------------------

export interface RawResponse {
  status: number;
  headers: Record<string, string>;
  /** Exactly the bytes that followed the header block (de-chunked if chunked). */
  body: Buffer;
  ms: number;
}

/**
 * Sends one request with a literal request-target over a fresh TCP connection (`Connection: close`)
 * and returns everything the server sent. Unlike fetch, nothing normalizes `..`, `//` or `%2e`, and
 * a body sent after a HEAD response would show up in `body`.
 */
export async function rawRequest(
  hostPort: string,
  method: string,
  target: string,
  opts: { headers?: Record<string, string>; body?: Buffer | string; timeoutMs?: number } = {},
): Promise<RawResponse> {
  const [host, port] = splitHostPort(hostPort);
  const started = performance.now();
  const socket = net.connect({ host, port });
  socket.setTimeout(opts.timeoutMs ?? 10_000, () => socket.destroy(new Error(`${method} ${target}: timed out`)));
  const body = opts.body === undefined ? undefined : Buffer.from(opts.body);
  const lines = [`${method} ${target} HTTP/1.1`, `Host: ${hostPort}`, 'Connection: close', 'User-Agent: peerpull-e2e-raw'];
  for (const [k, v] of Object.entries(opts.headers ?? {})) lines.push(`${k}: ${v}`);
  if (body) lines.push(`Content-Length: ${body.length}`);
  socket.write(lines.join('\r\n') + '\r\n\r\n');
  if (body) socket.write(body);
  const chunks: Buffer[] = [];
  socket.on('data', (c: Buffer) => chunks.push(c));
  // A server that answers before reading the whole request body may reset the connection: keep
  // whatever response arrived and let the parsing below decide.
  let failure: Error | undefined;
  await new Promise<void>((resolve) => {
    socket.once('end', resolve);
    socket.once('close', resolve);
    socket.on('error', (err) => {
      failure = err;
      resolve();
    });
  });
  socket.destroy();
  const all = Buffer.concat(chunks);
  const split = all.indexOf('\r\n\r\n');
  if (split < 0) throw new Error(`${method} ${target}: no complete response header (${all.length} bytes)${failure ? `: ${failure.message}` : ''}`);
  const head = all.subarray(0, split).toString('latin1').split('\r\n');
  const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(head[0] ?? '')?.[1]);
  const headers: Record<string, string> = {};
  for (const line of head.slice(1)) {
    const colon = line.indexOf(':');
    headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  let rest: Buffer = all.subarray(split + 4);
  if (headers['transfer-encoding']?.includes('chunked')) rest = dechunk(rest);
  return { status, headers, body: rest, ms: performance.now() - started };
}

function dechunk(data: Buffer): Buffer {
  const out: Buffer[] = [];
  let pos = 0;
  for (;;) {
    const eol = data.indexOf('\r\n', pos);
    if (eol < 0) break;
    const size = parseInt(data.subarray(pos, eol).toString('latin1'), 16);
    if (!Number.isFinite(size) || size === 0) break;
    out.push(data.subarray(eol + 2, eol + 2 + size));
    pos = eol + 2 + size + 2;
  }
  return Buffer.concat(out);
}

function splitHostPort(hostPort: string): [string, number] {
  const i = hostPort.lastIndexOf(':');
  return [hostPort.slice(0, i), Number(hostPort.slice(i + 1))];
}

/** The OCI error codes in a JSON error body (throws if the body is not one). */
export function ociErrorCodes(body: Buffer): string[] {
  const parsed = JSON.parse(body.toString('utf8')) as { errors?: { code?: string }[] };
  if (!Array.isArray(parsed.errors)) throw new Error(`not an OCI error body: ${body.toString('utf8').slice(0, 200)}`);
  return parsed.errors.map((e) => String(e.code));
}

// ---- streaming downloads ----------------------------------------------------------------------------

export interface Download {
  status: number;
  headers: http.IncomingHttpHeaders;
  /** Bytes received. */
  bytes: number;
  /** sha256 of the bytes received. */
  digest: string;
  /** The response ended with an error (connection reset / premature close) instead of a clean end. */
  aborted: boolean;
  /** The body, when keepBody was set. */
  body?: Buffer;
  /** When the response headers arrived / the body ended (performance.now()). */
  headersAt: number;
  endedAt: number;
}

/**
 * GETs (or HEADs) a URL with node:http, hashing the body as it streams. Never rejects because the
 * body broke off: that is reported as `aborted`, so tests can tell a clean wrong body from an abort.
 */
export function download(
  url: string,
  opts: { method?: string; headers?: Record<string, string>; keepBody?: boolean; agent?: http.Agent; onHeaders?: (res: http.IncomingMessage) => void; timeoutMs?: number } = {},
): Promise<Download> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: opts.method ?? 'GET', headers: { 'user-agent': 'peerpull-e2e', ...opts.headers }, agent: opts.agent ?? false });
    const timer = setTimeout(() => req.destroy(new Error(`${url}: no answer within ${opts.timeoutMs ?? 60_000} ms`)), opts.timeoutMs ?? 60_000);
    req.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    req.once('response', (res) => {
      const headersAt = performance.now();
      opts.onHeaders?.(res);
      const hash = crypto.createHash('sha256');
      const kept: Buffer[] = [];
      let bytes = 0;
      let settled = false;
      const finish = (aborted: boolean) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        const result: Download = { status: res.statusCode ?? 0, headers: res.headers, bytes, digest: `sha256:${hash.digest('hex')}`, aborted, headersAt, endedAt: performance.now() };
        if (opts.keepBody) result.body = Buffer.concat(kept);
        resolve(result);
      };
      res.on('data', (c: Buffer) => {
        hash.update(c);
        bytes += c.length;
        if (opts.keepBody) kept.push(c);
      });
      res.once('end', () => finish(false));
      res.once('error', () => finish(true));
      res.once('aborted', () => finish(true));
      res.once('close', () => finish(!res.complete));
    });
    req.end();
  });
}

// ---- a listener that must never be contacted ------------------------------------------------------

export class ConnectionRecorder {
  readonly server: net.Server;
  connections = 0;

  private constructor() {
    this.server = net.createServer((socket) => {
      this.connections++;
      socket.destroy();
    });
  }

  static async start(): Promise<ConnectionRecorder> {
    const recorder = new ConnectionRecorder();
    recorder.server.listen(0, '127.0.0.1');
    await once(recorder.server, 'listening');
    return recorder;
  }

  get port(): number {
    return (this.server.address() as net.AddressInfo).port;
  }

  get host(): string {
    return `127.0.0.1:${this.port}`;
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

// ---- the daemon's data dir --------------------------------------------------------------------------

export { fileDigest, storedBlobPath } from '../fixtures/store-files.ts';
import { fileDigest } from '../fixtures/store-files.ts';

export function tmpFiles(dataDir: string): string[] {
  try {
    return fs.readdirSync(path.join(dataDir, 'tmp'));
  } catch {
    return [];
  }
}

/** Every file under blobs/ whose name is not the sha256 of its content (should be none). */
export function corruptStoredBlobs(dataDir: string): string[] {
  const root = path.join(dataDir, 'blobs', 'sha256');
  const bad: string[] = [];
  for (const prefix of fs.existsSync(root) ? fs.readdirSync(root) : []) {
    for (const name of fs.readdirSync(path.join(root, prefix))) {
      if (fileDigest(path.join(root, prefix, name)) !== `sha256:${name}`) bad.push(name);
    }
  }
  return bad;
}

/** Clears a registry's access log once every earlier request's line is in (so none leaks into the next count). */
export async function resetLog(reg: { flushLog(): Promise<void>; clearLog(): void }): Promise<void> {
  await reg.flushLog();
  reg.clearLog();
}
