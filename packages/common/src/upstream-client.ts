import { setTimeout as sleep } from 'node:timers/promises';
import type { Readable } from 'node:stream';
import { Agent, type Dispatcher } from 'undici';
import type { Logger } from 'pino';
import type { AuthFile } from './auth-file.ts';
import { sha256Digest, isDigest, type Digest } from './digest.ts';
import { MAX_MANIFEST_BYTES, sniffManifestMediaType } from './media-types.ts';
import { TokenCache, parseWwwAuthenticate } from './registry-auth.ts';
import { redirectRefusal } from './redirect-policy.ts';
import type { UpstreamRegistry } from './registry-allowlist.ts';

export type UpstreamErrorKind = 'not-found' | 'unauthorized' | 'rate-limited' | 'unavailable' | 'invalid';

/** Why an upstream call failed, in the terms the mirror needs to decide what to answer. */
export class UpstreamError extends Error {
  readonly kind: UpstreamErrorKind;
  readonly registry: string;
  readonly status: number | undefined;
  readonly retryAfterMs: number | undefined;

  constructor(kind: UpstreamErrorKind, registry: string, message: string, opts: { status?: number; retryAfterMs?: number; cause?: unknown } = {}) {
    super(message, { cause: opts.cause });
    this.name = 'UpstreamError';
    this.kind = kind;
    this.registry = registry;
    this.status = opts.status;
    this.retryAfterMs = opts.retryAfterMs;
  }
}

export interface UpstreamClientOptions {
  authFile: AuthFile;
  logger: Logger;
  /** TCP+TLS connect deadline. */
  connectTimeoutMs?: number;
  /** Deadline for the response headers (first byte) of any request. */
  headersTimeoutMs?: number;
  /** Longest pause between two body chunks before a transfer counts as stalled. */
  bodyIdleTimeoutMs?: number;
  /** Whole-request deadline for small requests (manifests, HEADs, tokens). */
  requestDeadlineMs?: number;
  /** Extra attempts after a connection error or 5xx. */
  retries?: number;
  /** Longest `Retry-After` we wait out inline on a 429 before failing fast instead. */
  maxInlineRetryAfterMs?: number;
  dispatcher?: Dispatcher;
  /** Sees every registry response (after redirects): its HTTP status, or 'error' when none came (metrics). */
  onResponse?: (registry: string, code: string) => void;
}

export interface ManifestHead {
  digest: Digest | undefined;
  mediaType: string;
  size: number | undefined;
}

export interface ManifestBody {
  digest: Digest;
  mediaType: string;
  body: Buffer;
}

export interface BlobResponse {
  /** Total blob size, when the upstream said. */
  size: number | undefined;
  /** Offset of the first byte of `body` (0 when the upstream ignored the Range). */
  offset: number;
  body: Readable;
}

export interface RateLimitState {
  limit: number | undefined;
  remaining: number | undefined;
  observedAt: number;
  /** Until when we hold off after a 429. */
  backoffUntil: number | undefined;
}

interface CallOptions {
  signal?: AbortSignal | undefined;
  accept?: string | undefined;
}

interface SendRequest {
  method: 'GET' | 'HEAD';
  path: string;
  repository: string;
  headers: Record<string, string>;
  signal: AbortSignal;
}

const MAX_REDIRECTS = 5;

/**
 * Speaks the registry pull protocol to upstreams: token auth, server-side redirects that
 * never carry credentials to another host, retries with backoff, and deadlines everywhere
 * so a stalled upstream becomes a prompt error instead of a hung client.
 */
export class UpstreamClient {
  readonly #opts: Required<Omit<UpstreamClientOptions, 'dispatcher' | 'onResponse'>>;
  readonly #onResponse: ((registry: string, code: string) => void) | undefined;
  readonly #dispatcher: Dispatcher;
  readonly #tokens: TokenCache;
  readonly #challenges = new Map<string, ReturnType<typeof parseWwwAuthenticate>>();
  readonly rateLimits = new Map<string, RateLimitState>();

