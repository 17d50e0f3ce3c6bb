import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { pipeline } from 'node:stream';
import type { PeerId } from '@libp2p/interface';
import { Agent, type Dispatcher } from 'undici';
import { OciError, isDigest, parseListenAddress, type Logger } from '@peerpull/common';
import { PEER_HTTP_AUTH_SCHEME, type PeerHttpAuth } from './peer-http-auth.ts';
import {
  parsePeerBlobRequest,
  type PeerBlobOpened,
  type PeerBlobRefusal,
  type PeerBlobRequest,
  type PeerBlobServing,
  type PeerOpenOptions,
  type PeerTransfer,
  type PeerTransportName,
} from './peer-transfer.ts';

/**
 * The HTTP data plane between nodes: the same blob semantics as `/peerpull/blob/1.0.0` (ranges,
 * in-progress blobs followed as they grow, busy beyond the upload limit), over plain HTTP,
 * authenticated with the cluster key but not encrypted, for trusted networks where libp2p's
 * per-byte CPU matters (BENCHMARKS.md, "Peer transfer").
 *
 *   GET|HEAD /peerpull/blob/1/<digest>   Range: bytes=<offset>-   X-Peerpull-Insist: 1
 *   200/206 + X-Peerpull-Size (or "unknown") + X-Peerpull-Complete: 1|0, then the bytes
 *   404 not here (or no bytes yet), 503 + X-Peerpull-Busy, 400/416 bad request, 401/403 not a member
 */
export const PEER_HTTP_PATH_PREFIX = '/peerpull/blob/1/';

const REQUEST_TIMEOUT_MS = 5_000;
/** A requester that reads nothing for this long is cut off (like the libp2p server's drain deadline). */
const SOCKET_IDLE_MS = 30_000;

export interface PeerHttpServerOptions {
  listen: string;
  serving: PeerBlobServing;
  auth: PeerHttpAuth;
  logger: Logger;
}

/** Serves the HTTP data plane; every request must carry the cluster-key signature. */
export class PeerHttpServer {
  readonly #server: http.Server;
  readonly #opts: PeerHttpServerOptions;

  private constructor(server: http.Server, opts: PeerHttpServerOptions) {
    this.#server = server;
    this.#opts = opts;
  }

