import type { Dispatcher } from 'undici';
import type { Credentials } from './auth-file.ts';
import { realmRefusal } from './redirect-policy.ts';

/** A parsed `WWW-Authenticate` challenge. */
export interface AuthChallenge {
  scheme: 'bearer' | 'basic';
  params: Record<string, string>;
}

export function parseWwwAuthenticate(header: string | undefined): AuthChallenge | undefined {
  if (!header) return undefined;
  const match = /^\s*(\w+)\s*(.*)$/s.exec(header);
  if (!match) return undefined;
  const scheme = (match[1] ?? '').toLowerCase();
  if (scheme !== 'bearer' && scheme !== 'basic') return undefined;
  const params: Record<string, string> = {};
  const param = /([a-zA-Z_]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))\s*,?\s*/g;
  for (const m of (match[2] ?? '').matchAll(param)) {
    params[(m[1] ?? '').toLowerCase()] = (m[2] ?? m[3] ?? '').replace(/\\(.)/g, '$1');
  }
  return { scheme, params };
}

interface CachedToken {
  token: string;
  expiresAt: number;
}

export interface TokenRequest {
  registry: string;
  /** The registry's endpoint: a realm on the node's own network is refused unless the registry is there too. */
  endpoint?: URL;
  challenge: AuthChallenge;
  /** The scope to ask for when the challenge names none, e.g. `repository:library/nginx:pull`. */
  scope: string;
  credentials: Credentials | undefined;
  signal: AbortSignal;
}

/**
 * Bearer tokens per (registry, scope), fetched from the challenge's realm and cached until
 * shortly before they expire. Concurrent requests for one scope share one token fetch.
 * A scope is per repository, and the repository comes from the client, so the cache is
 * bounded (`maxTokens`): expired tokens go first, then the oldest (fetched again if needed).
 */
export class TokenCache {
  readonly #dispatcher: Dispatcher;
  readonly #tokens = new Map<string, CachedToken>();
  readonly #pending = new Map<string, Promise<string>>();
  readonly #now: () => number;
  readonly #maxTokens: number;

  constructor(dispatcher: Dispatcher, now: () => number = Date.now, maxTokens = 1_000) {
    this.#dispatcher = dispatcher;
    this.#now = now;
    this.#maxTokens = maxTokens;
  }

  /** Tokens held (some may have expired). */
  get size(): number {
    return this.#tokens.size;
  }

  cached(registry: string, scope: string): string | undefined {
    const key = `${registry} ${scope}`;
    const hit = this.#tokens.get(key);
    if (hit && hit.expiresAt > this.#now()) return hit.token;
    if (hit) this.#tokens.delete(key);
    return undefined;
  }

  invalidate(registry: string, scope: string): void {
    this.#tokens.delete(`${registry} ${scope}`);
  }

  async token(req: TokenRequest): Promise<string> {
    const scope = req.challenge.params.scope ?? req.scope;
    const key = `${req.registry} ${scope}`;
    const hit = this.cached(req.registry, scope);
    if (hit) return hit;
    let pending = this.#pending.get(key);
    if (!pending) {
      pending = this.#fetch(req, scope).finally(() => this.#pending.delete(key));
      this.#pending.set(key, pending);
    }
    return pending;
  }

  async #fetch(req: TokenRequest, scope: string): Promise<string> {
    const realm = req.challenge.params.realm;
    if (!realm) throw new Error(`registry ${req.registry} sent a Bearer challenge without a realm`);
    const url = new URL(realm);
    if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new Error(`token realm ${realm} is not http(s)`);
    const refusal = req.endpoint ? realmRefusal(req.endpoint, url) : undefined;
    if (refusal) throw new Error(`refusing token realm ${url.origin}: ${refusal}`);
    if (req.credentials && url.protocol !== 'https:' && !isLoopback(url.hostname)) {
      // Never send credentials in clear text to a realm the registry chose.
      throw new Error(`refusing to send credentials for ${req.registry} to a non-https token realm ${url.origin}`);
    }
    if (req.challenge.params.service) url.searchParams.set('service', req.challenge.params.service);
    url.searchParams.set('scope', scope);
    const headers: Record<string, string> = { accept: 'application/json' };
    if (req.credentials) {
      headers.authorization = `Basic ${Buffer.from(`${req.credentials.username}:${req.credentials.password}`).toString('base64')}`;
    }
    const started = this.#now();
    const res = await this.#dispatcher.request({
      origin: url.origin,
      path: `${url.pathname}${url.search}`,
      method: 'GET',
      headers,
      signal: req.signal,
    });
    const text = await res.body.text();
    if (res.statusCode !== 200) {
      throw new Error(`token endpoint ${url.origin}${url.pathname} answered ${res.statusCode}`);
    }
    let doc: { token?: string; access_token?: string; expires_in?: number };
    try {
      doc = JSON.parse(text) as typeof doc;
    } catch {
      throw new Error(`token endpoint ${url.origin}${url.pathname} sent invalid JSON`);
    }
    const token = doc.token ?? doc.access_token;
    if (!token) throw new Error(`token endpoint ${url.origin}${url.pathname} sent no token`);
    const lifetimeSeconds = typeof doc.expires_in === 'number' && doc.expires_in > 0 ? doc.expires_in : 60;
    // Renew a little early so a token never expires in the middle of a request.
    const expiresAt = started + Math.max(1, lifetimeSeconds - 10) * 1000;
    this.#store(`${req.registry} ${scope}`, { token, expiresAt });
    return token;
  }

  #store(key: string, entry: CachedToken): void {
    this.#tokens.delete(key); // re-insert: Map order is the age order
    if (this.#tokens.size >= this.#maxTokens) {
      const now = this.#now();
      for (const [k, t] of this.#tokens) if (t.expiresAt <= now) this.#tokens.delete(k);
      for (const k of this.#tokens.keys()) {
        if (this.#tokens.size < this.#maxTokens) break;
        this.#tokens.delete(k);
      }
    }
    this.#tokens.set(key, entry);
  }
}

function isLoopback(hostname: string): boolean {
  return hostname === 'localhost' || hostname === '[::1]' || hostname.startsWith('127.');
}
