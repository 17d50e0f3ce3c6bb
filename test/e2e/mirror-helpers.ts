// Helpers shared by the mirror end-to-end tests (mirror-pull.test.ts, mirror-faults.test.ts):
// streaming blob downloads that report how they ended, and a listener that counts connections
// (to prove that nothing was contacted). Raw HTTP and the fault proxy are in test/fixtures/.
import crypto from 'node:crypto';
import { once } from 'node:events';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';

export const MiB = 1024 * 1024;

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