  static async start(opts: PeerHttpServerOptions): Promise<PeerHttpServer> {
    const { host, port } = parseListenAddress(opts.listen);
    const server = http.createServer({ requestTimeout: REQUEST_TIMEOUT_MS, headersTimeout: REQUEST_TIMEOUT_MS, maxHeaderSize: 8192 });
    const self = new PeerHttpServer(server, opts);
    server.on('request', (req, res) => self.#handle(req, res));
    server.timeout = SOCKET_IDLE_MS;
    server.keepAliveTimeout = 30_000;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    opts.logger.info({ address: self.address }, 'serving blobs to peers over HTTP (cluster-key authenticated, not encrypted)');
    return self;
  }

  get address(): { host: string; port: number } {
    const a = this.#server.address() as AddressInfo;
    return { host: a.address, port: a.port };
  }

  async close(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  async #handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    try {
      const path = req.url ?? '';
      const range = req.headers.range;
      // Authentication comes first: a request without the key learns nothing, not even whether a route exists.
      const auth = this.#opts.auth.verify({ method: req.method ?? '', path, range }, req.headers.authorization);
      if (!auth.ok) {
        this.#opts.logger.debug({ client: req.socket.remoteAddress, path: path.slice(0, 200), reason: auth.reason }, 'peer HTTP request refused');
        throw new OciError(auth.status, auth.status === 401 ? 'UNAUTHORIZED' : 'DENIED', 'cluster membership required', undefined,
          auth.status === 401 ? { 'www-authenticate': PEER_HTTP_AUTH_SCHEME } : {});
      }
      if (req.method !== 'GET' && req.method !== 'HEAD') throw new OciError(405, 'UNSUPPORTED', 'only GET and HEAD', undefined, { allow: 'GET, HEAD' });
      if (!path.startsWith(PEER_HTTP_PATH_PREFIX)) throw new OciError(404, 'NAME_UNKNOWN', 'unknown route');
      const digest = path.slice(PEER_HTTP_PATH_PREFIX.length);
      if (!isDigest(digest)) throw new OciError(400, 'DIGEST_INVALID', 'invalid digest');
      let request: PeerBlobRequest;
      try {
        request = parsePeerBlobRequest({ digest, offset: parseRange(range), head: req.method === 'HEAD', insist: req.headers['x-peerpull-insist'] === '1' });
      } catch (err) {
        throw new OciError(416, 'RANGE_INVALID', (err as Error).message);
      }
      await this.#serve(request, auth.peer, res);
    } catch (err) {
      const e = err instanceof OciError ? err : new OciError(500, 'UNAVAILABLE', 'internal error');
      if (!(err instanceof OciError)) this.#opts.logger.warn({ err: (err as Error).message }, 'peer HTTP request failed');
      if (res.headersSent) {
        res.destroy();
        return;
      }
      const body = JSON.stringify(e.toBody());
      res.writeHead(e.status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), ...e.headers });
      res.end(req.method === 'HEAD' ? undefined : body);
    }
  }

  async #serve(request: PeerBlobRequest, peer: string, res: http.ServerResponse): Promise<void> {
    const answer = await this.#opts.serving.answer(request, peer, 'http');
    if ('status' in answer && answer.status !== 'ok') {
      if (answer.status === 'not-found') throw new OciError(404, 'BLOB_UNKNOWN', answer.message ?? 'blob unknown to this node');
      if (answer.status === 'busy') throw new OciError(503, 'UNAVAILABLE', 'busy: uploading to other nodes', undefined, { 'x-peerpull-busy': '1', 'retry-after': '1' });
      throw new OciError(416, 'RANGE_INVALID', answer.message ?? 'bad request');
    }
    const header = 'header' in answer ? answer.header : answer;
    const { size, complete } = header;
    const headers: http.OutgoingHttpHeaders = {
      'content-type': 'application/octet-stream',
      'x-peerpull-size': size === null ? 'unknown' : String(size),
      'x-peerpull-complete': complete ? '1' : '0',
      'docker-content-digest': request.digest,
    };
    if (size !== null) headers['content-length'] = String(size - request.offset);
    if (request.offset > 0) headers['content-range'] = `bytes ${request.offset}-${size === null ? '*' : size - 1}/${size ?? '*'}`;
    if (!('body' in answer)) {
      res.writeHead(200, headers);
      res.end();
      return;
    }
    res.writeHead(request.offset > 0 ? 206 : 200, headers);
    // Piped straight into the response, the store's file stream reuses its read buffers (no 'data'
    // listener, which would turn that off): the bytes sent are counted on the socket instead.
    const socket = res.socket;
    const writtenBefore = socket?.bytesWritten ?? 0;
    await new Promise<void>((resolve) => {
      pipeline(answer.body, res, (err) => {
        const onSocket = Math.max(0, (socket?.bytesWritten ?? 0) - writtenBefore - headerBytes(res));
        const sent = !err && size !== null ? size - request.offset : onSocket;
        answer.finish(sent, err ? 'aborted' : 'ok', err ?? undefined);
        resolve();
      });
    });
  }
}

/** The status line and headers as written (Node keeps them once sent). */
function headerBytes(res: http.ServerResponse): number {
  const header = (res as unknown as { _header?: string | null })._header;
  return typeof header === 'string' ? Buffer.byteLength(header) : 0;
}

/** `bytes=<n>-` (what the requester sends) or none; anything else is refused. */
function parseRange(range: string | undefined): number {
  if (range === undefined) return 0;
  const m = /^bytes=(\d{1,15})-$/.exec(range.trim());
  if (!m) throw new Error('expected Range: bytes=<offset>-');
  return Number(m[1]);
}