  constructor(opts: UpstreamClientOptions) {
    this.#opts = {
      connectTimeoutMs: 3_000,
      headersTimeoutMs: 10_000,
      bodyIdleTimeoutMs: 15_000,
      requestDeadlineMs: 15_000,
      retries: 2,
      maxInlineRetryAfterMs: 2_000,
      ...opts,
    };
    this.#onResponse = opts.onResponse;
    this.#dispatcher =
      opts.dispatcher ??
      new Agent({
        connect: { timeout: this.#opts.connectTimeoutMs },
        headersTimeout: this.#opts.headersTimeoutMs,
        bodyTimeout: this.#opts.bodyIdleTimeoutMs,
        keepAliveTimeout: 30_000,
        connections: 64,
      });
    this.#tokens = new TokenCache(this.#dispatcher);
  }

  async close(): Promise<void> {
    await this.#dispatcher.close();
  }

  async headManifest(registry: UpstreamRegistry, repository: string, reference: string, opts: CallOptions = {}): Promise<ManifestHead> {
    const res = await this.#send(registry, {
      method: 'HEAD',
      path: `/v2/${repository}/manifests/${reference}`,
      repository,
      headers: { accept: opts.accept ?? '*/*' },
      signal: this.#deadline(opts.signal),
    });
    await res.body.dump();
    if (res.statusCode !== 200) throw this.#statusError(registry, res, `manifest ${repository}:${reference}`);
    const digest = header(res, 'docker-content-digest');
    const length = header(res, 'content-length');
    return {
      digest: digest && isDigest(digest) ? digest : undefined,
      mediaType: (header(res, 'content-type') ?? '').split(';')[0]?.trim() ?? '',
      size: length ? Number(length) : undefined,
    };
  }

  async getManifest(registry: UpstreamRegistry, repository: string, reference: string, opts: CallOptions = {}): Promise<ManifestBody> {
    const res = await this.#send(registry, {
      method: 'GET',
      path: `/v2/${repository}/manifests/${reference}`,
      repository,
      headers: { accept: opts.accept ?? '*/*' },
      signal: this.#deadline(opts.signal),
    });
    if (res.statusCode !== 200) {
      await res.body.dump();
      throw this.#statusError(registry, res, `manifest ${repository}:${reference}`);
    }
    const declared = Number(header(res, 'content-length') ?? '0');
    if (declared > MAX_MANIFEST_BYTES) {
      abandon(res.body);
      throw new UpstreamError('invalid', registry.host, `manifest ${repository}:${reference} is ${declared} bytes, over the ${MAX_MANIFEST_BYTES} limit`);
    }
    const chunks: Buffer[] = [];
    let total = 0;
    try {
      for await (const chunk of res.body as AsyncIterable<Buffer>) {
        total += chunk.length;
        if (total > MAX_MANIFEST_BYTES) {
          abandon(res.body);
          throw new UpstreamError('invalid', registry.host, `manifest ${repository}:${reference} exceeds ${MAX_MANIFEST_BYTES} bytes`);
        }
        chunks.push(chunk);
      }
    } catch (err) {
      if (err instanceof UpstreamError) throw err;
      throw new UpstreamError('unavailable', registry.host, `manifest ${repository}:${reference}: body failed: ${(err as Error).message}`, { cause: err });
    }
    const body = Buffer.concat(chunks);
    if (declared && body.length !== declared) {
      throw new UpstreamError('invalid', registry.host, `manifest ${repository}:${reference}: Content-Length ${declared} but ${body.length} bytes arrived`);
    }
    const digest = sha256Digest(body);
    const mediaType = (header(res, 'content-type') ?? '').split(';')[0]?.trim() || sniffManifestMediaType(body) || '';
    if (!mediaType.startsWith('application/') || mediaType === 'application/octet-stream' && !sniffManifestMediaType(body)) {
      throw new UpstreamError('invalid', registry.host, `manifest ${repository}:${reference}: unexpected content type "${mediaType}"`);
    }
    if (!sniffManifestMediaType(body)) {
      throw new UpstreamError('invalid', registry.host, `manifest ${repository}:${reference}: body is not a manifest`);
    }
    return { digest, mediaType, body };
  }

  async headBlob(registry: UpstreamRegistry, repository: string, digest: Digest, opts: CallOptions = {}): Promise<{ size: number | undefined }> {
    const res = await this.#send(registry, {
      method: 'HEAD',
      path: `/v2/${repository}/blobs/${digest}`,
      repository,
      headers: {},
      signal: this.#deadline(opts.signal),
    });
    await res.body.dump();
    if (res.statusCode !== 200) throw this.#statusError(registry, res, `blob ${digest}`);
    const length = header(res, 'content-length');
    return { size: length ? Number(length) : undefined };
  }

  /** Starts a blob download at `offset`. Only the headers are awaited; the body is a stream with an idle deadline. */
  async getBlob(registry: UpstreamRegistry, repository: string, digest: Digest, opts: CallOptions & { offset?: number } = {}): Promise<BlobResponse> {
    const offset = opts.offset ?? 0;
    const headers: Record<string, string> = { 'accept-encoding': 'identity' };
    if (offset > 0) headers.range = `bytes=${offset}-`;
    const res = await this.#send(registry, {
      method: 'GET',
      path: `/v2/${repository}/blobs/${digest}`,
      repository,
      headers,
      signal: opts.signal ?? new AbortController().signal,
    });
    if (res.statusCode === 200) {
      const length = header(res, 'content-length');
      return { size: length ? Number(length) : undefined, offset: 0, body: res.body };
    }
    if (res.statusCode === 206 && offset > 0) {
      const range = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(header(res, 'content-range') ?? '');
      if (range && Number(range[1]) === offset) {
        return { size: range[3] === '*' ? undefined : Number(range[3]), offset, body: res.body };
      }
      abandon(res.body);
      throw new UpstreamError('invalid', registry.host, `blob ${digest}: bad Content-Range for bytes=${offset}-`);
    }
    await res.body.dump().catch(() => undefined);
    throw this.#statusError(registry, res, `blob ${digest}`);
  }

  #deadline(signal: AbortSignal | undefined): AbortSignal {
    const timeout = AbortSignal.timeout(this.#opts.requestDeadlineMs);
    return signal ? AbortSignal.any([signal, timeout]) : timeout;
  }

  async #send(registry: UpstreamRegistry, req: SendRequest): Promise<Dispatcher.ResponseData> {
    const backoffUntil = this.rateLimits.get(registry.host)?.backoffUntil;
    if (backoffUntil !== undefined && backoffUntil > Date.now()) {
      // After a 429, hammering makes it worse: fail fast (callers serve from cache) until Retry-After passes.
      throw new UpstreamError('rate-limited', registry.host, `${registry.host}: backing off after 429`, { retryAfterMs: backoffUntil - Date.now() });
    }
    const scope = `repository:${req.repository}:pull`;
    let authRetried = false;
    let attempt = 0;
    for (;;) {
      const authorization = await this.#authorization(registry, scope, req.signal);
      let res: Dispatcher.ResponseData;
      try {
        res = await this.#requestFollowingRedirects(registry, req, authorization);
      } catch (err) {
        if (err instanceof UpstreamError) throw err;
        this.#onResponse?.(registry.host, 'error');
        // A deadline that expired is not retried: the client already waited it out once (blob GETs have no
        // overall deadline, so each retry would add a whole headers timeout to the client's wait).
        if (req.signal.aborted || attempt >= this.#opts.retries || !isRetryableNetworkError(err) || (err as { code?: string }).code === 'UND_ERR_HEADERS_TIMEOUT') {
          throw new UpstreamError('unavailable', registry.host, `${registry.host}: ${describeNetworkError(err, req.signal)}`, { cause: err });
        }
        await this.#backoff(attempt++, req.signal, registry, err);
        continue;
      }
      this.#recordRateLimit(registry.host, res);
      this.#onResponse?.(registry.host, String(res.statusCode));
      if (res.statusCode === 401 && !authRetried) {
        const challenge = parseWwwAuthenticate(header(res, 'www-authenticate'));
        if (challenge) {
          await res.body.dump();
          authRetried = true;
          this.#challenges.set(registry.host, challenge);
          this.#tokens.invalidate(registry.host, challenge.params.scope ?? scope);
          continue;
        }
      }
      if (res.statusCode >= 500 && attempt < this.#opts.retries && !req.signal.aborted) {
        await res.body.dump().catch(() => undefined);
        await this.#backoff(attempt++, req.signal, registry, new Error(`HTTP ${res.statusCode}`));
        continue;
      }
      if (res.statusCode === 429) {
        const retryAfterMs = parseRetryAfter(header(res, 'retry-after'));
        const state = this.rateLimits.get(registry.host);
        if (state) state.backoffUntil = Date.now() + (retryAfterMs ?? 60_000);
        if (retryAfterMs !== undefined && retryAfterMs <= this.#opts.maxInlineRetryAfterMs && attempt < this.#opts.retries) {
          await res.body.dump();
          attempt++;
          await sleep(retryAfterMs, undefined, { signal: req.signal }).catch(() => undefined);
          if (!req.signal.aborted) continue;
        }
      }
      return res;
    }
  }

  async #authorization(registry: UpstreamRegistry, scope: string, signal: AbortSignal): Promise<string | undefined> {
    const challenge = this.#challenges.get(registry.host);
    const credentials = this.#opts.authFile.get(registry.host, repositoryOfScope(scope));
    if (!challenge) return undefined;
    if (challenge.scheme === 'basic') {
      return credentials ? `Basic ${Buffer.from(`${credentials.username}:${credentials.password}`).toString('base64')}` : undefined;
    }
    // Token requests are small requests: they get the deadline even when the caller's signal has none (blobs).
    const tokenSignal = this.#deadline(signal);
    try {
      const token = await this.#tokens.token({ registry: registry.host, endpoint: registry.endpoint, challenge: withScope(challenge, scope), scope, credentials, signal: tokenSignal });
      return `Bearer ${token}`;
    } catch (err) {
      // Forget the challenge: the next request asks the registry afresh (its realm may have moved).
      this.#challenges.delete(registry.host);
      // A token endpoint that is down or slow is an outage (retry elsewhere); one that refused us is auth.
      const kind = tokenSignal.aborted || isRetryableNetworkError(err) ? 'unavailable' : 'unauthorized';
      throw new UpstreamError(kind, registry.host, `${registry.host}: token request failed: ${describeNetworkError(err, tokenSignal)}`, { cause: err });
    }
  }

  async #requestFollowingRedirects(registry: UpstreamRegistry, req: SendRequest, authorization: string | undefined): Promise<Dispatcher.ResponseData> {
    let url = new URL(`${registry.endpoint.href.replace(/\/$/, '')}${req.path}`);
    const origin = url.origin;
    for (let hop = 0; ; hop++) {
      const headers: Record<string, string> = { 'user-agent': 'peerpull', ...req.headers };
      // Credentials go only to the registry itself, never to the host a redirect names.
      if (authorization && url.origin === origin) headers.authorization = authorization;
      const res = await this.#dispatcher.request({
        origin: url.origin,
        path: `${url.pathname}${url.search}`,
        method: req.method,
        headers,
        signal: req.signal,
      });
      const location = header(res, 'location');
      if (![301, 302, 303, 307, 308].includes(res.statusCode) || !location) return res;
      await res.body.dump();
      if (hop >= MAX_REDIRECTS) throw new UpstreamError('invalid', registry.host, `${registry.host}: too many redirects for ${req.path}`);
      let next: URL;
      try {
        next = new URL(location, url);
      } catch {
        throw new UpstreamError('invalid', registry.host, `${registry.host}: unparseable redirect for ${req.path}`);
      }
      // See redirect-policy.ts: same origin, or https to a host that is not on the node's own network.
      const refusal = redirectRefusal(registry.endpoint, url, next);
      if (refusal) {
        throw new UpstreamError('invalid', registry.host, `${registry.host}: refusing redirect for ${req.path} to ${next.protocol}//${next.host}: ${refusal}`);
      }
      url = next;
    }
  }

  async #backoff(attempt: number, signal: AbortSignal, registry: UpstreamRegistry, err: unknown): Promise<void> {
    const delay = Math.min(2_000, 100 * 4 ** attempt) * (0.75 + Math.random() * 0.5);
    this.#opts.logger.debug({ registry: registry.host, attempt: attempt + 1, delayMs: Math.round(delay), err: (err as Error).message }, 'retrying upstream request');
    await sleep(delay, undefined, { signal }).catch(() => undefined);
  }

  #recordRateLimit(host: string, res: Dispatcher.ResponseData): void {
    const remaining = header(res, 'ratelimit-remaining');
    const limit = header(res, 'ratelimit-limit');
    if (remaining === undefined && limit === undefined && res.statusCode !== 429) return;
    const previous = this.rateLimits.get(host);
    this.rateLimits.set(host, {
      limit: limit ? parseInt(limit, 10) : previous?.limit,
      remaining: remaining ? parseInt(remaining, 10) : previous?.remaining,
      observedAt: Date.now(),
      backoffUntil: previous?.backoffUntil,
    });
  }

  #statusError(registry: UpstreamRegistry, res: Dispatcher.ResponseData, what: string): UpstreamError {
    const status = res.statusCode;
    if (status === 404) return new UpstreamError('not-found', registry.host, `${registry.host}: ${what} not found`, { status });
    if (status === 401 || status === 403) return new UpstreamError('unauthorized', registry.host, `${registry.host}: ${what}: access denied (${status})`, { status });
    if (status === 429) {
      const retryAfterMs = parseRetryAfter(header(res, 'retry-after'));
      return new UpstreamError('rate-limited', registry.host, `${registry.host}: rate limited`, { status, ...(retryAfterMs !== undefined ? { retryAfterMs } : {}) });
    }
    if (status >= 500) return new UpstreamError('unavailable', registry.host, `${registry.host}: ${what}: upstream error ${status}`, { status });
    return new UpstreamError('invalid', registry.host, `${registry.host}: ${what}: unexpected status ${status}`, { status });
  }
}

/** `repository:library/nginx:pull` → `library/nginx`. */
function repositoryOfScope(scope: string): string | undefined {
  return /^repository:(.+):[a-z,*]+$/.exec(scope)?.[1];
}

function withScope(challenge: NonNullable<ReturnType<typeof parseWwwAuthenticate>>, scope: string) {
  // A challenge learned on one repository names that repository's scope; ask for ours.
  return { ...challenge, params: { ...challenge.params, scope } };
}

/** Drops a response body we will not read. undici makes `destroy()` of an unread body emit an error: without a listener that is an uncaught exception. */
function abandon(body: Readable): void {
  body.on('error', () => undefined);
  body.destroy();
}

function header(res: Dispatcher.ResponseData, name: string): string | undefined {
  const value = res.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

export function parseRetryAfter(value: string | undefined): number | undefined {
  if (!value) return undefined;
  if (/^\d+$/.test(value.trim())) return Number(value.trim()) * 1000;
  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : Math.max(0, date - Date.now());
}

function isRetryableNetworkError(err: unknown): boolean {
  const code = (err as { code?: string }).code ?? '';
  return [
    'ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EAI_AGAIN', 'ENETUNREACH', 'EHOSTUNREACH',
    'UND_ERR_SOCKET', 'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_CLOSED',
  ].includes(code);
}

function describeNetworkError(err: unknown, signal: AbortSignal): string {
  if (signal.aborted) return signal.reason instanceof Error && signal.reason.name === 'TimeoutError' ? 'deadline exceeded' : 'aborted';
  const e = err as { code?: string; message?: string };
  return e.code ? `${e.code}: ${e.message ?? ''}` : (e.message ?? String(err));
}