export interface HttpTransferOptions {
  /** This node's peer id, named in the signature. */
  self: string;
  auth: PeerHttpAuth;
  /** Peers' HTTP origins (`PeerHttpAddresses`): undefined when a peer does not serve HTTP. */
  addresses: { lookup(peer: PeerId, signal: AbortSignal): Promise<string | undefined>; forget(peer: PeerId): void };
  /** Peers that do not serve HTTP are fetched from over this (libp2p). */
  fallback: PeerTransfer;
  connectTimeoutMs: number;
  idleTimeoutMs: number;
  logger: Logger;
}

/** The requesting side of the HTTP data plane, with libp2p for peers that do not serve HTTP. */
export class HttpTransfer implements PeerTransfer {
  readonly #opts: HttpTransferOptions;
  readonly #agent: Dispatcher;

  constructor(opts: HttpTransferOptions) {
    this.#opts = opts;
    this.#agent = new Agent({
      connect: { timeout: opts.connectTimeoutMs },
      headersTimeout: opts.connectTimeoutMs,
      bodyTimeout: opts.idleTimeoutMs,
      keepAliveTimeout: 30_000,
    });
  }

  async open(peer: PeerId, request: PeerBlobRequest, opts: PeerOpenOptions): Promise<(PeerBlobOpened | PeerBlobRefusal) & { transport: PeerTransportName }> {
    const origin = await this.#opts.addresses.lookup(peer, AbortSignal.any([opts.signal, AbortSignal.timeout(opts.connectTimeoutMs)]));
    if (!origin) return this.#opts.fallback.open(peer, request, opts);
    const method = request.head ? 'HEAD' : 'GET';
    const path = `${PEER_HTTP_PATH_PREFIX}${request.digest}`;
    const range = request.offset > 0 ? `bytes=${request.offset}-` : undefined;
    let res: Dispatcher.ResponseData;
    try {
      res = await this.#agent.request({
        origin,
        path,
        method,
        headers: {
          'user-agent': 'peerpull-daemon',
          authorization: this.#opts.auth.sign({ method, path, range }, this.#opts.self),
          ...(range ? { range } : {}),
          ...(request.insist ? { 'x-peerpull-insist': '1' } : {}),
        },
        // The whole answer (not the body) within the connect deadline; the body has the idle deadline.
        signal: opts.signal,
      });
    } catch (err) {
      if (!opts.signal.aborted) this.#opts.addresses.forget(peer);
      throw err;
    }
    const { statusCode, headers } = res;
    if (statusCode === 200 || statusCode === 206) {
      const sizeText = String(headers['x-peerpull-size'] ?? 'unknown');
      const size = sizeText === 'unknown' ? null : Number(sizeText);
      if (size !== null && !Number.isSafeInteger(size)) {
        res.body.destroy();
        throw new Error(`peer sent an invalid size: ${sizeText.slice(0, 40)}`);
      }
      const start = statusCode === 206 ? Number(/^bytes (\d+)-/.exec(String(headers['content-range'] ?? ''))?.[1]) : 0;
      if (start !== request.offset) {
        res.body.destroy();
        throw new Error(`peer answered from offset ${start}, asked for ${request.offset}`);
      }
      const header = { status: 'ok' as const, size, complete: headers['x-peerpull-complete'] === '1' };
      if (request.head) await res.body.dump().catch(() => undefined);
      const onAbort = (): void => void res.body.destroy(new Error('aborted'));
      opts.signal.addEventListener('abort', onAbort, { once: true });
      res.body.once('close', () => opts.signal.removeEventListener('abort', onAbort));
      return { header, body: res.body, transport: 'http' };
    }
    await res.body.dump().catch(() => undefined);
    if (statusCode === 404) return { status: 'not-found', transport: 'http' };
    if (statusCode === 503 && headers['x-peerpull-busy'] !== undefined) return { status: 'busy', transport: 'http' };
    if (statusCode === 400 || statusCode === 416) return { status: 'bad-request', transport: 'http' };
    if (statusCode === 401 || statusCode === 403) {
      this.#opts.logger.warn({ peer: peer.toString(), status: statusCode }, 'peer refused our cluster-key signature (another cluster key, or clocks more than 30 s apart?)');
    }
    throw new Error(`peer answered HTTP ${statusCode}`);
  }

  async close(): Promise<void> {
    await this.#agent.close();
  }
}
